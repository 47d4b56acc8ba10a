/**
 * Questions and captions from a scene layout. Four tasks, at most one item of each per scene:
 *
 *   grounding  "Where is the frog?"              → "<loc_x0><loc_y0><loc_x1><loc_y1>" (bin = round(v/size·31))
 *   counting   "How many apples are there?"       → "2"  (the scene's group class; 0 for an absent class)
 *   spatial    "Is the frog left of the apple?"   → "yes" | "no"  (box centres ≥ SPATIAL_MARGIN·size apart)
 *   existence  "Is there an owl in the image?"    → "yes" | "no"  ("no" mostly a hard negative: an absent
 *                                                   class of the same category as a present one)
 *
 * and, in the in-distribution regime, four class-agnostic tasks (a curriculum: their questions
 * name no class, so each answer is a function of the image alone, which gives the model a signal
 * before it can bind a class named in the question to what the image shows):
 *
 *   counting-any   "How many objects are there?"    → "3"  (every object in the scene)
 *   grounding-any  "Where is the object?"           → box  (scenes with exactly one object)
 *   naming         "What objects are in the image?" → "apple, fish"  (the classes present, once
 *                                                     each, in alphabetical order)
 *   ordering       "Name the objects from left to right." → "fish, apple, fish"  (every object, in
 *                  order along the axis where the scene is more spread; "top to bottom" for the
 *                  vertical one; only where consecutive centres are ≥ SPATIAL_MARGIN·size apart
 *                  along it, so the order is unambiguous: names bound to positions, the first-order
 *                  signal that spatial questions lack)
 *
 * Grounding and spatial questions only name classes with exactly one instance in the scene,
 * so the referring expression is unambiguous. Yes/no answers alternate over the items of a
 * split (`TaskState`), so both are balanced to within one item.
 */
import { LOC_BINS } from '../tokens/vocab.js';
import type { Rng } from '../util/rng.js';
import type { Box, PlacedObject, Scene, Split } from './scenes.js';
import type { ObjectClass } from './stamps.js';

export const TASKS = ['grounding', 'counting', 'spatial', 'existence', 'counting-any', 'grounding-any', 'naming', 'ordering'] as const;
export type Task = (typeof TASKS)[number];
/** The four tasks of every benchmark; the class-agnostic ones exist only where the regime asks for them. */
export const NAMED_TASKS = ['grounding', 'counting', 'spatial', 'existence'] as const satisfies readonly Task[];
/** Questions that name no class: their answers need no class name bound to the image. */
export const AGNOSTIC_TASKS = ['counting-any', 'grounding-any', 'naming', 'ordering'] as const satisfies readonly Task[];

/** Tasks whose answer is a box (scored by IoU). */
export function isBoxTask(task: Task): boolean {
  return task === 'grounding' || task === 'grounding-any';
}
export const RELATIONS = ['left', 'right', 'above', 'below'] as const;
export type Relation = (typeof RELATIONS)[number];

/** Box centres must differ by at least this fraction of the scene side along the asked axis. */
export const SPATIAL_MARGIN = 0.15;
/** Probability that a "no" existence question names a same-category absent class. */
export const HARD_NEGATIVE_P = 0.75;
/** Probability that a counting question names an absent class (answer 0). */
export const COUNT_ZERO_P = 0.1;

/** One line of train.jsonl / test.jsonl: the sample JSONL Q/A format plus metadata. */
export interface QaItem {
  id: string;
  /** Scene PNG, relative to the JSONL file. */
  image: string;
  prompt: string;
  answer: string;
  task: Task;
  split: Split;
  scene: string;
  size: number;
  /** Exact boxes of the objects asked about: grounding [target], counting every instance, spatial [a, b], existence the instances (none for "no"). */
  boxes: Box[];
  /** Class names used in the prompt. */
  classes: string[];
  relation?: Relation;
}

/** One line of pretrain.jsonl. */
export interface CaptionSample {
  image: string;
  text: string;
}

/** Items made so far per task in a split; drives the yes/no alternation. */
export type TaskState = Record<'spatial' | 'existence', number> & {
  /**
   * Class-balanced existence (the in-distribution regime): how often each class was asked with
   * answer [yes, no] so far. Each question names the least-asked class for its answer, so every
   * class is asked "yes" and "no" equally often and the class name alone does not give the answer
   * (with hard negatives, the classes of crowded categories are asked "no" more often).
   */
  existenceByClass?: Map<string, [number, number]>;
};

