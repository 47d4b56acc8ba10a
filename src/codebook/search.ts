/**
 * Exact nearest-codeword search under squared L2 distance.
 *
 * The bulk of the work is the expanded form ‖x − c‖² = ‖x‖² − 2·x·c + ‖c‖², whose inner
 * products come from one float32 sgemm per (query block × centre chunk). Float32 inner
 * products carry rounding error, and the expanded form cancels badly when the distances
 * are small next to the norms (bright patches, nearby centres), so the float32 argmin
 * alone can pick the wrong centre. We therefore keep, per query, every centre whose
 * approximate distance lies within a proven error bound of the running best, and settle
 * queries with more than one such candidate by exact float64 distances. The result is
 * identical to `bruteForceNearest` (ties go to the lowest id).
 *
 * Memory is bounded for any n and K: one [chunkQueries × chunkCenters] float32 score
 * buffer, one [chunkQueries × D] float32 buffer for uint8 queries, and a small
 * candidate list per query of the current block. Buffers are reused across calls.
 */
import { UsageError, UvuError } from '../util/errors.js';
import { sgemmFor, type SgemmFn } from '../linalg/blas.js';

export interface SearchResult {
  /** Per query: id of the nearest centre (ties to the lowest id). */
  ids: Int32Array;
  /** Per query: exact squared L2 distance to that centre (computed in float64, stored as float32). */
  distSq: Float32Array;
}

/** What the last search call needed beyond the sgemm scan (for diagnostics and benchmarks). */
export interface SearchStats {
  queries: number;
  /** Queries with more than one candidate within tolerance, settled by exact re-ranking. */
  reranked: number;
  /** Exact distances computed while re-ranking. */
  rerankDistances: number;
  /** Queries whose candidate list overflowed, settled by an exact scan over all K centres. */
  exactScans: number;
}

export interface FlatIndexOptions {
  /** Queries per sgemm block (default 1024). */
  chunkQueries?: number;
  /** Centres per sgemm block (default 4096). Score scratch is chunkQueries × chunkCenters floats. */
  chunkCenters?: number;
  /** 'auto' (default): native BLAS when available; 'fallback': the TypeScript kernel (as with UVU_BLAS=none). */
  backend?: 'auto' | 'fallback';
}

/** Candidates kept per query before the list is compacted; if compaction cannot free space the query gets an exact full scan. */
const CANDIDATE_CAP = 128;
/** Unit roundoff of float32 (round to nearest). */
const U_F32 = 2 ** -24;
/** Unit roundoff of float64. */
const U_F64 = 2 ** -53;

/**
 * Squared L2 distance in float64, summed in index order with one accumulator. Both the
 * reference and the exact re-ranking use this one function, so their results (and tie
 * decisions) agree bit for bit.
 */
function exactDistSq(q: Float32Array, qOff: number, c: Float32Array, cOff: number, D: number): number {
  let s = 0;
  for (let i = 0; i < D; i++) {
    const d = q[qOff + i]! - c[cOff + i]!;
    s += d * d;
  }
  return s;
}

/** ‖row‖² in float64 for `rows` consecutive rows of length D starting at row `first`. */
function rowNormsSq(x: Float32Array, first: number, rows: number, D: number, out: Float64Array): void {
  for (let r = 0; r < rows; r++) {
    const off = (first + r) * D;
    let s = 0;
    for (let i = 0; i < D; i++) {
      const v = x[off + i]!;
      s += v * v;
    }
    out[r] = s;
  }
}

function checkCount(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new UsageError(`${name} must be an integer ≥ ${min}, got ${v}`);
}

/**
 * Reference nearest-centre search: every distance in float64 (`exactDistSq`), ties to the
 * lowest id. O(n·K·D); for tests and small problems.
 */
