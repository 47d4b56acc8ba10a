/**
 * The training loop, top to bottom (train(), then one function per part):
 *
 *   openRun      model + optimizer: resumed from the checkpoint (its recorded config must match:
 *                checkResumeConfig), initialised from `init`, or fresh; the memory a step needs
 *                passes the allocation limit first (checkTrainMemory)
 *   replayLog    a resumed run keeps the log lines of the steps before its resume point
 *   for step in [start, steps), until opts.signal aborts:
 *     trainStep
 *       batch      ← dataset.batch(train, step)            deterministic in (seed, step): resumable
 *       targets    ← DESIGN §6 targets and masks for the stage
 *       imageMask  ← long-tail balanced sampling (DESIGN §7), pretrain only
 *       grads      ← ∇(w_img·L_image + w_text·L_text) (jointGrads): by the tape-free step
 *                    (c.step = buffers, model/train-step.ts) or on the tfjs tape (c.step = tape);
 *                    every `angle_every` steps the two losses are differentiated separately and
 *                    their angle over shared weights logged (splitGrads, DESIGN §8)
 *       clip, AdamW with warmup + cosine learning rate
 *     log.jsonl, progress bar; saveProgress (log, then checkpoint) every `checkpoint_every` steps
 *   saveProgress at the end, or where the run was stopped
 *   summarize    validation loss, curves.png (losses and gradient angle) and summary.json
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { tf, requireEngine } from '../engine/tf.js';
import { balanceImageTargets, codeProbabilities } from '../data/balance.js';
import { SeqDataset, type Batch } from '../data/dataset.js';
import { buildTargets } from '../data/targets.js';
import { sampleStarts } from '../data/pack.js';
import { UvuModel, type ModelInputs } from '../model/model.js';
import { TrainStep } from '../model/train-step.js';
import type { ModelConfig } from '../model/config.js';
import type { Vocab } from '../tokens/vocab.js';
import { UvuError } from '../util/errors.js';
import { parseJsonLine, parseOrFail } from '../util/fsio.js';
import { checkAlloc } from '../util/limits.js';
import { writeFileAtomic } from '../util/atomic.js';
import { info, progress } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { writeLinePlotPng } from '../util/plot.js';
import { findCheckpoint, loadCheckpoint, saveCheckpoint, type CheckpointState, type DataFacts } from './checkpoint.js';
import { configSource, effectiveWeights, TrainConfigSchema, type TrainConfig } from './config.js';
import { combineGrads, gradientAngle, lossGrads } from './grads.js';
import { supervisedCounts, unifiedLoss, type LossTargets, type LossWeights } from './loss.js';
import { AdamW, clipGradients, learningRate, type GradMap } from '../optim/adamw.js';

/** One line of log.jsonl. */
export interface StepLog {
  step: number;
  lr: number;
  loss: number;
  loss_image: number | null;
  loss_text: number;
  grad_norm: number;
  /** Supervised positions this step. */
  n_image: number;
  n_text: number;
  tokens: number;
  tokens_per_s: number;
  /** Balanced sampling (DESIGN §7): share of image targets kept, supervised-id entropy in bits before/after. */
  kept_fraction: number | null;
  entropy_before: number | null;
  entropy_after: number | null;
  /** Gradient angle in degrees between ∇L_image and ∇L_text over shared weights (DESIGN §8). */
  angle_deg: number | null;
}

export interface TrainSummary {
  out: string;
  variant: TrainConfig['variant'];
  stage: TrainConfig['stage'];
  steps: number;
  resumedFrom: number;
  parameters: number;
  seconds: number;
  tokensPerSecond: number;
  finalLoss: { total: number; image: number | null; text: number };
  val: { total: number; image: number | null; text: number } | null;
  angle: { n: number; meanDeg: number; firstDeg: number; lastDeg: number } | null;
  balance: { meanKeptFraction: number; meanEntropyBefore: number; meanEntropyAfter: number } | null;
  checkpoint: string;
  log: string;
  plot: string;
}

