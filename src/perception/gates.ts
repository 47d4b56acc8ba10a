/**
 * The two gates of a comparison (issue 14): a model that does not pass them answers from the
 * training prior, and its accuracies say nothing about perception.
 *
 *   1. answer loss below the prior: the model's loss on an item's answer (nats per question, the
 *      answer's tokens and its <eos>, teacher-forced) against the entropy of the task's answer
 *      distribution in the training items (nats per question). A model that ignores the image can
 *      at best match that entropy; only image information takes it lower. Measured on training
 *      items (what SFT fits) and on test items (what generalises).
 *   2. image sensitivity: the same items with the real image and with a uniform grey image of the
 *      same size — the total variation between the two distributions of the first answer token,
 *      and the accuracy with each. A model that does not look has TV 0 and no accuracy drop; the
 *      gate passes when the paired 95 % bootstrap interval of the drop (real − grey, per item)
 *      lies above 0. TV alone is reported, not gated: a model can move its distribution with the
 *      image without moving its answers. The answers must also beat the majority floor (the
 *      accuracy's 95 % interval lies above it): where a grey image breaks the answer format (a
 *      yes/no model that answers a box), the drop is positive for a model at its floor.
 *
 * Grounding answers are boxes: their "prior" is the entropy of the exact box strings, which is
 * high for any box distribution, so gate 1 is read on the other tasks; so are spatial answers
 * given with the objects' locations (`target`, groundedSpatialAnswer).
 */
import { tf } from '../engine/tf.js';
import { buildSequence, FLAG_LOSS_SFT } from '../data/sequence.js';
import type { ModelSession } from '../infer/session.js';
import type { ImageInput } from '../model/model.js';
import { writePng, type RgbImage } from '../image/io.js';
import { join } from 'node:path';
import { capPerTask, taskScore } from './eval.js';
import { hashSeed } from './scenes.js';
import { bootstrapInterval, scoreItem } from './score.js';
import { TASKS, type QaItem, type Task } from './tasks.js';

/** How often each answer occurs, per task. */
function answerCounts(items: QaItem[]): Map<Task, Map<string, number>> {
  const counts = new Map<Task, Map<string, number>>();
  for (const it of items) {
    const m = counts.get(it.task) ?? new Map<string, number>();
    m.set(it.answer, (m.get(it.answer) ?? 0) + 1);
    counts.set(it.task, m);
  }
  return counts;
}

/** Entropy (nats) of the empirical answer distribution of each task's items. */
export function answerPriorEntropy(items: QaItem[]): Partial<Record<Task, number>> {
  const out: Partial<Record<Task, number>> = {};
  for (const [task, m] of answerCounts(items)) {
    const n = [...m.values()].reduce((a, b) => a + b, 0);
    out[task] = -[...m.values()].reduce((h, c) => h + (c / n) * Math.log(c / n), 0);
  }
  return out;
}

/** The most frequent training answer of each task (ties: the smaller string). */
export function majorityAnswers(items: QaItem[]): Map<Task, string> {
  return new Map([...answerCounts(items)].map(([task, m]) => [task, [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0]]));
}

/** A uniform mid-grey image with the size of `like`. */
export function greyLike(like: RgbImage): RgbImage {
  return { data: new Uint8Array(like.data.length).fill(128), width: like.width, height: like.height };
}

export interface AnswerScore {
  /** −log p(answer tokens, <eos> | image, prompt), nats. */
  nll: number;
  /** softmax over the whole vocabulary at the first answer position, [V]. */
  firstTokenProbs: Float32Array;
}