/** The candidate asked least often so far with this answer (ties: a seeded draw). */
function leastAsked(candidates: string[], tally: Map<string, [number, number]>, answer: 0 | 1, rng: Rng): string {
  const asked = (n: string): number => tally.get(n)?.[answer] ?? 0;
  const least = Math.min(...candidates.map(asked));
  const pool = candidates.filter((n) => asked(n) === least);
  const name = pool[rng.int(pool.length)]!;
  const t = tally.get(name) ?? [0, 0];
  t[answer]++;
  tally.set(name, t);
  return name;
}

// ---------------------------------------------------------------- formats

/** Quantize a coordinate v ∈ [0, size] to a loc bin 0..LOC_BINS−1. */
export function locBin(v: number, size: number): number {
  return Math.min(LOC_BINS - 1, Math.max(0, Math.round((v / size) * (LOC_BINS - 1))));
}

/** "<loc_a><loc_b>…" for pixel coordinates, each as its bin. */
export function formatLocs(values: readonly number[], size: number): string {
  return values.map((v) => `<loc_${locBin(v, size)}>`).join('');
}

/** "<loc_x0><loc_y0><loc_x1><loc_y1>" for a pixel box. */
export function formatBox(box: Box, size: number): string {
  return formatLocs(box, size);
}

const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'];

function article(name: string): string {
  return /^[aeiou]/.test(name) ? 'an' : 'a';
}

