/**
 * One experiment run's results in a form small enough to commit (results.json, tens of kB where
 * report.json is megabytes): everything `npm run experiment:seeds` needs to pool seeds, so that
 * runs made in different sessions, on machines that are gone, can still be merged item by item.
 *
 * It keeps the scored test items as ids with one bit string of correctness per configuration (the
 * answers themselves stay in report.json), the spatial drills the same way with their scenes (the
 * bootstrap's clusters), the per-task accuracies, intervals, floors and gates as recorded, the two
 * tokenizers' PRP/PSNR on the test patches, and each pretraining run's gradient angles.
 *
 * `readRunResults` reads a results file, or a run folder: its results.json, else (runs made before
 * results.json existed) its report.json and the pretraining logs, converted.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { LOG_FILE, readLog } from '../src/serve/runs.js';
import type { StepLog } from '../src/train/train.js';
import { UsageError } from '../src/util/errors.js';
import { parseOrFail, readJsonFile } from '../src/util/fsio.js';

export const RESULTS_FILE = 'results.json';
export const RESULTS_FORMAT = 'uvu-experiment-results/1';

const interval = z.tuple([z.number(), z.number()]);
const tokenizerTest = z.object({ prp: z.number(), psnr: z.number() });
/** Per-item correctness in scoring order, '1' right and '0' wrong. */
const bits = z.string().regex(/^[01]*$/, 'a string of 0s and 1s');
/** Per task: the majority floor, and per configuration its accuracy and gates, as the run recorded them (every recorded field kept). */
const tasksSchema = z.record(z.string(), z.object({ floor: z.looseObject({ accuracy: z.number() }).nullable() }).catchall(z.looseObject({ accuracy: z.number(), ci95: interval, gates: z.looseObject({ imageSensitive: z.boolean() }) })));
const pairedSchema = z.record(z.string(), z.record(z.string(), z.object({ n: z.number(), difference: z.number(), ci95: interval })));
const drillSummarySchema = z.object({
  floor: z.object({ accuracy: z.number() }),
  variants: z.record(z.string(), z.object({ accuracy: z.number(), ci95: interval })),
  paired: z.record(z.string(), z.object({ difference: z.number(), ci95: interval })),
});
/** Scored items: their ids once, and each configuration's correctness on them in the same order. */
const scoredSchema = z.object({ ids: z.array(z.string()), correct: z.record(z.string(), bits) })
  .refine((s) => Object.values(s.correct).every((b) => b.length === s.ids.length), 'every configuration has one bit per item');
/** The drills likewise, with the scene of each (the bootstrap's clusters). */
const drillsSchema = z.object({ ids: z.array(z.string()), scenes: z.array(z.string()), correct: z.record(z.string(), bits) })
  .refine((s) => s.scenes.length === s.ids.length && Object.values(s.correct).every((b) => b.length === s.ids.length), 'one scene and, per configuration, one bit per drill');

export const ResultsSchema = z.object({
  format: z.literal(RESULTS_FORMAT),
  size: z.string(),
  regime: z.string(),
  seed: z.number().int(),
  /** Minutes of the run's steps, summed. */
  minutes: z.number(),
  settings: z.looseObject({ variants: z.array(z.string()), evalPerTask: z.number() }),
  tasks: tasksSchema,
  paired: pairedSchema,
  codebook: z.object({ test: tokenizerTest }),
  vq: z.object({ test: tokenizerTest }).nullable(),
  /** Per task: the scored test items. */
  items: z.record(z.string(), scoredSchema),
  /** The spatial drills on the test scenes, when the run scored them. */
  spatialDrills: drillSummarySchema.nullable(),
  drillItems: drillsSchema.nullable(),
  /** Per configuration with image targets: its pretraining's gradient angles, [step, degrees]. */
  angles: z.record(z.string(), z.array(z.tuple([z.number(), z.number()]))),
});
export type RunResults = z.output<typeof ResultsSchema>;

/** The parts of an experiment's report.json that results.json keeps (scripts/experiment.ts writes both). */
const ReportSchema = z.object({
  size: z.string(),
  regime: z.string().optional(),
  seed: z.number().int(),
  minutes: z.number(),
  settings: z.looseObject({ variants: z.array(z.string()), evalPerTask: z.number(), regime: z.string().optional() }),
  tasks: tasksSchema,
  paired: pairedSchema,
  codebook: z.object({ test: tokenizerTest }),
  vq: z.object({ test: tokenizerTest }).nullable(),
  evals: z.record(z.string(), z.object({ items: z.array(z.object({ id: z.string(), task: z.string(), correct: z.boolean() })) })),
  /** Reports written before the drills were scored have none. */
  spatialDrills: drillSummarySchema.nullable().optional(),
  spatialDrillItems: z.record(z.string(), z.array(z.object({ id: z.string(), scene: z.string(), correct: z.boolean() }))).optional(),
});
export type ReportForResults = z.output<typeof ReportSchema>;
/** A report as scripts/experiment.ts builds it, checked and narrowed to what results.json keeps. */
export const parseReport = (report: unknown): ReportForResults => ReportSchema.parse(report);

