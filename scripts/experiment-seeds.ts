/**
 * `npm run experiment:seeds -- RUN RUN… [--json] [--write NAME] [--plot FILE]`
 *
 * One comparison run with several seeds (issue 14, item 3): reads each RUN's results, an output
 * folder of `npm run experiment` or the results.json it leaves there (committed under
 * docs/experiment/results/ so that runs of past sessions can be merged; scripts/experiment-results.ts),
 * all of the same size and settings with different `--seed`s (a configuration not trained for
 * every seed is left out of the merge). Runs of one seed that trained different configurations
 * on the same data (`--variants`, made separately) are joined into that seed first. It prints
 *   - per task and seed: the majority floor, every configuration's accuracy, the paired
 *     differences uvu − other, and gate 2 (does the answer use the image?);
 *   - per task over all seeds: each configuration's accuracy and each paired difference over every
 *     scored item, with a bootstrap interval stratified by seed (each seed keeps its weight), and
 *     the paired difference's mean over seeds with a t interval across seeds (training noise);
 *   - the spatial drills (each test scene asked the spatial question several ways), per seed and
 *     pooled, when every run scored them, with intervals that resample scenes;
 *   - the two image tokenizers on the test scenes' patches (PRP, PSNR) per seed;
 *   - the distribution of the gradient angle θ(∇L_image, ∇L_text) of every pretraining run with
 *     image targets, with a PNG: the angle against the step, and its empirical CDF per configuration.
 * `--write NAME` also writes the tables into BENCHMARKS.md (section NAME) and the plot into docs/experiment/.
 */
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { Command } from 'commander';
import { machine, writeSection } from '../bench/report.js';
import { quantile } from '../src/codebook/metrics.js';
import { passesImageGate } from '../src/perception/gates.js';
import { clusterBootstrapInterval, stratifiedBootstrapInterval } from '../src/perception/score.js';
import { hashSeed } from '../src/perception/scenes.js';
import { PLOT_COLORS, writeLinePlotPng } from '../src/util/plot.js';
import { UsageError } from '../src/util/errors.js';
import { bitDiffs, mergeSameSeed, RESULTS_FILE, readRunResults, type RunResults } from './experiment-results.js';
import { VARIANTS, withAddedFields } from './experiment-settings.js';

const program = new Command('experiment:seeds')
  .description('merge the results of one experiment run with several seeds: per-seed and pooled accuracies, paired differences, tokenizers, gradient angles')
  .argument('<runs...>', `experiment output folders or their ${RESULTS_FILE} files: one per seed, or several of one seed with different configurations`)
  .option('--json', 'print the merged summary as JSON on stdout, nothing else')
  .option('--write <name>', 'write the tables into BENCHMARKS.md section NAME and the plot into docs/experiment/NAME-angles.png')
  .option('--plot <file>', 'gradient-angle plot (default: angles-seeds.png beside the first run)');
program.parse();
const opts = program.opts<{ json?: boolean; write?: string; plot?: string }>();
const inputs = program.args.map((d) => resolve(d));

/**
 * The reports, one per seed, checked to be one comparison: same size and settings (configurations
 * may differ); runs of the same seed joined (mergeSameSeed).
 */
function readReports(): RunResults[] {
  const reports = inputs.map(readRunResults);
  // The settings that define the comparison: the tasks as the set scored (a run made as `--size small
  // --set tasks=all` before a size named them is the same run), the size's name not at all; fields
  // added since a run was made count as off for it.
  const fixed = (r: RunResults): string => {
    const settings: Record<string, unknown> = { ...withAddedFields(r.settings), variants: undefined, tasks: Object.keys(r.tasks).sort() };
    return JSON.stringify(Object.keys(settings).sort().map((k) => [k, settings[k]]));
  };
  reports.forEach((r, i) => {
    if (fixed(r) !== fixed(reports[0]!)) throw new UsageError(`${inputs[i]}: its size or settings differ from ${inputs[0]}'s; only seeds (and configurations) may differ`);
  });
  const bySeed = new Map<number, { path: string; results: RunResults }[]>();
  reports.forEach((results, i) => bySeed.set(results.seed, [...(bySeed.get(results.seed) ?? []), { path: inputs[i]!, results }]));
  if (bySeed.size < 2) throw new UsageError(`give runs of at least two seeds (these are all seed ${reports[0]!.seed})`);
  return [...bySeed.values()].map((runs) => (runs.length === 1 ? runs[0]!.results : mergeSameSeed(runs)));
}

