/**
 * Evaluate an answer function on a benchmark split: per-task accuracy with 95% percentile-
 * bootstrap intervals (seeded), per-item results, and optionally a contact sheet of examples.
 * The model side (turning an item into a generated string) is the caller's `answer`.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic.js';
import { join } from 'node:path';
import { z } from 'zod';
import { UvuError } from '../util/errors.js';
import { parseJsonLine, parseOrFail, readJsonFile } from '../util/fsio.js';
import { relativePathInside } from '../util/filenames.js';
import { readBenchManifest, SceneSizeSchema } from './build.js';
import { hashSeed, type Box, type Scene, type Split } from './scenes.js';
import { bootstrapInterval, scoreItem } from './score.js';
import { drawSheet } from './sheet.js';
import { isBoxTask, RELATIONS, TASKS, type QaItem, type Task } from './tasks.js';

export interface TaskScore {
  n: number;
  accuracy: number;
  ci95: [number, number];
}

export interface EvalItemResult {
  id: string;
  task: Task;
  image: string;
  prompt: string;
  answer: string;
  prediction: string;
  correct: boolean;
  /** Grounding: IoU of the predicted box with the true box. */
  iou?: number;
  predictedBox?: Box | null;
}

export interface EvalReport {
  bench: string;
  split: Split;
  n: number;
  seed: number;
  tasks: Partial<Record<Task, TaskScore>>;
  /** All items pooled (tasks weighted by their item counts). */
  overall: TaskScore;
  items: EvalItemResult[];
  sheet?: string;
  seconds: number;
}

export interface EvalOptions {
  split: 'test' | 'train';
  /** The model: the generated answer text for one item. */
  answer: (item: QaItem) => Promise<string>;
  /** Evaluate only the first `limit` items (items come scene by scene, tasks interleaved). */
  limit?: number;
  /** Evaluate only the first `perTask` items of each task (applied before `limit`). */
  perTask?: number;
  /** Evaluate only these tasks (default: all of the split's). */
  tasks?: readonly Task[];
  /** Seed of the bootstrap resampling (default 0). */
  seed?: number;
  /** Write a PNG contact sheet of example predictions here. */
  sheetPath?: string;
  /** Called after each item. */
  onItem?: (done: number, total: number) => void;
}

const coord = z.number().finite();
const BoxSchema = z.tuple([coord, coord, coord, coord]).refine((b) => b[0] <= b[2] && b[1] <= b[3], 'box must be [x0, y0, x1, y1] with x0 ≤ x1 and y0 ≤ y1');

/** One line of train.jsonl / test.jsonl (QaItem); the image path must stay inside the benchmark folder. */
export const QaItemSchema = z
  .object({
    id: z.string(),
    image: relativePathInside('the benchmark folder'),
    prompt: z.string().min(1),
    answer: z.string(),
    task: z.enum(TASKS),
    split: z.enum(['train', 'test']),
    scene: z.string(),
    size: SceneSizeSchema,
    boxes: z.array(BoxSchema),
    classes: z.array(z.string()),
    relation: z.enum(RELATIONS).optional(),
  })
  .refine((it) => !isBoxTask(it.task) || it.boxes.length >= 1, { message: 'a grounding item needs the true box', path: ['boxes'] });

/**
 * The records of a benchmark JSONL file (FILE = benchDir/name), each non-empty line parsed against
 * `schema` (errors name `FILE:LINE`) and with the manifest's scene size.
 */