export interface TrainOptions {
  /** Continue from `out`/checkpoint when it exists (a fresh start otherwise). */
  resume?: boolean;
  /** Check every dataset shard's sha256 when the dataset is opened (default true; `--no-verify`). */
  verify?: boolean;
  /** Called after every step (tests, the demo). */
  onStep?: (log: StepLog) => void;
  /**
   * Stop early: checked between steps. Once aborted, the run finishes the step in progress,
   * writes its checkpoint and log as at any interruption point, and returns (no validation
   * loss); `resume: true` continues from there.
   */
  signal?: AbortSignal;
}

/** Check the dataset against the run before any work: coder kind, vocabulary, context. */
function checkData(c: TrainConfig, ds: SeqDataset, model: UvuModel, source: string): void {
  const kind = ds.manifest.imageCoder.kind;
  if (c.variant === 'uvu' && kind !== 'codebook') throw new UvuError(`${c.data}: variant uvu needs a dataset built with a pixel codebook, this one uses a ${kind} image coder`);
  if (c.variant === 'ar-vq' && kind !== 'vq') throw new UvuError(`${c.data}: variant ar-vq needs a dataset built with a VQ-VAE, this one uses a ${kind} image coder`);
  const v = ds.vocab();
  if (v.K !== model.vocab.K || v.textSize !== model.vocab.textSize) {
    throw new UvuError(`${source}: vocabulary (text ${model.vocab.textSize}, K ${model.vocab.K}) does not match dataset ${c.data} (text ${v.textSize}, K ${v.K})`);
  }
  if (ds.manifest.contextLength > model.config.text_config.max_position_embeddings) {
    throw new UvuError(`${c.data}: context length ${ds.manifest.contextLength} exceeds the model's max_position_embeddings ${model.config.text_config.max_position_embeddings}`);
  }
}

/**
 * Refuse a run whose step would not fit the allocation limit, before anything is allocated. The
 * estimate: logits (batch_size × context × vocabulary) and attention scores (batch_size × heads ×
 * context²) in f32, plus every parameter with its gradient and two AdamW moments (4 × f32).
 */
export function checkTrainMemory(c: TrainConfig, config: ModelConfig, vocab: Vocab, T: number): void {
  const params = new UvuModel(config, vocab).paramShapes().reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
  const B = c.batch_size;
  const H = config.text_config.num_attention_heads;
  const bytes = 4 * (B * T * vocab.size + B * H * T * T) + 16 * params;
  const what = `batch_size ${B} × context ${T} × vocabulary ${vocab.size} logits and ${H}-head attention scores (f32), plus ${params.toLocaleString('en-US')} parameters with gradients and AdamW moments,`;
  checkAlloc(configSource(c), what, bytes);
}

/**
 * Fields of a run's config that a resume may change: how long it runs (`steps`: the learning-rate
 * schedule then spans the new total), when it checkpoints, evaluates or measures the gradient
 * angle, the engine, the step implementation (`step`), where it writes, and `init` (used only at
 * step 0). Every other field defines the data order or the optimization and must equal the
 * checkpoint's recorded one. A different `engine`, `step` or `angle_every` changes results only by
 * floating-point rounding.
 */
export const RESUMABLE_FIELDS: readonly string[] = ['steps', 'checkpoint_every', 'eval_every', 'eval_batches', 'angle_every', 'engine', 'step', 'out', 'init'];

/** Leaf paths where `a` and `b` differ, with both values ("seed (1 → 2)"). */
function differences(a: unknown, b: unknown, path: string[] = []): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => (path.length === 0 && RESUMABLE_FIELDS.includes(k) ? [] : differences(a[k], b[k], [...path, k])));
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const show = (x: unknown): string => (x === undefined ? 'unset' : (JSON.stringify(x) ?? String(x)).slice(0, 40));
  return [`${path.join('.')} (${show(a)} → ${show(b)})`];
}