let reports: RunResults[];
try {
  if (inputs.length < 2) throw new UsageError('give at least two experiment runs (one per seed)');
  reports = readReports();
} catch (err) {
  console.error(`experiment:seeds: ${(err as Error).message}`);
  process.exit(err instanceof UsageError ? 2 : 1);
}
const say = (line: string): void => (opts.json ? console.error(line) : console.log(line));
/** The configurations trained for every seed (a seed with fewer leaves the others out of the merge). */
const variants: string[] = VARIANTS.filter((v) => reports.every((r) => r.settings.variants.includes(v)));
const dropped = VARIANTS.filter((v) => !variants.includes(v) && reports.some((r) => r.settings.variants.includes(v)));
if (dropped.length) say(`experiment:seeds: ${dropped.join(', ')} left out: not trained for every seed`);
const others = variants.includes('uvu') ? variants.filter((v) => v !== 'uvu') : [];
const tasks = Object.keys(reports[0]!.tasks);
const pct = (x: number): string => (100 * x).toFixed(1);
const withCi = (x: number, ci: [number, number]): string => `${pct(x)} [${pct(ci[0])}, ${pct(ci[1])}]`;
const signed = (x: number, ci: [number, number]): string => `${x >= 0 ? '+' : ''}${withCi(x, ci)}`;
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Per-item correctness (0/1) of a configuration on a task, per seed, in the order the items were scored. */
const correctOf = (r: RunResults, v: string, task: string): number[] => [...r.items[task]!.correct[v]!].map(Number);
/** Gate 2 from the report's numbers, so that reports written before it required the floor read the same. */
const gate2Of = (r: RunResults, task: string, v: string): boolean => {
  const t = r.tasks[task]!;
  return passesImageGate({ imageSensitive: t[v]!.gates.imageSensitive, ci95: t[v]!.ci95, floor: t.floor!.accuracy });
};

/**
 * Two-sided 95 % Student t quantiles t(0.975, df) for df = 1 … 10 (standard tables). Beyond: 2.2
 * up to df 30 (the df-11 value, so the interval errs wide) and 1.96 after (within 3 %).
 */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
/**
 * Mean of per-seed values with a 95 % t interval over seeds: the between-seed view. The stratified
 * bootstrap treats the seeds' training runs as fixed and resamples only test items; this one
 * treats each seed's result as one draw of the whole training, so it is the wider, honest one
 * when runs differ more than items do.
 */
function acrossSeeds(values: number[]): { n: number; mean: number; sd: number; ci95: [number, number] } {
  const n = values.length;
  const m = mean(values);
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - m) ** 2, 0) / (n - 1));
  const t = T975[n - 2] ?? (n - 1 > 30 ? 1.96 : 2.2);
  const half = (t * sd) / Math.sqrt(n);
  return { n, mean: m, sd, ci95: [m - half, m + half] };
}

