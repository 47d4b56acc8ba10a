/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter) with global-norm gradient clipping and a
 * linear-warmup + cosine learning-rate schedule. The update runs on plain Float32Arrays (llm.c
 * style), so optimizer state is exactly what the checkpoint stores, and writes the parameters in
 * place (no new tensor per step).
 */
import { tf } from '../engine/tf.js';
import { UvuError } from '../util/errors.js';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
}

export interface ScheduleConfig {
  /** Peak learning rate. */
  lr: number;
  /** Fraction of steps of linear warmup (the paper: 0.01). */
  warmup_frac: number;
  /** Final learning rate as a fraction of the peak. */
  min_lr_ratio: number;
}

/** Learning rate at `step` (0-based) of `total`: linear warmup, then cosine decay to min_lr_ratio·lr. */
export function learningRate(step: number, total: number, c: ScheduleConfig): number {
  const warmup = Math.max(1, Math.round(c.warmup_frac * total));
  if (step < warmup) return (c.lr * (step + 1)) / warmup;
  const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  const min = c.lr * c.min_lr_ratio;
  return min + 0.5 * (c.lr - min) * (1 + Math.cos(Math.PI * progress));
}

/** Gradients by parameter name, as flat Float32Arrays. */
export type GradMap = Map<string, Float32Array>;

/** L2 norm of all gradients together. */
export function globalNorm(grads: GradMap): number {
  let sumSq = 0;
  for (const g of grads.values()) sumSq = addSquares(g, sumSq);
  return Math.sqrt(sumSq);
}

/** sum + Σ g_i² in double, in order (its own function, so the running sum stays an unboxed double). */
function addSquares(g: Float32Array, sum: number): number {
  for (let i = 0; i < g.length; i++) sum += g[i]! * g[i]!;
  return sum;
}

/** Scale gradients in place so their global norm is at most maxNorm; returns the norm before clipping. */
export function clipGradients(grads: GradMap, maxNorm: number): number {
  const norm = globalNorm(grads);
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6);
    for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= s;
  }
  return norm;
}

/**
 * Everything AdamW carries from one step to the next: what a checkpoint stores and restores.
 * Moments are keyed by parameter name, one value per parameter element.
 */
export interface AdamWState {
  /** Number of updates applied so far (bias correction uses it). */
  t: number;
  /** First moments. */
  m: ReadonlyMap<string, Float32Array>;
  /** Second moments. */
  v: ReadonlyMap<string, Float32Array>;
}

export class AdamW {
  /** First and second moments per parameter name (restartDeadCodes resets rows of them in place). */
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  private updates = 0;

  constructor(
    private readonly params: Map<string, tf.Variable>,
    private readonly c: AdamWConfig,
  ) {
    for (const [name, p] of params) {
      this.m.set(name, new Float32Array(p.size));
      this.v.set(name, new Float32Array(p.size));
    }
  }

  /** Number of updates applied so far (bias correction uses it). */
  get t(): number {
    return this.updates;
  }

  /**
   * The optimizer state, for a checkpoint: the live moment arrays, not copies, so write them
   * out before the next step().
   */
  state(): AdamWState {
    return { t: this.updates, m: this.m, v: this.v };
  }

  /**
   * Restore a state saved by state() (a resumed run then steps exactly as the original would
   * have). It must hold moments of every parameter, of the parameter's size, and nothing else;
   * values are copied in.
   */
  loadState(s: AdamWState): void {
    if (!Number.isInteger(s.t) || s.t < 0) throw new UvuError(`AdamW: update count must be a non-negative integer, got ${s.t}`);
    for (const [which, saved, mine] of [['m', s.m, this.m], ['v', s.v, this.v]] as const) {
      for (const name of saved.keys()) if (!mine.has(name)) throw new UvuError(`AdamW: state has ${which} of ${name}, which is not a parameter`);
      for (const [name, dst] of mine) {
        const src = saved.get(name);
        if (!src) throw new UvuError(`AdamW: state lacks ${which} of ${name}`);
        if (src.length !== dst.length) throw new UvuError(`AdamW: ${which} of ${name} has ${src.length} values, parameter has ${dst.length}`);
      }
    }
    for (const [name, dst] of this.m) dst.set(s.m.get(name)!);
    for (const [name, dst] of this.v) dst.set(s.v.get(name)!);
    this.updates = s.t;
  }

  /** Decay matrices (linear weights, embeddings) but not norms or biases, as is standard. */
  static decays(name: string, rank: number): boolean {
    return rank >= 2 && !name.includes('norm');
  }

  /** One update with learning rate lr. Parameters without a gradient are left untouched. */
  step(grads: GradMap, lr: number): void {
    this.updates++;
    const { beta1, beta2, eps, weight_decay } = this.c;
    const bc1 = 1 - Math.pow(beta1, this.updates);
    const bc2 = 1 - Math.pow(beta2, this.updates);
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      // On the CPU-style backends dataSync is the variable's own array: update it in place. Where
      // it is a copy (wasm), write the copy and assign it back.
      const w = p.dataSync() as Float32Array;
      if (g.length !== w.length) throw new UvuError(`AdamW: gradient of ${name} has ${g.length} values, parameter has ${w.length}`);
      const decay = AdamW.decays(name, p.rank) ? weight_decay : 0;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]!;
        const mi = (m[i] = beta1 * m[i]! + (1 - beta1) * gi);
        const vi = (v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi);
        w[i] = w[i]! - lr * (mi / bc1 / (Math.sqrt(vi / bc2) + eps) + decay * w[i]!);
      }
      if (p.dataSync() !== w) {
        const next = tf.tensor(w, p.shape);
        p.assign(next);
        next.dispose();
      }
    }
  }
}