/**
 * A resume must continue the recorded run: its config (except RESUMABLE_FIELDS) and the dataset's
 * facts (image coder, context, resize policy) must equal the checkpoint's; a difference is refused
 * with every differing field named.
 */
function checkResumeConfig(c: TrainConfig, state: CheckpointState, ckptDir: string, data: DataFacts): void {
  const statePath = join(ckptDir, 'state.json');
  const recorded = parseOrFail(TrainConfigSchema, state.trainConfig, `${statePath}: recorded trainConfig`);
  const diffs = differences(recorded, c);
  diffs.push(...differences(state.data, data).map((d) => `dataset ${d}`));
  if (diffs.length) {
    throw new UvuError(`${statePath}: --resume with a config or dataset that differs from the checkpoint's: ${diffs.join(', ')}; these change the data order or the optimization (only ${RESUMABLE_FIELDS.join(', ')} may change): use the recorded values, or train into a new out directory`);
  }
}

/** Targets of one batch for the run's stage, balanced when the run asks for it. */
function batchTargets(c: TrainConfig, ds: SeqDataset, batch: Batch, step: number, p: Float64Array | null, w: LossWeights): { t: LossTargets; balance: ReturnType<typeof balanceImageTargets>['stats'] | null } {
  const vocab = ds.vocab();
  const t = buildTargets(batch, vocab, c.stage);
  if (!p || w.image === 0 || !c.balance.enabled || supervisedCounts(t).image === 0) return { t, balance: null };
  // A fresh generator per step keeps balanced sampling reproducible across --resume.
  const rng = new Rng((c.seed * 1_000_003 + step * 7919 + 17) >>> 0);
  const b = balanceImageTargets(t.targets, t.imageMask, p, vocab.imageOffset, rng, { qLo: c.balance.q_lo, qHi: c.balance.q_hi, budgetFraction: c.balance.budget_fraction });
  return { t: { ...t, imageMask: b.imageMask }, balance: b.stats };
}

/** Mean losses over the first `batches` validation batches (no gradients). */
export function evaluateLoss(model: UvuModel, ds: SeqDataset, c: TrainConfig, batches: number): { total: number; image: number | null; text: number } | null {
  if (ds.rows('val') === 0 || batches === 0) return null;
  const w = effectiveWeights(c);
  let sumI = 0;
  let sumT = 0;
  let nI = 0;
  let nT = 0;
  for (let i = 0; i < batches; i++) {
    const batch = packedInputs(ds.batch('val', i, c.batch_size, c.seed));
    const t = buildTargets(batch, ds.vocab(), c.stage);
    const counts = supervisedCounts(t);
    const [li, lt] = tf.tidy(() => {
      const parts = unifiedLoss(model, batch, t, { image: w.image > 0 ? 1 : 0, text: 1 });
      return [parts.image.dataSync()[0]!, parts.text.dataSync()[0]!];
    });
    if (w.image > 0 && counts.image > 0) {
      sumI += li * counts.image;
      nI += counts.image;
    }
    if (counts.text > 0) {
      sumT += lt * counts.text;
      nT += counts.text;
    }
  }
  const image = nI > 0 ? sumI / nI : null;
  const text = nT > 0 ? sumT / nT : 0;
  return { total: w.text * text + w.image * (image ?? 0), image, text };
}

/**
 * Train (or resume) the run `c` describes; returns its summary (also written to summary.json).
 * The engine must be started (initEngine) first.
 */
