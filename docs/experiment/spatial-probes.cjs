// The question sets of the spatial diagnostics in BENCHMARKS.md ("Probes 13–20"), kept as run.
// Not part of the benchmark: each probe fine-tunes one checkpoint on one of these sets alone.
//
//   node docs/experiment/spatial-probes.cjs BENCH SPLIT FORM OUT.jsonl [ARGS]
//
//   pairs N [RELATIONS]  "Is the A left of the B?" as the benchmark words it (two single-instance
//                        classes, centres ≥ 0.15·size apart), up to N per scene, half yes and half
//                        no, RELATIONS a comma list of left,right,above,below (default all)
//   superlative [DIRS]   "Is the A the leftmost object?": per scene one direction (rotating over
//                        those the scene allows) whose extreme object is a single ≥ 0.15·size
//                        beyond the next one; one yes (it) and one no (another single class).
//                        DIRS a comma list of leftmost,rightmost,topmost,bottommost (default all)
//
// Training lines get absolute image paths (for `uvu data build --samples`), test lines paths
// relative to BENCH (for `uvu eval --bench` on a folder holding them as test.jsonl).
const fs = require('fs');
const path = require('path');

const [bench, split, form, outFile, ...args] = process.argv.slice(2);
const MARGIN = 0.15;
const scenes = fs.readFileSync(path.join(bench, 'scenes.jsonl'), 'utf8').trim().split('\n').map(JSON.parse).filter((s) => s.split === split);
/** A seeded linear congruential generator: the draws of the recorded probes. */
const lcg = (seed) => () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const centre = (box, axis) => (box[axis] + box[axis + 2]) / 2;
const imageOf = (s) => (split === 'train' ? `${path.resolve(bench)}/scenes/${s.id}.png` : `scenes/${s.id}.png`);
const out = [];

if (form === 'pairs') {
  const perScene = Number(args[0]);
  const relations = args[1] ? args[1].split(',') : null;
  const rnd = lcg(12345);
  for (const s of scenes) {
    const groups = new Map();
    for (const o of s.objects) groups.set(o.className, [...(groups.get(o.className) ?? []), o.box]);
    const singles = [...groups].filter(([, b]) => b.length === 1).map(([n]) => n);
    const options = [];
    for (const a of singles) for (const b of singles) {
      if (a === b) continue;
      const A = groups.get(a)[0], B = groups.get(b)[0], m = MARGIN * s.size;
      if (Math.abs(centre(A, 0) - centre(B, 0)) >= m) options.push({ a, b, rel: 'left', yes: centre(A, 0) < centre(B, 0) }, { a, b, rel: 'right', yes: centre(A, 0) > centre(B, 0) });
      if (Math.abs(centre(A, 1) - centre(B, 1)) >= m) options.push({ a, b, rel: 'above', yes: centre(A, 1) < centre(B, 1) }, { a, b, rel: 'below', yes: centre(A, 1) > centre(B, 1) });
    }
    const picked = [];
    for (const want of [true, false]) {
      const fit = options.filter((o) => o.yes === want && (!relations || relations.includes(o.rel)));
      for (let k = 0; k < perScene / 2 && fit.length; k++) picked.push(fit.splice(Math.floor(rnd() * fit.length), 1)[0]);
    }
    picked.forEach((o, k) => {
      const phrase = o.rel === 'left' || o.rel === 'right' ? `${o.rel} of` : o.rel;
      out.push({ id: `${s.id}-spatial-${k}`, image: imageOf(s), prompt: `Is the ${o.a} ${phrase} the ${o.b}?`, answer: o.yes ? 'yes' : 'no', task: 'spatial', split, scene: s.id, size: s.size, boxes: [groups.get(o.a)[0], groups.get(o.b)[0]], classes: [o.a, o.b], relation: o.rel });
    });
  }
} else if (form === 'superlative') {
  const ALL = [['leftmost', 0, 1, 'left'], ['rightmost', 0, -1, 'right'], ['topmost', 1, 1, 'above'], ['bottommost', 1, -1, 'below']];
  const dirs = args[0] ? ALL.filter(([word]) => args[0].split(',').includes(word)) : ALL;
  const rnd = lcg(7);
  let turn = 0;
  for (const s of scenes) {
    if (s.objects.length < 2) continue;
    const count = new Map();
    for (const o of s.objects) count.set(o.className, (count.get(o.className) ?? 0) + 1);
    const allowed = [];
    for (const [word, axis, sign, relation] of dirs) {
      const [first, second] = s.objects.slice().sort((a, b) => sign * (centre(a.box, axis) - centre(b.box, axis)));
      if (count.get(first.className) !== 1 || Math.abs(centre(second.box, axis) - centre(first.box, axis)) < MARGIN * s.size) continue;
      const others = [...new Set(s.objects.filter((o) => o.className !== first.className && count.get(o.className) === 1).map((o) => o.className))];
      if (others.length) allowed.push([word, relation, first.className, others[Math.floor(rnd() * others.length)]]);
    }
    if (!allowed.length) continue;
    const [word, relation, yesName, noName] = allowed[turn++ % allowed.length];
    for (const [name, yes] of [[yesName, true], [noName, false]]) {
      out.push({ id: `${s.id}-${word}-${name}`, image: imageOf(s), prompt: `Is the ${name} the ${word} object?`, answer: yes ? 'yes' : 'no', task: 'spatial', split, scene: s.id, size: s.size, boxes: [], classes: [name], relation });
    }
  }
} else {
  console.error(`spatial-probes: unknown form "${form}" (expected pairs or superlative)`);
  process.exit(2);
}
fs.writeFileSync(outFile, out.map((o) => JSON.stringify(o)).join('\n') + '\n');
console.log(`${outFile}: ${out.length} questions, ${out.filter((o) => o.answer === 'yes').length} yes`);