// Pooled over seeds: accuracy and paired differences over every scored item, stratified by seed.
interface Pooled { n: number; accuracy: number; ci95: [number, number] }
const pooled: Record<string, { floor: number; variants: Record<string, Pooled>; paired: Record<string, Pooled>; pairedAcrossSeeds: Record<string, ReturnType<typeof acrossSeeds>>; gate2: Record<string, number> }> = {};
for (const task of tasks) {
  const byVariant = Object.fromEntries(variants.map((v) => {
    const groups = reports.map((r) => correctOf(r, v, task));
    const all = groups.flat();
    return [v, { n: all.length, accuracy: mean(all), ci95: stratifiedBootstrapInterval(groups, { seed: hashSeed(0, `seeds/${v}/${task}`) }) }];
  }));
  // Per configuration other than uvu: per seed, uvu's correctness minus its on each item.
  const differences = new Map(others.map((o) => [o, reports.map((r) => bitDiffs(r.items[task]!.correct.uvu!, r.items[task]!.correct[o]!))]));
  const paired = Object.fromEntries(others.map((o) => {
    const groups = differences.get(o)!;
    const all = groups.flat();
    return [`uvu - ${o}`, { n: all.length, accuracy: mean(all), ci95: stratifiedBootstrapInterval(groups, { seed: hashSeed(0, `seeds/paired/${o}/${task}`) }) }];
  }));
  const pairedAcrossSeeds = Object.fromEntries(others.map((o) => [`uvu - ${o}`, acrossSeeds(differences.get(o)!.map(mean))]));
  const gate2 = Object.fromEntries(variants.map((v) => [v, reports.filter((r) => gate2Of(r, task, v)).length]));
  pooled[task] = { floor: mean(reports.map((r) => r.tasks[task]!.floor!.accuracy)), variants: byVariant, paired, pairedAcrossSeeds, gate2 };
}

/**
 * The spatial drills (every test scene asked SPATIAL_DRILLS_PER_SCENE ways), when every run scored
 * them: per seed and pooled, with intervals that resample scenes (a scene of each seed is one
 * cluster) since a scene's questions share its image.
 */
const drillRuns = reports.every((r) => r.spatialDrills && r.drillItems) ? reports : [];
/** The cluster of each of a run's drill questions, its seed and scene (every configuration is asked the same drills in the same order). */
const drillScenes = (r: RunResults): string[] => r.drillItems!.scenes.map((scene) => `${r.seed}/${scene}`);
const drillCorrect = (r: RunResults, v: string): number[] => [...r.drillItems!.correct[v]!].map(Number);
const drillDiffs = (r: RunResults, o: string): number[] => bitDiffs(r.drillItems!.correct.uvu!, r.drillItems!.correct[o]!);
const drillScore = (runs: RunResults[], values: (r: RunResults) => number[], salt: string): Pooled => {
  const all = runs.flatMap(values);
  return { n: all.length, accuracy: mean(all), ci95: clusterBootstrapInterval(all, runs.flatMap(drillScenes), { seed: hashSeed(0, `seeds/drills/${salt}`) }) };
};
/** One seed's drills as its experiment recorded them (the same numbers as its own table). */
const drillRow = (r: RunResults): string => {
  const d = r.spatialDrills!;
  return `| spatial, drills | ${r.seed} | ${pct(d.floor.accuracy)} | ${variants.map((v) => withCi(d.variants[v]!.accuracy, d.variants[v]!.ci95)).join(' | ')} | ${others.map((o) => signed(d.paired[`uvu - ${o}`]!.difference, d.paired[`uvu - ${o}`]!.ci95)).join(' | ')} | — |`;
};
const pooledDrills = drillRuns.length === 0 ? null : {
  floor: mean(drillRuns.map((r) => r.spatialDrills!.floor.accuracy)),
  variants: Object.fromEntries(variants.map((v) => [v, drillScore(drillRuns, (r) => drillCorrect(r, v), v)])),
  paired: Object.fromEntries(others.map((o) => [`uvu - ${o}`, drillScore(drillRuns, (r) => drillDiffs(r, o), `paired/${o}`)])),
  pairedAcrossSeeds: Object.fromEntries(others.map((o) => [`uvu - ${o}`, acrossSeeds(drillRuns.map((r) => mean(drillDiffs(r, o))))])),
};