export async function train(c: TrainConfig, opts: TrainOptions = {}): Promise<TrainSummary> {
  requireEngine('train', c.engine);
  const run = openRun(c, opts.resume === true, opts.verify);
  const logs = replayLog(run.logPath, run.start);

  const bar = progress(`train ${c.variant}/${c.stage}`, c.steps, 'steps');
  bar.set(run.start);
  const t0 = Date.now();
  let tokensDone = 0;
  let step = run.start;
  while (step < c.steps && !opts.signal?.aborted) {
    const log = trainStep(run, step);
    step++;
    tokensDone += log.tokens;
    logs.push(log);
    opts.onStep?.(log);
    bar.tick(1, `loss ${log.loss.toFixed(3)} | ${Math.round((tokensDone / Math.max(1, Date.now() - t0)) * 1000)} tok/s`);
    // A step is synchronous: let pending events (a SIGINT that aborts the signal) run between steps.
    if (opts.signal) await new Promise<void>((resolve) => setImmediate(resolve));
    // The last step's checkpoint (at the end or when stopped) is written after the loop.
    if (step % c.checkpoint_every === 0 && step < c.steps && !opts.signal?.aborted) saveProgress(run, step, logs);
  }
  bar.stop();
  saveProgress(run, step, logs);

  const seconds = (Date.now() - t0) / 1000;
  const summary = await summarize(run, logs, step, tokensDone, seconds);
  run.model.dispose();
  return summary;
}

/** A run being trained: its paths, data, model and optimizer, and what every step needs. */
interface Run {
  c: TrainConfig;
  out: string;
  ckptDir: string;
  logPath: string;
  ds: SeqDataset;
  /** Loss weights of the stage. */
  w: LossWeights;
  model: UvuModel;
  optimizer: AdamW;
  /** First step of this invocation (the checkpoint's step when resuming, else 0). */
  start: number;
  tokenizerJson: string;
  data: DataFacts;
  /** Supervised-code probabilities for balanced sampling; null when the run does not balance. */
  p: Float64Array | null;
  /** Parameters both losses reach, over which the gradient angle is measured. */
  shared: string[];
  /** The tape-free step and its gradient buffers (c.step = 'buffers'); null on the tape. */
  buffers: StepBuffers | null;
}

/**
 * The tape-free step (src/model/train-step.ts) of a run and its gradient buffers, allocated once
 * and zeroed before each use: the joint gradient, and ∇L_image, ∇L_text for the angle steps.
 */
interface StepBuffers {
  step: TrainStep;
  joint: GradSets;
  image: GradSets;
  text: GradSets;
}

/**
 * One set of gradient arrays, seen whole or without the vision tower: a batch without images
 * leaves the vision parameters without a gradient, which AdamW then skips, as on the tape.
 */
interface GradSets {
  all: GradMap;
  noVision: GradMap;
}

function gradSets(model: UvuModel): GradSets {
  const all: GradMap = new Map([...model.params].map(([name, v]) => [name, new Float32Array(v.size)]));
  return { all, noVision: new Map([...all].filter(([name]) => !name.startsWith('visual.'))) };
}

/** The zeroed gradient arrays of a batch (with or without images). */
function zeroed(sets: GradSets, hasImages: boolean): GradMap {
  const g = hasImages ? sets.all : sets.noVision;
  for (const a of g.values()) a.fill(0);
  return g;
}

function stepBuffers(model: UvuModel): StepBuffers {
  return { step: new TrainStep(model), joint: gradSets(model), image: gradSets(model), text: gradSets(model) };
}

/**
 * Open the run: model and optimizer resumed from `out`/checkpoint, initialised from `c.init`,
 * or fresh; both checked against the dataset before the output directory is created.
 */
