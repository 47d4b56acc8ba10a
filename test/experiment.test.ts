/**
 * The tiny experiment end to end, then checks that can fail for a wrong pipeline: the accuracies
 * it records must equal an independent hand-scoring (written here from the scoring rules in
 * src/perception/score.ts's doc, not by calling it) of the answers it recorded, the majority
 * floor must equal the one counted here from train.jsonl, and scoring answer functions whose
 * correctness is known by construction (the truth, wrong answers, a fixed mix of both in varied
 * wordings) on the experiment's own benchmark must give exactly the expected accuracies; and a
 * tiny model fine-tuned where the answer is visible must beat itself given a grey picture.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../src/engine/tf.js';
import { writePng } from '../src/image/io.js';
import { ModelSession } from '../src/infer/session.js';
import { evaluateBench, type EvalItemResult } from '../src/perception/eval.js';
import { scoreAnswer, totalVariation } from '../src/perception/gates.js';
import { formatBox, groundedSpatialAnswer, type QaItem, type Task } from '../src/perception/tasks.js';
import { readLog } from '../src/serve/runs.js';
import { mergeSameSeed, type RunResults } from '../scripts/experiment-results.js';
import { cpuSecondsSoFar } from '../src/util/cputime.js';
import { Rng } from '../src/util/rng.js';

const script = fileURLToPath(new URL('../scripts/experiment.js', import.meta.url));
const seedsScript = fileURLToPath(new URL('../scripts/experiment-seeds.js', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const TINY_CONFIG = fileURLToPath(new URL('../../configs/tiny.json', import.meta.url));
const VARIANTS = ['uvu', 'text-only', 'ar-vq'] as const;
/** The spatial curriculum's stages (scripts/experiment.ts SPATIAL_CURRICULUM), all of which the tiny size's scenes allow. */
const SPATIAL_STAGES = ['spatial-leftmost', 'spatial-left', 'spatial-horizontal', 'spatial-all'];
/** A two-object spatial question's prompt. */
const SPATIAL_PAIR = /^Is the \w+ (left of|right of|above|below) the /;

interface Score { n: number; accuracy: number; ci95: [number, number] }
interface Report {
  sizeSettings: { evalPerTask: number; spatialAnswer: 'yes-no' | 'boxes' | 'centres' };
  evals: Record<string, { n: number; tasks: Record<string, Score>; overall: Score; items: EvalItemResult[] }>;
  majority: { answers: Record<string, string>; tasks: Record<string, Score>; overall: Score };
  // The remaining fields are checked loosely, as JSON.
  [key: string]: any;
}

const out = mkdtempSync(join(tmpdir(), 'uvu-experiment-'));
const bench = join(out, 'bench');
after(() => rmSync(out, { recursive: true, force: true }));
/** The report of the end-to-end run, once it passed. */
let ran: Report | null = null;
function finished(): Report {
  assert.ok(ran, 'the end-to-end run failed (see the first test), so there is nothing to check');
  return ran;
}
const readJsonl = <T>(path: string): T[] => readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);
/** The tasks of the benchmark's test split, as its manifest lists them. */
const taskNames = (): Task[] => Object.keys((JSON.parse(readFileSync(join(bench, 'manifest.json'), 'utf8')) as { items: { test: Record<string, number> } }).items.test) as Task[];
/** The test items the experiment scores: the first `perTask` of each task, in file order. */
function firstPerTask(items: QaItem[], perTask: number): QaItem[] {
  const taken: Record<string, number> = {};
  const out: QaItem[] = [];
  for (const it of items) {
    taken[it.task] = (taken[it.task] ?? 0) + 1;
    if (taken[it.task]! <= perTask) out.push(it);
  }
  return out;
}
const isBox = (task: string): boolean => task === 'grounding' || task === 'grounding-any';
const isCount = (task: string): boolean => task === 'counting' || task === 'counting-any';

// ---------------------------------------------------------------- hand-scoring, from the rules

const COUNT_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve'];

/**
 * Is `prediction` right for `item`? The rules as documented: grounding takes the first four
 * `<loc_N>` (N < 32) as corners (v = N/31·size, sorted) and needs IoU ≥ 0.5 with the exact box;
 * counting takes the first whole-word number (digits, zero…twelve, "no"/"none" = 0); yes/no
 * questions take the first whole word "yes" or "no", any case.
 */
function handScore(item: QaItem, prediction: string): boolean {
  if (isBox(item.task)) {
    const bins: number[] = [];
    for (const m of prediction.matchAll(/<loc_(\d+)>/g)) if (bins.length < 4) bins.push(Number(m[1]));
    if (bins.length < 4 || bins.some((b) => b > 31)) return false;
    const [a, b, c, d] = bins.map((x) => (x / 31) * item.size) as [number, number, number, number];
    const p = { x0: Math.min(a, c), y0: Math.min(b, d), x1: Math.max(a, c), y1: Math.max(b, d) };
    const [tx0, ty0, tx1, ty1] = item.boxes[0]!;
    const w = Math.min(p.x1, tx1) - Math.max(p.x0, tx0);
    const h = Math.min(p.y1, ty1) - Math.max(p.y0, ty0);
    if (w <= 0 || h <= 0) return false;
    const union = (p.x1 - p.x0) * (p.y1 - p.y0) + (tx1 - tx0) * (ty1 - ty0) - w * h;
    return (w * h) / union >= 0.5;
  }
  const words = prediction.split(/[^A-Za-z0-9_]+/).filter(Boolean).map((w) => w.toLowerCase());
  if (isCount(item.task)) {
    for (const word of words) {
      if (/^\d+$/.test(word)) return Number(word) === Number(item.answer);
      if (word === 'no' || word === 'none') return item.answer === '0';
      const k = COUNT_WORDS.indexOf(word);
      if (k >= 0) return k === Number(item.answer);
    }
    return false;
  }
  if (item.task === 'naming') {
    const said = new Set(words.filter((w) => !['and', 'a', 'an', 'the'].includes(w)));
    const truth = new Set(item.answer.split(', '));
    return said.size === truth.size && [...truth].every((name) => said.has(name));
  }
  if (item.task === 'ordering') {
    const said = words.filter((w) => !['and', 'a', 'an', 'the'].includes(w));
    return said.join(' ') === item.answer.split(', ').join(' ');
  }
  const first = words.find((w) => w === 'yes' || w === 'no');
  return first !== undefined && first === item.answer;
}