export function bruteForceNearest(queries: Float32Array, n: number, centers: Float32Array, K: number, D: number): SearchResult {
  checkCount('K', K, 1);
  checkCount('D', D, 1);
  checkCount('n', n, 0);
  if (centers.length !== K * D) throw new UsageError(`centres hold ${centers.length} floats, expected K·D = ${K}·${D}`);
  if (queries.length !== n * D) throw new UsageError(`queries hold ${queries.length} floats, expected n·D = ${n}·${D}`);
  const ids = new Int32Array(n);
  const distSq = new Float32Array(n);
  for (let q = 0; q < n; q++) {
    let best = Infinity;
    let bestId = 0;
    for (let k = 0; k < K; k++) {
      const d = exactDistSq(queries, q * D, centers, k * D, D);
      if (d < best) {
        best = d;
        bestId = k;
      }
    }
    ids[q] = bestId;
    distSq[q] = best;
  }
  return { ids, distSq };
}

/** Exhaustive (flat) index over K centres of dimension D, exact under squared L2. */
export class FlatIndex {
  readonly K: number;
  readonly D: number;
  private readonly centers: Float32Array;
  /** ‖c_k‖² in float64, [K]. */
  private readonly centerNormSq: Float64Array;
  /** Σ_i c_k[i] in float64, [K]. */
  private readonly centerSum: Float64Array;
  /** max_k ‖c_k‖ (float64). */
  private readonly maxCenterNorm: number;
  /** max_k Σ_i |c_k[i]| (float64), for the rounding bound of the m·Σc term. */
  private readonly maxCenterAbsSum: number;
  private readonly chunkQueries: number;
  private readonly chunkCenters: number;
  private readonly gemm: SgemmFn;
  /** γ_D = D·u/(1 − D·u): worst-case relative error factor of a float32 dot product of length D. */
  private readonly gammaD: number;

  // Scratch, allocated on first use and reused.
  /** −2·x·c for the current block, [chunkQueries, chunkCenters]. */
  private scores: Float32Array | null = null;
  /** Float32 copy of a block of uint8 queries, [chunkQueries, D]. */
  private queryBlock: Float32Array | null = null;
  /** Query block shifted by each query's mean, [chunkQueries, D]. */
  private shiftedBlock: Float32Array | null = null;
  /** −2·(mean of the query), per row of the block. */
  private readonly meanTimesMinus2: Float64Array;
  private readonly tolerance: Float64Array;
  private readonly bestScore: Float64Array;
  private readonly bestId: Int32Array;
  private readonly candCount: Int32Array;
  private readonly candId: Int32Array;
  private readonly candScore: Float64Array;
  /** 1 when a query's candidate list overflowed: it is settled by an exact scan over all centres. */
  private readonly overflowed: Uint8Array;

  private stats: SearchStats = { queries: 0, reranked: 0, rerankDistances: 0, exactScans: 0 };

  /** Counters of the most recent search / searchU8 call. */
  lastSearchStats(): SearchStats {
    return { ...this.stats };
  }

  constructor(centers: Float32Array, K: number, D: number, opts: FlatIndexOptions = {}) {
    checkCount('K', K, 1);
    checkCount('D', D, 1);
    if (!(centers instanceof Float32Array)) throw new UsageError('centres must be a Float32Array');
    if (centers.length !== K * D) throw new UsageError(`centres hold ${centers.length} floats, expected K·D = ${K}·${D} = ${K * D}`);
    const chunkQueries = opts.chunkQueries ?? 1024;
    const chunkCenters = opts.chunkCenters ?? 4096;
    checkCount('chunkQueries', chunkQueries, 1);
    checkCount('chunkCenters', chunkCenters, 1);
    this.K = K;
    this.D = D;
    this.centers = centers;
    this.chunkQueries = chunkQueries;
    this.chunkCenters = Math.min(chunkCenters, K);
    this.gemm = sgemmFor(opts.backend ?? 'auto');
    if (D * U_F32 >= 0.5) throw new UsageError(`D = ${D} is too large for float32 inner products`);
    this.gammaD = (D * U_F32) / (1 - D * U_F32);

    this.centerNormSq = new Float64Array(K);
    rowNormsSq(centers, 0, K, D, this.centerNormSq);
    let maxNormSq = 0;
    for (let k = 0; k < K; k++) {
      const v = this.centerNormSq[k]!;
      if (!Number.isFinite(v)) throw new UvuError(`centre ${k} contains a non-finite value (NaN or ±Infinity)`);
      if (v > maxNormSq) maxNormSq = v;
    }
    this.maxCenterNorm = Math.sqrt(maxNormSq);
    this.centerSum = new Float64Array(K);
    let maxAbsSum = 0;
    for (let k = 0; k < K; k++) {
      let sum = 0;
      let absSum = 0;
      for (let i = k * D, end = i + D; i < end; i++) {
        const v = centers[i]!;
        sum += v;
        absSum += Math.abs(v);
      }
      this.centerSum[k] = sum;
      if (absSum > maxAbsSum) maxAbsSum = absSum;
    }
    this.maxCenterAbsSum = maxAbsSum;

    const cq = chunkQueries;
    this.meanTimesMinus2 = new Float64Array(cq);
    this.tolerance = new Float64Array(cq);
    this.bestScore = new Float64Array(cq);
    this.bestId = new Int32Array(cq);
    this.candCount = new Int32Array(cq);
    this.candId = new Int32Array(cq * CANDIDATE_CAP);
    this.candScore = new Float64Array(cq * CANDIDATE_CAP);
    this.overflowed = new Uint8Array(cq);
  }

