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
 * results.json existed) its report.json and the pretraining logs, converted. `mergeSameSeed` joins
 * runs of one seed that trained different configurations on the same data.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { bootstrapInterval, clusterBootstrapInterval } from '../src/perception/score.js';
import { hashSeed } from '../src/perception/scenes.js';
import { LOG_FILE, readLog } from '../src/serve/runs.js';
import type { StepLog } from '../src/train/train.js';
import { UsageError } from '../src/util/errors.js';
import { parseOrFail, readJsonFile } from '../src/util/fsio.js';
import { VARIANTS } from './experiment-settings.js';

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

/** A paired difference uvu − other: over how many items, the mean per-item difference in correctness, its 95 % interval. */
export interface PairedDifference { n: number; difference: number; ci95: [number, number] }
const meanOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
/**
 * uvu − other on one task's test items, from the per-item differences in correctness (−1, 0, 1),
 * with a paired bootstrap interval over items. The experiment's own numbers: a same-seed merge
 * recomputes them with the same resampling seed, and so gets what one run of both would record.
 */
export const pairedOnTask = (diffs: number[], seed: number, other: string, task: string): PairedDifference =>
  ({ n: diffs.length, difference: meanOf(diffs), ci95: bootstrapInterval(diffs, { seed: hashSeed(seed, `paired/${other}/${task}`) }) });
/** The same on the spatial drills, the interval resampling scenes (a scene's drills share its image). */
export const pairedOnDrills = (diffs: number[], scenes: string[], seed: number, other: string): PairedDifference =>
  ({ n: diffs.length, difference: meanOf(diffs), ci95: clusterBootstrapInterval(diffs, scenes, { seed: hashSeed(seed, `drills/paired/${other}`) }) });

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

/** Per-item differences uvu − other from two bit strings of correctness. */
export const bitDiffs = (uvu: string, other: string): number[] => [...uvu].map((x, i) => Number(x) - Number(other[i]));

/**
 * One seed's results from runs that trained different configurations on the same data (made
 * separately: in different sessions, or on different machines): the union of their configurations,
 * with the paired differences uvu − other recomputed over the items as the experiment computes
 * them, so that the merge equals what one run of all of them records. Runs that share a
 * configuration, or whose test items, floors or codebook differ (not one seed's data), are refused
 * naming the file.
 */
export function mergeSameSeed(runs: { path: string; results: RunResults }[]): RunResults {
  const { path: firstPath, results: base } = runs[0]!;
  const refuse = (path: string, why: string): never => {
    throw new UsageError(`${path}: ${why} not the same as in ${firstPath}, also seed ${base.seed} (runs of one seed merge only when made from the same data, with different configurations)`);
  };
  const variants: string[] = [];
  for (const { path, results } of runs) {
    for (const v of results.settings.variants) {
      if (variants.includes(v)) throw new UsageError(`${path}: ${v} of seed ${base.seed} is in another run too (give each configuration of a seed once)`);
      variants.push(v);
    }
  }
  const order = (v: string): number => (VARIANTS as readonly string[]).indexOf(v);
  variants.sort((a, b) => order(a) - order(b));
  const sameList = (a: string[], b: string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
  for (const { path, results } of runs.slice(1)) {
    for (const task of Object.keys(base.items)) {
      if (!results.items[task] || !sameList(results.items[task].ids, base.items[task]!.ids)) refuse(path, `${task} test items`);
      if (results.tasks[task]!.floor?.accuracy !== base.tasks[task]!.floor?.accuracy) refuse(path, `${task} floor`);
    }
    if (results.codebook.test.prp !== base.codebook.test.prp || results.codebook.test.psnr !== base.codebook.test.psnr) refuse(path, 'pixel codebook PRP/PSNR');
    if (results.drillItems && base.drillItems && !(sameList(results.drillItems.ids, base.drillItems.ids) && sameList(results.drillItems.scenes, base.drillItems.scenes))) refuse(path, 'spatial drills');
  }
  const all = runs.map((r) => r.results);
  const others = variants.includes('uvu') ? variants.filter((v) => v !== 'uvu') : [];
  const items: RunResults['items'] = Object.fromEntries(Object.entries(base.items).map(([task, it]) => [task, { ids: it.ids, correct: Object.assign({}, ...all.map((r) => r.items[task]!.correct)) as Record<string, string> }]));
  // As the experiment records them: per task with scored items.
  const paired: RunResults['paired'] = Object.fromEntries(others.map((o) => [`uvu - ${o}`, Object.fromEntries(Object.entries(items).filter(([, it]) => it.ids.length > 0).map(([task, it]) => [task, pairedOnTask(bitDiffs(it.correct.uvu!, it.correct[o]!), base.seed, o, task)]))]));
  const withDrills = all.every((r) => r.drillItems && r.spatialDrills);
  const drillItems = withDrills ? { ...base.drillItems!, correct: Object.assign({}, ...all.map((r) => r.drillItems!.correct)) as Record<string, string> } : null;
  // Parsed like a results file, so that the recomputed parts keep the fields results.json keeps.
  return ResultsSchema.parse({
    ...base,
    // Each run's own record, summed: steps two runs both ran or found in a shared folder count twice.
    minutes: all.reduce((a, r) => a + r.minutes, 0),
    settings: { ...base.settings, variants },
    tasks: Object.fromEntries(Object.keys(base.tasks).map((task) => [task, { ...Object.assign({}, ...all.map((r) => r.tasks[task])), floor: base.tasks[task]!.floor }])),
    paired,
    vq: all.find((r) => r.vq)?.vq ?? null,
    items,
    spatialDrills: drillItems ? {
      floor: base.spatialDrills!.floor,
      variants: Object.assign({}, ...all.map((r) => r.spatialDrills!.variants)),
      paired: Object.fromEntries(others.map((o) => [`uvu - ${o}`, pairedOnDrills(bitDiffs(drillItems.correct.uvu!, drillItems.correct[o]!), drillItems.scenes, base.seed, o)])),
    } : null,
    drillItems,
    angles: Object.assign({}, ...all.map((r) => r.angles)),
  });
}
