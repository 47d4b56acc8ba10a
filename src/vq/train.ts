/**
 * Training the patch VQ-VAE (DESIGN.md §9) on a patch store with Adam:
 *   1. hold out `evalSize` patches (seeded) for the final metrics; batches never contain them;
 *   2. seed the codebook with k-means++ over encoder outputs of `initSample` training patches;
 *   3. each step: sample a batch (with replacement), forward, backprop through the
 *      straight-through estimator, Adam update (warmup + cosine schedule); count code usage;
 *   4. every `restartEvery` steps, codes unused since the last check are reset to random
 *      encoder outputs of the current batch (dead-code restarts);
 *   5. every `logEvery` steps, report interval means of the loss terms, perplexity, active
 *      codes and restarts; at the end, MSE / PSNR / PRP on the held-out patches.
 * Everything random draws from one seeded Rng, so a run is reproducible from its config.
 */
import { tf } from '../engine/tf.js';
import { PATCH_DIM, patchesToFloat } from '../patches/patchify.js';
import { PatchStore } from '../patches/store.js';
import { UvuError } from '../util/errors.js';
import { info, progress as progressBar } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { VqCoder } from './coder.js';
import { parseVqConfig, type VqConfig, type VqConfigInput } from './config.js';
import { perplexity, VqEvalAccumulator, type VqMetrics } from './eval.js';
import { saveVq } from './file.js';
import { PARAM_NAMES, randomWeights, VqModel } from './model.js';
import { AdamW, learningRate, type GradMap, type ScheduleConfig } from '../optim/adamw.js';

/** Learning-rate schedule: 2% linear warmup, then cosine decay to 10% of `lr`. */
const SCHEDULE: Omit<ScheduleConfig, 'lr'> = { warmup_frac: 0.02, min_lr_ratio: 0.1 };

/** Stores up to this size are read into memory once; larger ones are read batch by batch. */
const IN_MEMORY_BYTES = 256 * 2 ** 20;

export interface VqTrainOptions {
  /** Patch store folder. */
  patches: string;
  /** Config (validated; missing fields take their defaults). */
  config: VqConfigInput;
  /** Model file to write (.safetensors); none when omitted. */
  out?: string;
  /** Progress bar and interval log lines on stderr (default true). */
  progress?: boolean;
  /** Interval log lines as one JSON object each instead of text. */
  json?: boolean;
  /** Check each shard's sha256 before its first use (default true; the CLI's --no-verify). */
  verify?: boolean;
}

/** Means over one log interval. */
export interface VqIntervalStats {
  /** Last step of the interval (1-based). */
  step: number;
  loss: number;
  recon_mse: number;
  /** mean (z_e − e)² (the codebook and commitment terms have this same value). */
  commitment: number;
  /** exp(entropy) of the code histogram of the interval's batches. */
  perplexity: number;
  /** Codes chosen at least once during the interval. */
  active_codes: number;
  /** Dead codes reset during the interval. */
  restarts: number;
  seconds_per_step: number;
}

export interface VqTrainResult {
  model: VqModel;
  config: VqConfig;
  out?: string;
  /** Fingerprint of the patch store. */
  data: string;
  steps: number;
  seconds: number;
  seconds_per_step: number;
  /** Loss terms of the very first batch (before any update). */
  first: { loss: number; recon_mse: number; commitment: number };
  history: VqIntervalStats[];
  /** Held-out metrics of the trained model. */
  metrics: VqMetrics;
}

/** Loss terms and code statistics of one step. */
export interface StepResult {
  loss: number;
  recon: number;
  commit: number;
  /** Chosen code per patch [B]. */
  ids: Int32Array;
  /** Encoder outputs [B, codeDim] (before the update). */
  ze: Float32Array;
}

/** Adam (AdamW without decay) over the model's parameters, by parameter name. */
export function vqOptimizer(model: VqModel): AdamW {
  return new AdamW(new Map(PARAM_NAMES.map((n) => [n, model.vars[n]])), { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0 });
}

/** One optimizer step on x [B,3072] (unit floats) with learning rate lr. Leaves no tensors behind. */
export function trainStep(model: VqModel, optimizer: AdamW, x: tf.Tensor2D, lr: number): StepResult {
  let kept: tf.Tensor[] = [];
  const { value, grads } = tf.variableGrads(() => {
    const f = model.forward(x);
    kept = [f.recon, f.commit, f.ids, f.ze].map((t) => tf.keep(t));
    return f.total;
  }, model.variables());
  const byName: GradMap = new Map(PARAM_NAMES.map((n) => [n, grads[model.vars[n].name]!.dataSync() as Float32Array]));
  optimizer.step(byName, lr);
  const [recon, commit, ids, ze] = kept as [tf.Scalar, tf.Scalar, tf.Tensor1D, tf.Tensor2D];
  const out: StepResult = {
    loss: value.dataSync()[0]!,
    recon: recon.dataSync()[0]!,
    commit: commit.dataSync()[0]!,
    ids: Int32Array.from(ids.dataSync() as Int32Array),
    ze: Float32Array.from(ze.dataSync() as Float32Array),
  };
  tf.dispose([value, ...Object.values(grads), ...kept]);
  return out;
}

