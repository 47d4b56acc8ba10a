/**
 * Reconstruction metrics of a VQ-VAE on a stream of patches, with the conventions of the pixel
 * codebook's metrics (src/codebook/metrics.ts, DESIGN.md §4) so the two PRPs are comparable:
 *   p̂ = decode(encode(p)) as u8 (what the tokenizer round trip gives), p and p̂ in [0,1]
 *   MSE per element, PSNR = 10·log10(1/MSE) dB, R² = 1 − Σ‖p̂−p‖² / Σ‖p − p̄‖²
 *   PRP = 1 − MSE/σ²_max, σ²_max = max_j Var_m p_m[j] over the evaluation patches
 *   utilization = K_active/K, perplexity = exp(entropy of the code histogram)
 */
import { PATCH_DIM, patchesToFloat } from '../patches/patchify.js';
import { ReconstructionStats, type ReconstructionMetrics } from '../codebook/metrics.js';
import type { PatchStore } from '../patches/store.js';
import { Rng } from '../util/rng.js';
import type { VqCoder } from './coder.js';

/** Patches per store read while evaluating: bounds memory to EVAL_BATCH·3072 bytes plus the coder's batch. */
const EVAL_BATCH = 4096;

export interface VqMetrics extends ReconstructionMetrics {
  k: number;
  k_active: number;
  utilization: number;
  perplexity: number;
}

/** exp(−Σ p_k ln p_k) of a histogram: the effective number of codes in use. */
export function perplexity(counts: ArrayLike<number>): number {
  let total = 0;
  for (let k = 0; k < counts.length; k++) total += counts[k]!;
  if (total === 0) return 0;
  let h = 0;
  for (let k = 0; k < counts.length; k++) {
    const c = counts[k]!;
    if (c > 0) h -= (c / total) * Math.log(c / total);
  }
  return Math.exp(h);
}

/** Streaming accumulator: `add` batches of u8 patches, read the metrics with `result`. */
export class VqEvalAccumulator {
  private readonly pixels = new ReconstructionStats(PATCH_DIM);
  private readonly counts: Float64Array; // [K] patches per code

  constructor(private readonly coder: VqCoder) {
    this.counts = new Float64Array(coder.K);
  }

  /** Add `n` patches (u8 rows [n, 3072]); returns their code ids. */
  add(patchesU8: Uint8Array, n: number): Int32Array {
    const ids = this.coder.encode(patchesU8, n);
    const reconUnit = patchesToFloat(this.coder.decode(ids));
    for (let i = 0; i < n; i++) {
      this.counts[ids[i]!]!++;
      this.pixels.add(patchesU8, i * PATCH_DIM, reconUnit, i * PATCH_DIM);
    }
    return ids;
  }

  result(): VqMetrics {
    let kActive = 0;
    for (const c of this.counts) if (c > 0) kActive++;
    return {
      ...this.pixels.result(),
      k: this.coder.K,
      k_active: kActive,
      utilization: kActive / this.coder.K,
      perplexity: perplexity(this.counts),
    };
  }
}

/**
 * Metrics of the VQ-VAE over every patch of an open store, or over `sample` patches drawn with
 * `seed` (read in ascending store order); `onPatches(n)` after each batch of n.
 */
export function evalVqOnStore(coder: VqCoder, store: PatchStore, o: { sample?: number; seed?: number } = {}, onPatches?: (n: number) => void): VqMetrics {
  const acc = new VqEvalAccumulator(coder);
  if (o.sample !== undefined) {
    const indices = new Rng(o.seed ?? 0).sampleIndices(store.count, o.sample).sort();
    for (let s = 0; s < indices.length; s += EVAL_BATCH) {
      const idx = indices.subarray(s, s + EVAL_BATCH);
      acc.add(store.readIndices(idx).patches, idx.length);
      onPatches?.(idx.length);
    }
  } else {
    for (const b of store.scan(EVAL_BATCH)) {
      const n = b.meta.row.length;
      acc.add(b.patches, n);
      onPatches?.(n);
    }
  }
  return acc.result();
}
