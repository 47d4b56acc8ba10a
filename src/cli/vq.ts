/** `uvu vq train|eval`: the patch VQ-VAE of the AR+VQ baseline (DESIGN.md §9). */
import { Command } from 'commander';
import { PatchStore } from '../patches/store.js';
import { UsageError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { loadVqCoder } from '../vq/coder.js';
import { parseVqConfig, type VqConfigInput } from '../vq/config.js';
import { evalVqOnStore, type VqMetrics } from '../vq/eval.js';
import { trainVq } from '../vq/train.js';
import { applyOutputOptions, checkOutputPath, emit, fmt, parseNonNegative, parseNonNegativeInt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';
import { initEngine } from '../engine/tf.js';


interface TrainFlags extends OutputOptions {
  patches: string;
  /** false with --no-verify. */
  verify: boolean;
  out: string;
  k?: number;
  dim?: number;
  hidden?: number;
  steps?: number;
  batch?: number;
  lr?: number;
  seed?: number;
  beta?: number;
  restartEvery?: number;
  logEvery?: number;
  evalSize?: number;
}

export function vqCommand(): Command {
  const cmd = new Command('vq');

  withOutputOptions(
    cmd
      .command('train')
      .description('train a patch VQ-VAE (encoder → nearest of K codes → decoder) on a patch store; writes safetensors')
      .requiredOption('--patches <dir>', 'patch store to train on')
      .requiredOption('--out <file>', 'model file to write (.safetensors)')
      .option('--k <K>', 'number of codes (default 1024)', parsePositiveInt)
      .option('--dim <n>', 'code dimension (default 8)', parsePositiveInt)
      .option('--hidden <n>', 'hidden width of encoder and decoder (default 256)', parsePositiveInt)
      .option('--steps <n>', 'optimizer steps (default 2000)', parsePositiveInt)
      .option('--batch <n>', 'patches per step (default 256)', parsePositiveInt)
      .option('--lr <x>', 'Adam learning rate (default 1e-3)', parseNonNegative)
      .option('--beta <x>', 'commitment weight β (default 0.25)', parseNonNegative)
      .option('--restart-every <n>', 'dead-code restart period in steps, 0 = never (default 100)', parseNonNegativeInt)
      .option('--log-every <n>', 'steps per log interval (default 100)', parsePositiveInt)
      .option('--eval-size <n>', 'held-out patches for the final metrics (default 4096)', parsePositiveInt)
      .option('--seed <s>', 'random seed (default 1234)', parseNonNegativeInt)
      .option('--no-verify', "skip the sha256 check of the store's shards"),
  ).action(async (o: TrainFlags) => {
    applyOutputOptions(o);
    await initEngine();
    const given: VqConfigInput = {
      K: o.k,
      codeDim: o.dim,
      hidden: o.hidden,
      steps: o.steps,
      batch: o.batch,
      lr: o.lr,
      beta: o.beta,
      restartEvery: o.restartEvery,
      logEvery: o.logEvery,
      evalSize: o.evalSize,
      seed: o.seed,
    };
    // Validate every flag before opening the store (zod defaults fill what was not given).
    const config = parseVqConfig(Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)), 'vq train');
    checkOutputPath(o.out);
    const store = PatchStore.open(o.patches);
    const count = store.count;
    store.close();
    if (config.K > count) throw new UsageError(`vq train: --k ${config.K} is larger than the ${count} patches of ${o.patches}`);
    const r = await trainVq({ patches: o.patches, config, out: o.out, json: o.json, verify: o.verify });
    const last = r.history[r.history.length - 1]!;
    const result = { out: o.out, config: r.config, data: r.data, steps: r.steps, seconds: r.seconds, seconds_per_step: r.seconds_per_step, first: r.first, last_interval: last, heldout: r.metrics, history: r.history };
    emit(o, result, () =>
      [`wrote ${o.out}: K = ${r.config.K}, code dim ${r.config.codeDim}, hidden ${r.config.hidden}, ${r.steps} steps in ${r.seconds.toFixed(1)} s (${(1000 * r.seconds_per_step).toFixed(1)} ms/step)`,
        `recon MSE ${r.first.recon_mse.toExponential(3)} → ${last.recon_mse.toExponential(3)} (train), ${last.restarts} restarts in the last interval`,
        `held-out (${r.metrics.m} patches):`,
        formatVqMetrics(r.metrics)].join('\n'),
    );
  });

  withOutputOptions(
    cmd
      .command('eval')
      .description('reconstruct patches through the VQ-VAE: MSE, PSNR, PRP (DESIGN §4), R², active codes')
      .requiredOption('--vq <file>', 'VQ-VAE model file')
      .requiredOption('--patches <dir>', 'patch store to evaluate on')
      .option('--sample <n>', 'evaluate on n random patches (default: every patch)', parsePositiveInt)
      .option('--seed <s>', 'seed for --sample', parseNonNegativeInt, 0)
      .option('--no-verify', "skip the sha256 check of the store's shards"),
  ).action(async (o: OutputOptions & { vq: string; patches: string; sample?: number; seed: number; verify: boolean }) => {
    applyOutputOptions(o);
    await initEngine();
    const coder = loadVqCoder(o.vq);
    const store = PatchStore.open(o.patches, { verify: o.verify });
    try {
      if (o.sample !== undefined && o.sample > store.count) throw new UsageError(`vq eval: --sample ${o.sample} is larger than the ${store.count} patches of ${o.patches}`);
      const bar = progress('vq eval', o.sample ?? store.count, 'patches');
      const metrics = evalVqOnStore(coder, store, { sample: o.sample, seed: o.seed }, (n) => bar.tick(n));
      bar.stop();
      emit(o, { vq: o.vq, patches: o.patches, ...metrics }, () => formatVqMetrics(metrics));
    } finally {
      store.close();
      coder.dispose();
    }
  });

  return cmd;
}

export function formatVqMetrics(m: VqMetrics): string {
  return [
    `patches     ${m.m}`,
    `PRP         ${fmt(m.prp)}  (1 − MSE/σ²_max, σ²_max = ${fmt(m.sigma2_max, 5)})`,
    `MSE         ${m.mse.toExponential(4)}  per element, pixels in [0,1]`,
    `PSNR        ${fmt(m.psnr, 2)} dB`,
    `R²          ${fmt(m.r2)}`,
    `codes       ${m.k_active} of ${m.k} used (utilization ${fmt(m.utilization)}, perplexity ${m.perplexity.toFixed(1)})`,
  ].join('\n');
}