  /** Nearest centre for each of n float32 queries [n, D] (row-major). */
  search(queries: Float32Array, n: number): SearchResult {
    checkCount('n', n, 0);
    if (!(queries instanceof Float32Array)) throw new UsageError('queries must be a Float32Array');
    if (queries.length !== n * this.D) {
      throw new UsageError(`queries hold ${queries.length} floats, expected n·D = ${n}·${this.D} = ${n * this.D} (dimension mismatch?)`);
    }
    const ids = new Int32Array(n);
    const distSq = new Float32Array(n);
    this.stats = { queries: n, reranked: 0, rerankDistances: 0, exactScans: 0 };
    for (let q0 = 0; q0 < n; q0 += this.chunkQueries) {
      const rows = Math.min(this.chunkQueries, n - q0);
      this.searchBlock(queries.subarray(q0 * this.D, (q0 + rows) * this.D), rows, ids, distSq, q0);
    }
    return { ids, distSq };
  }

  /**
   * Nearest centre for n uint8 patch rows [n, D], each value v taken as float32(v·scale)
   * (default scale 1/255), converted one block of chunkQueries rows at a time.
   * Gives exactly `search` on the converted floats.
   */
  searchU8(queriesU8: Uint8Array, n: number, scale = 1 / 255): SearchResult {
    checkCount('n', n, 0);
    if (!(queriesU8 instanceof Uint8Array)) throw new UsageError('uint8 queries must be a Uint8Array');
    if (!(Number.isFinite(scale) && scale > 0)) throw new UsageError(`scale must be a positive finite number, got ${scale}`);
    const D = this.D;
    if (queriesU8.length !== n * D) {
      throw new UsageError(`uint8 queries hold ${queriesU8.length} values, expected n·D = ${n}·${D} = ${n * D} (dimension mismatch?)`);
    }
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = v * scale;
    const ids = new Int32Array(n);
    const distSq = new Float32Array(n);
    this.stats = { queries: n, reranked: 0, rerankDistances: 0, exactScans: 0 };
    for (let q0 = 0; q0 < n; q0 += this.chunkQueries) {
      const rows = Math.min(this.chunkQueries, n - q0);
      if (!this.queryBlock || this.queryBlock.length < rows * D) this.queryBlock = new Float32Array(rows * D);
      const block = this.queryBlock.subarray(0, rows * D);
      const src = q0 * D;
      for (let i = 0; i < rows * D; i++) block[i] = lut[queriesU8[src + i]!]!;
      this.searchBlock(block, rows, ids, distSq, q0);
    }
    return { ids, distSq };
  }