/** Teacher-forced score of an item's answer given `image` (pixels of the item's scene size). */
export function scoreAnswer(session: ModelSession, image: RgbImage, prompt: string, answer: string): AnswerScore {
  const model = session.model;
  const vocab = model.vocab;
  const rows = image.height / 32, cols = image.width / 32;
  const seq = buildSequence({ kind: 'qa', image: { codes: new Int32Array(rows * cols), rows, cols }, prompt: session.tokenizer.encode(prompt), answer: session.tokenizer.encode(answer) }, vocab);
  const T = seq.ids.length;
  const images: ImageInput[] = [{ row: 0, start: seq.image!.start, rows, cols, pixels: image.data }];
  const positions: number[] = [];
  for (let t = 0; t + 1 < T; t++) if (seq.flags[t]! & FLAG_LOSS_SFT) positions.push(t);
  const logProbs = tf.tidy(() => {
    const hidden = model.forwardHidden({ B: 1, T, ids: seq.ids, images });
    const picked = tf.gather(hidden, Int32Array.from(positions));
    return tf.logSoftmax(model.logits(picked as tf.Tensor2D)).dataSync() as Float32Array;
  });
  const V = logProbs.length / positions.length;
  let nll = 0;
  positions.forEach((t, k) => (nll -= logProbs[k * V + seq.ids[t + 1]!]!));
  const firstTokenProbs = Float32Array.from(logProbs.subarray(0, V), Math.exp);
  return { nll, firstTokenProbs };
}

/** ½ Σ |p − q|. */
export function totalVariation(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += Math.abs(p[i]! - q[i]!);
  return s / 2;
}

export interface ItemGateResult {
  task: Task;
  nllReal: number;
  nllGrey: number;
  tv: number;
  correctReal: boolean;
  correctGrey: boolean;
}

/** Longest greedy answer generated (a box is 4 tokens; a grounded spatial answer at most 8 and its yes/no; four class names and their commas, as naming and ordering answer, at most 10 with the experiment's 512-id tokenizer). */
export const ANSWER_TOKENS = 12;

/**
 * Gate measurements for one scored item (`correctReal`: its greedy answer with the real image,
 * from evaluateBench): teacher-forced answer loss and first-token distribution with the real and
 * the grey image, and greedy correctness with the grey one. `target`: the answer text the model
 * was trained to give (teacher-forced), when it is not the item's.
 */
export async function gateItem(session: ModelSession, item: QaItem, correctReal: boolean, imagePath: string, greyPath: string, target = item.answer): Promise<ItemGateResult> {
  const image = (await session.loadImage(imagePath)).image;
  const grey = (await session.loadImage(greyPath)).image;
  const real = scoreAnswer(session, image, item.prompt, target);
  const blank = scoreAnswer(session, grey, item.prompt, target);
  const correctGrey = scoreItem(item, await session.ask(greyPath, item.prompt, { maxNewTokens: ANSWER_TOKENS })).correct;
  return { task: item.task, nllReal: real.nll, nllGrey: blank.nll, tv: totalVariation(real.firstTokenProbs, blank.firstTokenProbs), correctReal, correctGrey };
}

export interface TaskGates {
  n: number;
  accuracy: number;
  ci95: [number, number];
  /** Majority answer of the training items, scored on the same test items. */
  floor: number;
  floorCi95: [number, number];
  /** Accuracy with the grey image, accuracy − that, and the paired bootstrap interval of the drop. */
  greyAccuracy: number;
  accuracyDrop: number;
  dropCi95: [number, number];
  /** Mean TV of the first answer token's distribution, real vs grey image. */
  meanTv: number;
  /** Entropy of the training answers (nats per question). */
  priorEntropy: number;
  /** Mean answer loss (nats per question) on test items, and on `trainItems` training items. */
  testLoss: number;
  trainLoss: number;
  /** Gate 1 (on training items, what SFT fits) and gate 1 on test items. */
  trainLossBelowPrior: boolean;
  testLossBelowPrior: boolean;
  /** The image helps: the drop's interval lies above 0. */
  imageSensitive: boolean;
  /** The accuracy's interval lies above the floor. */
  beatsFloor: boolean;
  /** Gate 2: imageSensitive and beatsFloor (passesImageGate). */
  gate2: boolean;
}

/**
 * Gate 2 of one task from its reported numbers (also for reports written before `gate2` was):
 * the image helps and the accuracy's 95 % interval lies above the majority floor.
 */
export function passesImageGate(g: { imageSensitive: boolean; ci95: readonly [number, number]; floor: number }): boolean {
  return g.imageSensitive && g.ci95[0] > g.floor;
}

/** The verdicts of TaskGates derived from its measured numbers (also to re-derive them on gates cached by older code). */
export function gateVerdicts(g: { imageSensitive: boolean; ci95: readonly [number, number]; floor: number }): Pick<TaskGates, 'beatsFloor' | 'gate2'> {
  return { beatsFloor: g.ci95[0] > g.floor, gate2: passesImageGate(g) };
}