/** Per-task and overall accuracy of booleans, the way a person would tally them. */
function tally(items: QaItem[], correct: boolean[]): { tasks: Record<string, { n: number; k: number }>; n: number; k: number } {
  const tasks: Record<string, { n: number; k: number }> = {};
  items.forEach((it, i) => {
    const t = (tasks[it.task] ??= { n: 0, k: 0 });
    t.n++;
    if (correct[i]) t.k++;
  });
  return { tasks, n: items.length, k: correct.filter(Boolean).length };
}

function assertScores(label: string, got: { tasks: Partial<Record<string, Score>>; overall: Score }, want: ReturnType<typeof tally>): void {
  assert.deepEqual(Object.keys(got.tasks).sort(), Object.keys(want.tasks).sort(), `${label}: tasks scored`);
  for (const [task, { n, k }] of Object.entries(want.tasks)) {
    const s = got.tasks[task]!;
    assert.equal(s.n, n, `${label} ${task}: n`);
    assert.equal(s.accuracy, k / n, `${label} ${task}: accuracy ${s.accuracy}, hand-scored ${k}/${n}`);
    assert.ok(s.ci95[0] <= s.accuracy && s.accuracy <= s.ci95[1], `${label} ${task}: interval ${s.ci95} around ${s.accuracy}`);
    if (k === 0) assert.deepEqual(s.ci95, [0, 0], `${label} ${task}: none right`);
    if (k === n) assert.deepEqual(s.ci95, [1, 1], `${label} ${task}: all right`);
  }
  assert.equal(got.overall.n, want.n, `${label} overall: n`);
  assert.equal(got.overall.accuracy, want.k / want.n, `${label} overall: accuracy ${got.overall.accuracy}, hand-scored ${want.k}/${want.n}`);
}

// ---------------------------------------------------------------- the run