  /**
   * Copy the block shifted by each query's own mean, x̃' = fl32(x − m·1) with m = fl32(mean(x)),
   * and set each row's tolerance. Why the shift: the float32 error of x·c grows with
   * ‖x‖·‖c‖, and most photo patches are far from the origin (brightness) but close to
   * their own mean (little texture). Since x·c = (x − m·1)·c + m·Σc, the sgemm only has
   * to deliver (x − m·1)·c, whose error scales with ‖x − m·1‖ instead of ‖x‖; the term
   * m·Σc is added back in float64 during the scan.
   */
  private prepareBlock(block: Float32Array, rows: number, firstQuery: number): Float32Array {
    const D = this.D;
    if (!this.shiftedBlock || this.shiftedBlock.length < rows * D) this.shiftedBlock = new Float32Array(rows * D);
    const shifted = this.shiftedBlock;
    const cmax = this.maxCenterNorm;
    for (let r = 0; r < rows; r++) {
      const off = r * D;
      let sum = 0;
      for (let i = 0; i < D; i++) sum += block[off + i]!;
      if (!Number.isFinite(sum)) throw new UvuError(`query ${firstQuery + r} contains a non-finite value (NaN or ±Infinity)`);
      const mean = Math.fround(sum / D);
      let normSq = 0;
      for (let i = 0; i < D; i++) {
        const v = Math.fround(block[off + i]! - mean);
        shifted[off + i] = v;
        normSq += v * v;
      }
      const xNorm = Math.sqrt(normSq) * (1 + 1e-12); // ‖x̃'‖, padded for its own float64 rounding
      // Score s_k = ‖c_k‖² − 2m·Σc_k − 2·fl32(x̃'·c_k); the row constant ‖x‖² is dropped.
      // Error sources, with u = 2^-24, u64 = 2^-53, x' = x − m·1 (exact):
      //  - sgemm: |fl(x̃'·c) − x̃'·c| ≤ γ_D·Σ|x̃'_i c_i| ≤ γ_D·‖x̃'‖·‖c‖ for any summation
      //    order, blocking or FMA use (Higham, Accuracy and Stability, §3.1); alpha = −2 is exact.
      //  - the shift: |x̃'_i − x'_i| ≤ u·|x'_i|, so |(x̃' − x')·c| ≤ u/(1−u)·‖x̃'‖·‖c‖.
      //  - float64 terms (‖c‖², Σc, the two additions): ≤ 4·D·u64·(cmax² + 2|m|·Σ|c|max + 2‖x̃'‖cmax).
      // So each score is within e of its true value, and the true nearest centre k* has
      // s_k* ≤ s_best + 2e: listing every centre with s ≤ s_best + 2e cannot miss it. The
      // bound uses the worst-case factor D (γ_D), not sqrt(D) (which holds only on average).
      const e =
        2 * (this.gammaD + U_F32 / (1 - U_F32)) * xNorm * cmax +
        4 * D * U_F64 * (cmax * cmax + 2 * Math.abs(mean) * this.maxCenterAbsSum + 2 * xNorm * cmax);
      // Relative padding, plus an absolute D·2^-126 per score for float32 products that underflow.
      this.tolerance[r] = 2 * e * (1 + 1e-6) + 4 * D * 2 ** -126;
      this.meanTimesMinus2[r] = -2 * mean;
      this.bestScore[r] = Infinity;
      this.bestId[r] = -1;
      this.candCount[r] = 0;
      this.overflowed[r] = 0;
    }
    return shifted.subarray(0, rows * D);
  }

  /** Search `rows` queries (block [rows, D], original values) and write results at outOffset. */
  private searchBlock(block: Float32Array, rows: number, outIds: Int32Array, outDist: Float32Array, outOffset: number): void {
    const { D, K } = this;
    const shifted = this.prepareBlock(block, rows, outOffset);
    const chunk = this.chunkCenters;
    if (!this.scores || this.scores.length < rows * chunk) this.scores = new Float32Array(rows * chunk);
    const scores = this.scores;
    for (let c0 = 0; c0 < K; c0 += chunk) {
      const cols = Math.min(chunk, K - c0);
      // scores[rows, cols] = −2 · shifted · centers[c0 : c0+cols]ᵀ
      this.gemm(false, true, rows, cols, D, -2, shifted, D, this.centers.subarray(c0 * D, (c0 + cols) * D), D, 0, scores, cols);
      this.scanScores(scores, rows, cols, c0);
    }

    for (let r = 0; r < rows; r++) {
      const { id, dist } = this.overflowed[r] ? this.exactScan(block, r) : this.settleCandidates(block, r);
      outIds[outOffset + r] = id;
      outDist[outOffset + r] = dist;
    }
  }