function openRun(c: TrainConfig, resume: boolean, verify?: boolean): Run {
  const out = resolve(c.out);
  const ckptDir = join(out, 'checkpoint');
  const ds = SeqDataset.open(c.data, { verify });
  const w = effectiveWeights(c);
  let model: UvuModel;
  let optimizer: AdamW;
  let start = 0;
  let tokenizerJson: string;
  const data: DataFacts = { imageCoder: ds.manifest.imageCoder, maxPixels: ds.manifest.images.maxPixels, contextLength: ds.manifest.contextLength };
  const found = resume ? findCheckpoint(ckptDir) : null;
  if (resume && found === null && existsSync(ckptDir)) throw new UvuError(`${ckptDir}: not a checkpoint (no state.json): cannot resume from it; remove it to start the run over`);
  if (found !== null) {
    const ck = loadCheckpoint(ckptDir, { withOptimizer: true });
    model = ck.model;
    try {
      checkResumeConfig(c, ck.state, found, data);
      checkData(c, ds, model, found);
      checkTrainMemory(c, model.config, model.vocab, ds.T);
    } catch (err) {
      model.dispose();
      throw err;
    }
    optimizer = new AdamW(model.params, c.optim);
    optimizer.loadState(ck.optimizer!);
    start = ck.state.step;
    tokenizerJson = ck.tokenizerJson;
    info(`resuming ${out} at step ${start}`);
  } else {
    if (c.init) {
      model = loadCheckpoint(c.init).model;
      checkData(c, ds, model, c.init);
      checkTrainMemory(c, model.config, model.vocab, ds.T);
    } else {
      checkTrainMemory(c, c.model, ds.vocab(), ds.T);
      model = UvuModel.init(c.model, ds.vocab(), c.seed);
      checkData(c, ds, model, 'config');
    }
    optimizer = new AdamW(model.params, c.optim);
    tokenizerJson = readFileSync(join(c.data, 'tokenizer.json'), 'utf8');
  }
  mkdirSync(out, { recursive: true });
  const p = w.image > 0 && c.balance.enabled ? codeProbabilities(ds.codeCounts()) : null;
  const buffers = c.step === 'buffers' ? stepBuffers(model) : null;
  return { c, out, ckptDir, logPath: join(out, 'log.jsonl'), ds, w, model, optimizer, start, tokenizerJson, data, p, shared: model.sharedParamNames(), buffers };
}

/** One line of log.jsonl as read back on resume (numbers may be null: JSON writes NaN/∞ as null). */
const num = z.number().nullable();
export const StepLogSchema = z.object({
  step: z.number().int().nonnegative(),
  lr: num,
  loss: num,
  loss_image: num,
  loss_text: num,
  grad_norm: num,
  n_image: num,
  n_text: num,
  tokens: num,
  tokens_per_s: num,
  kept_fraction: num,
  entropy_before: num,
  entropy_after: num,
  angle_deg: num,
});

/** The log so far: the lines of steps before `start`, so a resumed run's log has no duplicates. */
function replayLog(logPath: string, start: number): StepLog[] {
  const logs: StepLog[] = [];
  if (start > 0 && existsSync(logPath)) {
    readFileSync(logPath, 'utf8').split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      const raw = parseJsonLine(line, `${logPath}: line ${i + 1}`, 'a damaged log: remove that line to resume');
      parseOrFail(StepLogSchema, raw, `${logPath}: line ${i + 1}`);
      // The line as written (not zod's copy), so a resumed run rewrites it byte for byte.
      const l = raw as StepLog;
      if (l.step < start) logs.push(l);
    });
  }
  return logs;
}

/** A batch as model inputs: attention and positions restart at each packed sample (pack.ts). */
function packedInputs(batch: Batch): Batch & ModelInputs {
  return { ...batch, sampleStart: sampleStarts(batch.flags, batch.B, batch.T) };
}