test('the experiment runs end to end at the tiny size: three configurations pretrained, fine-tuned and scored', () => {
  const r = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', out, '--no-write', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
  // --json: stdout is exactly the summary, which is also on disk.
  const summary = JSON.parse(r.stdout) as Report;
  assert.deepEqual(summary, JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')));
  assert.equal(summary.regime, 'in-distribution');
  for (const task of taskNames()) {
    assert.equal(summary.tasks[task].floor.accuracy, report.majority.tasks[task].accuracy, `${task}: floor`);
    for (const variant of VARIANTS) assert.equal(summary.tasks[task][variant].accuracy, report.evals[variant].tasks[task].accuracy, `${variant} ${task}`);
  }
  for (const variant of ['uvu', 'text-only', 'ar-vq']) {
    const e = report.evals[variant];
    assert.ok(e.n > 0, variant);
    for (const task of Object.keys(e.tasks)) {
      const s = e.tasks[task];
      assert.ok(s.accuracy >= 0 && s.accuracy <= 1 && s.ci95[0] <= s.accuracy && s.accuracy <= s.ci95[1], `${variant} ${task}`);
    }
    for (const stage of ['pretrain', 'agnostic', ...SPATIAL_STAGES, 'sft', 'cooldown']) assert.ok(existsSync(join(out, 'runs', `${variant}-${stage}`, 'checkpoint', 'state.json')), `${variant}-${stage}`);
    // The cooldown's weights are the ones scored.
    assert.ok(existsSync(join(out, 'runs', `${variant}-cooldown`, 'eval-test.png')), variant);
  }
  // Warmup-stable-decay: the stages before the cooldown run at the constant peak rate, the cooldown decays from it.
  const lrs = (run: string): number[] => readLog(join(out, 'runs', run), 0).lines.map((l) => l.lr);
  const peak = lrs('uvu-pretrain')[0]!;
  for (const run of ['uvu-pretrain', 'uvu-agnostic', ...SPATIAL_STAGES.map((st) => `uvu-${st}`), 'uvu-sft']) assert.ok(lrs(run).every((lr) => lr === peak), `${run}: ${lrs(run)}`);
  const cool = lrs('uvu-cooldown');
  assert.equal(cool[0], peak);
  assert.ok(cool.at(-1)! < peak, `cooldown: ${cool}`);
  // The spatial curriculum: each stage's questions are its relations' only, and fine-tuning asks the last stage's drills in place of the benchmark's spatial items.
  const lines = (f: string): QaItem[] =>
    readJsonl<QaItem & { turns?: { prompt: string; answer: string }[] }>(join(out, f)).flatMap((d) => [d, ...(d.turns ?? []).map((t) => ({ ...d, ...t }))]);
  const prompts = (f: string): string[] => lines(f).map((d) => d.prompt);
  assert.ok(prompts('train-spatial-leftmost.jsonl').every((p) => / the leftmost object\?$/.test(p)));
  assert.ok(prompts('train-spatial-left.jsonl').every((p) => / left of the /.test(p)));
  assert.ok(prompts('train-spatial-horizontal.jsonl').every((p) => / (left|right) of the /.test(p)));
  const drills = prompts('train-spatial-all.jsonl');
  const sftSpatial = prompts('train-questions.jsonl').filter((p) => SPATIAL_PAIR.test(p));
  assert.deepEqual(sftSpatial.sort(), drills.slice().sort());
  // The tiny size answers them grounded (spatialAnswer 'boxes'): both named objects' boxes (a dialog's first question has its boxes on the line), then the yes/no.
  let grounded = 0;
  for (const d of readJsonl<QaItem & { turns?: { prompt: string; answer: string }[] }>(join(out, 'train-questions.jsonl'))) {
    if (d.task === 'spatial') assert.equal(d.answer, `${formatBox(d.boxes[0]!, d.size)}${formatBox(d.boxes[1]!, d.size)} ${/ (yes|no)$/.exec(d.answer)?.[1]}`);
    for (const t of [d, ...(d.turns ?? [])]) {
      if (!SPATIAL_PAIR.test(t.prompt)) continue;
      assert.match(t.answer, /^(<loc_\d+>){8} (yes|no)$/, t.prompt);
      grounded++;
    }
  }
  assert.equal(grounded, sftSpatial.length);
  // text-only never supervises image codes; uvu and ar-vq do in pretraining, nobody in SFT.
  // (Read from every step's log: a step's batch may happen to hold no image targets.)
  const imageLosses = (run: string): (number | null)[] => readLog(join(out, 'runs', run), 0).lines.map((l) => l.loss_image);
  assert.ok(imageLosses('text-only-pretrain').every((l) => l === null));
  assert.ok(imageLosses('uvu-pretrain').some((l) => l !== null));
  assert.ok(imageLosses('ar-vq-pretrain').some((l) => l !== null));
  assert.ok(imageLosses('uvu-sft').every((l) => l === null));
  assert.equal(report.runs['uvu-sft'].finalLoss.image, null);
  assert.ok(report.codebook.test.prp > 0 && report.vq.test.prp !== undefined);
  assert.ok(existsSync(join(out, 'losses.png')));
  // A rerun resumes: every step's output exists, so nothing is recomputed.
  const again = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', out, '--no-write'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(again.status, 0);
  assert.ok(!again.stderr.includes('[experiment] train-'), 'a finished experiment reruns no training step');
  ran = report;
});
test('what the run cost: every step\'s wall and CPU time recorded, split between the shared data and each configuration\'s own steps', () => {
  const rep = finished();
  const steps = join(out, 'steps');
  const secondsOf = (ext: string): Record<string, number> => Object.fromEntries(readdirSync(steps).filter((f) => f.endsWith(ext)).map((f) => [f.slice(0, -ext.length), Number(readFileSync(join(steps, f), 'utf8'))]));
  const wall = secondsOf('.seconds');
  const cpu = secondsOf('.cpu-seconds');
  assert.deepEqual(Object.keys(cpu).sort(), Object.keys(wall).sort(), 'every timed step has its CPU time');
  // A step's CPU time is at most every core busy for its wall time (both rounded to 0.1 s).
  for (const [name, s] of Object.entries(cpu)) assert.ok(s >= 0 && s <= wall[name]! * cpus().length + 0.2, `${name}: ${s} s CPU in ${wall[name]} s`);
  // The split is a partition: the groups' steps and minutes add up to all of them.
  const groups = ['shared', ...VARIANTS].map((g) => rep.cost[g] as { steps: number; wallMinutes: number; cpuMinutes: number });
  assert.equal(groups.reduce((n, g) => n + g.steps, 0), Object.keys(wall).length);
  const total = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(total(groups.map((g) => g.wallMinutes)) - rep.minutes) < 1e-9);
  assert.ok(Math.abs(total(groups.map((g) => g.cpuMinutes)) - total(Object.values(cpu)) / 60) < 1e-9);
  // Each configuration owns its training stages, its scoring and its drills; ar-vq also its VQ-VAE, the VQ-VAE's evaluation and its datasets.
  const trained = (v: string): number => readdirSync(join(out, 'runs')).filter((r) => r.startsWith(`${v}-`)).length;
  for (const v of ['uvu', 'text-only']) assert.equal(rep.cost[v].steps, trained(v) + 2, v);
  const vqDatasets = readdirSync(join(out, 'data')).filter((d) => d.endsWith('-vq')).length;
  assert.ok(vqDatasets >= 3);
  assert.equal(rep.cost['ar-vq'].steps, trained('ar-vq') + 2 + 2 + vqDatasets);
  for (const g of groups) assert.ok(g.cpuMinutes > 0);
});
test('cpuSecondsSoFar counts this process and a child it waited for', () => {
  // The child burns 0.5 s of its own CPU (not of wall time, which a busy machine would stretch).
  const burn = 'const t = process.cpuUsage(); while (process.cpuUsage(t).user < 5e5);';
  const before = cpuSecondsSoFar()!;
  assert.equal(spawnSync(process.execPath, ['-e', burn]).status, 0);
  const afterChild = cpuSecondsSoFar()!;
  assert.ok(afterChild - before >= 0.45, `a child of 0.5 s CPU counted ${afterChild - before} s`);
  const own = process.cpuUsage();
  while (process.cpuUsage(own).user < 3e5);
  assert.ok(cpuSecondsSoFar()! - afterChild >= 0.25, 'this process\'s own 0.3 s');
});
test('the spatial drills on the test scenes: each question agrees with its scene, and accuracies, parts and paired differences equal a hand-scoring', () => {
  const rep = finished();
  const scenes = new Map(readJsonl<{ id: string; split: string; objects: { className: string; box: [number, number, number, number] }[] }>(join(bench, 'scenes.jsonl')).map((sc) => [sc.id, sc]));
  const d = rep.spatialDrills as { n: number; scenes: number; floor: Score; variants: Record<string, Score & { located: number; consistent: number }>; paired: Record<string, { n: number; difference: number }> };
  const items = rep.spatialDrillItems as Record<string, { id: string; scene: string; prompt: string; answer: string; prediction: string; correct: boolean }[]>;
  assert.ok(d.n > 0 && d.scenes > 0 && d.n <= 4 * d.scenes, `${d.n} questions on ${d.scenes} scenes`);
  /** Does the point a stand in the prompt's relation to b (y grows downwards)? */
  const holds = (rel: string, a: number[], b: number[]): boolean => ({ 'left of': a[0]! < b[0]!, 'right of': a[0]! > b[0]!, above: a[1]! < b[1]!, below: a[1]! > b[1]! })[rel]!;
  for (const variant of VARIANTS) {
    const rs = items[variant]!;
    assert.deepEqual(rs.map((r) => r.id), items.uvu!.map((r) => r.id), `${variant}: the same questions`);
    assert.equal(rs.length, d.n);
    let right = 0, located = 0, consistent = 0;
    for (const r of rs) {
      const scene = scenes.get(r.scene)!;
      assert.equal(scene.split, 'test', r.id);
      const [, a, rel, b] = /^Is the (.+) (left of|right of|above|below) the (.+)\?$/.exec(r.prompt)!;
      const centreOf = (name: string): number[] => {
        const found = scene.objects.filter((o) => o.className === name);
        assert.equal(found.length, 1, `${r.id}: one ${name} in the scene`);
        const [x0, y0, x1, y1] = found[0]!.box;
        return [x0 + x1, y0 + y1];
      };
      const truth = holds(rel!, centreOf(a!), centreOf(b!));
      assert.equal(r.answer, truth ? 'yes' : 'no', r.prompt);
      const word = /\b(yes|no)\b/i.exec(r.prediction)?.[1]?.toLowerCase();
      assert.equal(r.correct, word === r.answer, `${variant} ${r.id}: "${r.prediction}"`);
      right += Number(r.correct);
      // The answer's two boxes (8 loc tokens), compared by their centres.
      const bins = [...r.prediction.matchAll(/<loc_(\d+)>/g)].map((m) => Number(m[1]));
      if (bins.length >= 8 && word) {
        const said = holds(rel!, [bins[0]! + bins[2]!, bins[1]! + bins[3]!], [bins[4]! + bins[6]!, bins[5]! + bins[7]!]);
        located += Number(said === truth);
        consistent += Number(said === (word === 'yes'));
      }
    }
    const v = d.variants[variant]!;
    assert.equal(v.accuracy, right / rs.length, `${variant}: accuracy`);
    assert.ok(v.ci95[0] <= v.accuracy && v.accuracy <= v.ci95[1], `${variant}: interval ${v.ci95}`);
    // The tiny size answers grounded with boxes, so every answer is taken apart.
    assert.equal(v.located, located / rs.length, `${variant}: located`);
    assert.equal(v.consistent, consistent / rs.length, `${variant}: consistent`);
  }
  const majority = rep.majority.answers.spatial;
  assert.equal(d.floor.accuracy, items.uvu!.filter((r) => r.answer === majority).length / d.n);
  for (const other of ['text-only', 'ar-vq']) {
    const diff = items.uvu!.reduce((s, r, i) => s + Number(r.correct) - Number(items[other]![i]!.correct), 0) / d.n;
    assert.ok(Math.abs(d.paired[`uvu - ${other}`]!.difference - diff) < 1e-12, other);
  }
});
test('each configuration\'s recorded accuracies equal a hand-scoring of the answers it recorded, item by item', () => {
  const rep = finished();
  const scored = firstPerTask(readJsonl<QaItem>(join(bench, 'test.jsonl')), rep.sizeSettings.evalPerTask);
  assert.ok(scored.length >= 8, `only ${scored.length} test items`);
  for (const variant of VARIANTS) {
    const e = rep.evals[variant]!;
    // The model was asked the first evalPerTask test questions of each task, in order, with their true answers recorded.
    assert.equal(e.n, scored.length, variant);
    assert.deepEqual(e.items.map((r) => [r.id, r.task, r.prompt, r.answer, r.image]), scored.map((it) => [it.id, it.task, it.prompt, it.answer, it.image]), variant);
    const hand = scored.map((it, i) => handScore(it, e.items[i]!.prediction));
    scored.forEach((it, i) => assert.equal(e.items[i]!.correct, hand[i], `${variant} ${it.id} (${it.task}, answer ${JSON.stringify(it.answer)}): prediction ${JSON.stringify(e.items[i]!.prediction)}`));
    assertScores(variant, e, tally(scored, hand));
  }
});