const pairNames = others.map((o) => `uvu - ${o}`);
const accuracyTable = [
  `| task | seed | floor | ${variants.join(' | ')} | ${pairNames.map((p) => `${p}, paired`).join(' | ')} | gate 2 (${variants.join(' / ')}) |`,
  `|---|---|---:|${variants.map(() => '---').join('|')}|${pairNames.map(() => '---').join('|')}|---|`,
  ...tasks.flatMap((task) => [
    ...reports.map((r) => {
      const t = r.tasks[task]!;
      return `| ${task} | ${r.seed} | ${pct(t.floor!.accuracy)} | ${variants.map((v) => withCi(t[v]!.accuracy, t[v]!.ci95)).join(' | ')} | ${pairNames.map((p) => signed(r.paired[p]![task]!.difference, r.paired[p]![task]!.ci95)).join(' | ')} | ${variants.map((v) => (gate2Of(r, task, v) ? 'pass' : 'fail')).join(' / ')} |`;
    }),
    (() => {
      const p = pooled[task]!;
      return `| **${task}** | **all ${reports.length}** | ${pct(p.floor)} | ${variants.map((v) => withCi(p.variants[v]!.accuracy, p.variants[v]!.ci95)).join(' | ')} | ${pairNames.map((n) => `**${signed(p.paired[n]!.accuracy, p.paired[n]!.ci95)}**; over seeds ${signed(p.pairedAcrossSeeds[n]!.mean, p.pairedAcrossSeeds[n]!.ci95)}`).join(' | ')} | ${variants.map((v) => `${p.gate2[v]}/${reports.length}`).join(' / ')} |`;
    })(),
  ]),
  ...(pooledDrills ? [
    ...drillRuns.map(drillRow),
    `| **spatial, drills** | **all ${drillRuns.length}** | ${pct(pooledDrills.floor)} | ${variants.map((v) => withCi(pooledDrills.variants[v]!.accuracy, pooledDrills.variants[v]!.ci95)).join(' | ')} | ${pairNames.map((n) => `**${signed(pooledDrills.paired[n]!.accuracy, pooledDrills.paired[n]!.ci95)}**; over seeds ${signed(pooledDrills.pairedAcrossSeeds[n]!.mean, pooledDrills.pairedAcrossSeeds[n]!.ci95)}`).join(' | ')} | — |`,
  ] : []),
].join('\n');

const tokenizerTable = [
  '| seed | pixel codebook PRP | PSNR (dB) | VQ-VAE PRP | PSNR (dB) |',
  '|---|---:|---:|---:|---:|',
  ...reports.map((r) => `| ${r.seed} | ${r.codebook.test.prp.toFixed(3)} | ${r.codebook.test.psnr.toFixed(2)} | ${r.vq ? r.vq.test.prp.toFixed(3) : '—'} | ${r.vq ? r.vq.test.psnr.toFixed(2) : '—'} |`),
].join('\n');

// Gradient angles of the pretraining runs with image targets (every `angle_every` steps).
const imageVariants = variants.filter((v) => v !== 'text-only');
/** Per configuration, per seed: the measured angles of its pretraining run, [step, degrees]. */
const angles = new Map(imageVariants.map((v) => [v, reports.map((r) => r.angles[v] ?? [])]));
/** Per configuration: every seed's angles, ascending. */
const sortedAngles = new Map(imageVariants.map((v) => [v, angles.get(v)!.flat().map(([, deg]) => deg).sort((a, b) => a - b)]));
const angleStats = Object.fromEntries(imageVariants.map((v) => {
  const xs = sortedAngles.get(v)!;
  if (xs.length === 0) return [v, null];
  const m = mean(xs);
  const sd = Math.sqrt(mean(xs.map((x) => (x - m) ** 2)));
  return [v, { n: xs.length, meanDeg: m, sdDeg: sd, q10Deg: quantile(xs, 0.1), medianDeg: quantile(xs, 0.5), q90Deg: quantile(xs, 0.9), above90: xs.filter((x) => x > 90).length / xs.length }];
}));
const angleTable = [
  '| configuration | angles (runs × steps) | mean | sd | 10 % | median | 90 % | share > 90° (conflicting) |',
  '|---|---:|---:|---:|---:|---:|---:|---:|',
  ...imageVariants.map((v) => {
    const a = angleStats[v];
    if (!a) return `| ${v} | 0 | — | — | — | — | — | — |`;
    return `| ${v} | ${a.n} | ${a.meanDeg.toFixed(1)}° | ${a.sdDeg.toFixed(1)}° | ${a.q10Deg.toFixed(1)}° | ${a.medianDeg.toFixed(1)}° | ${a.q90Deg.toFixed(1)}° | ${pct(a.above90)} % |`;
  }),
].join('\n');