/** One optimizer step on training batch `step`: targets, gradients, clip, AdamW update; returns its log line. */
function trainStep(run: Run, step: number): StepLog {
  const { c, ds, w } = run;
  const ts = Date.now();
  const batch = packedInputs(ds.batch('train', step, c.batch_size, c.seed));
  const { t, balance } = batchTargets(c, ds, batch, step, run.p, w);
  const counts = supervisedCounts(t);
  const lr = learningRate(step, c.steps, c.optim);
  const measureAngle = c.angle_every > 0 && step % c.angle_every === 0 && w.image > 0 && counts.image > 0 && counts.text > 0;
  const g = measureAngle ? splitGrads(run, batch, t) : jointGrads(run, batch, t, counts.image > 0);
  const gradNorm = clipGradients(g.grads, c.optim.grad_clip);
  run.optimizer.step(g.grads, lr);
  const loss = w.text * g.lossText + w.image * (g.lossImage ?? 0);
  if (!Number.isFinite(loss)) throw new UvuError(`${run.out}: loss became ${loss} at step ${step}; lower optim.lr (the last checkpoint is intact)`);
  const tokens = batch.B * batch.T;
  return {
    step,
    lr,
    loss,
    loss_image: g.lossImage,
    loss_text: g.lossText,
    grad_norm: gradNorm,
    n_image: counts.image,
    n_text: counts.text,
    tokens,
    tokens_per_s: tokens / Math.max(1e-3, (Date.now() - ts) / 1000),
    kept_fraction: balance?.keptFraction ?? null,
    entropy_before: balance?.entropyBefore ?? null,
    entropy_after: balance?.entropyAfter ?? null,
    angle_deg: g.angleDeg,
  };
}

/** Gradients of one step, the losses they came from, and the gradient angle when it was measured. */
interface StepGrads {
  grads: GradMap;
  lossImage: number | null;
  lossText: number;
  angleDeg: number | null;
}

/** ∇(w_img·L_image + w_text·L_text) in one backward pass. */
function jointGrads(run: Run, batch: Batch, t: LossTargets, hasImage: boolean): StepGrads {
  const { model, w, buffers } = run;
  if (buffers) {
    const grads = zeroed(buffers.joint, batch.images.length > 0);
    const losses = buffers.step.forward(batch, t, w);
    buffers.step.backward(grads, w);
    return { grads, lossImage: w.image > 0 && hasImage ? losses.image : null, lossText: losses.text, angleDeg: null };
  }
  let li = 0;
  let lt = 0;
  const g = lossGrads(model, () => {
    const parts = unifiedLoss(model, batch, t, w);
    li = parts.image.dataSync()[0]!;
    lt = parts.text.dataSync()[0]!;
    return parts.total;
  });
  return { grads: g.grads, lossImage: w.image > 0 && hasImage ? li : null, lossText: lt, angleDeg: null };
}

/**
 * ∇L_image and ∇L_text in two backward passes over the same batch (on the tape, two forwards; the
 * tape-free step runs one forward for both), and the angle between them over shared weights
 * (DESIGN §8). Their weighted sum is exactly ∇L, so the update is unchanged.
 */
function splitGrads(run: Run, batch: Batch, t: LossTargets): StepGrads {
  const { model, w, buffers } = run;
  if (buffers) {
    const withImages = batch.images.length > 0;
    const gi = zeroed(buffers.image, withImages);
    const gt = zeroed(buffers.text, withImages);
    const losses = buffers.step.forward(batch, t, w);
    buffers.step.backward(gi, { image: 1, text: 0 });
    buffers.step.backward(gt, { image: 0, text: 1 });
    const angleDeg = gradientAngle(gi, gt, run.shared).degrees;
    const grads = combineGrads(gi, w.image, gt, w.text, withImages ? buffers.joint.all : buffers.joint.noVision);
    return { grads, lossImage: losses.image, lossText: losses.text, angleDeg };
  }
  const gi = lossGrads(model, () => unifiedLoss(model, batch, t, { image: 1, text: 0 }).image);
  const gt = lossGrads(model, () => unifiedLoss(model, batch, t, { image: 0, text: 1 }).text);
  const angleDeg = gradientAngle(gi.grads, gt.grads, run.shared).degrees;
  return { grads: combineGrads(gi.grads, w.image, gt.grads, w.text), lossImage: gi.value, lossText: gt.value, angleDeg };
}