test('the majority-answer floor equals the most frequent train answers, hand-scored on the test items', () => {
  const rep = finished();
  const train = readJsonl<QaItem>(join(bench, 'train.jsonl'));
  const scored = firstPerTask(readJsonl<QaItem>(join(bench, 'test.jsonl')), rep.sizeSettings.evalPerTask);
  for (const task of taskNames()) {
    const counts = new Map<string, number>();
    for (const it of train) if (it.task === task) counts.set(it.answer, (counts.get(it.answer) ?? 0) + 1);
    const chosen = rep.majority.answers[task]!;
    assert.equal(counts.get(chosen), Math.max(...counts.values()), `${task}: "${chosen}" is not the most frequent train answer`);
  }
  const hand = scored.map((it) => handScore(it, rep.majority.answers[it.task]!));
  assertScores('majority', rep.majority, tally(scored, hand));
});

test('the gates of every configuration and task: the prior entropy counted from train.jsonl (over the answers as trained: spatial ones grounded), accuracies and floors as scored, the drop as real minus grey', () => {
  const rep = finished();
  const train = readJsonl<QaItem>(join(bench, 'train.jsonl'));
  assert.equal(rep.sizeSettings.spatialAnswer, 'boxes');
  const trained = (it: QaItem): string => (it.task === 'spatial' ? groundedSpatialAnswer(it, 'boxes') : it.answer);
  for (const task of taskNames()) {
    const counts = new Map<string, number>();
    for (const it of train) if (it.task === task) counts.set(trained(it), (counts.get(trained(it)) ?? 0) + 1);
    const n = [...counts.values()].reduce((a, b) => a + b, 0);
    let entropy = 0;
    for (const c of counts.values()) entropy -= (c / n) * Math.log(c / n);
    for (const variant of VARIANTS) {
      const g = rep.gates[variant][task];
      const label = `${variant} ${task}`;
      assert.ok(Math.abs(g.priorEntropy - entropy) < 1e-12, `${label}: prior entropy ${g.priorEntropy}, counted ${entropy}`);
      assert.equal(g.n, rep.evals[variant].tasks[task].n, label);
      assert.equal(g.accuracy, rep.evals[variant].tasks[task].accuracy, label);
      assert.equal(g.floor, rep.majority.tasks[task].accuracy, label);
      assert.ok(g.greyAccuracy >= 0 && g.greyAccuracy <= 1, label);
      assert.ok(Math.abs(g.accuracyDrop - (g.accuracy - g.greyAccuracy)) < 1e-12, label);
      assert.ok(g.dropCi95[0] <= g.accuracyDrop + 1e-12 && g.accuracyDrop <= g.dropCi95[1] + 1e-12, `${label}: drop ${g.accuracyDrop} outside ${g.dropCi95}`);
      assert.equal(g.imageSensitive, g.dropCi95[0] > 0, label);
      assert.equal(g.beatsFloor, g.ci95[0] > g.floor, label);
      assert.equal(g.gate2, g.imageSensitive && g.beatsFloor, label);
      assert.equal(g.trainLossBelowPrior, g.trainLoss < g.priorEntropy, label);
      assert.equal(g.testLossBelowPrior, g.testLoss < g.priorEntropy, label);
      // A loss in nats per question: positive, and at most what a uniform guess over the vocabulary pays per token.
      assert.ok(g.testLoss > 0 && g.trainLoss > 0 && g.meanTv >= 0 && g.meanTv <= 1, label);
    }
  }
});

test('paired differences uvu − text-only and uvu − ar-vq equal the per-item differences of the recorded answers', () => {
  const rep = finished();
  for (const other of ['text-only', 'ar-vq']) {
    const p = rep.paired[`uvu - ${other}`];
    for (const task of taskNames()) {
      const a = rep.evals.uvu.items.filter((r) => r.task === task);
      const b = rep.evals[other].items.filter((r) => r.task === task);
      assert.deepEqual(a.map((r) => r.id), b.map((r) => r.id), `${task}: the same items`);
      const d = a.reduce((s, r, i) => s + Number(r.correct) - Number(b[i]!.correct), 0) / a.length;
      assert.ok(Math.abs(p[task].difference - d) < 1e-12, `${other} ${task}: ${p[task].difference} vs ${d}`);
      assert.equal(p[task].n, a.length);
      assert.ok(p[task].ci95[0] <= d + 1e-12 && d <= p[task].ci95[1] + 1e-12);
    }
  }
});

