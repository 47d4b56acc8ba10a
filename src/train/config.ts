/**
 * A training run's configuration: one JSON file per run (configs/*.json), every field validated
 * (unknown fields are errors) and overridable from the command line with `--set path=value`.
 * Relative paths are resolved against the current directory.
 */
import { z } from 'zod';
import { ModelConfigSchema } from '../model/config.js';
import { UvuError, UsageError } from '../util/errors.js';
import { parseOrFail, readJsonFile } from '../util/fsio.js';

export const TrainConfigSchema = z
  .object({
    /**
     * Which of the three comparable models this run trains: `uvu` (pixel-codebook image targets),
     * `text-only` (no visual supervision: w_img = 0 in every stage), `ar-vq` (VQ-VAE code targets).
     * The dataset's image coder must agree (codebook for uvu, VQ for ar-vq).
     */
    variant: z.enum(['uvu', 'text-only', 'ar-vq']).default('uvu'),
    /** `pretrain`: joint loss on all targets. `sft`: image loss off, loss on answer tokens only. */
    stage: z.enum(['pretrain', 'sft']).default('pretrain'),
    /** Dataset directory made by `uvu data build`. */
    data: z.string().min(1),
    /** Checkpoint directory whose weights start this run (e.g. the pretrain run for SFT); optimizer state is not taken. */
    init: z.string().min(1).optional(),
    /** Run directory: checkpoint/, log.jsonl, curves.png, summary.json. */
    out: z.string().min(1),
    /** Architecture (ignored when `init` is given: the checkpoint's architecture is used). */
    model: ModelConfigSchema.default(ModelConfigSchema.parse({})),
    /** Optimizer steps. */
    steps: z.number().int().positive().default(200),
    /** Rows of `context` tokens per step. */
    batch_size: z.number().int().positive().default(4),
    /** Seed of initialisation, data order and balanced sampling. */
    seed: z.number().int().nonnegative().default(0),
    loss: z
      .object({
        /** Weight of L_image (the paper: 0.5). Forced to 0 in SFT and for text-only. */
        w_img: z.number().nonnegative().default(0.5),
        /** Weight of L_text (the paper: 1.0). */
        w_text: z.number().positive().default(1.0),
      })
      .strict()
      .default({ w_img: 0.5, w_text: 1.0 }),
    /** Long-tail balanced sampling of image targets (DESIGN §7). */
    balance: z
      .object({
        enabled: z.boolean().default(true),
        /** q_b ~ Uniform(q_lo, q_hi) is the quantile of p over the batch that sets the threshold τ_b. */
        q_lo: z.number().min(0).max(1).default(0.2),
        q_hi: z.number().min(0).max(1).default(0.6),
        /** Fraction of the batch's image targets that may be kept. */
        budget_fraction: z.number().gt(0).max(1).default(0.5),
      })
      .strict()
      .refine((b) => b.q_lo <= b.q_hi, { message: 'q_lo must be ≤ q_hi' })
      .default({ enabled: true, q_lo: 0.2, q_hi: 0.6, budget_fraction: 0.5 }),
    optim: z
      .object({
        /** Peak learning rate. */
        lr: z.number().positive().default(1e-3),
        /** Fraction of steps of linear warmup (the paper: 0.01). */
        warmup_frac: z.number().min(0).max(1).default(0.01),
        /** Cosine decay ends at min_lr_ratio·lr. */
        min_lr_ratio: z.number().min(0).max(1).default(0.1),
        weight_decay: z.number().min(0).default(0.1),
        beta1: z.number().min(0).lt(1).default(0.9),
        beta2: z.number().min(0).lt(1).default(0.95),
        eps: z.number().positive().default(1e-8),
        /** Clip the global gradient norm to this (0: off). */
        grad_clip: z.number().min(0).default(1.0),
      })
      .strict()
      .default({ lr: 1e-3, warmup_frac: 0.01, min_lr_ratio: 0.1, weight_decay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, grad_clip: 1.0 }),
    /** Measure the image/text gradient angle every N steps (0: never). Costs one extra backward pass. */
    angle_every: z.number().int().nonnegative().default(10),
    /** Write a checkpoint every N steps (and always at the end). */
    checkpoint_every: z.number().int().positive().default(100),
    /** Validation loss over this many batches every `eval_every` steps and at the end (0: off). */
    eval_batches: z.number().int().nonnegative().default(4),
    eval_every: z.number().int().nonnegative().default(0),
    /** Tensor engine: TensorFlow.js with BLAS matrix products (`blas`), or the stock `cpu` / `wasm` backends. */
    engine: z.enum(['blas', 'cpu', 'wasm']).default('blas'),
    /**
     * How a step computes its gradients: `buffers`, the tape-free step (src/model/train-step.ts:
     * hand-written backward over reused buffers, sgemm called directly, parameters updated in
     * place), or `tape`, tfjs autograd over the model (the reference). Their losses and the
     * decoder, head and embedding gradients are bit-identical; the vision tower's gradients and
     * the gradient-angle steps differ by float32 rounding (≤ 5e-7 relative), so `tape`
     * reproduces runs made before the tape-free step.
     */
    step: z.enum(['buffers', 'tape']).default('buffers'),
  })
  .strict();

