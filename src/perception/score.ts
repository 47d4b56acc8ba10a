/**
 * Scoring of benchmark answers: parsing (tolerant of extra text around the answer), per-item
 * correctness, and per-task accuracy with percentile-bootstrap 95% intervals.
 *
 * Naming is correct when the predicted set of class names equals the true one (any order).
 * Grounding is correct when the predicted box (decoded from its loc bins, v = bin/31·size) has
 * IoU ≥ 0.5 with the exact pixel box, as RefCOCO's Acc@0.5. The quantization alone costs at
 * most size/62 px per side, so a perfect answer keeps IoU well above 0.5 for every object the
 * scenes contain (≥ 0.18·size on the long side).
 */
import { LOC_BINS } from '../tokens/vocab.js';
import { Rng } from '../util/rng.js';
import type { Box } from './scenes.js';
import { namingAnswer, type GroundedForm, type QaItem, type Relation } from './tasks.js';

export const IOU_THRESHOLD = 0.5;
export const BOOTSTRAP_RESAMPLES = 1000;

/** IoU of two boxes [x0, y0, x1, y1] (continuous coordinates); 0 for empty boxes. */
export function iou(a: Box, b: Box): number {
  const iw = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const area = (r: Box) => Math.max(0, r[2] - r[0]) * Math.max(0, r[3] - r[1]);
  return inter / (area(a) + area(b) - inter);
}

/**
 * The first four `<loc_N>` tokens of a text as a pixel box (bin/31·size), corners sorted so
 * x0 ≤ x1 and y0 ≤ y1; null when there are fewer than four or a bin is out of range.
 */
export function parseBox(text: string, size: number): Box | null {
  const bins = [...text.matchAll(/<loc_(\d+)>/g)].slice(0, 4).map((m) => Number(m[1]));
  if (bins.length < 4 || bins.some((b) => b >= LOC_BINS)) return null;
  const v = bins.map((b) => (b / (LOC_BINS - 1)) * size);
  return [Math.min(v[0]!, v[2]!), Math.min(v[1]!, v[3]!), Math.max(v[0]!, v[2]!), Math.max(v[1]!, v[3]!)];
}

const NUMBER_WORDS: Record<string, number> = {
  zero: 0, no: 0, none: 0, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10,
  eleven: 11, twelve: 12,
};