export interface GateEvalOptions {
  /** Training items per task whose answer loss is measured (gate 1 on what SFT fits). */
  trainItems: number;
  /** A PNG of a uniform grey image with the benchmark's scene size (greyScene). */
  greyPath: string;
  seed?: number;
  /**
   * The answer text the model was trained to give for an item (default: the item's answer), e.g.
   * groundedSpatialAnswer. Gate 1 teacher-forces it and takes the prior over it; accuracy and the
   * majority floor stay on the items' own answers.
   */
  target?: (item: QaItem) => string;
  onItem?: (done: number, total: number) => void;
}

/**
 * Accuracy, floor and both gates per task on a benchmark: the test items an evaluateBench run
 * scored (`scored`, with their greedy correctness) again with grey images, and `train` items for
 * the loss that SFT fits (and the prior). Image paths are relative to `benchDir`.
 */
export async function evaluateGates(session: ModelSession, benchDir: string, train: QaItem[], scored: { item: QaItem; correct: boolean }[], o: GateEvalOptions): Promise<Partial<Record<Task, TaskGates>>> {
  const target = o.target ?? ((it: QaItem): string => it.answer);
  const prior = answerPriorEntropy(train.map((it) => ({ ...it, answer: target(it) })));
  const majority = majorityAnswers(train);
  const testItems = scored.map((s) => s.item);
  const trainItems = capPerTask(train, o.trainItems);
  const total = testItems.length + trainItems.length;
  const results: ItemGateResult[] = [];
  for (const { item, correct } of scored) {
    results.push(await gateItem(session, item, correct, join(benchDir, item.image), o.greyPath, target(item)));
    o.onItem?.(results.length, total);
  }
  const trainLoss = new Map<Task, number[]>();
  for (const it of trainItems) {
    const { image } = await session.loadImage(join(benchDir, it.image));
    trainLoss.set(it.task, [...(trainLoss.get(it.task) ?? []), scoreAnswer(session, image, it.prompt, target(it)).nll]);
    o.onItem?.(results.length + [...trainLoss.values()].reduce((a, b) => a + b.length, 0), total);
  }
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const out: Partial<Record<Task, TaskGates>> = {};
  for (const task of TASKS) {
    const rs = results.filter((r) => r.task === task);
    if (rs.length === 0) continue;
    const items = testItems.filter((it) => it.task === task);
    const acc = taskScore(rs.map((r) => r.correctReal), hashSeed(o.seed ?? 0, `bootstrap/${task}`));
    const floor = taskScore(items.map((it) => scoreItem(it, majority.get(task) ?? '').correct), hashSeed(o.seed ?? 0, `bootstrap-floor/${task}`));
    const greyAccuracy = mean(rs.map((r) => (r.correctGrey ? 1 : 0)));
    const dropCi95 = bootstrapInterval(rs.map((r) => Number(r.correctReal) - Number(r.correctGrey)), { seed: hashSeed(o.seed ?? 0, `bootstrap-drop/${task}`) });
    const testLoss = mean(rs.map((r) => r.nllReal));
    const fitLoss = mean(trainLoss.get(task) ?? []);
    const meanTv = mean(rs.map((r) => r.tv));
    const imageSensitive = dropCi95[0] > 0;
    out[task] = {
      n: acc.n,
      accuracy: acc.accuracy,
      ci95: acc.ci95,
      floor: floor.accuracy,
      floorCi95: floor.ci95,
      greyAccuracy,
      accuracyDrop: acc.accuracy - greyAccuracy,
      dropCi95,
      meanTv,
      priorEntropy: prior[task] ?? NaN,
      testLoss,
      trainLoss: fitLoss,
      trainLossBelowPrior: fitLoss < (prior[task] ?? -Infinity),
      testLossBelowPrior: testLoss < (prior[task] ?? -Infinity),
      imageSensitive,
      ...gateVerdicts({ imageSensitive, ci95: acc.ci95, floor: floor.accuracy }),
    };
  }
  return out;
}

/** Write a uniform grey `size`×`size` PNG (the blank image of gate 2). */
export async function writeGreyScene(path: string, size: number): Promise<void> {
  await writePng(path, greyLike({ data: new Uint8Array(size * size * 3), width: size, height: size }));
}
