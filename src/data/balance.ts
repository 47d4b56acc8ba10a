/**
 * Long-tail balanced sampling of image targets (DESIGN §7).
 *
 *   p_k = (1/f_k) / Σ_j (1/f_j) over codes with f_k > 0 (0 for unseen codes)
 *   per batch: q ~ U(q_lo, q_hi); τ = q-quantile of p over the batch's image targets (one value
 *   per target position, linear interpolation); eligible ids E = {k in the batch : p_k > τ};
 *   keep at most c = max(1, ⌊budget / |E|⌋) positions per eligible id, chosen uniformly at
 *   random, budget = budgetFraction · (number of image targets). Every other image target is
 *   dropped (no loss); text targets are never touched.
 *
 * E is taken over the ids that occur among the batch's targets: only those can be kept, and
 * counting absent ids would only shrink c.
 */
import { quantile } from '../codebook/metrics.js';
import type { Rng } from '../util/rng.js';
import { UsageError } from '../util/errors.js';

export interface BalanceOptions {
  qLo?: number;
  qHi?: number;
  budgetFraction?: number;
}

export interface BalanceStats {
  /** Kept / image targets before (0 when the batch has none). */
  keptFraction: number;
  /** Entropy (bits) of the supervised image-id distribution before and after. */
  entropyBefore: number;
  entropyAfter: number;
  q: number;
  tau: number;
  /** |E|. */
  eligible: number;
  /** c: most positions kept per eligible id. */
  cap: number;
  /** Image targets before and after. */
  before: number;
  kept: number;
}

/** p_k ∝ 1/f_k over f_k > 0, normalised to sum 1; 0 where f_k = 0. */
export function codeProbabilities(counts: Float64Array): Float64Array {
  const p = new Float64Array(counts.length);
  let z = 0;
  for (let k = 0; k < counts.length; k++) {
    if (counts[k]! > 0) {
      p[k] = 1 / counts[k]!;
      z += p[k]!;
    }
  }
  if (z > 0) for (let k = 0; k < p.length; k++) p[k]! /= z;
  return p;
}

/** Entropy in bits of the distribution given by counts (Σ counts > 0, else 0). */
export function entropyBits(counts: Iterable<number>): number {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return 0;
  let h = 0;
  for (const c of counts) if (c > 0) h -= (c / total) * Math.log2(c / total);
  return h;
}

/**
 * Drop image targets per DESIGN §7. `targets`/`imageMask` are [B·T] as built by `buildTargets`;
 * returns a new image mask (the input is not modified) and the batch's statistics.
 */
export function balanceImageTargets(
  targets: Int32Array,
  imageMask: Float32Array,
  p: Float64Array,
  imageOffset: number,
  rng: Rng,
  opts: BalanceOptions = {},
): { imageMask: Float32Array; stats: BalanceStats } {
  const qLo = opts.qLo ?? 0.2;
  const qHi = opts.qHi ?? 0.6;
  const budgetFraction = opts.budgetFraction ?? 0.5;
  if (!(qLo >= 0 && qLo <= qHi && qHi <= 1)) throw new UsageError(`balanced sampling: need 0 ≤ qLo ≤ qHi ≤ 1, got qLo = ${qLo}, qHi = ${qHi}`);
  if (!(budgetFraction > 0 && budgetFraction <= 1)) throw new UsageError(`balanced sampling: budgetFraction must be in (0, 1], got ${budgetFraction}`);
  if (targets.length !== imageMask.length) throw new RangeError(`balanceImageTargets: ${targets.length} targets but ${imageMask.length} mask entries`);

  // Positions of each image id among the supervised image targets (ascending position).
  const positions = new Map<number, number[]>();
  let before = 0;
  for (let i = 0; i < imageMask.length; i++) {
    if (imageMask[i]! === 0) continue;
    const k = targets[i]! - imageOffset;
    if (!(k >= 0 && k < p.length)) throw new RangeError(`balanceImageTargets: target ${targets[i]} at ${i} is not an image code`);
    let list = positions.get(k);
    if (!list) positions.set(k, (list = []));
    list.push(i);
    before++;
  }
  const q = qLo + (qHi - qLo) * rng.next();
  const out = new Float32Array(imageMask.length);
  if (before === 0) {
    return { imageMask: out, stats: { keptFraction: 0, entropyBefore: 0, entropyAfter: 0, q, tau: NaN, eligible: 0, cap: 0, before: 0, kept: 0 } };
  }

  const ids = [...positions.keys()].sort((a, b) => a - b);
  const perTarget: number[] = [];
  for (const k of ids) for (let j = 0; j < positions.get(k)!.length; j++) perTarget.push(p[k]!);
  perTarget.sort((a, b) => a - b);
  const tau = quantile(perTarget, q);
  const eligible = ids.filter((k) => p[k]! > tau);
  const budget = budgetFraction * before;
  const cap = eligible.length > 0 ? Math.max(1, Math.floor(budget / eligible.length)) : 0;

  let kept = 0;
  const keptPerId: number[] = [];
  for (const k of eligible) {
    const list = positions.get(k)!;
    const take = Math.min(cap, list.length);
    if (take === list.length) for (const i of list) out[i] = 1;
    else for (const j of rng.sampleIndices(list.length, take)) out[list[j]!] = 1;
    kept += take;
    keptPerId.push(take);
  }
  return {
    imageMask: out,
    stats: {
      keptFraction: kept / before,
      entropyBefore: entropyBits(ids.map((k) => positions.get(k)!.length)),
      entropyAfter: entropyBits(keptPerId),
      q,
      tau,
      eligible: eligible.length,
      cap,
      before,
      kept,
    },
  };
}
