/** `uvu codebook build|eval`. */
import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { buildKmeansCodebook } from '../codebook/build.js';
import { loadCodebook, saveCodebook } from '../codebook/file.js';
import { MetricsAccumulator, type CodebookMetrics } from '../codebook/metrics.js';
import { PatchStore } from '../patches/store.js';
import { loadImage } from '../image/io.js';
import { patchify } from '../patches/patchify.js';
import { gridPositions } from '../tokens/tokenize.js';
import { info, progress } from '../util/progress.js';
import { UsageError } from '../util/errors.js';
import { applyOutputOptions, emit, fmt, parseNonNegative, parsePositiveInt, parseSeed, withOutputOptions, type OutputOptions } from './common.js';

/** Evaluation patches per batch (bounds memory: batch·D·4 bytes of float scratch). */
const EVAL_BATCH = 4096;

export function codebookCommand(): Command {
  const cmd = new Command('codebook').description('build and evaluate pixel codebooks');

  withOutputOptions(
    cmd
      .command('build')
      .description('cluster patches of a store into a K-entry codebook (safetensors)')
      .requiredOption('--patches <dir>', 'patch store to train on')
      .requiredOption('--size <K>', 'codebook size K', parsePositiveInt)
      .addOption(new Option('--method <name>', 'clustering method').choices(['kmeans']).default('kmeans'))
      .option('--iters <n>', 'k-means iterations', parsePositiveInt, 25)
      .option('--seed <s>', 'random seed', parseSeed, 1234)
      .option('--sample <n>', 'training patches to draw from the store (default: all, at most 256·K)', parsePositiveInt)
      .addOption(new Option('--init <how>', 'centre initialisation').choices(['random', 'kmeans++']).default('random'))
      .addOption(new Option('--pe <type>', 'positional encoding before clustering').choices(['none', '1d-sincos', '2d-sincos']).default('none'))
      .option('--pe-scale <lambda>', 'scale λ of the positional encoding', parseNonNegative, 0.1)
      .requiredOption('--out <file>', 'codebook file to write (.safetensors)'),
  ).action((o: OutputOptions & { patches: string; size: number; method: 'kmeans'; iters: number; seed: number; sample?: number; init: 'random' | 'kmeans++'; pe: 'none' | '1d-sincos' | '2d-sincos'; peScale: number; out: string }) => {
    applyOutputOptions(o);
    const bar = progress('k-means', o.iters, 'iters');
    const t0 = performance.now();
    const cb = buildKmeansCodebook(
      o.patches,
      { method: o.method, size: o.size, iters: o.iters, seed: o.seed, sample: o.sample, init: o.init, pe: { type: o.pe, scale: o.pe === 'none' ? 0 : o.peScale } },
      (s) => {
        bar.tick();
        if (!process.stderr.isTTY) info(`iter ${s.iter}: objective ${s.objective.toPrecision(7)} mse ${s.mse.toExponential(4)} imbalance ${s.imbalance.toFixed(3)} splits ${s.nsplit} (${s.seconds.toFixed(2)} s)`);
      },
    );
    bar.stop();
    saveCodebook(o.out, cb);
    const seconds = (performance.now() - t0) / 1000;
    const result = { out: o.out, k: cb.K, method: o.method, pe: cb.pe, seconds, build: cb.build, metrics: cb.metrics };
    emit(o, result, () => `wrote ${o.out}: K = ${cb.K}, trained on ${cb.build.trained_on} patches, final mse ${fmt(cb.metrics.train_mse as number, 6)}, ${seconds.toFixed(1)} s`);
  });

  withOutputOptions(
    cmd
      .command('eval')
      .description('measure PRP, PSC, MSE, PSNR, R², utilization and cluster radii on a store or on images')
      .argument('<codebook>', 'codebook file')
      .option('--patches <dir>', 'evaluate on every patch of this store')
      .option('--images <paths...>', 'evaluate on the patches of these images')
      .option('--max-pixels <n>', 'resize policy for --images (w·h ≤ n)', parsePositiveInt, 512 * 512),
  ).action(async (file: string, o: OutputOptions & { patches?: string; images?: string[]; maxPixels: number }) => {
    applyOutputOptions(o);
    if (Boolean(o.patches) === Boolean(o.images)) throw new UsageError('codebook eval: give exactly one of --patches DIR or --images PATHS...');
    const cb = loadCodebook(file);
    const metrics = o.patches ? evalOnStore(cb, o.patches) : await evalOnImages(cb, o.images!, o.maxPixels);
    emit(o, { codebook: file, ...metrics }, () => formatMetrics(metrics));
  });

  return cmd;
}

function evalOnStore(cb: ReturnType<typeof loadCodebook>, dir: string): CodebookMetrics {
  const store = PatchStore.open(dir);
  const acc = new MetricsAccumulator(cb);
  const bar = progress('eval', store.count, 'patches');
  for (const batch of store.scan(EVAL_BATCH)) {
    const n = batch.meta.row.length;
    acc.add(batch.patches, n, batch.meta);
    bar.tick(n);
  }
  bar.stop();
  return acc.result();
}

async function evalOnImages(cb: ReturnType<typeof loadCodebook>, paths: string[], maxPixels: number): Promise<CodebookMetrics> {
  for (const p of paths) if (!existsSync(p)) throw new UsageError(`${p}: no such file`);
  const acc = new MetricsAccumulator(cb);
  const bar = progress('eval', paths.length, 'images');
  for (const p of paths) {
    const img = await loadImage(p, { maxPixels });
    const { patches, rows, cols } = patchify(img);
    acc.add(patches, rows * cols, gridPositions(rows, cols));
    bar.tick();
  }
  bar.stop();
  return acc.result();
}

export function formatMetrics(m: CodebookMetrics): string {
  return [
    `patches     ${m.m}`,
    `PRP         ${fmt(m.prp)}  (1 − MSE/σ²_max, σ²_max = ${fmt(m.sigma2_max, 5)})`,
    `PSC         ${m.psc.toExponential(4)}`,
    `MSE         ${m.mse.toExponential(4)}  per element, pixels in [0,1]`,
    `PSNR        ${fmt(m.psnr, 2)} dB`,
    `R²          ${fmt(m.r2)}`,
    `utilization ${fmt(m.utilization)}  (${m.k_active} of ${m.k} codes used)`,
    `radius q10/q50/q90  ${fmt(m.radius_q10)} / ${fmt(m.radius_q50)} / ${fmt(m.radius_q90)}`,
  ].join('\n');
}
