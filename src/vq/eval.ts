/**
 * Reconstruction metrics of a VQ-VAE on a stream of patches, with the conventions of the pixel
 * codebook's metrics (src/codebook/metrics.ts, DESIGN.md §4) so the two PRPs are comparable:
 *   p̂ = decode(encode(p)) as u8 (what the tokenizer round trip gives), p and p̂ in [0,1]
 *   MSE per element, PSNR = 10·log10(1/MSE) dB, R² = 1 − Σ‖p̂−p‖² / Σ‖p − p̄‖²
 *   PRP = 1 − MSE/σ²_max, σ²_max = max_j Var_m p_m[j] over the evaluation patches
 *   utilization = K_active/K, perplexity = exp(entropy of the code histogram)
 */
import { PATCH_DIM, U8_TO_UNIT } from '../patches/patchify.js';
import type { VqCoder } from './coder.js';

export interface VqMetrics {
  /** Evaluation patches. */
  m: number;
  mse: number;
  psnr: number;
  prp: number;
  r2: number;
  sigma2_max: number;
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
  private readonly sum = new Float64Array(PATCH_DIM); // Σ p[j]
  private readonly sumSq = new Float64Array(PATCH_DIM); // Σ p[j]²
  private readonly counts: Float64Array; // [K] patches per code
  private errSq = 0; // Σ‖p̂ − p‖²
  private m = 0;

  constructor(private readonly coder: VqCoder) {
    this.counts = new Float64Array(coder.K);
  }

  /** Add `n` patches (u8 rows [n, 3072]); returns their code ids. */
  add(patchesU8: Uint8Array, n: number): Int32Array {
    const ids = this.coder.encode(patchesU8, n);
    const recon = this.coder.decode(ids);
    for (let i = 0; i < n; i++) {
      this.counts[ids[i]!]!++;
      const base = i * PATCH_DIM;
      let err = 0;
      for (let d = 0; d < PATCH_DIM; d++) {
        const p = U8_TO_UNIT[patchesU8[base + d]!]!;
        this.sum[d]! += p;
        this.sumSq[d]! += p * p;
        const diff = U8_TO_UNIT[recon[base + d]!]! - p;
        err += diff * diff;
      }
      this.errSq += err;
    }
    this.m += n;
    return ids;
  }

  result(): VqMetrics {
    const { m } = this;
    let sigma2Max = 0;
    let totalSq = 0; // Σ‖p − p̄‖² = Σ_j (Σp_j² − (Σp_j)²/m)
    for (let d = 0; d < PATCH_DIM; d++) {
      const dev = this.sumSq[d]! - (this.sum[d]! * this.sum[d]!) / m;
      totalSq += dev;
      sigma2Max = Math.max(sigma2Max, dev / m);
    }
    let kActive = 0;
    for (const c of this.counts) if (c > 0) kActive++;
    const mse = this.errSq / (m * PATCH_DIM);
    return {
      m,
      mse,
      psnr: 10 * Math.log10(1 / mse),
      prp: 1 - mse / sigma2Max,
      r2: 1 - this.errSq / totalSq,
      sigma2_max: sigma2Max,
      k: this.coder.K,
      k_active: kActive,
      utilization: kActive / this.coder.K,
      perplexity: perplexity(this.counts),
    };
  }
}
