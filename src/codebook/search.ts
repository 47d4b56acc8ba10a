/**
 * Exact nearest-codeword search under squared L2 distance.
 *
 * The bulk of the work is the expanded form ‖x − c‖² = ‖x‖² − 2·x·c + ‖c‖², whose inner
 * products come from one float32 sgemm per (query block × centre chunk). Float32 inner
 * products carry rounding error, and the expanded form cancels badly when distances are
 * small next to the norms (bright patches, nearby centres), so a float32 argmin alone
 * can pick the wrong centre (Faiss IndexFlatL2 does, on ~1.5% of photo patches). Two
 * guards make the result exact:
 *  - queries and centres are shifted by their own means before the sgemm (the shift is
 *    undone exactly in float64), which shrinks the operands' norms and so the error;
 *  - every score gets a proven error bound e_k, and each query keeps every centre whose
 *    lower bound s_k − e_k is below the least upper bound seen; queries left with more
 *    than one candidate are settled by exact float64 distances.
 * The result is identical to `bruteForceNearest` (ties go to the lowest id).
 *
 * Memory for any n: one [chunkQueries × chunkCenters] float32 score buffer, two
 * [chunkQueries × D] float32 query buffers (uint8 conversion, mean shift), and a
 * candidate list of ≤ 128 per query of the current block, reused across calls. The index
 * also keeps a mean-shifted copy of the centres (K·D floats) up to 1 GiB; beyond that it
 * shifts each chunk on the fly into a [chunkCenters × D] buffer.
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
  /**
   * Adopt the per-block scratch buffers of an earlier index (same chunk sizes), so that a
   * caller rebuilding the index every iteration (k-means) does not allocate and page-fault
   * them anew each time. The earlier index must not be used afterwards.
   */
  reuseScratchOf?: FlatIndex;
}

/**
 * Queries whose mean shift the caller made and keeps (k-means searches the same points every
 * iteration): per query q, row q of `shifted` holds fl32(x_q − m_q·1), made by
 * `shiftRowByOwnMean` (which also gave m_q, the sum and ‖shifted‖) or by `shiftRowByMean` with
 * that m_q, so a search on them is that on the original rows, bit for bit.
 */
export interface PreparedQueries {
  /** [n, D] mean-shifted rows. */
  shifted: Float32Array;
  /** [n] float64 mean, sum and ‖shifted row‖ from `shiftRowByOwnMean`. */
  means: Float64Array;
  sums: Float64Array;
  shiftedNorms: Float64Array;
  /** [n] ‖x_q‖² summed in float64 (any order: the bounds that use it are padded). */
  normSq: Float64Array;
  /**
   * `exactDistSq` of query q's original row to the centre at centres[cOff .. cOff + D): the
   * exact distances the search settles on (the caller keeps the rows, in whatever form).
   */
  distSq: (q: number, centres: Float32Array, cOff: number) => number;
  /** Optional [n]: a centre id per query (−1: none) and its `exactDistSq`, used instead of recomputing it. */
  knownId?: Int32Array;
  knownDistSq?: Float64Array;
}

/** Candidates kept per query before the list is compacted; if compaction cannot free space the query gets an exact full scan. */
const CANDIDATE_CAP = 128;
/** Above this many floats (1 GiB) the mean-shifted centres are made one chunk at a time instead of kept whole. */
const MAX_SHIFTED_COPY_FLOATS = 2 ** 28;
/** Unit roundoff of float32 (round to nearest). */
const U_F32 = 2 ** -24;
/** Unit roundoff of float64. */
const U_F64 = 2 ** -53;

/**
 * Squared L2 distance in float64, with four interleaved accumulators (i mod 4) summed as
 * (s0 + s1) + (s2 + s3). Both the reference and the exact re-ranking use this one
 * function, so their results (and tie decisions) agree bit for bit.
 */