export function centre(b: Box): [number, number] {
  return [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
}

/** "at the upper left", "on the right", "in the middle", … from a point in a 3×3 grid. */
export function regionPhrase(x: number, y: number, size: number): string {
  const col = x < size / 3 ? 0 : x < (2 * size) / 3 ? 1 : 2;
  const row = y < size / 3 ? 0 : y < (2 * size) / 3 ? 1 : 2;
  const table = [
    ['at the upper left', 'at the top', 'at the upper right'],
    ['on the left', 'in the middle', 'on the right'],
    ['at the lower left', 'at the bottom', 'at the lower right'],
  ];
  return table[row]![col]!;
}

// ---------------------------------------------------------------- items

function countsOf(scene: Scene): Map<string, Box[]> {
  const m = new Map<string, Box[]>();
  for (const o of scene.objects) m.set(o.className, [...(m.get(o.className) ?? []), o.box]);
  return m;
}

/**
 * The QA items of one scene. `known` are all class names the benchmark uses (for absent-class
 * questions); `state` is updated as items are made.
 */
export function makeItems(scene: Scene, image: string, known: ObjectClass[], state: TaskState, rng: Rng): QaItem[] {
  const { size } = scene;
  const groups = countsOf(scene);
  const present = [...groups.keys()];
  const absent = known.filter((c) => !groups.has(c.name));
  const byName = new Map(known.map((c) => [c.name, c]));
  const singles = present.filter((n) => groups.get(n)!.length === 1);
  const items: QaItem[] = [];
  const item = (task: Task, prompt: string, answer: string, boxes: Box[], classes: string[], relation?: Relation): void => {
    items.push({ id: `${scene.id}-${task}`, image, prompt, answer, task, split: scene.split, scene: scene.id, size, boxes, classes, ...(relation ? { relation } : {}) });
  };

  if (singles.length > 0) {
    const name = singles[rng.int(singles.length)]!;
    const box = groups.get(name)![0]!;
    item('grounding', `Where is the ${name}?`, formatBox(box, size), [box], [name]);
  }

  {
    // The group (largest count; ties broken at random), or an absent class for a 0 answer.
    const max = Math.max(...present.map((n) => groups.get(n)!.length));
    const top = present.filter((n) => groups.get(n)!.length === max);
    if (absent.length > 0 && rng.next() < COUNT_ZERO_P) {
      const c = absent[rng.int(absent.length)]!;
      item('counting', `How many ${c.plural} are there?`, '0', [], [c.name]);
    } else {
      const name = top[rng.int(top.length)]!;
      item('counting', `How many ${byName.get(name)!.plural} are there?`, String(groups.get(name)!.length), groups.get(name)!, [name]);
    }
  }

  {
    const wantYes = state.spatial % 2 === 0;
    const fit = spatialOptions(scene).filter((o) => o.yes === wantYes);
    if (fit.length > 0) {
      const o = fit[rng.int(fit.length)]!;
      item('spatial', spatialPrompt(o), o.yes ? 'yes' : 'no', [groups.get(o.a)![0]!, groups.get(o.b)![0]!], [o.a, o.b], o.rel);
      state.spatial++;
    }
  }

  {
    const wantYes = state.existence % 2 === 0;
    let name: string | undefined;
    const tally = state.existenceByClass;
    if (tally) {
      if (wantYes) name = leastAsked(present, tally, 0, rng);
      else if (absent.length > 0) name = leastAsked(absent.map((c) => c.name), tally, 1, rng);
    } else if (wantYes) name = present[rng.int(present.length)];
    else if (absent.length > 0) {
      const categories = new Set(present.map((n) => byName.get(n)!.category));
      const hard = absent.filter((c) => categories.has(c.category));
      const pool = hard.length > 0 && rng.next() < HARD_NEGATIVE_P ? hard : absent;
      name = pool[rng.int(pool.length)]!.name;
    }
    if (name !== undefined) {
      item('existence', `Is there ${article(name)} ${name} in the image?`, wantYes ? 'yes' : 'no', groups.get(name) ?? [], [name]);
      state.existence++;
    }
  }
  return items;
}

/** One spatial question a scene allows: "Is the {a} {rel} the {b}?" and its answer. */
export interface SpatialOption { a: string; b: string; rel: Relation; yes: boolean }

/**
 * Every spatial question of a scene: ordered pairs of single-instance classes (the name is then
 * unambiguous) whose box centres are ≥ SPATIAL_MARGIN·size apart along the relation's axis, each
 * pair asked with both relations of that axis (so each image holds both answers).
 */
export function spatialOptions(scene: Scene): SpatialOption[] {
  const groups = countsOf(scene);
  const singles = [...groups.keys()].filter((n) => groups.get(n)!.length === 1);
  const m = SPATIAL_MARGIN * scene.size;
  const options: SpatialOption[] = [];
  for (const a of singles) {
    for (const b of singles) {
      if (a === b) continue;
      const [ax, ay] = centre(groups.get(a)![0]!);
      const [bx, by] = centre(groups.get(b)![0]!);
      if (Math.abs(ax - bx) >= m) options.push({ a, b, rel: 'left', yes: ax < bx }, { a, b, rel: 'right', yes: ax > bx });
      if (Math.abs(ay - by) >= m) options.push({ a, b, rel: 'above', yes: ay < by }, { a, b, rel: 'below', yes: ay > by });
    }
  }
  return options;
}

function spatialPrompt(o: SpatialOption): string {
  return `Is the ${o.a} ${o.rel === 'left' || o.rel === 'right' ? `${o.rel} of` : o.rel} the ${o.b}?`;
}

/**
 * Spatial drill questions of one scene, for a curriculum stage (probes 16–25 in BENCHMARKS.md):
 * up to perScene/2 "yes" and perScene/2 "no" questions drawn from `spatialOptions` with one of
 * `relations`. Since every pair is asked with both relations of its axis, an image carries both
 * answers and memorising it does not help (probe 15 memorised one question per image).
 */
export function spatialDrillItems(scene: Scene, image: string, relations: readonly Relation[], perScene: number, rng: Rng): QaItem[] {
  const options = spatialOptions(scene).filter((o) => relations.includes(o.rel));
  const picked: SpatialOption[] = [];
  for (const want of [true, false]) {
    const fit = options.filter((o) => o.yes === want);
    for (let k = 0; k < perScene / 2 && fit.length > 0; k++) picked.push(fit.splice(rng.int(fit.length), 1)[0]!);
  }
  const box = (name: string): Box => scene.objects.find((o) => o.className === name)!.box;
  return picked.map((o, k) => ({
    id: `${scene.id}-spatial-${k}`, image, prompt: spatialPrompt(o), answer: o.yes ? 'yes' : 'no', task: 'spatial' as const, split: scene.split, scene: scene.id, size: scene.size,
    boxes: [box(o.a), box(o.b)], classes: [o.a, o.b], relation: o.rel,
  }));
}

/** How a grounded spatial answer locates the two objects: their boxes (as grounding answers) or their box centres. */
export const GROUNDED_FORMS = ['boxes', 'centres'] as const;
export type GroundedForm = (typeof GROUNDED_FORMS)[number];

/**
 * The grounded answer to a two-object spatial question (`--set spatialAnswer=boxes|centres` in
 * the experiment): where both named objects are, then the yes/no — their boxes,
 * "<loc_x0><loc_y0><loc_x1><loc_y1><loc_x0>…<loc_y1> yes", or their box centres,
 * "<loc_cx><loc_cy><loc_cx><loc_cy> yes". The model then answers by comparing locations it has
 * just written instead of reading the relation off the image in one token, the step no probe
 * could make reliably (BENCHMARKS.md, probes 15–28); with centres the comparison is of two
 * tokens, with boxes of two sums of two. Scoring reads the answer's yes/no word (parseYesNo), so
 * the benchmark's test items score every form.
 */
export function groundedSpatialAnswer(item: Pick<QaItem, 'id' | 'task' | 'answer' | 'boxes' | 'size'>, form: GroundedForm): string {
  if (item.task !== 'spatial' || item.boxes.length !== 2) throw new Error(`${item.id}: a grounded answer needs a spatial question about two objects`);
  const where = (box: Box): string => formatLocs(form === 'boxes' ? box : centre(box), item.size);
  return `${where(item.boxes[0]!)}${where(item.boxes[1]!)} ${item.answer}`;
}

/** The superlative of each relation: "Is the frog the leftmost object?" asks for `left` of every other object. */
const SUPERLATIVES: Record<Relation, { word: string; axis: 0 | 1; sign: 1 | -1 }> = {
  left: { word: 'leftmost', axis: 0, sign: 1 },
  right: { word: 'rightmost', axis: 0, sign: -1 },
  above: { word: 'topmost', axis: 1, sign: 1 },
  below: { word: 'bottommost', axis: 1, sign: -1 },
};

/**
 * "Is the frog the leftmost object?": one name against every other object, the first step of the
 * spatial curriculum (probe 19 learnt it at once where the two-name "left of" sat at chance for
 * 3,000 steps; from its weights "left of" was learnt in 500, probe 25). For one relation drawn
 * among those the scene allows (its extreme object a single instance, ≥ SPATIAL_MARGIN·size beyond
 * the next object), a "yes" item for that object and a "no" for another single-instance class.
 */
export function superlativeItems(scene: Scene, image: string, relations: readonly Relation[], rng: Rng): QaItem[] {
  const counts = countsOf(scene);
  const single = (name: string): boolean => counts.get(name)!.length === 1;
  const allowed: { rel: Relation; yes: PlacedObject; no: string[] }[] = [];
  for (const rel of relations) {
    const { axis, sign } = SUPERLATIVES[rel];
    const [first, second] = scene.objects.slice().sort((a, b) => sign * (centre(a.box)[axis] - centre(b.box)[axis]));
    if (!first || !second || !single(first.className) || Math.abs(centre(second.box)[axis] - centre(first.box)[axis]) < SPATIAL_MARGIN * scene.size) continue;
    const no = [...counts.keys()].filter((n) => n !== first.className && single(n));
    if (no.length > 0) allowed.push({ rel, yes: first, no });
  }
  if (allowed.length === 0) return [];
  const { rel, yes, no } = allowed[rng.int(allowed.length)]!;
  const noName = no[rng.int(no.length)]!;
  const item = (name: string, answer: 'yes' | 'no'): QaItem => ({
    id: `${scene.id}-${SUPERLATIVES[rel].word}-${answer}`, image, prompt: `Is the ${name} the ${SUPERLATIVES[rel].word} object?`, answer, task: 'spatial', split: scene.split, scene: scene.id, size: scene.size,
    boxes: counts.get(name)!, classes: [name], relation: rel,
  });
  return [item(yes.className, 'yes'), item(noName, 'no')];
}

/** The class-agnostic items of one scene (AGNOSTIC_TASKS); deterministic, no draws. */
export function makeAgnosticItems(scene: Scene, image: string): QaItem[] {
  const { size, objects } = scene;
  const item = (task: Task, prompt: string, answer: string, boxes: Box[]): QaItem =>
    ({ id: `${scene.id}-${task}`, image, prompt, answer, task, split: scene.split, scene: scene.id, size, boxes, classes: [] });
  const boxes = objects.map((o) => o.box);
  const items = [item('counting-any', 'How many objects are there?', String(objects.length), boxes)];
  if (objects.length === 1) items.push(item('grounding-any', 'Where is the object?', formatBox(boxes[0]!, size), boxes));
  items.push(item('naming', 'What objects are in the image?', namingAnswer(objects.map((o) => o.className)), boxes));
  const order = orderingOf(scene);
  if (order) items.push(item('ordering', `Name the objects from ${order.axis === 'x' ? 'left to right' : 'top to bottom'}.`, order.objects.map((o) => o.className).join(', '), order.objects.map((o) => o.box)));
  return items;
}

/**
 * The scene's objects in order along the axis (x or y) whose smallest gap between consecutive
 * box centres is larger; null when that gap is under SPATIAL_MARGIN·size (the order would be
 * ambiguous to a person too) or the scene has fewer than two objects.
 */
function orderingOf(scene: Scene): { axis: 'x' | 'y'; objects: Scene['objects'] } | null {
  if (scene.objects.length < 2) return null;
  const along = (axis: 0 | 1): { objects: Scene['objects']; minGap: number } => {
    const objects = scene.objects.slice().sort((a, b) => centre(a.box)[axis] - centre(b.box)[axis]);
    let minGap = Infinity;
    for (let i = 1; i < objects.length; i++) minGap = Math.min(minGap, centre(objects[i]!.box)[axis] - centre(objects[i - 1]!.box)[axis]);
    return { objects, minGap };
  };
  const x = along(0), y = along(1);
  const best = x.minGap >= y.minGap ? { axis: 'x' as const, ...x } : { axis: 'y' as const, ...y };
  return best.minGap >= SPATIAL_MARGIN * scene.size ? { axis: best.axis, objects: best.objects } : null;
}

/** The answer to "What objects are in the image?": each class once, alphabetical, ", "-joined. */
export function namingAnswer(classNames: readonly string[]): string {
  return [...new Set(classNames)].sort().join(', ');
}

/**
 * A dense caption for pretraining: the count, the phrase of `caption`, and every object's
 * exact box, left to right —
 *   "3 objects: a coin on the left and two apples at the top. coin <loc_1>…, apple <loc_9>…, apple <loc_20>…"
 * so that every variant's pretraining supervises names, counts and positions from the image.
 */
export function denseCaption(scene: Scene, known: ObjectClass[]): string {
  const n = scene.objects.length;
  const byX = scene.objects.slice().sort((a, b) => centre(a.box)[0] - centre(b.box)[0] || centre(a.box)[1] - centre(b.box)[1]);
  const boxes = byX.map((o) => `${o.className} ${formatBox(o.box, scene.size)}`).join(', ');
  return `${n} object${n === 1 ? '' : 's'}: ${caption(scene, known)}. ${boxes}`;
}

/** "a frog at the lower left and two apples on the right" (groups left to right). */
export function caption(scene: Scene, known: ObjectClass[]): string {
  const { size } = scene;
  const byName = new Map(known.map((c) => [c.name, c]));
  const parts = [...countsOf(scene)].map(([name, boxes]) => {
    const centres = boxes.map(centre);
    const meanX = centres.reduce((s, c) => s + c[0], 0) / centres.length;
    const regions = new Set(centres.map(([x, y]) => regionPhrase(x, y, size)));
    const noun = boxes.length === 1 ? `${article(name)} ${name}` : `${NUMBER_WORDS[boxes.length] ?? boxes.length} ${byName.get(name)?.plural ?? name}`;
    const where = regions.size === 1 ? ` ${[...regions][0]}` : '';
    return { meanX, text: noun + where };
  });
  parts.sort((a, b) => a.meanX - b.meanX);
  const texts = parts.map((p) => p.text);
  return texts.length === 1 ? texts[0]! : `${texts.slice(0, -1).join(', ')} and ${texts[texts.length - 1]}`;
}