function readBenchJsonl<T extends { size: number }>(benchDir: string, name: string, what: string, schema: z.ZodType<T>): { record: T; where: string }[] {
  const manifest = readBenchManifest(benchDir);
  const path = join(benchDir, name);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UvuError(`${path}: cannot read benchmark ${what}s (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return text.split('\n').flatMap((l, i) => {
    if (!l.trim()) return [];
    const where = `${path}:${i + 1}`;
    const record = parseOrFail(schema, parseJsonLine(l, where), `${where}: not a benchmark ${what}`);
    if (record.size !== manifest.size) throw new UvuError(`${where}: scene size ${record.size}, the benchmark manifest says ${manifest.size}`);
    return [{ record, where }];
  });
}

/** The QA items of a benchmark split (`split`.jsonl), each checked; an item of the other split is an error. */
export function readBenchItems(benchDir: string, split: Split): QaItem[] {
  return readBenchJsonl(benchDir, `${split}.jsonl`, 'item', QaItemSchema).map(({ record: item, where }) => {
    if (item.split !== split) throw new UvuError(`${where}: item of split ${item.split} in the ${split} file`);
    return item;
  });
}

/** One line of scenes.jsonl (Scene). */
const SceneSchema = z.object({
  id: z.string(),
  split: z.enum(['train', 'test']),
  index: z.number().int().nonnegative(),
  size: SceneSizeSchema,
  background: z.string(),
  crop: z.tuple([z.number(), z.number(), z.number(), z.number()]),
  objects: z.array(z.object({ className: z.string().min(1), instance: z.string(), box: BoxSchema, visible: z.number().min(0).max(1), flip: z.boolean() })),
});

/** The scene layouts of a benchmark split, from scenes.jsonl (which holds both), each checked. */
export function readBenchScenes(benchDir: string, split: Split): Scene[] {
  return readBenchJsonl(benchDir, 'scenes.jsonl', 'scene layout', SceneSchema).map((r) => r.record).filter((scene) => scene.split === split);
}

/** The first `cap` items of each task, in file order (scene by scene). */
export function capPerTask(items: QaItem[], cap: number): QaItem[] {
  const seen = new Map<Task, number>();
  return items.filter((it) => {
    const k = seen.get(it.task) ?? 0;
    seen.set(it.task, k + 1);
    return k < cap;
  });
}

export function taskScore(correct: boolean[], seed: number): TaskScore {
  const n = correct.length;
  const k = correct.filter(Boolean).length;
  return { n, accuracy: n ? k / n : NaN, ci95: bootstrapInterval(correct, { seed }) };
}

/** Each item answered by `answer` and scored, in order. */
export async function answerItems(items: readonly QaItem[], answer: (item: QaItem) => Promise<string>, onItem?: (done: number, total: number) => void): Promise<EvalItemResult[]> {
  const results: EvalItemResult[] = [];
  for (const item of items) {
    const prediction = await answer(item);
    const s = scoreItem(item, prediction);
    results.push({
      id: item.id, task: item.task, image: item.image, prompt: item.prompt, answer: item.answer, prediction, correct: s.correct,
      ...(isBoxTask(item.task) ? { iou: s.iou!, predictedBox: s.parsed as Box | null } : {}),
    });
    onItem?.(results.length, items.length);
  }
  return results;
}

export async function evaluateBench(benchDir: string, opts: EvalOptions): Promise<EvalReport> {
  const t0 = performance.now();
  const seed = opts.seed ?? 0;
  let items = readBenchItems(benchDir, opts.split);
  if (opts.tasks) items = items.filter((it) => opts.tasks!.includes(it.task));
  if (opts.perTask !== undefined) items = capPerTask(items, opts.perTask);
  if (opts.limit !== undefined) items = items.slice(0, opts.limit);
  if (items.length === 0) throw new UvuError(`${join(benchDir, `${opts.split}.jsonl`)}: no items to evaluate`);
  const results = await answerItems(items, opts.answer, opts.onItem);
  const tasks: Partial<Record<Task, TaskScore>> = {};
  for (const t of TASKS) {
    const c = results.filter((r) => r.task === t).map((r) => r.correct);
    if (c.length > 0) tasks[t] = taskScore(c, hashSeed(seed, `bootstrap/${t}`));
  }
  const report: EvalReport = {
    bench: benchDir,
    split: opts.split,
    n: results.length,
    seed,
    tasks,
    overall: taskScore(results.map((r) => r.correct), hashSeed(seed, 'bootstrap/overall')),
    items: results,
    seconds: 0,
  };
  if (opts.sheetPath) {
    const entries = results.map((r, i) => ({ item: items[i]!, prediction: r.prediction, correct: r.correct, predictedBox: r.predictedBox ?? null }));
    report.sheet = (await drawSheet(benchDir, entries, opts.sheetPath)).path;
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/** An evaluation as `uvu eval` saves it beside the checkpoint's run (eval-<split>.json): the report and the checkpoint. */
export type SavedEvalReport = EvalReport & { checkpoint: string };

const ScoreSchema = z.object({ n: z.number().int().nonnegative(), accuracy: z.number().nullable(), ci95: z.tuple([z.number().nullable(), z.number().nullable()]) });
const SavedEvalReportSchema = z.object({
  bench: z.string(),
  split: z.enum(['train', 'test']),
  n: z.number().int().nonnegative(),
  seed: z.number(),
  tasks: z.partialRecord(z.enum(TASKS), ScoreSchema),
  overall: ScoreSchema,
  items: z.array(
    z.object({
      id: z.string(), task: z.enum(TASKS), image: relativePathInside('the benchmark folder'), prompt: z.string(), answer: z.string(), prediction: z.string(), correct: z.boolean(),
      iou: z.number().optional(), predictedBox: z.union([BoxSchema, z.null()]).optional(),
    }),
  ),
  sheet: z.string().optional(),
  seconds: z.number(),
  checkpoint: z.string(),
});

export function writeEvalReport(path: string, report: SavedEvalReport): void {
  writeFileAtomic(path, `${JSON.stringify(report)}\n`);
}

/** Read an eval-<split>.json written by `uvu eval`; a clear error naming the file when it is not one. */
export function readEvalReport(path: string): SavedEvalReport {
  return parseOrFail(SavedEvalReportSchema, readJsonFile(path, 'evaluation report'), `${path}: not an evaluation report of uvu eval`) as SavedEvalReport;
}