export function exactDistSq(q: Float32Array, qOff: number, c: Float32Array, cOff: number, D: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = 0;
  for (; i + 4 <= D; i += 4) {
    const d0 = q[qOff + i]! - c[cOff + i]!;
    const d1 = q[qOff + i + 1]! - c[cOff + i + 1]!;
    const d2 = q[qOff + i + 2]! - c[cOff + i + 2]!;
    const d3 = q[qOff + i + 3]! - c[cOff + i + 3]!;
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < D; i++) {
    const d = q[qOff + i]! - c[cOff + i]!;
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

/**
 * `exactDistSq` for a query stored as codes: q[i] = values[codes[qOff + i]] (a float32 table,
 * e.g. uint8 → value/255). The same float64 arithmetic in the same order, so the same result
 * bit for bit as on the decoded float32 row, without writing that row.
 */
export function exactDistSqCoded(codes: Uint8Array, qOff: number, values: Float32Array, c: Float32Array, cOff: number, D: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = 0;
  for (; i + 4 <= D; i += 4) {
    const d0 = values[codes[qOff + i]!]! - c[cOff + i]!;
    const d1 = values[codes[qOff + i + 1]!]! - c[cOff + i + 1]!;
    const d2 = values[codes[qOff + i + 2]!]! - c[cOff + i + 2]!;
    const d3 = values[codes[qOff + i + 3]!]! - c[cOff + i + 3]!;
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; i < D; i++) {
    const d = values[codes[qOff + i]!]! - c[cOff + i]!;
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

/**
 * `shiftRowByMean` for a row stored as codes (q[i] = values[codes[off + i]]): each of the ≤ 256
 * shifted values fl32(value − mean) is made once, then looked up, giving the same floats.
 * `table` is scratch of values.length floats.
 */
export function shiftCodedRowByMean(codes: Uint8Array, off: number, values: Float32Array, D: number, mean: number, table: Float32Array, dst: Float32Array, dstOff: number): void {
  for (let v = 0; v < values.length; v++) table[v] = values[v]! - mean;
  for (let i = 0; i < D; i++) dst[dstOff + i] = table[codes[off + i]!]!;
}

/** Per-row results of a mean shift (`shiftRowByOwnMean`), indexed by row number. */
export interface ShiftedRowStats {
  /** mean_r (float64). */
  means: Float64Array;
  /** ‖fl32(row − mean_r)‖ (float64). */
  shiftedNorms: Float64Array;
  /** The float64 row sum the mean was made from (optional). */
  sums?: Float64Array;
}

/**
 * dst[dstOff ..] = fl32(src[off ..] − mean·1) for one row of length D, mean the row's float64
 * mean; the row's statistics go to `stats` at index `at`. A non-finite row is reported as
 * `${what} ${id}`.
 */
export function shiftRowByOwnMean(src: Float32Array, off: number, D: number, dst: Float32Array, dstOff: number, stats: ShiftedRowStats, at: number, what: string, id: number): void {
  // Two accumulators break the add latency chain; the order is fixed, so results are deterministic.
  let sumEven = 0;
  let sumOdd = 0;
  let i = 0;
  for (; i + 2 <= D; i += 2) {
    sumEven += src[off + i]!;
    sumOdd += src[off + i + 1]!;
  }
  if (i < D) sumEven += src[off + i]!;
  const sum = sumEven + sumOdd;
  if (!Number.isFinite(sum)) throw new UvuError(`${what} ${id} contains a non-finite value (NaN or ±Infinity)`);
  const mean = sum / D;
  let normSq = 0;
  for (let i = 0; i < D; i++) {
    dst[dstOff + i] = src[off + i]! - mean; // rounds to float32
    const w = dst[dstOff + i]!;
    normSq += w * w;
  }
  stats.means[at] = mean;
  stats.shiftedNorms[at] = Math.sqrt(normSq);
  if (stats.sums) stats.sums[at] = sum;
}

/**
 * dst[dstOff ..] = fl32(src[off ..] − mean·1) for one row of length D whose mean (from
 * `shiftRowByOwnMean`) is already known: the same floats, one pass instead of two.
 */
export function shiftRowByMean(src: Float32Array, off: number, D: number, mean: number, dst: Float32Array, dstOff: number): void {
  for (let i = 0; i < D; i++) dst[dstOff + i] = src[off + i]! - mean;
}

/**
 * dst[r] = fl32(src[first + r] − mean_r·1) for `rows` rows of length D (`shiftRowByOwnMean`
 * row by row); statistics at index first + r, non-finite rows reported as
 * `${what} ${idOffset + first + r}`.
 */
function shiftRowsByMean(src: Float32Array, first: number, rows: number, D: number, dst: Float32Array, stats: ShiftedRowStats, what: string, idOffset: number): void {
  for (let r = 0; r < rows; r++) shiftRowByOwnMean(src, (first + r) * D, D, dst, r * D, stats, first + r, what, idOffset + first + r);
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
  /** m_k = mean of c_k (float64), [K]. */
  private readonly centerMean: Float64Array; // only its maximum enters the search (see prepareBlock)
  /** ‖c̃'_k‖ = ‖fl32(c_k − m_k·1)‖ in float64, [K]. */
  private readonly shiftedCenterNorm: Float64Array;
  /** Mean-shifted centres c̃' [K, D], or null when too large to keep (then shifted per chunk into chunkBuffer). */
  private readonly shiftedCenters: Float32Array | null;
  private chunkBuffer: Float32Array | null = null;
  /** Bounds used by the float64 rounding term of the tolerance. */
  private readonly maxCenterNormSq: number;
  private readonly maxCenterAbsSum: number;
  private readonly maxAbsCenterMean: number;
  private readonly maxShiftedCenterNorm: number;
  private readonly chunkQueries: number;
  private readonly chunkCenters: number;
  private readonly gemm: SgemmFn;
  /** γ_D = D·u/(1 − D·u): worst-case relative error factor of a float32 dot product of length D. */
  private readonly gammaD: number;

  // Per-block scratch, reused across calls.
  /** −2·x̃'·c̃' for the current block, [chunkQueries, chunkCenters]. */
  private scores: Float32Array | null = null;
  /** Float32 copy of a block of uint8 queries, [chunkQueries, D]. */
  private queryBlock: Float32Array | null = null;
  /** Mean-shifted query block x̃', [chunkQueries, D]. */
  private shiftedBlock: Float32Array | null = null;
  private readonly queryMean: Float64Array;
  private readonly querySum: Float64Array;
  private readonly shiftedQueryNorm: Float64Array;
  /** Per row: −2·m_x, error slope α (e_k = α·‖c̃'_k‖ + ρ) and absolute term ρ. */
  private readonly rowMeanTerm: Float64Array;
  private readonly rowAlpha: Float64Array;
  private readonly rowRho: Float64Array;
  /** Per row: U = least upper bound seen so far on the (shifted) true distance of the best centre. */
  private readonly upperBound: Float64Array;
  private readonly candCount: Int32Array;
  private readonly candId: Int32Array;
  /** Lower bound (score − error) of each listed candidate. */
  private readonly candLower: Float64Array;
  /** 1 when a query's candidate list overflowed: it is settled by an exact scan over all centres. */
  private readonly overflowed: Uint8Array;
  /** Per row: the smallest lower bound (score − error) over all centres, its centre, and the second smallest. */
  private readonly low1: Float64Array;
  private readonly low1Id: Int32Array;
  private readonly low2: Float64Array;
  /** When set by `searchWithSecond`: per query, a lower bound on the squared distance to every centre but the result. */
  private secondOut: Float64Array | null = null;
  private normSqIn: Float64Array | null = null;
  /** Set by `searchPrepared` / `lowerBoundsPrepared`: the caller's prepared queries. */
  private prepared: PreparedQueries | null = null;
  /** Set by `lowerBoundsPrepared`: per query the two smallest lower bounds on ‖x − c_k‖² and the centre of the first; no exact settling. */
  private boundsOut: { first: Float64Array; firstId: Int32Array; second: Float64Array } | null = null;
  private stats: SearchStats = { queries: 0, reranked: 0, rerankDistances: 0, exactScans: 0 };

  constructor(centers: Float32Array, K: number, D: number, opts: FlatIndexOptions = {}) {
    checkCount('K', K, 1);
    checkCount('D', D, 1);
    if (!(centers instanceof Float32Array)) throw new UsageError('centres must be a Float32Array');
    if (centers.length !== K * D) throw new UsageError(`centres hold ${centers.length} floats, expected K·D = ${K}·${D} = ${K * D}`);
    const chunkQueries = opts.chunkQueries ?? 1024;
    const chunkCenters = opts.chunkCenters ?? 4096;
    checkCount('chunkQueries', chunkQueries, 1);
    checkCount('chunkCenters', chunkCenters, 1);
    if (D * U_F32 >= 0.1) throw new UsageError(`D = ${D} is too large for float32 inner products`);
    this.K = K;
    this.D = D;
    this.centers = centers;
    this.chunkQueries = chunkQueries;
    this.chunkCenters = Math.min(chunkCenters, K);
    this.gemm = sgemmFor(opts.backend ?? 'auto');
    this.gammaD = (D * U_F32) / (1 - D * U_F32);

    this.centerNormSq = new Float64Array(K);
    rowNormsSq(centers, 0, K, D, this.centerNormSq);
    this.centerSum = new Float64Array(K);
    this.centerMean = new Float64Array(K);
    this.shiftedCenterNorm = new Float64Array(K);
    let maxNormSq = 0;
    let maxAbsSum = 0;
    for (let k = 0; k < K; k++) {
      let sum = 0;
      let absSum = 0;
      for (let i = k * D, end = i + D; i < end; i++) {
        const v = centers[i]!;
        sum += v;
        absSum += Math.abs(v);
      }
      if (!Number.isFinite(this.centerNormSq[k]!)) throw new UvuError(`centre ${k} contains a non-finite value (NaN or ±Infinity)`);
      this.centerSum[k] = sum;
      maxNormSq = Math.max(maxNormSq, this.centerNormSq[k]!);
      maxAbsSum = Math.max(maxAbsSum, absSum);
    }
    this.maxCenterNormSq = maxNormSq;
    this.maxCenterAbsSum = maxAbsSum;
    if (K * D <= MAX_SHIFTED_COPY_FLOATS) {
      this.shiftedCenters = new Float32Array(K * D);
      shiftRowsByMean(centers, 0, K, D, this.shiftedCenters, { means: this.centerMean, shiftedNorms: this.shiftedCenterNorm }, 'centre', 0);
    } else {
      // Means and norms now; the shifted rows themselves are remade per chunk during search.
      this.shiftedCenters = null;
      const row = new Float32Array(D);
      const stats = { means: this.centerMean, shiftedNorms: this.shiftedCenterNorm };
      for (let k = 0; k < K; k++) shiftRowsByMean(centers.subarray(0, (k + 1) * D), k, 1, D, row, stats, 'centre', 0);
    }
    let maxAbsMean = 0;
    let maxShiftedNorm = 0;
    for (let k = 0; k < K; k++) {
      maxAbsMean = Math.max(maxAbsMean, Math.abs(this.centerMean[k]!));
      maxShiftedNorm = Math.max(maxShiftedNorm, this.shiftedCenterNorm[k]!);
    }
    this.maxAbsCenterMean = maxAbsMean;
    this.maxShiftedCenterNorm = maxShiftedNorm;

    const cq = chunkQueries;
    this.queryMean = new Float64Array(cq);
    this.querySum = new Float64Array(cq);
    this.shiftedQueryNorm = new Float64Array(cq);
    this.rowMeanTerm = new Float64Array(cq);
    this.rowAlpha = new Float64Array(cq);
    this.rowRho = new Float64Array(cq);
    this.upperBound = new Float64Array(cq);
    this.candCount = new Int32Array(cq);
    this.candId = new Int32Array(cq * CANDIDATE_CAP);
    this.candLower = new Float64Array(cq * CANDIDATE_CAP);
    this.overflowed = new Uint8Array(cq);
    this.low1 = new Float64Array(cq);
    this.low1Id = new Int32Array(cq);
    this.low2 = new Float64Array(cq);
    const prev = opts.reuseScratchOf;
    if (prev && prev.D === D) {
      this.scores = prev.scores;
      this.queryBlock = prev.queryBlock;
      this.shiftedBlock = prev.shiftedBlock;
      this.chunkBuffer = prev.chunkBuffer;
      prev.scores = prev.queryBlock = prev.shiftedBlock = prev.chunkBuffer = null;
    }
  }

  /** Counters of the most recent search / searchU8 call. */
  lastSearchStats(): SearchStats {
    return { ...this.stats };
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
   * `search`, plus `secondLowerSq[q]`: a lower bound on ‖x_q − c_j‖² over every centre j other
   * than the result (a proven bound on the real distances, padded so that it also bounds the
   * float64 `exactDistSq` values). For bound-based pruning (k-means). `queryNormSq`, when
   * given, holds each query's ‖x‖² summed in float64 (any order: the padding covers it),
   * saving a pass over the queries.
   */
  searchWithSecond(queries: Float32Array, n: number, secondLowerSq: Float64Array, queryNormSq?: Float64Array): SearchResult {
    if (secondLowerSq.length < n) throw new UsageError(`secondLowerSq holds ${secondLowerSq.length} values, expected at least ${n}`);
    if (queryNormSq && queryNormSq.length < n) throw new UsageError(`queryNormSq holds ${queryNormSq.length} values, expected at least ${n}`);
    this.secondOut = secondLowerSq;
    this.normSqIn = queryNormSq ?? null;
    try {
      return this.search(queries, n);
    } finally {
      this.secondOut = null;
      this.normSqIn = null;
    }
  }

  /**
   * `searchWithSecond` on prepared queries (see PreparedQueries): the same ids, distances and
   * bounds as on the original rows, without the per-search mean shift, and with the exact
   * distance of a query's known centre taken from `knownDistSq` when that centre wins.
   */
  searchPrepared(queries: PreparedQueries, n: number, secondLowerSq: Float64Array): SearchResult {
    checkPrepared(queries, n, this.D);
    if (secondLowerSq.length < n) throw new UsageError(`secondLowerSq holds ${secondLowerSq.length} values, expected at least ${n}`);
    const ids = new Int32Array(n);
    const distSq = new Float32Array(n);
    this.stats = { queries: n, reranked: 0, rerankDistances: 0, exactScans: 0 };
    this.prepared = queries;
    this.secondOut = secondLowerSq;
    this.normSqIn = queries.normSq;
    try {
      for (let q0 = 0; q0 < n; q0 += this.chunkQueries) this.searchBlock(null, Math.min(this.chunkQueries, n - q0), ids, distSq, q0);
    } finally {
      this.prepared = this.secondOut = this.normSqIn = null;
    }
    return { ids, distSq };
  }

  /**
   * Lower bounds only, no exact distances: per prepared query q, `firstSq[q]` ≤ ‖x_q − c_k‖²
   * for every centre k, `firstId[q]` the centre whose bound that is, and `secondSq[q]` the
   * same bound over every centre but firstId[q]; padded like `searchWithSecond`'s, so that
   * they also bound the float64 `exactDistSq` values.
   */
  lowerBoundsPrepared(queries: PreparedQueries, n: number, firstSq: Float64Array, firstId: Int32Array, secondSq: Float64Array): void {
    checkPrepared(queries, n, this.D);
    if (firstSq.length < n || firstId.length < n || secondSq.length < n) throw new UsageError(`lower-bound outputs must hold at least ${n} values`);
    this.prepared = queries;
    this.normSqIn = queries.normSq;
    this.boundsOut = { first: firstSq, firstId, second: secondSq };
    try {
      for (let q0 = 0; q0 < n; q0 += this.chunkQueries) this.searchBlock(null, Math.min(this.chunkQueries, n - q0), null, null, q0);
    } finally {
      this.prepared = this.normSqIn = this.boundsOut = null;
    }
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
   * Shift the query block by each query's own mean and set each row's error terms.
   *
   * Why shift: the float32 error of an inner product grows with the norms of its
   * operands, and photo patches lie far from the origin (brightness) but close to their
   * own mean (little texture). With x = x' + m_x·1 and c = c' + m_c·1 (x', c' exact reals),
   *   x·c = x'·c' + m_x·Σc + m_c·Σx',
   * so the sgemm only has to deliver x'·c' (from the rounded x̃', c̃'), and the other two
   * terms are added in float64 during the scan.
   *
   * Error bound (u = 2^-24, u64 = 2^-53): |x̃'_i − x'_i| ≤ u|x'_i| and likewise for c, so
   * |x̃'·c̃' − x'·c'| ≤ 3u·‖x̃'‖‖c̃'‖; the sgemm adds ≤ γ_D·Σ|x̃'_i c̃'_i| ≤ γ_D·‖x̃'‖‖c̃'‖ for
   * any summation order, blocking or FMA use (Higham, Accuracy and Stability, §3.1);
   * alpha = −2 is exact. The float64 terms (norms, sums, means, three additions) add at
   * most 8·D·u64 times the magnitudes involved. So the score s_k has
   *   |s_k − (‖x − c_k‖² − const_x)| ≤ e_k = α·‖c̃'_k‖ + ρ,  α = 2(γ_D + 3u)·‖x̃'‖.
   * The worst-case factor is D (in γ_D), not sqrt(D), which holds only on average.
   */
  private prepareBlock(block: Float32Array | null, rows: number, firstQuery: number): Float32Array {
    const D = this.D;
    let shifted: Float32Array;
    const p = this.prepared;
    if (p) {
      // The caller's shift and statistics: the very values shiftRowsByMean would give.
      shifted = p.shifted.subarray(firstQuery * D, (firstQuery + rows) * D);
      this.queryMean.set(p.means.subarray(firstQuery, firstQuery + rows));
      this.querySum.set(p.sums.subarray(firstQuery, firstQuery + rows));
      this.shiftedQueryNorm.set(p.shiftedNorms.subarray(firstQuery, firstQuery + rows));
    } else {
      if (!this.shiftedBlock || this.shiftedBlock.length < rows * D) this.shiftedBlock = new Float32Array(rows * D);
      shifted = this.shiftedBlock;
      shiftRowsByMean(
        block!, 0, rows, D, shifted,
        { means: this.queryMean, shiftedNorms: this.shiftedQueryNorm, sums: this.querySum },
        'query', firstQuery,
      );
    }
    const sqrtD = Math.sqrt(D);
    for (let r = 0; r < rows; r++) {
      const mean = this.queryMean[r]!;
      const xNorm = this.shiftedQueryNorm[r]! * (1 + 1e-12); // padded for its own float64 rounding
      // Σ|v_i| for v = fl64(x − mean·1) ≤ √D·‖v‖ ≤ √D·‖fl32(v)‖·(1 + u) (Cauchy–Schwarz).
      const shiftedAbsSum = sqrtD * xNorm * (1 + 1e-6);
      // |Σx'| = |Σx − D·mean| ≤ |Σx − sum| + |sum − D·mean| ≤ D·u64·Σ|x| + u64·|sum|,
      // with Σ|x| ≤ Σ|v|·(1 + u64) + D·|mean|.
      const shiftedSumBound = (D * U_F64 * (shiftedAbsSum + D * Math.abs(mean)) + U_F64 * Math.abs(this.querySum[r]!)) * (1 + 1e-6);
      this.rowMeanTerm[r] = -2 * mean;
      // Relative padding 1e-6 covers the float64 rounding of α·‖c̃'‖ and of the comparisons.
      this.rowAlpha[r] = 2 * (this.gammaD + 3 * U_F32) * xNorm * (1 + 1e-6);
      const magnitude =
        this.maxCenterNormSq +
        2 * Math.abs(mean) * this.maxCenterAbsSum +
        2 * this.maxAbsCenterMean * shiftedAbsSum +
        2 * xNorm * this.maxShiftedCenterNorm;
      // The scan leaves out the term −2·m_k·Σx' (Σx' is the rounding residue of the mean,
      // ≈ 0), so its bound joins ρ; plus D·2^-126 per score for float32 products that
      // underflow to subnormals.
      const droppedTerm = 2 * this.maxAbsCenterMean * shiftedSumBound;
      this.rowRho[r] = (8 * D * U_F64 * magnitude + droppedTerm) * (1 + 1e-6) + 4 * D * 2 ** -126;
      this.upperBound[r] = Infinity;
      this.low1[r] = Infinity;
      this.low1Id[r] = -1;
      this.low2[r] = Infinity;
      this.candCount[r] = 0;
      this.overflowed[r] = 0;
    }
    return shifted.subarray(0, rows * D);
  }

  /** Mean-shifted centres [c0, c0 + cols), from the stored copy or made into the chunk buffer. */
  private shiftedChunk(c0: number, cols: number): Float32Array {
    const D = this.D;
    if (this.shiftedCenters) return this.shiftedCenters.subarray(c0 * D, (c0 + cols) * D);
    if (!this.chunkBuffer || this.chunkBuffer.length < cols * D) this.chunkBuffer = new Float32Array(this.chunkCenters * D);
    // Means and norms are already stored; these scratch copies receive identical values.
    const stats = { means: new Float64Array(cols), shiftedNorms: new Float64Array(cols) };
    shiftRowsByMean(this.centers.subarray(c0 * D, (c0 + cols) * D), 0, cols, D, this.chunkBuffer, stats, 'centre', c0);
    return this.chunkBuffer.subarray(0, cols * D);
  }

  /**
   * Search `rows` queries (block [rows, D], original values; null for prepared queries) and
   * write results at outOffset (or, for `lowerBoundsPrepared`, only the bounds).
   */
  private searchBlock(block: Float32Array | null, rows: number, outIds: Int32Array | null, outDist: Float32Array | null, outOffset: number): void {
    const { D, K } = this;
    const shifted = this.prepareBlock(block, rows, outOffset);
    const chunk = this.chunkCenters;
    if (!this.scores || this.scores.length < rows * chunk) this.scores = new Float32Array(rows * chunk);
    const scores = this.scores;
    for (let c0 = 0; c0 < K; c0 += chunk) {
      const cols = Math.min(chunk, K - c0);
      // scores[rows, cols] = −2 · x̃'[rows, D] · c̃'[c0 : c0+cols]ᵀ
      this.gemm(false, true, rows, cols, D, -2, shifted, D, this.shiftedChunk(c0, cols), D, 0, scores, cols);
      if (this.secondOut || this.boundsOut) this.scanScoresSecond(scores, rows, cols, c0);
      else this.scanScores(scores, rows, cols, c0);
    }
    const bounds = this.boundsOut;
    if (bounds) {
      for (let r = 0; r < rows; r++) {
        const xx = this.normSqIn![outOffset + r]!;
        bounds.first[outOffset + r] = lowerBoundSq(this.low1[r]!, xx);
        bounds.firstId[outOffset + r] = this.low1Id[r]!;
        bounds.second[outOffset + r] = lowerBoundSq(this.low2[r]!, xx);
      }
      return;
    }
    const second = this.secondOut;
    for (let r = 0; r < rows; r++) {
      const q = outOffset + r;
      const { id, dist } = this.overflowed[r] ? this.exactScan(block, r, q) : this.settleCandidates(block, r, q);
      outIds![q] = id;
      outDist![q] = dist;
      if (second) {
        let xx = 0;
        if (this.normSqIn) xx = this.normSqIn[q]!;
        else for (let i = r * D, e = i + D; i < e; i++) xx += block![i]! * block![i]!;
        second[q] = lowerBoundSq(this.low1Id[r] === id ? this.low2[r]! : this.low1[r]!, xx);
      }
    }
  }

  /** exactDistSq of query q (row r of the block, or a prepared query) to centre k. */
  private exactTo(block: Float32Array | null, r: number, q: number, k: number): number {
    const D = this.D;
    return this.prepared ? this.prepared.distSq(q, this.centers, k * D) : exactDistSq(block!, r * D, this.centers, k * D, D);
  }

  /**
   * The hot loop. Score s_k = ‖c_k‖² − 2m_x·Σc_k − 2·x̃'·c̃'_k (‖x‖² dropped), with bounds
   * [s_k − e_k, s_k + e_k]. U = least upper bound so far; a centre is listed when its
   * lower bound is ≤ U, so the true nearest centre (lower bound ≤ its distance ≤ every
   * upper bound) is always listed. Rows go four at a time so each centre's terms are
   * loaded once per four rows; listing is rare and goes through `offer`.
   */
  private scanScores(scores: Float32Array, rows: number, cols: number, c0: number): void {
    const norms = this.centerNormSq;
    const sums = this.centerSum;
    const shiftedNorms = this.shiftedCenterNorm;
    const meanTerm = this.rowMeanTerm;
    const alpha = this.rowAlpha;
    const rho = this.rowRho;
    const upper = this.upperBound;
    const end = c0 + cols;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const m0 = meanTerm[r]!, m1 = meanTerm[r + 1]!, m2 = meanTerm[r + 2]!, m3 = meanTerm[r + 3]!;
      const a0 = alpha[r]!, a1 = alpha[r + 1]!, a2 = alpha[r + 2]!, a3 = alpha[r + 3]!;
      const p0 = rho[r]!, p1 = rho[r + 1]!, p2 = rho[r + 2]!, p3 = rho[r + 3]!;
      let u0 = upper[r]!, u1 = upper[r + 1]!, u2 = upper[r + 2]!, u3 = upper[r + 3]!;
      // Row bases shifted by −c0 so that index k addresses column k − c0.
      const b0 = r * cols - c0, b1 = b0 + cols, b2 = b1 + cols, b3 = b2 + cols;
      for (let k = c0; k < end; k++) {
        const nk = norms[k]!, sk = sums[k]!, ck = shiftedNorms[k]!;
        let s = nk + m0 * sk + scores[b0 + k]!;
        let e = a0 * ck + p0;
        if (s - e <= u0) {
          if (s + e < u0) u0 = s + e;
          this.offer(r, k, s - e, u0);
        }
        s = nk + m1 * sk + scores[b1 + k]!;
        e = a1 * ck + p1;
        if (s - e <= u1) {
          if (s + e < u1) u1 = s + e;
          this.offer(r + 1, k, s - e, u1);
        }
        s = nk + m2 * sk + scores[b2 + k]!;
        e = a2 * ck + p2;
        if (s - e <= u2) {
          if (s + e < u2) u2 = s + e;
          this.offer(r + 2, k, s - e, u2);
        }
        s = nk + m3 * sk + scores[b3 + k]!;
        e = a3 * ck + p3;
        if (s - e <= u3) {
          if (s + e < u3) u3 = s + e;
          this.offer(r + 3, k, s - e, u3);
        }
      }
      upper[r] = u0;
      upper[r + 1] = u1;
      upper[r + 2] = u2;
      upper[r + 3] = u3;
    }
    for (; r < rows; r++) {
      const m = meanTerm[r]!, a = alpha[r]!, p = rho[r]!;
      let u = upper[r]!;
      const b = r * cols - c0;
      for (let k = c0; k < end; k++) {
        const s = norms[k]! + m * sums[k]! + scores[b + k]!;
        const e = a * shiftedNorms[k]! + p;
        if (s - e <= u) {
          if (s + e < u) u = s + e;
          this.offer(r, k, s - e, u);
        }
      }
      upper[r] = u;
    }
  }

  /**
   * `scanScores` that also keeps, per row, the two smallest lower bounds (s_k − e_k) and the
   * centre of the smallest, for `searchWithSecond`. A separate copy so that plain searches
   * pay nothing for it.
   */
  private scanScoresSecond(scores: Float32Array, rows: number, cols: number, c0: number): void {
    const norms = this.centerNormSq;
    const sums = this.centerSum;
    const shiftedNorms = this.shiftedCenterNorm;
    const meanTerm = this.rowMeanTerm;
    const alpha = this.rowAlpha;
    const rho = this.rowRho;
    const upper = this.upperBound;
    const low1 = this.low1, low2 = this.low2, low1Id = this.low1Id;
    const end = c0 + cols;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const m0 = meanTerm[r]!, m1 = meanTerm[r + 1]!, m2 = meanTerm[r + 2]!, m3 = meanTerm[r + 3]!;
      const a0 = alpha[r]!, a1 = alpha[r + 1]!, a2 = alpha[r + 2]!, a3 = alpha[r + 3]!;
      const p0 = rho[r]!, p1 = rho[r + 1]!, p2 = rho[r + 2]!, p3 = rho[r + 3]!;
      let u0 = upper[r]!, u1 = upper[r + 1]!, u2 = upper[r + 2]!, u3 = upper[r + 3]!;
      let l0 = low1[r]!, l1 = low1[r + 1]!, l2 = low1[r + 2]!, l3 = low1[r + 3]!;
      let q0 = low2[r]!, q1 = low2[r + 1]!, q2 = low2[r + 2]!, q3 = low2[r + 3]!;
      let i0 = low1Id[r]!, i1 = low1Id[r + 1]!, i2 = low1Id[r + 2]!, i3 = low1Id[r + 3]!;
      // Row bases shifted by −c0 so that index k addresses column k − c0.
      const b0 = r * cols - c0, b1 = b0 + cols, b2 = b1 + cols, b3 = b2 + cols;
      for (let k = c0; k < end; k++) {
        const nk = norms[k]!, sk = sums[k]!, ck = shiftedNorms[k]!;
        let s = nk + m0 * sk + scores[b0 + k]!;
        let e = a0 * ck + p0;
        if (s - e < q0) {
          if (s - e < l0) {
            q0 = l0;
            l0 = s - e;
            i0 = k;
          } else q0 = s - e;
        }
        if (s - e <= u0) {
          if (s + e < u0) u0 = s + e;
          this.offer(r, k, s - e, u0);
        }
        s = nk + m1 * sk + scores[b1 + k]!;
        e = a1 * ck + p1;
        if (s - e < q1) {
          if (s - e < l1) {
            q1 = l1;
            l1 = s - e;
            i1 = k;
          } else q1 = s - e;
        }
        if (s - e <= u1) {
          if (s + e < u1) u1 = s + e;
          this.offer(r + 1, k, s - e, u1);
        }
        s = nk + m2 * sk + scores[b2 + k]!;
        e = a2 * ck + p2;
        if (s - e < q2) {
          if (s - e < l2) {
            q2 = l2;
            l2 = s - e;
            i2 = k;
          } else q2 = s - e;
        }
        if (s - e <= u2) {
          if (s + e < u2) u2 = s + e;
          this.offer(r + 2, k, s - e, u2);
        }
        s = nk + m3 * sk + scores[b3 + k]!;
        e = a3 * ck + p3;
        if (s - e < q3) {
          if (s - e < l3) {
            q3 = l3;
            l3 = s - e;
            i3 = k;
          } else q3 = s - e;
        }
        if (s - e <= u3) {
          if (s + e < u3) u3 = s + e;
          this.offer(r + 3, k, s - e, u3);
        }
      }
      upper[r] = u0;
      upper[r + 1] = u1;
      upper[r + 2] = u2;
      upper[r + 3] = u3;
      low1[r] = l0; low1[r + 1] = l1; low1[r + 2] = l2; low1[r + 3] = l3;
      low2[r] = q0; low2[r + 1] = q1; low2[r + 2] = q2; low2[r + 3] = q3;
      low1Id[r] = i0; low1Id[r + 1] = i1; low1Id[r + 2] = i2; low1Id[r + 3] = i3;
    }
    for (; r < rows; r++) {
      const m = meanTerm[r]!, a = alpha[r]!, p = rho[r]!;
      let u = upper[r]!;
      let l = low1[r]!, q = low2[r]!, i = low1Id[r]!;
      const b = r * cols - c0;
      for (let k = c0; k < end; k++) {
        const s = norms[k]! + m * sums[k]! + scores[b + k]!;
        const e = a * shiftedNorms[k]! + p;
        if (s - e < q) {
          if (s - e < l) {
            q = l;
            l = s - e;
            i = k;
          } else q = s - e;
        }
        if (s - e <= u) {
          if (s + e < u) u = s + e;
          this.offer(r, k, s - e, u);
        }
      }
      upper[r] = u;
      low1[r] = l;
      low2[r] = q;
      low1Id[r] = i;
    }
  }

  /** List centre k (lower bound `lower`) for row r; compacts a full list against the current bound `upper`, or marks the row overflowed. */
  private offer(r: number, k: number, lower: number, upper: number): void {
    if (this.overflowed[r]) return;
    const base = r * CANDIDATE_CAP;
    let count = this.candCount[r]!;
    if (count === CANDIDATE_CAP) {
      count = compactCandidates(this.candId, this.candLower, base, count, upper);
      if (count === CANDIDATE_CAP) {
        this.overflowed[r] = 1;
        return;
      }
    }
    this.candId[base + count] = k;
    this.candLower[base + count] = lower;
    this.candCount[r] = count + 1;
  }

  /**
   * Pick among the row's surviving candidates (lower bound ≤ U) by exact distance, ties to the
   * lowest id. A prepared query's known centre takes its known exact distance.
   */
  private settleCandidates(block: Float32Array | null, r: number, q: number): { id: number; dist: number } {
    const upper = this.upperBound[r]!;
    const candBase = r * CANDIDATE_CAP;
    const count = this.candCount[r]!;
    const known = this.prepared?.knownId ? this.prepared.knownId[q]! : -1;
    let survivors = 0;
    let id = -1;
    for (let i = 0; i < count; i++) {
      if (this.candLower[candBase + i]! <= upper) {
        if (survivors === 0) id = this.candId[candBase + i]!;
        survivors++;
      }
    }
    if (survivors === 0) throw new Error(`internal error: no candidate survived for query row ${r}`);
    if (survivors === 1) {
      if (id === known) return { id, dist: this.prepared!.knownDistSq![q]! };
      return { id, dist: this.exactTo(block, r, q, id) };
    }
    this.stats.reranked++;
    this.stats.rerankDistances += survivors;
    let dist = Infinity;
    for (let i = 0; i < count; i++) {
      if (this.candLower[candBase + i]! > upper) continue;
      const k = this.candId[candBase + i]!;
      const d = k === known ? this.prepared!.knownDistSq![q]! : this.exactTo(block, r, q, k);
      // Candidates were listed in increasing id order, so strict < keeps the lowest id on ties.
      if (d < dist) {
        dist = d;
        id = k;
      }
    }
    return { id, dist };
  }

  /** Exact float64 scan over all centres, for a query whose candidate list overflowed. */
  private exactScan(block: Float32Array | null, r: number, q: number): { id: number; dist: number } {
    this.stats.exactScans++;
    let dist = Infinity;
    let id = 0;
    for (let k = 0; k < this.K; k++) {
      const d = this.exactTo(block, r, q, k);
      if (d < dist) {
        dist = d;
        id = k;
      }
    }
    return { id, dist };
  }
}

/**
 * A score-space lower bound (d² − ‖x‖²) turned into one on d²: ‖x‖² added back (float64,
 * relative error ≤ D·u64), padded downwards, never below 0.
 */
function lowerBoundSq(low: number, xx: number): number {
  const sq = low + xx * (1 - 1e-9);
  return sq > 0 ? sq * (1 - 1e-9) : 0;
}

/** Drop candidates whose lower bound exceeds `upper`, keeping order (and so increasing ids); returns the new count. */
function compactCandidates(ids: Int32Array, lower: Float64Array, base: number, count: number, upper: number): number {
  let kept = 0;
  for (let i = 0; i < count; i++) {
    const s = lower[base + i]!;
    if (s <= upper) {
      ids[base + kept] = ids[base + i]!;
      lower[base + kept] = s;
      kept++;
    }
  }
  return kept;
}

/** Loud failure on prepared queries of the wrong size. */
function checkPrepared(p: PreparedQueries, n: number, D: number): void {
  checkCount('n', n, 0);
  if (p.shifted.length < n * D) throw new UsageError(`prepared queries hold ${p.shifted.length} shifted floats, expected at least n·D = ${n}·${D}`);
  for (const [name, a] of [['means', p.means], ['sums', p.sums], ['shiftedNorms', p.shiftedNorms], ['normSq', p.normSq]] as const) {
    if (a.length < n) throw new UsageError(`prepared queries: ${name} holds ${a.length} values, expected at least ${n}`);
  }
  if (p.knownId && (p.knownId.length < n || !p.knownDistSq || p.knownDistSq.length < n)) throw new UsageError(`prepared queries: knownId and knownDistSq must both hold at least ${n} values`);
}
