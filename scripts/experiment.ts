/**
 * `npm run experiment -- [--size tiny|default] [--out DIR] [--seed S] [--no-write]`
 *
 * The paper's three-way comparison at small scale (issue 5): the same model, data, steps and
 * seeds, pretrained and then fine-tuned three ways —
 *   uvu        image targets are pixel-codebook ids (w_img = 0.5, balanced sampling)
 *   text-only  no visual supervision (w_img = 0); the images are still inputs
 *   ar-vq      image targets are the ids of a patch VQ-VAE with the same K
 * — then scored on the held-out perception benchmark (grounding, counting, spatial, existence).
 *
 * Every step runs the `uvu` CLI (--json) and is skipped when its output already exists, so an
 * interrupted experiment resumes where it stopped. The default size finishes in well under
 * 90 minutes on 2 cores; `--size tiny` runs the same pipeline end to end in about a minute (CI).
 * With the default size the results go to BENCHMARKS.md (section "experiment") and
 * docs/experiment/*.png.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { writeFileAtomic } from '../src/util/atomic.js';
import { PLOT_COLORS, writeLinePlotPng } from '../src/util/plot.js';
import { machine, writeSection } from '../bench/report.js';
import { evaluateBench, readBenchItems } from '../src/perception/eval.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Everything that differs between the CI-sized and the real experiment. */
interface Size {
  trainScenes: number;
  testScenes: number;
  /** Codebook / VQ size K. */
  K: number;
  vqSteps: number;
  /** Moby Dick chapters mixed into pretraining as text-only sequences. */
  textDocs: number;
  /** Text ids of the BPE tokenizer. */
  textVocab: number;
  pretrainSteps: number;
  sftSteps: number;
  batch: number;
  context: number;
  /** Test items scored per configuration. */
  evalLimit: number;
  /** Base run config (model architecture and optimizer). */
  config: string;
}

const SIZES: Record<'tiny' | 'default', Size> = {
  tiny: { trainScenes: 16, testScenes: 8, K: 64, vqSteps: 30, textDocs: 2, textVocab: 300, pretrainSteps: 4, sftSteps: 3, batch: 2, context: 256, evalLimit: 12, config: 'configs/tiny.json' },
  default: { trainScenes: 2000, testScenes: 500, K: 1024, vqSteps: 1500, textDocs: 40, textVocab: 1024, pretrainSteps: 300, sftSteps: 200, batch: 8, context: 256, evalLimit: 600, config: 'configs/reference.json' },
};

const VARIANTS = ['uvu', 'text-only', 'ar-vq'] as const;
type Variant = (typeof VARIANTS)[number];

const program = new Command('experiment')
  .description('pretrain + SFT of uvu, text-only and ar-vq on the perception benchmark, then evaluate')
  .addOption(new Option('--size <size>', 'experiment size').choices(['tiny', 'default']).default('default'))
  .option('--out <dir>', 'output folder (default out/experiment-<size>)')
  .option('--seed <s>', 'seed of scenes, initialisation and data order', '0')
  .option('--no-write', 'leave BENCHMARKS.md and docs/ alone');
program.parse();
const opts = program.opts<{ size: 'tiny' | 'default'; out?: string; seed: string; write: boolean }>();
const size = SIZES[opts.size];
const seed = Number(opts.seed);
const OUT = resolve(opts.out ?? join('out', `experiment-${opts.size}`));
mkdirSync(OUT, { recursive: true });