test('experiment:seeds merges runs of several seeds: pooled accuracies and paired differences over every item, refusals for runs that differ', () => {
  const rep = finished();
  const seeds = mkdtempSync(join(tmpdir(), 'uvu-experiment-seeds-'));
  try {
    // Seed "1" is the tiny run with uvu answering every item right: a different, known outcome.
    const dirA = join(seeds, 'a'), dirB = join(seeds, 'b'), dirC = join(seeds, 'c');
    const b: Report = JSON.parse(JSON.stringify(rep));
    b.seed = 1;
    for (const it of b.evals.uvu.items) it.correct = true;
    for (const it of b.spatialDrillItems.uvu) it.correct = true;
    for (const [d, r] of [[dirA, rep], [dirB, b], [dirC, { ...rep, settings: { ...rep.settings, sftSteps: 99 } }]] as const) {
      mkdirSync(d);
      writeFileSync(join(d, 'report.json'), JSON.stringify(r));
    }
    const run = (...args: string[]) => spawnSync(process.execPath, [seedsScript, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = run(dirA, dirB, '--json', '--plot', join(seeds, 'angles.png'));
    assert.equal(r.status, 0, r.stderr);
    const merged = JSON.parse(r.stdout) as { seeds: number[]; pooled: Record<string, { variants: Record<string, Score>; paired: Record<string, Score>; pairedAcrossSeeds: Record<string, { mean: number; sd: number; ci95: [number, number] }> }> };
    assert.deepEqual(merged.seeds, [0, 1]);
    for (const task of taskNames()) {
      const a = rep.evals.uvu.items.filter((x) => x.task === task);
      const t = rep.evals['text-only'].items.filter((x) => x.task === task);
      const p = merged.pooled[task]!;
      // uvu pooled: seed 0 as scored, seed 1 all right.
      const uvu = (a.filter((x) => x.correct).length + a.length) / (2 * a.length);
      assert.ok(Math.abs(p.variants.uvu!.accuracy - uvu) < 1e-12, `${task}: pooled uvu ${p.variants.uvu!.accuracy} vs ${uvu}`);
      assert.ok(Math.abs(p.variants['text-only']!.accuracy - t.filter((x) => x.correct).length / t.length) < 1e-12, `${task}: text-only is the same in both`);
      const d0 = a.reduce((s, x, i) => s + Number(x.correct) - Number(t[i]!.correct), 0);
      const d1 = t.reduce((s, x) => s + 1 - Number(x.correct), 0);
      const diff = p.paired['uvu - text-only']!;
      assert.ok(Math.abs(diff.accuracy - (d0 + d1) / (2 * a.length)) < 1e-12, `${task}: pooled paired difference`);
      assert.ok(diff.ci95[0] <= diff.accuracy + 1e-12 && diff.accuracy <= diff.ci95[1] + 1e-12);
      // Across seeds: the two per-seed differences, their sd and the t interval with 1 degree of freedom.
      const perSeed = [d0 / a.length, d1 / a.length];
      const across = p.pairedAcrossSeeds['uvu - text-only']!;
      const sd = Math.abs(perSeed[0]! - perSeed[1]!) / Math.SQRT2;
      assert.ok(Math.abs(across.mean - (perSeed[0]! + perSeed[1]!) / 2) < 1e-12 && Math.abs(across.sd - sd) < 1e-12, `${task}: across seeds ${JSON.stringify(across)}`);
      assert.ok(Math.abs(across.ci95[1] - across.mean - (12.706 * sd) / Math.SQRT2) < 1e-9);
    }
    // The spatial drills pool the same way: seed 0 as scored, seed 1 with uvu all right.
    const drills = (JSON.parse(r.stdout) as { spatialDrills: { variants: Record<string, Score>; paired: Record<string, Score> } }).spatialDrills;
    const da = rep.spatialDrillItems.uvu as { correct: boolean }[], dt = rep.spatialDrillItems['text-only'] as { correct: boolean }[];
    assert.ok(Math.abs(drills.variants.uvu!.accuracy - (da.filter((x) => x.correct).length + da.length) / (2 * da.length)) < 1e-12, 'drills: pooled uvu');
    const drillDiff = (da.reduce((s, x, i) => s + Number(x.correct) - Number(dt[i]!.correct), 0) + dt.reduce((s, x) => s + 1 - Number(x.correct), 0)) / (2 * da.length);
    assert.ok(Math.abs(drills.paired['uvu - text-only']!.accuracy - drillDiff) < 1e-12, 'drills: pooled paired difference');
    assert.match(r.stderr, /\| \*\*spatial, drills\*\* \| \*\*all 2\*\* \|/);
    // A seed's own row shows the drills as its experiment recorded them.
    const p1 = (x: number): string => (100 * x).toFixed(1);
    const recorded = rep.spatialDrills.variants.uvu as Score;
    assert.ok(r.stderr.split('\n').some((l: string) => l.startsWith('| spatial, drills | 0 |') && l.includes(`${p1(recorded.accuracy)} [${p1(recorded.ci95[0])}, ${p1(recorded.ci95[1])}]`)), 'seed 0 drills row');
    assert.ok(existsSync(join(seeds, 'angles.png')));
    // A run that trained fewer configurations is merged on those every run has.
    const dirD = join(seeds, 'd');
    mkdirSync(dirD);
    writeFileSync(join(dirD, 'report.json'), JSON.stringify({ ...b, seed: 3, settings: { ...rep.settings, variants: ['text-only', 'uvu'] } }));
    const fewer = run(dirA, dirD, '--json');
    assert.equal(fewer.status, 0, fewer.stderr);
    assert.match(fewer.stderr, /ar-vq left out: not trained for every seed/);
    const mergedFewer = JSON.parse(fewer.stdout) as { configurations: string[]; pooled: Record<string, { variants: Record<string, Score>; paired: Record<string, Score> }> };
    assert.deepEqual(mergedFewer.configurations, ['uvu', 'text-only']);
    for (const p of Object.values(mergedFewer.pooled)) assert.deepEqual([Object.keys(p.variants), Object.keys(p.paired)], [['uvu', 'text-only'], ['uvu - text-only']]);
    // A run made under another size name, its tasks listed rather than 'all', is the same comparison.
    const dirE = join(seeds, 'e');
    mkdirSync(dirE);
    writeFileSync(join(dirE, 'report.json'), JSON.stringify({ ...b, seed: 4, size: 'renamed', settings: { ...rep.settings, tasks: Object.keys(rep.tasks).join(',') } }));
    const renamed = run(dirA, dirE, '--json');
    assert.equal(renamed.status, 0, renamed.stderr);
    assert.deepEqual((JSON.parse(renamed.stdout) as { seeds: number[] }).seeds, [0, 4]);
    // A run recorded before a size field existed had it off: it merges with one that records the field as 0.
    const [dirF, dirG] = [join(seeds, 'f'), join(seeds, 'g')];
    const { spatialSteps: _spatial, cooldownSteps: _cooldown, spatialAnswer: _answer, ...older } = rep.settings as Record<string, unknown>;
    for (const [d, seed, settings] of [[dirF, 5, { ...rep.settings, spatialSteps: 0, cooldownSteps: 0, spatialAnswer: 'yes-no' }], [dirG, 6, older]] as const) {
      mkdirSync(d);
      writeFileSync(join(d, 'report.json'), JSON.stringify({ ...b, seed, settings }));
    }
    const olderRun = run(dirF, dirG, '--json');
    assert.equal(olderRun.status, 0, olderRun.stderr);
    assert.deepEqual((JSON.parse(olderRun.stdout) as { seeds: number[] }).seeds, [5, 6]);
    // The run's own results.json (what docs/experiment/results/ keeps) merges as its report does:
    // a copy of the file alone gives the same pooled numbers as folder a (report.json only), and it
    // carries the pretraining's gradient angles as the training logs recorded them.
    const resultsCopy = join(seeds, 'seed0-results.json');
    writeFileSync(resultsCopy, readFileSync(join(out, 'results.json')));
    assert.ok(readFileSync(resultsCopy).length * 5 < readFileSync(join(out, 'report.json')).length, 'results.json is a fraction of report.json');
    const fromFile = run(resultsCopy, dirB, '--json', '--plot', join(seeds, 'angles-file.png'));
    assert.equal(fromFile.status, 0, fromFile.stderr);
    const { runs: _runs, plot: _plot, angles: anglesFromFile, ...pooledFromFile } = JSON.parse(fromFile.stdout) as Record<string, unknown>;
    const { runs: _runs2, plot: _plot2, angles: _angles, ...pooledFromDirs } = merged as unknown as Record<string, unknown>;
    assert.deepEqual(pooledFromFile, pooledFromDirs);
    // One seed made as two runs that trained different configurations (`--variants`, run apart)
    // joins into that seed: the join equals the run of all three, its paired differences recomputed
    // as the experiment computed them, and it merges with seed 1 as the whole run does.
    const whole = JSON.parse(readFileSync(resultsCopy, 'utf8')) as RunResults;
    const [uvuOnly, othersOnly] = [['uvu'], ['text-only', 'ar-vq']].map((keep) => onlyConfigurations(whole, keep));
    assert.deepEqual(mergeSameSeed([{ path: 'u', results: uvuOnly! }, { path: 'o', results: othersOnly! }]), whole);
    const [partU, partO] = [join(seeds, 'seed0-uvu.json'), join(seeds, 'seed0-others.json')];
    writeFileSync(partU, JSON.stringify(uvuOnly));
    writeFileSync(partO, JSON.stringify(othersOnly));
    const joined = run(partO, dirB, partU, '--json', '--plot', join(seeds, 'angles-joined.png'));
    assert.equal(joined.status, 0, joined.stderr);
    const { runs: _runs3, plot: _plot3, ...pooledJoined } = JSON.parse(joined.stdout) as Record<string, unknown>;
    assert.deepEqual(pooledJoined, { ...pooledFromFile, angles: anglesFromFile });
    // Runs of one seed made from other data, or that share a configuration, are refused naming the file.
    const otherItems = structuredClone(othersOnly!);
    otherItems.items[firstTaskOf(whole)]!.ids[0] += '-elsewhere';
    const partX = join(seeds, 'seed0-other-data.json');
    writeFileSync(partX, JSON.stringify(otherItems));
    for (const [args, message] of [
      [[partU, partX, dirB], new RegExp(`seed0-other-data\\.json: ${firstTaskOf(whole)} test items not the same as in \\S+seed0-uvu\\.json, also seed 0`)],
      [[partU, resultsCopy, dirB], /seed0-results\.json: uvu of seed 0 is in another run too/],
    ] as const) {
      const refused = run(...args);
      assert.equal(refused.status, 2, refused.stderr);
      assert.match(refused.stderr, message);
      assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
    }
    // Its angles are the pretraining logs' (the tiny run's few steps may hold none: then none).
    const angles = (JSON.parse(readFileSync(resultsCopy, 'utf8')) as { angles: Record<string, [number, number][]> }).angles;
    const loggedAngles = (dir: string, v: string): [number, number][] => readLog(join(dir, 'runs', `${v}-pretrain`), 0).lines.flatMap((l) => (l.angle_deg === null ? [] : [[l.step, l.angle_deg] as [number, number]]));
    for (const v of ['uvu', 'ar-vq']) assert.deepEqual(angles[v], loggedAngles(out, v), `${v}: angles`);
    assert.equal((anglesFromFile as Record<string, { n: number } | null>).uvu?.n ?? 0, angles.uvu!.length, 'the file\'s angles (folder b has no training logs)');
    // A folder with report.json only takes its angles from its training logs: here uvu's, with a
    // known angle on every other step.
    const dirH = join(seeds, 'h'), logH = join(dirH, 'runs', 'uvu-pretrain');
    mkdirSync(logH, { recursive: true });
    writeFileSync(join(dirH, 'report.json'), JSON.stringify({ ...rep, seed: 7 }));
    const steps = readFileSync(join(out, 'runs', 'uvu-pretrain', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    writeFileSync(join(logH, 'log.jsonl'), steps.map((l, i) => JSON.stringify({ ...l, angle_deg: i % 2 === 0 ? 80 + i : null }) + '\n').join(''));
    const known = steps.flatMap((_, i) => (i % 2 === 0 ? [80 + i] : []));
    const withLogs = run(dirH, dirB, '--json', '--plot', join(seeds, 'angles-h.png'));
    assert.equal(withLogs.status, 0, withLogs.stderr);
    const statsH = (JSON.parse(withLogs.stdout) as { angles: Record<string, { n: number; meanDeg: number }> }).angles.uvu!;
    assert.deepEqual([statsH.n, statsH.meanDeg], [known.length, known.reduce((a, b) => a + b, 0) / known.length]);
    // A results file whose bits do not match its items is refused, named, in one line.
    const results = JSON.parse(readFileSync(resultsCopy, 'utf8')) as { items: Record<string, { correct: Record<string, string> }> };
    const firstTask = Object.keys(results.items)[0]!;
    results.items[firstTask]!.correct.uvu += '1';
    const badResults = join(seeds, 'bad-results.json');
    writeFileSync(badResults, JSON.stringify(results));
    const badBits = run(badResults, dirB);
    assert.equal(badBits.status, 1, badBits.stderr);
    assert.match(badBits.stderr, /bad-results\.json: not experiment results: items\.\S+: every configuration has one bit per item/);
    assert.equal(badBits.stderr.trim().split('\n').length, 1, badBits.stderr);
    // A report that is not one (here: no evals) is an input error, named in one line.
    const dirBad = join(seeds, 'bad');
    mkdirSync(dirBad);
    writeFileSync(join(dirBad, 'report.json'), JSON.stringify({ ...b, seed: 2, evals: undefined }));
    const bad = run(dirA, dirBad);
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /bad\/report\.json: not an experiment report: evals: /);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    for (const [args, message] of [
      [[dirA, dirC], /size or settings differ/],
      [[dirA, dirA], /at least two seeds \(these are all seed 0\)/],
      [[dirA, join(seeds, 'none')], /none: no such file or folder/],
      [[dirA], /at least two/],
    ] as const) {
      const bad = run(...args);
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, message);
      assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    }
  } finally {
    rmSync(seeds, { recursive: true, force: true });
  }
});

const firstTaskOf = (r: RunResults): string => Object.keys(r.items)[0]!;

/** A run's results as if it had trained only some of its configurations, in half its time. */
function onlyConfigurations(r: RunResults, keep: string[]): RunResults {
  const pick = <T>(rec: Record<string, T>): Record<string, T> => Object.fromEntries(Object.entries(rec).filter(([k]) => keep.includes(k)));
  const pickPairs = <T>(rec: Record<string, T>): Record<string, T> => Object.fromEntries(Object.entries(rec).filter(([pair]) => pair.split(' - ').every((v) => keep.includes(v))));
  return {
    ...r,
    minutes: r.minutes / 2,
    settings: { ...r.settings, variants: keep },
    tasks: Object.fromEntries(Object.entries(r.tasks).map(([task, t]) => [task, { ...pick(t as Record<string, unknown>), floor: t.floor }])) as RunResults['tasks'],
    paired: pickPairs(r.paired),
    vq: keep.includes('ar-vq') ? r.vq : null,
    items: Object.fromEntries(Object.entries(r.items).map(([task, it]) => [task, { ids: it.ids, correct: pick(it.correct) }])),
    spatialDrills: r.spatialDrills && { ...r.spatialDrills, variants: pick(r.spatialDrills.variants), paired: pickPairs(r.spatialDrills.paired) },
    drillItems: r.drillItems && { ...r.drillItems, correct: pick(r.drillItems.correct) },
    angles: pick(r.angles),
  };
}

/**
 * The i-th test item's answer, right or wrong by construction (not by any scorer), in varied
 * wordings that the documented rules accept or reject.
 */
function knownAnswer(it: QaItem, right: boolean, i: number): string {
  const style = Math.floor(i / 3) % 3;
  if (isBox(it.task)) {
    const bins = [...it.answer.matchAll(/<loc_(\d+)>/g)].map((m) => Number(m[1]));
    const loc = (b: number[]): string => b.map((v) => `<loc_${v}>`).join('');
    if (right) return [it.answer, `The ${it.classes[0] ?? 'object'} is at ${it.answer}.`, loc([bins[2]!, bins[3]!, bins[0]!, bins[1]!])][style]!; // swapped corners: same box
    return ['<loc_0><loc_0><loc_0><loc_0>', loc(bins.slice(0, 3)), loc([32, ...bins.slice(1)])][style]!; // empty box, 3 corners, bin out of range
  }
  if (isCount(it.task)) {
    const n = Number(it.answer);
    if (right) return [it.answer, `There are ${n === 0 ? 'none' : COUNT_WORDS[n]}.`, `I count ${n} of them`][style]!;
    return [String(n + 1), 'many', `${COUNT_WORDS[n + 1]!}`][style]!;
  }
  if (it.task === 'ordering') {
    const names = it.answer.split(', ');
    const spoken = names.map((n) => `a ${n}`);
    if (right) return [it.answer, `${[spoken.slice(0, -1).join(', '), spoken.at(-1)].join(' and ')}.`, it.answer.toUpperCase()][style]!;
    return [names.slice(1).join(', '), `${it.answer}, ${names[0]}`, 'nothing'][style]!; // one missing, one extra, none
  }
  if (it.task === 'naming') {
    const names = it.answer.split(', ');
    const spoken = names.map((n) => `a ${n}`).reverse().join(' and ');
    if (right) return [it.answer, `${spoken[0]!.toUpperCase()}${spoken.slice(1)}.`, names.join(' and ').toUpperCase()][style]!;
    return [names.length > 1 ? names.slice(1).join(', ') : `${it.answer}, ghost`, `${it.answer}, ${it.answer}, teapot`, 'nothing'][style]!; // one missing, one extra, none
  }
  const flip = it.answer === 'yes' ? 'no' : 'yes';
  if (right) return [it.answer, `${it.answer.toUpperCase()}.`, `${it.answer[0]!.toUpperCase()}${it.answer.slice(1)}, I think`][style]!;
  return [flip, 'I know', 'not sure'][style]!;
}

test('scoring the experiment\'s benchmark: the truth scores 1, wrong answers 0, a fixed mix exactly its share', async () => {
  finished();
  const items = readJsonl<QaItem>(join(bench, 'test.jsonl'));
  const index = new Map(items.map((it, i) => [it.id, i]));
  assert.deepEqual(new Set(items.map((it) => it.task)), new Set(taskNames()), 'every task of the manifest occurs in the test split');
  const cases: [string, (i: number) => boolean][] = [['truth', () => true], ['wrong', () => false], ['mix', (i) => i % 3 !== 1]];
  for (const [label, right] of cases) {
    const expected = items.map((_, i) => right(i));
    const r = await evaluateBench(bench, { split: 'test', seed: 3, answer: async (it) => knownAnswer(it, right(index.get(it.id)!), index.get(it.id)!) });
    assert.equal(r.n, items.length, label);
    r.items.forEach((res, i) => assert.equal(res.correct, expected[i], `${label} ${res.id} (${res.task}): ${JSON.stringify(res.prediction)}`));
    // Grounding: a right box overlaps the truth by IoU ≥ 0.5, a wrong one (empty or unparseable) not at all.
    for (const res of r.items.filter((x) => isBox(x.task))) {
      if (res.correct) assert.ok(res.iou! >= 0.5 && res.predictedBox !== null, `${label} ${res.id}: IoU ${res.iou}`);
      else assert.equal(res.iou, 0, `${label} ${res.id}`);
    }
    assertScores(label, r, tally(items, expected));
    // The hand-scorer agrees with the construction too, so a test of the recorded model answers with it means something.
    r.items.forEach((res, i) => assert.equal(handScore(items[i]!, res.prediction), expected[i], `hand-scorer, ${label} ${res.id}: ${JSON.stringify(res.prediction)}`));
  }
});

/**
 * Where the answer is visible, a trained model must beat the same model given a grey image:
 * the experiment's codebook, text tokenizer and tiny model config, fine-tuned on noisy
 * single-colour pictures ("What colour is the picture?" → "red"), asked about new pictures.
 * A grey picture gives every question the same input, so at most one colour's share of the
 * answers can be right without looking; a pipeline that loses the image on the way from the
 * data build through training to `ask` (what `uvu eval` calls) stays at that level.
 */
test('a model fine-tuned where the answer is visible names the colour of new pictures; given a grey picture it cannot', async () => {
  const rep = finished();
  const work = join(out, 'colours');
  const side = 64;
  const colours: Record<string, [number, number, number]> = { red: [200, 30, 30], green: [30, 170, 40], blue: [30, 50, 210], yellow: [230, 210, 40] };
  const rng = new Rng(7);
  const picture = async (path: string, rgb: readonly number[]): Promise<string> => {
    const data = new Uint8Array(side * side * 3);
    for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, Math.round(rgb[i % 3]! + (rng.next() - 0.5) * 80)));
    await writePng(path, { width: side, height: side, data });
    return path;
  };
  mkdirSync(work, { recursive: true });
  const prompt = 'What colour is the picture?';
  const train: { image: string; prompt: string; answer: string }[] = [];
  const held: { image: string; answer: string }[] = [];
  for (const [name, rgb] of Object.entries(colours)) {
    for (let k = 0; k < 4; k++) train.push({ image: await picture(join(work, `train-${name}-${k}.png`), rgb), prompt, answer: name });
    for (let k = 0; k < 2; k++) held.push({ image: await picture(join(work, `test-${name}-${k}.png`), rgb), answer: name });
  }
  const grey = await picture(join(work, 'grey.png'), [128, 128, 128]);
  writeFileSync(join(work, 'train.jsonl'), train.map((s) => JSON.stringify(s)).join('\n') + '\n');
  const uvu = (args: string[]): void => {
    const r = spawnSync(process.execPath, [CLI, ...args, '--quiet'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(r.status, 0, `uvu ${args.join(' ')}\n${r.stderr.slice(-2000)}`);
  };
  uvu(['data', 'build', '--out', join(work, 'data'), '--image-tokenizer', rep.codebook.file, '--tokenizer', join(out, 'data', 'pretrain-codebook', 'tokenizer.json'),
    '--samples', join(work, 'train.jsonl'), '--context', '32', '--max-pixels', String(side * side), '--val-fraction', '0']);
  uvu(['train', '--config', TINY_CONFIG, '--set', 'stage=sft', '--set', `data=${join(work, 'data')}`, '--set', `out=${join(work, 'run')}`,
    '--set', 'steps=80', '--set', 'batch_size=4', '--set', 'optim.lr=0.003', '--set', 'seed=0', '--set', 'eval_batches=0', '--set', 'checkpoint_every=1000']);
  await initEngine();
  const session = ModelSession.load(join(work, 'run', 'checkpoint'));
  try {
    const seen: string[] = [], blind: string[] = [];
    for (const it of held) {
      seen.push((await session.ask(it.image, prompt, { maxNewTokens: 8 })).trim());
      blind.push((await session.ask(grey, prompt, { maxNewTokens: 8 })).trim());
    }
    // Gate 2's measurements on a model that looks: the answer's loss is lower with the picture than
    // with grey, and the first answer token's distribution moves (TV well above 0).
    const grey64 = (await session.loadImage(grey)).image;
    let nllSeen = 0, nllBlind = 0, tv = 0;
    for (const it of held) {
      const real = scoreAnswer(session, (await session.loadImage(it.image)).image, prompt, it.answer);
      const blank = scoreAnswer(session, grey64, prompt, it.answer);
      nllSeen += real.nll / held.length;
      nllBlind += blank.nll / held.length;
      tv += totalVariation(real.firstTokenProbs, blank.firstTokenProbs) / held.length;
    }
    assert.ok(nllSeen < nllBlind, `answer loss with the pictures ${nllSeen}, with grey ${nllBlind}`);
    assert.ok(tv > 0.2, `mean TV of the first answer token ${tv}`);
    const right = (answers: string[]): number => answers.filter((a, i) => a === held[i]!.answer).length;
    const detail = `with the pictures ${JSON.stringify(seen)}, grey ${JSON.stringify(blind)}, truth ${JSON.stringify(held.map((h) => h.answer))}`;
    assert.equal(new Set(blind).size, 1, `one input, one greedy answer: ${detail}`);
    assert.ok(right(blind) <= 2, detail);
    assert.ok(right(seen) >= 6, `the model should name at least 6 of 8 colours: ${detail}`);
  } finally {
    session.dispose();
  }
});

test('bad experiment options are refused with one line before any work', () => {
  const empty = mkdtempSync(join(tmpdir(), 'uvu-experiment-usage-'));
  try {
    for (const [args, message] of [
      [['--set', 'nope=1'], /--set nope=1: expected FIELD=VALUE with FIELD one of regime, trainScenes/],
      [['--set', 'sftSteps=-3'], /--set sftSteps=-3: expected a non-negative number/],
      [['--set', 'regime=easy'], /regime must be one of hard, in-distribution/],
      [['--variants', 'uvu,clip'], /--variants: unknown configuration "clip"/],
      [['--curve', '0'], /--curve: expected a positive whole number of steps/],
      [['--set', 'tasks=counting-any,colour'], /--set tasks=counting-any,colour: unknown task "colour"/],
      [['--set', 'backgrounds=noise'], /backgrounds must be photos or plain/],
      [['--set', 'spatialAnswer=points'], /--set spatialAnswer=points: spatialAnswer must be one of yes-no, boxes, centres/],
      [['--set', 'backgrounds=plain', '--backgrounds', 'x'], /--backgrounds DIR and plain backgrounds .* exclude each other/],
    ] as const) {
      const r = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', empty, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    assert.deepEqual(readdirSync(empty), [], 'nothing written');
    // A rerun into a folder made with other settings would mix its cached steps with new ones.
    writeFileSync(join(empty, 'settings.json'), JSON.stringify({ K: 999 }));
    const r = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', empty], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /holds a run with other settings \(.*K 999 → 64/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.deepEqual(readdirSync(empty), ['settings.json'], 'nothing else written');
    // A damaged settings file is an input error naming it, not a stack trace.
    for (const [text, message] of [['{"K": 6', /settings\.json: experiment settings is not valid JSON/], ['[1, 2]', /settings\.json: not experiment settings/]] as const) {
      writeFileSync(join(empty, 'settings.json'), text);
      const bad = spawnSync(process.execPath, [script, '--size', 'tiny', '--out', empty], { encoding: 'utf8' });
      assert.equal(bad.status, 1, bad.stderr);
      assert.match(bad.stderr, message);
      assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
      assert.deepEqual(readdirSync(empty), ['settings.json'], 'nothing else written');
    }
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