const toBits = (xs: { correct: boolean }[]): string => xs.map((x) => (x.correct ? '1' : '0')).join('');

/**
 * The compact results of a report. Throws if two configurations were scored on different items
 * (the pairing every difference relies on).
 */
export function resultsOfReport(report: ReportForResults, angles: Record<string, [number, number][]>): RunResults {
  const variants = report.settings.variants;
  const items: RunResults['items'] = {};
  for (const task of Object.keys(report.tasks)) {
    const byVariant = variants.map((v) => report.evals[v]!.items.filter((it) => it.task === task));
    const ids = byVariant[0]!.map((it) => it.id);
    byVariant.forEach((xs, i) => {
      if (xs.length !== ids.length || xs.some((it, j) => it.id !== ids[j])) throw new Error(`${task}: ${variants[i]} and ${variants[0]} were scored on different items`);
    });
    items[task] = { ids, correct: Object.fromEntries(variants.map((v, i) => [v, toBits(byVariant[i]!)])) };
  }
  const drills = report.spatialDrills && report.spatialDrillItems && variants.every((v) => report.spatialDrillItems![v]) ? report.spatialDrillItems : null;
  let drillItems: RunResults['drillItems'] = null;
  if (drills) {
    const first = drills[variants[0]!]!;
    for (const v of variants) if (drills[v]!.length !== first.length || drills[v]!.some((it, j) => it.id !== first[j]!.id)) throw new Error(`spatial drills: ${v} and ${variants[0]} were asked different drills`);
    drillItems = { ids: first.map((it) => it.id), scenes: first.map((it) => it.scene), correct: Object.fromEntries(variants.map((v) => [v, toBits(drills[v]!)])) };
  }
  return {
    format: RESULTS_FORMAT,
    size: report.size,
    regime: report.regime ?? report.settings.regime ?? 'hard',
    seed: report.seed,
    minutes: report.minutes,
    settings: report.settings,
    tasks: report.tasks,
    paired: report.paired,
    codebook: { test: { prp: report.codebook.test.prp, psnr: report.codebook.test.psnr } },
    vq: report.vq ? { test: { prp: report.vq.test.prp, psnr: report.vq.test.psnr } } : null,
    items,
    spatialDrills: drills ? report.spatialDrills! : null,
    drillItems,
    angles,
  };
}

/** The gradient angles a training log measured, [step, degrees]. */
export const anglesOfLog = (lines: StepLog[]): [number, number][] => lines.flatMap((l) => (l.angle_deg === null ? [] : [[l.step, l.angle_deg] as [number, number]]));

/** The gradient angles of a run folder's pretraining runs with image targets, from their logs. */
function anglesOfRunFolder(dir: string, variants: string[]): Record<string, [number, number][]> {
  return Object.fromEntries(variants.filter((v) => v !== 'text-only').map((v) => {
    const run = join(dir, 'runs', `${v}-pretrain`);
    return [v, existsSync(join(run, LOG_FILE)) ? anglesOfLog(readLog(run, 0).lines) : []];
  }));
}

/**
 * A run's results from a results file or a run folder (its results.json, else its report.json and
 * logs). Missing paths are usage errors; files that are not results, input errors naming the file.
 */
export function readRunResults(path: string): RunResults {
  if (!existsSync(path)) throw new UsageError(`${path}: no such file or folder (give experiment output folders or their ${RESULTS_FILE})`);
  if (statSync(path).isFile()) return parseOrFail(ResultsSchema, readJsonFile(path, 'experiment results'), `${path}: not experiment results`);
  const results = join(path, RESULTS_FILE);
  if (existsSync(results)) return readRunResults(results);
  const reportFile = join(path, 'report.json');
  if (!existsSync(reportFile)) throw new UsageError(`${path}: no ${RESULTS_FILE} or report.json (run npm run experiment with --out ${path} first)`);
  const report = parseOrFail(ReportSchema, readJsonFile(reportFile, 'experiment report'), `${reportFile}: not an experiment report`);
  return resultsOfReport(report, anglesOfRunFolder(path, report.settings.variants));
}