/**
 * log.jsonl up to `step`, then the checkpoint at `step`: together, all a resume needs. The log is
 * written first so that after a crash anywhere in between it covers the checkpoint's steps (a
 * resume keeps only the lines of the steps before the checkpoint's).
 */
function saveProgress(run: Run, step: number, logs: StepLog[]): void {
  const { model, optimizer, tokenizerJson, c, data } = run;
  writeFileAtomic(run.logPath, logs.map((l) => JSON.stringify(l)).join('\n') + (logs.length ? '\n' : ''));
  saveCheckpoint(run.ckptDir, { model, optimizer, tokenizerJson, step, trainConfig: c, data });
}

/**
 * Validation loss (only when the run reached its last step), curves.png and summary.json:
 * final losses averaged over the last 10 logged steps, gradient-angle and balancing means.
 */
async function summarize(run: Run, logs: StepLog[], end: number, tokensDone: number, seconds: number): Promise<TrainSummary> {
  const { c, out } = run;
  const val = end === c.steps ? evaluateLoss(run.model, run.ds, c, c.eval_batches) : null;
  const plotPath = join(out, 'curves.png');
  await plotCurves(plotPath, logs, c);
  const last = logs.slice(-Math.max(1, Math.min(10, logs.length)));
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const angles = logs.filter((l) => l.angle_deg !== null).map((l) => l.angle_deg!);
  const balanced = logs.filter((l) => l.kept_fraction !== null);
  const lastImage = last.filter((l) => l.loss_image !== null).map((l) => l.loss_image!);
  const summary: TrainSummary = {
    out,
    variant: c.variant,
    stage: c.stage,
    steps: end,
    resumedFrom: run.start,
    parameters: run.model.parameterCount(),
    seconds,
    tokensPerSecond: tokensDone / Math.max(1e-3, seconds),
    finalLoss: { total: mean(last.map((l) => l.loss)), image: lastImage.length ? mean(lastImage) : null, text: mean(last.map((l) => l.loss_text)) },
    val,
    angle: angles.length ? { n: angles.length, meanDeg: mean(angles), firstDeg: angles[0]!, lastDeg: angles[angles.length - 1]! } : null,
    balance: balanced.length
      ? {
          meanKeptFraction: mean(balanced.map((l) => l.kept_fraction!)),
          meanEntropyBefore: mean(balanced.map((l) => l.entropy_before!)),
          meanEntropyAfter: mean(balanced.map((l) => l.entropy_after!)),
        }
      : null,
    checkpoint: run.ckptDir,
    log: run.logPath,
    plot: plotPath,
  };
  writeFileAtomic(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  return summary;
}

/** curves.png: loss (total, image, text) per step, and the gradient angle when measured. */
async function plotCurves(path: string, logs: StepLog[], c: TrainConfig): Promise<void> {
  const steps = logs.map((l) => l.step);
  const panels = [
    {
      title: `${c.variant} ${c.stage}: loss`,
      xLabel: 'step',
      yLabel: 'cross-entropy (nats)',
      series: [
        { name: 'total', x: steps, y: logs.map((l) => l.loss) },
        { name: 'L_text', x: steps, y: logs.map((l) => l.loss_text) },
        ...(logs.some((l) => l.loss_image !== null) ? [{ name: 'L_image', x: steps, y: logs.map((l) => l.loss_image ?? NaN) }] : []),
      ],
    },
  ];
  const withAngle = logs.filter((l) => l.angle_deg !== null);
  if (withAngle.length) {
    panels.push({
      title: 'gradient angle θ(L_image, L_text), shared weights',
      xLabel: 'step',
      yLabel: 'degrees',
      series: [{ name: 'θ', x: withAngle.map((l) => l.step), y: withAngle.map((l) => l.angle_deg!) }],
    });
  }
  await writeLinePlotPng(path, { panels });
}