/** The first count in a text: a digit string or a number word ("three", "none"); null if none. */
export function parseCount(text: string): number | null {
  const m = /\b(\d+)\b|\b(zero|none|no|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b/i.exec(text);
  if (!m) return null;
  return m[1] !== undefined ? Number(m[1]) : NUMBER_WORDS[m[2]!.toLowerCase()]!;
}

/** The first "yes" or "no" word of a text (case-insensitive); null if neither occurs. */
export function parseYesNo(text: string): 'yes' | 'no' | null {
  const m = /\b(yes|no)\b/i.exec(text);
  return m ? (m[1]!.toLowerCase() as 'yes' | 'no') : null;
}

/**
 * The set of class names in a naming answer, as `namingAnswer` writes it: names separated by
 * commas or "and", case, punctuation and articles ignored ("A fish and an apple." → "apple, fish").
 */
export function parseNames(text: string): string {
  return namingAnswer(nameList(text));
}

/**
 * The class names of an ordering answer in their order, ", "-joined (duplicates kept): the same
 * separators, case, punctuation and articles as `parseNames` ("A fish, an apple and a fish." →
 * "fish, apple, fish").
 */
export function parseNameSequence(text: string): string {
  return nameList(text).join(', ');
}

/** Names separated by commas or "and", lower-cased, without punctuation or a leading article. */
function nameList(text: string): string[] {
  return text.toLowerCase().split(/,|\band\b/).map((part) => part.replace(/[^a-z\s-]/g, ' ').replace(/^\s*(a|an|the)\s+/, '').replace(/\s+/g, ' ').trim()).filter(Boolean);
}

export interface Scored {
  correct: boolean;
  /** Parsed prediction: the box, the count, the yes/no word, or the names (as namingAnswer; in order for ordering); null when unparseable. */
  parsed: Box | number | string | null;
  /** Grounding only: IoU of the predicted box with the true box (0 when unparseable). */
  iou?: number;
}

/** Is a prediction right for an item? */
export function scoreItem(item: Pick<QaItem, 'task' | 'answer' | 'boxes' | 'size'>, prediction: string): Scored {
  switch (item.task) {
    case 'grounding':
    case 'grounding-any': {
      const box = parseBox(prediction, item.size);
      const truth = item.boxes[0]!;
      const v = box ? iou(box, truth) : 0;
      return { correct: v >= IOU_THRESHOLD, parsed: box, iou: v };
    }
    case 'counting':
    case 'counting-any': {
      const n = parseCount(prediction);
      return { correct: n !== null && n === Number(item.answer), parsed: n };
    }
    case 'spatial':
    case 'existence': {
      const a = parseYesNo(prediction);
      return { correct: a !== null && a === item.answer, parsed: a };
    }
    case 'naming': {
      const names = parseNames(prediction);
      return { correct: names === item.answer, parsed: names };
    }
    case 'ordering': {
      const names = parseNameSequence(prediction);
      return { correct: names === item.answer, parsed: names };
    }
  }
}

/**
 * A grounded spatial answer ("<loc…><loc…> yes", groundedSpatialAnswer) taken apart into its two
 * steps: `located`, whether the locations it wrote put the two objects in the relation the truth
 * does (boxes compared by their centres, in loc bins), and `consistent`, whether its yes/no word
 * follows from those locations. Both right makes the answer right; null when the prediction has
 * too few loc tokens or no yes/no word.
 */
export function groundedSpatialParts(item: Pick<QaItem, 'id' | 'answer' | 'relation'>, prediction: string, form: GroundedForm): { located: boolean; consistent: boolean } | null {
  if (!item.relation) throw new Error(`${item.id}: a grounded spatial answer needs the item's relation`);
  const bins = [...prediction.matchAll(/<loc_(\d+)>/g)].map((m) => Number(m[1]));
  const word = parseYesNo(prediction);
  const perObject = form === 'boxes' ? 4 : 2;
  if (bins.length < 2 * perObject || word === null) return null;
  // A box's centre in loc bins, doubled (x0 + x1, y0 + y1): only the order matters.
  const point = (k: number): [number, number] => (form === 'boxes' ? [bins[k]! + bins[k + 2]!, bins[k + 1]! + bins[k + 3]!] : [bins[k]!, bins[k + 1]!]);
  const said = relationHolds(item.relation, point(0), point(perObject));
  return { located: said === (item.answer === 'yes'), consistent: (word === 'yes') === said };
}

/** Does point a stand in `relation` to point b (image coordinates: y grows downwards)? */
function relationHolds(relation: Relation, a: [number, number], b: [number, number]): boolean {
  switch (relation) {
    case 'left': return a[0] < b[0];
    case 'right': return a[0] > b[0];
    case 'above': return a[1] < b[1];
    case 'below': return a[1] > b[1];
  }
}

/** Fraction of true entries (NaN for none). */
export function accuracy(correct: ArrayLike<boolean | number>): number {
  let k = 0;
  for (let i = 0; i < correct.length; i++) k += correct[i] ? 1 : 0;
  return correct.length ? k / correct.length : NaN;
}

/**
 * Percentile bootstrap interval of the mean (the accuracy, for booleans; a paired difference,
 * for per-item values in {−1, 0, 1}): `resamples` resamples of n items with replacement
 * (seeded), the (α/2, 1 − α/2) quantiles of their means, taken as the order statistics at
 * floor(q·(R − 1)) after sorting.
 */
export function bootstrapInterval(correct: ArrayLike<boolean | number>, opts: { resamples?: number; seed?: number; level?: number } = {}): [number, number] {
  return stratifiedBootstrapInterval([correct], opts);
}

/**
 * Stratified percentile bootstrap of the mean over several groups (e.g. the same comparison run
 * with several seeds): each resample draws n_g items with replacement within every group g and
 * takes the mean over all Σ n_g drawn items, so the interval keeps every group's weight fixed.
 * One group is the plain bootstrap (`bootstrapInterval`).
 */
export function stratifiedBootstrapInterval(groups: ArrayLike<boolean | number>[], opts: { resamples?: number; seed?: number; level?: number } = {}): [number, number] {
  const total = groups.reduce((s, g) => s + g.length, 0);
  if (total === 0) return [NaN, NaN];
  const R = opts.resamples ?? BOOTSTRAP_RESAMPLES;
  const alpha = 1 - (opts.level ?? 0.95);
  const rng = new Rng(opts.seed ?? 0);
  const values = groups.map((g) => Float64Array.from({ length: g.length }, (_, i) => Number(g[i])));
  const means = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let k = 0;
    for (const v of values) for (let i = 0; i < v.length; i++) k += v[rng.int(v.length)]!;
    means[r] = k / total;
  }
  return percentiles(means, alpha);
}

/** The (α/2, 1 − α/2) percentiles of R resampled means: the order statistics at floor(q·(R − 1)) after sorting. */
function percentiles(means: Float64Array, alpha: number): [number, number] {
  const sorted = means.sort();
  const R = sorted.length;
  const at = (q: number) => sorted[Math.min(R - 1, Math.max(0, Math.floor(q * (R - 1))))]!;
  return [at(alpha / 2), at(1 - alpha / 2)];
}

/**
 * Cluster (e.g. scene) percentile bootstrap of the mean: `values[i]` belongs to cluster
 * `clusterOf[i]`; each resample draws as many clusters as there are, with replacement, and takes
 * the mean over all their items. For items that share a cluster and are not independent (several
 * questions about one image), where resampling items would give too narrow an interval.
 */
export function clusterBootstrapInterval(values: ArrayLike<boolean | number>, clusterOf: ArrayLike<string>, opts: { resamples?: number; seed?: number; level?: number } = {}): [number, number] {
  if (values.length !== clusterOf.length) throw new Error(`clusterBootstrapInterval: ${values.length} values but ${clusterOf.length} cluster keys`);
  if (values.length === 0) return [NaN, NaN];
  // Per cluster, in order of first appearance: the sum of its values and its item count.
  const index = new Map<string, number>();
  const sums: number[] = [], counts: number[] = [];
  for (let i = 0; i < values.length; i++) {
    let c = index.get(clusterOf[i]!);
    if (c === undefined) {
      c = sums.length;
      index.set(clusterOf[i]!, c);
      sums.push(0);
      counts.push(0);
    }
    sums[c]! += Number(values[i]);
    counts[c]!++;
  }
  const C = sums.length;
  const R = opts.resamples ?? BOOTSTRAP_RESAMPLES;
  const alpha = 1 - (opts.level ?? 0.95);
  const rng = new Rng(opts.seed ?? 0);
  const means = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let k = 0, n = 0;
    for (let c = 0; c < C; c++) {
      const j = rng.int(C);
      k += sums[j]!;
      n += counts[j]!;
    }
    means[r] = k / n;
  }
  return percentiles(means, alpha);
}
