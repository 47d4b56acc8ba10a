/**
 * Codebook quality metrics (DESIGN.md §4), accumulated over a stream of evaluation patches:
 *   PRP = 1 − mean_m(‖p̂_m − p_m‖²/D) / σ²_max    σ²_max = max_j Var_m p_m[j]  (pixel space, [0,1])
 *   MSE (per element), PSNR = 10·log10(1/MSE) dB (peak 1.0), R² = 1 − Σ‖p̂−p‖² / Σ‖p − p̄‖²
 *   PSC = min_k(max_{p∈S_k} ‖p − c_k‖₂) / K_active   (assignment space, non-empty clusters)
 *   utilization = K_active / K, and the 10/50/90% quantiles of the cluster radii.
 * p̂_m is the pixel-space centre of p_m's token; the token is chosen in assignment space.
 */
import { FlatIndex } from './search.js';
import { assignmentCenters, type Codebook } from './file.js';
import { PatchPoints, type PatchPositions } from './points.js';
import { U8_TO_UNIT } from '../patches/patchify.js';

export interface CodebookMetrics {
  /** Evaluation patches. */
  m: number;
  prp: number;
  psc: number;
  mse: number;
  psnr: number;
  r2: number;
  k: number;
  k_active: number;
  utilization: number;
  sigma2_max: number;
  /** Mean squared distance to the chosen centre in assignment space (the clustering objective per patch). */
  mean_dist_sq: number;
  /** Quantiles of cluster radii max‖p − c_k‖₂ over non-empty clusters (assignment space). */
  radius_q10: number;
  radius_q50: number;
  radius_q90: number;
}

/** The pixel-space part of the metrics, common to every image tokenizer (codebook or VQ-VAE). */
export interface ReconstructionMetrics {
  m: number;
  mse: number;
  psnr: number;
  prp: number;
  r2: number;
  sigma2_max: number;
}

/**
 * Running pixel statistics of patches and their reconstructions: Σp[j] and Σp[j]² per dimension
 * and Σ‖p̂ − p‖², from which MSE, PSNR, PRP (σ²_max of the patches themselves) and R² follow.
 * Shared by the codebook metrics and the VQ-VAE's, so their PRPs are comparable by construction.
 */
export class ReconstructionStats {
  private readonly sum: Float64Array; // [D] Σ p[j]
  private readonly sumSq: Float64Array; // [D] Σ p[j]²
  private errSq = 0; // Σ‖p̂ − p‖²
  /** Patches added. */
  m = 0;

  constructor(private readonly D: number) {
    this.sum = new Float64Array(D);
    this.sumSq = new Float64Array(D);
  }

  /** One patch: u8 values at patchesU8[base …) and its reconstruction in [0, 1] at reconUnit[rBase …). */
  add(patchesU8: Uint8Array, base: number, reconUnit: Float32Array, rBase: number): void {
    let err = 0;
    for (let d = 0; d < this.D; d++) {
      const p = U8_TO_UNIT[patchesU8[base + d]!]!;
      this.sum[d]! += p;
      this.sumSq[d]! += p * p;
      const diff = reconUnit[rBase + d]! - p;
      err += diff * diff;
    }
    this.errSq += err;
    this.m++;
  }

  result(): ReconstructionMetrics {
    const { D, m } = this;
    let sigma2Max = 0;
    let totalSq = 0; // Σ‖p − p̄‖² = Σ_j (Σp_j² − (Σp_j)²/m)
    for (let d = 0; d < D; d++) {
      const dev = this.sumSq[d]! - (this.sum[d]! * this.sum[d]!) / m;
      totalSq += dev;
      sigma2Max = Math.max(sigma2Max, dev / m);
    }
    const mse = this.errSq / (m * D);
    return { m, mse, psnr: 10 * Math.log10(1 / mse), prp: 1 - mse / sigma2Max, r2: 1 - this.errSq / totalSq, sigma2_max: sigma2Max };
  }
}

/** Streaming accumulator: feed batches with `add`, read the metrics with `result`. */
export class MetricsAccumulator {
  private readonly index: FlatIndex;
  private readonly D: number;
  private readonly pixels: ReconstructionStats;
  private readonly counts: Float64Array; // [K] members
  private readonly maxDistSq: Float64Array; // [K] max ‖p − c_k‖² in assignment space
  private assignSq = 0; // Σ‖x − c‖² in assignment space
  private buf = new Float32Array(0);

  constructor(private readonly cb: Codebook) {
    this.D = cb.D;
    this.index = new FlatIndex(assignmentCenters(cb), cb.K, cb.D);
    this.pixels = new ReconstructionStats(cb.D);
    this.counts = new Float64Array(cb.K);
    this.maxDistSq = new Float64Array(cb.K);
  }

  /** Add `n` patches (u8 rows [n, D]) with their grid positions (needed when the codebook uses PE). */
  add(patchesU8: Uint8Array, n: number, pos: PatchPositions | null): Int32Array {
    const { D, cb } = this;
    const points = new PatchPoints(patchesU8, n, D, pos, cb.pe);
    if (this.buf.length < n * D) this.buf = new Float32Array(n * D);
    const x = this.buf.subarray(0, n * D);
    points.readAssign(0, n, x);
    const { ids, distSq } = this.index.search(x, n);
    for (let i = 0; i < n; i++) {
      const k = ids[i]!;
      this.counts[k]!++;
      this.assignSq += distSq[i]!;
      if (distSq[i]! > this.maxDistSq[k]!) this.maxDistSq[k] = distSq[i]!;
      this.pixels.add(patchesU8, i * D, cb.centersPixel, k * D);
    }
    return ids;
  }

  /** Per cluster so far: members and radius max‖p − c_k‖₂ in assignment space (0 when empty). */
  clusters(): { members: Float64Array; radius: Float64Array } {
    return { members: this.counts.slice(), radius: this.maxDistSq.map(Math.sqrt) };
  }

  result(): CodebookMetrics {
    const K = this.cb.K;
    const px = this.pixels.result();
    const radii: number[] = [];
    for (let k = 0; k < K; k++) if (this.counts[k]! > 0) radii.push(Math.sqrt(this.maxDistSq[k]!));
    radii.sort((a, b) => a - b);
    const kActive = radii.length;
    return {
      m: px.m,
      prp: px.prp,
      psc: kActive > 0 ? radii[0]! / kActive : 0,
      mse: px.mse,
      psnr: px.psnr,
      r2: px.r2,
      k: K,
      k_active: kActive,
      utilization: kActive / K,
      sigma2_max: px.sigma2_max,
      mean_dist_sq: this.assignSq / px.m,
      radius_q10: quantile(radii, 0.1),
      radius_q50: quantile(radii, 0.5),
      radius_q90: quantile(radii, 0.9),
    };
  }
}

/** Linear-interpolated quantile of an ascending array (NaN when empty). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}