/**
 * k-means++ seeding (Arthur & Vassilvitskii 2007) of K centres from n points [n, C]: each next
 * centre is a point drawn with probability ∝ its squared distance to the nearest chosen centre.
 * When every point is already a centre (n < K or duplicates), the rest are uniform picks.
 */
export function kmeansPlusPlus(points: Float32Array, n: number, C: number, K: number, rng: Rng): Float32Array {
  const centres = new Float32Array(K * C);
  const dSq = new Float64Array(n).fill(Infinity); // distance² to the nearest chosen centre
  let pick = rng.int(n);
  for (let k = 0; k < K; k++) {
    centres.set(points.subarray(pick * C, (pick + 1) * C), k * C);
    let total = 0;
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let c = 0; c < C; c++) {
        const diff = points[i * C + c]! - centres[k * C + c]!;
        d += diff * diff;
      }
      if (d < dSq[i]!) dSq[i] = d;
      total += dSq[i]!;
    }
    if (total > 0) {
      let r = rng.next() * total;
      pick = n - 1;
      for (let i = 0; i < n; i++) {
        r -= dSq[i]!;
        if (r < 0) {
          pick = i;
          break;
        }
      }
    } else {
      pick = rng.int(n);
    }
  }
  return centres;
}

/**
 * Dead-code restarts: every code with usage[k] = 0 is moved onto the encoder output of a random
 * patch of the batch ze [B, C] (distinct patches while there are enough), so it is chosen at
 * least by that patch next time and starts receiving gradient. When the optimizer is given,
 * the Adam moments of those codes are zeroed too (their stale momentum would pull them away).
 * Returns the restarted code ids.
 */
export function restartDeadCodes(model: VqModel, usage: ArrayLike<number>, ze: Float32Array, B: number, rng: Rng, optimizer?: AdamW): number[] {
  const C = model.codeDim;
  const dead: number[] = [];
  for (let k = 0; k < model.K; k++) if (usage[k] === 0) dead.push(k);
  if (dead.length === 0) return dead;
  const codebook = model.codebook();
  const rows = rng.sampleIndices(B, Math.min(B, dead.length));
  dead.forEach((k, i) => {
    const row = i < rows.length ? rows[i]! : rng.int(B);
    codebook.set(ze.subarray(row * C, (row + 1) * C), k * C);
  });
  model.setCodebook(codebook);
  const m = optimizer?.m.get('codebook');
  const v = optimizer?.v.get('codebook');
  for (const k of dead) {
    m?.fill(0, k * C, (k + 1) * C);
    v?.fill(0, k * C, (k + 1) * C);
  }
  return dead;
}

/** Batch reader over a store: the whole store in memory when small, else reads per batch. */
class PatchSource {
  private readonly all: Uint8Array | null;
  constructor(private readonly store: PatchStore) {
    this.all = store.count * PATCH_DIM <= IN_MEMORY_BYTES ? store.readRange(0, store.count).patches : null;
  }
  read(indices: ArrayLike<number>): Uint8Array {
    if (!this.all) return this.store.readIndices(indices).patches;
    const out = new Uint8Array(indices.length * PATCH_DIM);
    for (let i = 0; i < indices.length; i++) {
      const j = indices[i]!;
      out.set(this.all.subarray(j * PATCH_DIM, (j + 1) * PATCH_DIM), i * PATCH_DIM);
    }
    return out;
  }
}