  /**
   * The hot loop: for each row, fold the centre norms into the sgemm scores, track the
   * running best, and list every centre within the row's tolerance of it.
   */
  private scanScores(scores: Float32Array, rows: number, cols: number, c0: number): void {
    const norms = this.centerNormSq;
    const sums = this.centerSum;
    const candId = this.candId;
    const candScore = this.candScore;
    for (let r = 0; r < rows; r++) {
      const tol = this.tolerance[r]!;
      const m2 = this.meanTimesMinus2[r]!;
      let best = this.bestScore[r]!;
      let bestId = this.bestId[r]!;
      let threshold = best + tol;
      let count = this.candCount[r]!;
      let overflowed = this.overflowed[r]!;
      const base = r * cols;
      const candBase = r * CANDIDATE_CAP;
      for (let j = 0; j < cols; j++) {
        const s = norms[c0 + j]! + m2 * sums[c0 + j]! + scores[base + j]!;
        if (s <= threshold) {
          const k = c0 + j;
          // Strict <: on equal scores the earlier (lower) id stays best.
          if (s < best) {
            best = s;
            bestId = k;
            threshold = s + tol;
          }
          if (overflowed) continue;
          if (count === CANDIDATE_CAP) {
            count = compactCandidates(candId, candScore, candBase, count, threshold);
            if (count === CANDIDATE_CAP) {
              overflowed = 1;
              continue;
            }
          }
          candId[candBase + count] = k;
          candScore[candBase + count] = s;
          count++;
        }
      }
      this.bestScore[r] = best;
      this.bestId[r] = bestId;
      this.candCount[r] = count;
      this.overflowed[r] = overflowed;
    }
  }

  /** Pick among the row's surviving candidates by exact distance (ties to the lowest id). */
  private settleCandidates(block: Float32Array, r: number): { id: number; dist: number } {
    const D = this.D;
    const threshold = this.bestScore[r]! + this.tolerance[r]!;
    const candBase = r * CANDIDATE_CAP;
    const count = this.candCount[r]!;
    let id = this.bestId[r]!;
    let survivors = 0;
    for (let i = 0; i < count; i++) if (this.candScore[candBase + i]! <= threshold) survivors++;
    if (survivors <= 1) return { id, dist: exactDistSq(block, r * D, this.centers, id * D, D) };
    this.stats.reranked++;
    this.stats.rerankDistances += survivors;
    let dist = Infinity;
    for (let i = 0; i < count; i++) {
      if (this.candScore[candBase + i]! > threshold) continue;
      const k = this.candId[candBase + i]!;
      const d = exactDistSq(block, r * D, this.centers, k * D, D);
      // Candidates were listed in increasing id order, so strict < keeps the lowest id on ties.
      if (d < dist) {
        dist = d;
        id = k;
      }
    }
    return { id, dist };
  }

  /** Exact float64 scan over all centres, for a query whose candidate list overflowed. */
  private exactScan(block: Float32Array, r: number): { id: number; dist: number } {
    const { D, K } = this;
    this.stats.exactScans++;
    let dist = Infinity;
    let id = 0;
    for (let k = 0; k < K; k++) {
      const d = exactDistSq(block, r * D, this.centers, k * D, D);
      if (d < dist) {
        dist = d;
        id = k;
      }
    }
    return { id, dist };
  }
}

/** Drop candidates scoring above threshold, keeping order (and so increasing ids); returns the new count. */
function compactCandidates(ids: Int32Array, scores: Float64Array, base: number, count: number, threshold: number): number {
  let kept = 0;
  for (let i = 0; i < count; i++) {
    const s = scores[base + i]!;
    if (s <= threshold) {
      ids[base + kept] = ids[base + i]!;
      scores[base + kept] = s;
      kept++;
    }
  }
  return kept;
}