/** Run `uvu ARGS --json` and return its JSON result; a failure stops the experiment with its message. */
function uvu(name: string, args: string[]): Record<string, unknown> {
  const t0 = performance.now();
  console.error(`[experiment] ${name}: uvu ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) {
    console.error(`[experiment] ${name} failed (exit ${r.status}); rerun to resume from this step`);
    process.exit(1);
  }
  writeFileAtomic(join(OUT, 'steps', `${name}.seconds`), `${((performance.now() - t0) / 1000).toFixed(1)}\n`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** Cached step: the JSON result (and the step's wall time) is stored and reused on a rerun. */
function step(name: string, done: string, args: string[]): Record<string, unknown> {
  const cache = join(OUT, 'steps', `${name}.json`);
  if (existsSync(done) && existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8')) as Record<string, unknown>;
  mkdirSync(dirname(cache), { recursive: true });
  const result = uvu(name, args);
  writeFileAtomic(cache, JSON.stringify(result) + '\n');
  return result;
}

/** Unique image paths of a benchmark JSONL, absolute. */
function imagesOf(jsonl: string): string[] {
  const lines = readFileSync(jsonl, 'utf8').split('\n').filter((l) => l.trim());
  return [...new Set(lines.map((l) => resolve(dirname(jsonl), (JSON.parse(l) as { image: string }).image)))];
}

// 1. Benchmark scenes and questions.
const bench = join(OUT, 'bench');
step('bench-data', join(bench, 'manifest.json'), ['bench-data', 'build', '--out', bench, '--train-scenes', String(size.trainScenes), '--test-scenes', String(size.testScenes), '--seed', String(seed), '--quiet']);
const sceneSide = 192;
const maxPixels = sceneSide * sceneSide;
writeFileAtomic(join(OUT, 'train-scenes.txt'), imagesOf(join(bench, 'pretrain.jsonl')).join('\n') + '\n');
writeFileAtomic(join(OUT, 'test-scenes.txt'), imagesOf(join(bench, 'test.jsonl')).join('\n') + '\n');

// 2. Patches of the training scenes (codebook and VQ-VAE data) and of the test scenes (their PRP).
step('patches-train', join(OUT, 'patches', 'manifest.json'), ['patches', 'build', `@${join(OUT, 'train-scenes.txt')}`, '--out', join(OUT, 'patches'), '--max-pixels', String(maxPixels), '--quiet']);
step('patches-test', join(OUT, 'patches-test', 'manifest.json'), ['patches', 'build', `@${join(OUT, 'test-scenes.txt')}`, '--out', join(OUT, 'patches-test'), '--max-pixels', String(maxPixels), '--quiet']);

// 3. The two image tokenizers with the same K, each measured on the test scenes' patches.
const codebook = join(OUT, `codebook-k${size.K}.safetensors`);
step('codebook', codebook, ['codebook', 'build', '--patches', join(OUT, 'patches'), '--size', String(size.K), '--method', 'kmeans', '--init', 'kmeans++', '--seed', String(seed), '--out', codebook, '--quiet']);
const codebookEval = step('codebook-eval', codebook, ['codebook', 'eval', codebook, '--patches', join(OUT, 'patches-test'), '--quiet']);
const vq = join(OUT, `vq-k${size.K}.safetensors`);
step('vq', vq, ['vq', 'train', '--patches', join(OUT, 'patches'), '--k', String(size.K), '--steps', String(size.vqSteps), '--seed', String(seed), '--out', vq, '--quiet']);
const vqEval = step('vq-eval', vq, ['vq', 'eval', '--vq', vq, '--patches', join(OUT, 'patches-test'), '--quiet']);

// 4. Datasets: pretraining (captions + text) and SFT (questions), once per image tokenizer, one shared text tokenizer.
const data = (coder: 'codebook' | 'vq', stage: 'pretrain' | 'sft'): string => join(OUT, 'data', `${stage}-${coder}`);
const tokenizer = join(data('codebook', 'pretrain'), 'tokenizer.json');
for (const coder of ['codebook', 'vq'] as const) {
  for (const stage of ['pretrain', 'sft'] as const) {
    const first = coder === 'codebook' && stage === 'pretrain';
    const samples = stage === 'pretrain' ? ['--samples', join(bench, 'pretrain.jsonl'), '--text', 'moby-dick', '--text-docs', String(size.textDocs)] : ['--samples', join(bench, 'train.jsonl')];
    step(`data-${stage}-${coder}`, join(data(coder, stage), 'manifest.json'), [
      'data', 'build', '--out', data(coder, stage), '--image-tokenizer', coder === 'codebook' ? codebook : vq, ...samples,
      ...(first ? ['--train-tokenizer', String(size.textVocab)] : ['--tokenizer', tokenizer]),
      '--context', String(size.context), '--max-pixels', String(maxPixels), '--seed', String(seed), '--quiet',
    ]);
  }
}

// 5. Pretrain, then SFT from the pretrained weights: same steps, batch and seed for every variant.
const run = (variant: Variant, stage: 'pretrain' | 'sft'): string => join(OUT, 'runs', `${variant}-${stage}`);
const summaries: Record<string, Record<string, unknown>> = {};
for (const variant of VARIANTS) {
  const coder = variant === 'ar-vq' ? 'vq' : 'codebook';
  for (const stage of ['pretrain', 'sft'] as const) {
    const common = ['--config', join(ROOT, size.config), '--set', `variant=${variant}`, '--set', `stage=${stage}`, '--set', `data=${data(coder, stage)}`, '--set', `out=${run(variant, stage)}`, '--set', `batch_size=${size.batch}`, '--set', `seed=${seed}`, '--set', 'checkpoint_every=50'];
    const steps = stage === 'pretrain' ? size.pretrainSteps : size.sftSteps;
    const init = stage === 'sft' ? ['--set', `init=${join(run(variant, 'pretrain'), 'checkpoint')}`] : [];
    summaries[`${variant}-${stage}`] = step(`train-${variant}-${stage}`, join(run(variant, stage), 'summary.json'), ['train', ...common, '--set', `steps=${steps}`, ...init, '--resume', '--quiet']);
  }
}

// 6. Evaluation of the fine-tuned models on the held-out scenes.
interface TaskScore { n: number; accuracy: number; ci95: [number, number] }
const evals: Record<Variant, { tasks: Record<string, TaskScore>; overall: TaskScore; n: number }> = {} as never;
for (const variant of VARIANTS) {
  const ck = join(run(variant, 'sft'), 'checkpoint');
  evals[variant] = step(`eval-${variant}`, join(run(variant, 'sft'), `eval-test.png`), ['eval', '--checkpoint', ck, '--bench', bench, '--limit', String(size.evalLimit), '--seed', String(seed), '--quiet']) as never;
}

// The floor to compare with: answer every test item with its task's most frequent training answer.
const counts = new Map<string, Map<string, number>>();
for (const item of readBenchItems(bench, 'train')) {
  const m = counts.get(item.task) ?? new Map<string, number>();
  m.set(item.answer, (m.get(item.answer) ?? 0) + 1);
  counts.set(item.task, m);
}
const majorityAnswer = new Map([...counts].map(([task, m]) => [task, [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]![0]]));
const majority = await evaluateBench(bench, { split: 'test', limit: size.evalLimit, seed, answer: async (item) => majorityAnswer.get(item.task)! });

// 7. Report: curves, table, BENCHMARKS.md. Time: the sum of the steps' wall times, however many reruns it took.
const timings: Record<string, number> = {};
for (const f of readdirSync(join(OUT, 'steps')).filter((f) => f.endsWith('.seconds'))) timings[f.slice(0, -8)] = Number(readFileSync(join(OUT, 'steps', f), 'utf8'));
interface LogLine { step: number; loss: number; loss_text: number; loss_image: number | null; angle_deg: number | null }
const logOf = (variant: Variant, stage: string): LogLine[] =>
  readFileSync(join(run(variant, stage as 'pretrain'), 'log.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LogLine);
const smooth = (ys: number[], k = 10): number[] => ys.map((_, i) => {
  const w = ys.slice(Math.max(0, i - k + 1), i + 1).filter(Number.isFinite);
  return w.length ? w.reduce((a, b) => a + b, 0) / w.length : NaN;
});
const lossesPng = join(OUT, 'losses.png');
const colorOf = (v: Variant): string => PLOT_COLORS[VARIANTS.indexOf(v)]!;
await writeLinePlotPng(lossesPng, {
  title: `experiment (${opts.size}): training losses, moving average of 10 steps`,
  panels: [
    { title: 'pretrain: L_text', xLabel: 'step', yLabel: 'nats', series: VARIANTS.map((v) => ({ name: v, color: colorOf(v), x: logOf(v, 'pretrain').map((l) => l.step), y: smooth(logOf(v, 'pretrain').map((l) => l.loss_text)) })) },
    { title: 'pretrain: L_image', xLabel: 'step', yLabel: 'nats', series: (['uvu', 'ar-vq'] as const).map((v) => ({ name: v, color: colorOf(v), x: logOf(v, 'pretrain').map((l) => l.step), y: smooth(logOf(v, 'pretrain').map((l) => l.loss_image ?? NaN)) })) },
    { title: 'SFT: loss on answers', xLabel: 'step', yLabel: 'nats', series: VARIANTS.map((v) => ({ name: v, color: colorOf(v), x: logOf(v, 'sft').map((l) => l.step), y: smooth(logOf(v, 'sft').map((l) => l.loss_text)) })) },
    {
      title: 'pretrain: gradient angle θ(L_image, L_text)',
      xLabel: 'step',
      yLabel: 'degrees',
      series: (['uvu', 'ar-vq'] as const).map((v) => {
        const a = logOf(v, 'pretrain').filter((l) => l.angle_deg !== null);
        return { name: v, color: colorOf(v), x: a.map((l) => l.step), y: a.map((l) => l.angle_deg!) };
      }),
    },
  ],
});

const tasks = ['grounding', 'counting', 'spatial', 'existence'];
const pct = (s?: TaskScore): string => (s ? `${(100 * s.accuracy).toFixed(1)} [${(100 * s.ci95[0]).toFixed(1)}, ${(100 * s.ci95[1]).toFixed(1)}]` : '—');
const angle = (v: Variant): string => {
  const a = (summaries[`${v}-pretrain`]!.angle ?? null) as { meanDeg: number; firstDeg: number; lastDeg: number; n: number } | null;
  return a ? `${a.meanDeg.toFixed(1)}° (first ${a.firstDeg.toFixed(1)}°, last ${a.lastDeg.toFixed(1)}°, n = ${a.n})` : '—';
};
const finalLoss = (v: Variant, stage: string): string => {
  const s = summaries[`${v}-${stage}`]!.finalLoss as { text: number; image: number | null };
  return `${s.text.toFixed(3)}${s.image !== null ? ` / ${s.image.toFixed(3)}` : ''}`;
};
const report = {
  size: opts.size,
  seed,
  sizeSettings: size,
  codebook: { file: codebook, method: 'kmeans (k-means++ init)', K: size.K, test: codebookEval },
  vq: { file: vq, K: size.K, test: vqEval },
  runs: summaries,
  evals,
  majority: { answers: Object.fromEntries(majorityAnswer), tasks: majority.tasks, overall: majority.overall },
  timings,
  minutes: Object.values(timings).reduce((a, b) => a + b, 0) / 60,
};
writeFileAtomic(join(OUT, 'report.json'), JSON.stringify(report, null, 2) + '\n');
const num = (x: unknown): string => (typeof x === 'number' ? x.toFixed(4) : String(x));
const table = [
  `| configuration | ${tasks.join(' | ')} | overall | pretrain final loss text / image | gradient angle (pretrain) |`,
  `|---|${tasks.map(() => '---').join('|')}|---|---|---|`,
  ...VARIANTS.map((v) => `| ${v} | ${tasks.map((t) => pct(evals[v].tasks[t])).join(' | ')} | ${pct(evals[v].overall)} | ${finalLoss(v, 'pretrain')} | ${angle(v)} |`),
  `| majority answer of the train split (no model) | ${tasks.map((t) => pct(majority.tasks[t as keyof typeof majority.tasks])).join(' | ')} | ${pct(majority.overall)} | — | — |`,
].join('\n');
console.log(table);
console.log(`codebook PRP on test-scene patches ${num(codebookEval.prp)}, VQ-VAE PRP ${num(vqEval.prp)}; ${report.minutes.toFixed(1)} min`);

if (opts.write && opts.size === 'default') {
  const docs = join(ROOT, 'docs', 'experiment');
  mkdirSync(docs, { recursive: true });
  copyFileSync(lossesPng, join(docs, 'losses.png'));
  copyFileSync(join(run('uvu', 'sft'), 'eval-test.png'), join(docs, 'eval-uvu.png'));
  const total = Object.values(evals)[0]!.n;
  writeSection(
    'experiment',
    [
      '### experiment',
      '',
      `Command: \`npm run experiment\` (seed ${seed}) — measured ${new Date().toISOString().slice(0, 10)} in ${report.minutes.toFixed(0)} min on: ${machine()}.`,
      '',
      `Data: ${size.trainScenes} train / ${size.testScenes} test scenes (192×192, 36 patches each; backgrounds and object instances disjoint), ${total} test items scored per configuration (the first ${size.evalLimit}, scene by scene). Pretraining: captions of the train scenes + ${size.textDocs} Moby Dick chapters, ${size.pretrainSteps} steps; SFT: the train questions, ${size.sftSteps} steps; batch ${size.batch} × ${size.context} tokens; model \`${size.config}\` (${summaries['uvu-pretrain']!.parameters} parameters).`,
      '',
      `Image tokenizers (K = ${size.K}), measured on the test scenes' patches: pixel codebook (k-means, k-means++ init) PRP ${num(codebookEval.prp)}, PSNR ${num(codebookEval.psnr)} dB; VQ-VAE (${size.vqSteps} steps, 8-dim codes) PRP ${num(vqEval.prp)}, PSNR ${num(vqEval.psnr)} dB.`,
      '',
      'Accuracy in % with 95 % bootstrap intervals (greedy answers; grounding = IoU ≥ 0.5):',
      '',
      table,
      '',
      '![losses](docs/experiment/losses.png)',
    ].join('\n'),
  );
}