const plot = resolve(opts.plot ?? join(statSync(inputs[0]!).isFile() ? dirname(inputs[0]!) : inputs[0]!, 'angles-seeds.png'));
const colorOf = (v: string): string => PLOT_COLORS[(VARIANTS as readonly string[]).indexOf(v)]!;
await writeLinePlotPng(plot, {
  title: `θ(∇L_image, ∇L_text) in pretraining, ${reports.length} seeds`,
  width: 640,
  panels: [
    {
      title: 'angle against the pretraining step (one line per seed)',
      xLabel: 'step',
      yLabel: 'degrees',
      series: imageVariants.flatMap((v) => angles.get(v)!.map((a, i) => ({ name: `${v} seed ${reports[i]!.seed}`, color: colorOf(v), x: a.map(([step]) => step), y: a.map(([, deg]) => deg) }))),
    },
    {
      title: 'empirical CDF over all seeds and steps',
      xLabel: 'degrees',
      yLabel: 'fraction ≤ angle',
      series: imageVariants.map((v) => {
        const xs = sortedAngles.get(v)!;
        return { name: v, color: colorOf(v), x: xs, y: xs.map((_, i) => (i + 1) / xs.length) };
      }),
    },
  ],
});

say(accuracyTable);
say('');
say(tokenizerTable);
say('');
say(angleTable);
say(`plot: ${plot}`);
const summary = { seeds: reports.map((r) => r.seed), runs: inputs, configurations: variants, size: reports[0]!.size, settings: reports[0]!.settings, minutes: reports.map((r) => r.minutes), pooled, spatialDrills: pooledDrills, tokenizers: reports.map((r) => ({ seed: r.seed, codebook: r.codebook.test, vq: r.vq?.test ?? null })), angles: angleStats, plot };
if (opts.json) console.log(JSON.stringify(summary, null, 2));

if (opts.write) {
  const docs = resolve('docs', 'experiment');
  mkdirSync(docs, { recursive: true });
  copyFileSync(plot, join(docs, `${opts.write}-angles.png`));
  writeSection(opts.write, [
    `### ${opts.write}`,
    '',
    `Command: \`npm run experiment:seeds -- ${inputs.map((d) => relative(process.cwd(), d)).join(' ')} --write ${opts.write}\`, merging ${[...new Set(reports.map((r) => r.size))].map((size) => {
      const seeds = reports.filter((r) => r.size === size).map((r) => r.seed);
      return `\`npm run experiment -- --size ${size} --seed S --out DIR\` for seed${seeds.length > 1 ? 's' : ''} ${seeds.join(', ')}`;
    }).join(' and ')}, with the same settings (${reports.map((r) => r.minutes.toFixed(0)).join(', ')} min of steps) — merged ${new Date().toISOString().slice(0, 10)} on: ${machine()}.`,
    '',
    `Accuracy in % with 95 % bootstrap intervals (${reports[0]!.settings.evalPerTask} test items per task and seed at most); "all" rows pool every seed's items, with the interval stratified by seed (test items resampled, training runs fixed); "over seeds" is the mean of the per-seed differences with a 95 % t interval across seeds (each training run one draw); paired differences are uvu − other on the same items; "spatial, drills" asks every test scene the spatial question several ways, its intervals resampling scenes; gate 2 passes when the answer's accuracy drops with a grey image (paired interval above 0) and its interval lies above the floor:`,
    '',
    accuracyTable,
    '',
    'Image tokenizers (same K) on the test scenes\' patches:',
    '',
    tokenizerTable,
    '',
    'Gradient angle θ(∇L_image, ∇L_text) over the shared weights, every pretraining run with image targets:',
    '',
    angleTable,
    '',
    `![gradient angles](docs/experiment/${opts.write}-angles.png)`,
  ].join('\n'));
}