export type TrainConfig = z.infer<typeof TrainConfigSchema>;

/** Effective loss weights of a run (DESIGN §6): SFT and text-only switch the image loss off. */
export function effectiveWeights(c: TrainConfig): { image: number; text: number } {
  const imageOff = c.stage === 'sft' || c.variant === 'text-only';
  return { image: imageOff ? 0 : c.loss.w_img, text: c.loss.w_text };
}

/** Keys an override may not name: they would reach Object.prototype instead of a config field. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** The field path of an override `a.b.c=value`; a usage error when it is not one. */
function overridePath(o: string): string[] {
  const eq = o.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set expects path=value, got "${o}"`);
  const path = o.slice(0, eq).split('.');
  if (path.some((k) => k === '' || FORBIDDEN_KEYS.has(k))) throw new UsageError(`--set ${o.slice(0, eq)}: not a config field path (dot-separated field names)`);
  return path;
}

/** Parse `a.b.c=value` overrides into the raw object (value parsed as JSON when it is valid JSON). */
export function applyOverrides(raw: Record<string, unknown>, overrides: string[]): Record<string, unknown> {
  for (const o of overrides) {
    const eq = o.indexOf('=');
    const path = overridePath(o);
    const text = o.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
    let node = raw as Record<string, unknown>;
    for (const key of path.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null || Array.isArray(node[key])) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = value;
  }
  return raw;
}

/** Where each validated config came from (its file), for messages about its values (train.ts). */
const sources = new WeakMap<TrainConfig, string>();

/** The file (or other source) a validated config was read from; "training config" when unknown. */
export function configSource(c: TrainConfig): string {
  return sources.get(c) ?? 'training config';
}

/** Validate a raw config object; errors name the source and every offending field. */
export function parseTrainConfig(raw: unknown, source: string): TrainConfig {
  const c = parseOrFail(TrainConfigSchema, raw, `${source}: invalid training config`, { all: true });
  sources.set(c, source);
  return c;
}

/**
 * Read, override and validate a config file. A problem with a field that a `--set` override
 * wrote is a usage error naming the override (exit 2); any other is an input error naming the
 * file and every offending field (exit 1).
 */
export function loadTrainConfig(path: string, overrides: string[] = []): TrainConfig {
  const raw = readJsonFile(path, 'training config');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UvuError(`${path}: training config must be a JSON object`);
  const merged = applyOverrides(raw as Record<string, unknown>, overrides);
  const r = TrainConfigSchema.safeParse(merged);
  if (!r.success) {
    // The field each issue is about (an unknown key: the key itself).
    const fields = r.error.issues.flatMap((i) => (i.code === 'unrecognized_keys' ? i.keys.map((k) => ({ path: [...i.path.map(String), k], message: i.message })) : [{ path: i.path.map(String), message: i.message }]));
    for (const o of overrides) {
      const set = overridePath(o);
      // An issue at the override's field, inside it, or at a field that contains it.
      const f = fields.find((x) => x.path.length > 0 && set.every((k, j) => j >= x.path.length || x.path[j] === k));
      if (f) throw new UsageError(`--set ${o.length > 80 ? `${o.slice(0, 77)}...` : o}: ${f.path.join('.')}: ${f.message}`);
    }
  }
  return parseTrainConfig(merged, path);
}