/** Train a VQ-VAE on a patch store; saves it to `out` when given. */
export async function trainVq(opts: VqTrainOptions): Promise<VqTrainResult> {
  const config = parseVqConfig(opts.config);
  const show = opts.progress !== false;
  const store = PatchStore.open(opts.patches, { verify: opts.verify ?? true });
  try {
    const count = store.count;
    if (count < 2) throw new UvuError(`${opts.patches}: the store holds ${count} patch(es); training needs at least 2 (one is held out)`);
    const rng = new Rng(config.seed);
    const source = new PatchSource(store);

    // 1. Held-out evaluation patches, never used in training batches.
    const evalN = Math.max(1, Math.min(config.evalSize, Math.floor(count / 4)));
    const evalIdx = rng.sampleIndices(count, evalN).sort();
    const heldOut = new Set(evalIdx);
    const drawTrainIndex = (): number => {
      for (;;) {
        const i = rng.int(count);
        if (!heldOut.has(i)) return i;
      }
    };

    // 2. Network with seeded weights; codebook seeded from encoder outputs of training patches.
    const model = new VqModel(config, randomWeights(config, rng));
    const initN = Math.min(Math.max(config.initSample, config.K), count - evalN);
    const initIdx = Array.from(rng.sampleIndices(count, Math.min(count, initN + evalN))).filter((i) => !heldOut.has(i)).slice(0, initN);
    const initZ = new VqCoder(model).embed(source.read(initIdx), initIdx.length);
    model.setCodebook(kmeansPlusPlus(initZ, initIdx.length, config.codeDim, config.K, rng));

    // 3–5. Training loop.
    const optimizer = vqOptimizer(model);
    const bar = show ? progressBar('vq train', config.steps, 'steps') : null;
    const logLines = show && !process.stderr.isTTY;
    const history: VqIntervalStats[] = [];
    const restartUsage = new Float64Array(config.K); // code counts since the last restart check
    const logUsage = new Float64Array(config.K); // code counts in the current log interval
    let sums = { loss: 0, recon: 0, commit: 0, steps: 0, restarts: 0 };
    let first: VqTrainResult['first'] | undefined;
    const batchIdx = new Uint32Array(config.batch);
    const t0 = performance.now();
    let tInterval = t0;
    for (let step = 1; step <= config.steps; step++) {
      for (let i = 0; i < config.batch; i++) batchIdx[i] = drawTrainIndex();
      const x = tf.tensor2d(patchesToFloat(source.read(batchIdx)), [config.batch, PATCH_DIM]);
      const s = trainStep(model, optimizer, x, learningRate(step - 1, config.steps, { ...SCHEDULE, lr: config.lr }));
      x.dispose();
      first ??= { loss: s.loss, recon_mse: s.recon, commitment: s.commit };
      for (const k of s.ids) {
        restartUsage[k]!++;
        logUsage[k]!++;
      }
      sums.loss += s.loss;
      sums.recon += s.recon;
      sums.commit += s.commit;
      sums.steps++;
      if (config.restartEvery > 0 && step % config.restartEvery === 0 && step < config.steps) {
        sums.restarts += restartDeadCodes(model, restartUsage, s.ze, config.batch, rng, optimizer).length;
        restartUsage.fill(0);
      }
      if (step % config.logEvery === 0 || step === config.steps) {
        const now = performance.now();
        let active = 0;
        for (const c of logUsage) if (c > 0) active++;
        const stats: VqIntervalStats = {
          step,
          loss: sums.loss / sums.steps,
          recon_mse: sums.recon / sums.steps,
          commitment: sums.commit / sums.steps,
          perplexity: perplexity(logUsage),
          active_codes: active,
          restarts: sums.restarts,
          seconds_per_step: (now - tInterval) / 1000 / sums.steps,
        };
        history.push(stats);
        if (logLines) info(opts.json ? JSON.stringify(stats) : formatInterval(stats, config.K));
        sums = { loss: 0, recon: 0, commit: 0, steps: 0, restarts: 0 };
        logUsage.fill(0);
        tInterval = now;
      }
      bar?.tick(1, `loss ${s.loss.toFixed(5)} recon ${s.recon.toFixed(5)}`);
      // Let the event loop breathe (signals, progress redraws) on long runs.
      if (step % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    bar?.stop();
    const seconds = (performance.now() - t0) / 1000;

    // Held-out metrics through the coder's u8 round trip, like the tokenizer will see it.
    const acc = new VqEvalAccumulator(new VqCoder(model));
    acc.add(source.read(evalIdx), evalN);
    const metrics = acc.result();
    model.meta = {
      data: store.fingerprint,
      metrics: { heldout: metrics, steps: config.steps, seconds_per_step: seconds / config.steps, last_interval: history[history.length - 1] },
    };
    if (opts.out) saveVq(opts.out, model);
    return { model, config, out: opts.out, data: store.fingerprint, steps: config.steps, seconds, seconds_per_step: seconds / config.steps, first: first!, history, metrics };
  } finally {
    store.close();
  }
}

/** One human-readable log line for an interval. */
export function formatInterval(s: VqIntervalStats, K: number): string {
  return `step ${s.step}: loss ${s.loss.toExponential(4)} recon ${s.recon_mse.toExponential(4)} commit ${s.commitment.toExponential(3)} perplexity ${s.perplexity.toFixed(1)} active ${s.active_codes}/${K} restarts ${s.restarts} (${(1000 * s.seconds_per_step).toFixed(1)} ms/step)`;
}
