/**
 * Baseline k-means ("Pure K-means" in the paper's ablation), modelled on Faiss `Clustering.cpp`:
 * random (or k-means++) init, Lloyd iterations with exact BLAS assignment, subsampling to at most
 * `maxPointsPerCentroid`·K points, empty clusters re-seeded by splitting large ones exactly as
 * Faiss's `split_clusters`, and the objective and imbalance recorded every iteration.
 *
 * Memory: the points stay uint8 (n·D bytes), plus a float32 copy (n·D·4 bytes) kept across
 * iterations when n·D ≤ `cacheFloats` (256 MiB by default); centres are K·D float32 per table;
 * centroids are computed cluster by cluster with one float64 accumulator of D, never a K·D
 * float64 table. Pruning (on by default) keeps per point a centre id and six float64 values
 * (bound, last distance, ‖x‖², and the mean, sum and norm of its mean-shifted row), one
 * previous copy of the centres, and two batches of `chunk` shifted rows (2·chunk·D·4 bytes);
 * its assignments are those of full Lloyd exactly.
 * k-means++ seeding keeps n·D/6 bytes of block sums and the K·D seeds (see kmeansPlusPlusInit).
 */
import { z } from 'zod';
import { FlatIndex, exactDistSq, exactDistSqCoded, shiftCodedRowByMean, shiftRowByMean, shiftRowByOwnMean, type PreparedQueries, type ShiftedRowStats } from './search.js';
import type { PatchPoints } from './points.js';
import { Rng } from '../util/rng.js';
import { UsageError, warnOnce } from '../util/errors.js';
import { DEFAULT_CODEBOOK_SEED } from '../util/defaults.js';

/** Above this many floats (256 MiB) k-means re-reads the points chunk by chunk every iteration instead of keeping a float32 copy. */
const DEFAULT_CACHE_FLOATS = 2 ** 26;

export const KmeansConfigSchema = z.object({
  /** Number of centres K. */
  k: z.number().int().min(1),
  /** Lloyd iterations (Faiss default 25). */
  iters: z.number().int().min(1).default(25),
  /** Seed for init, subsampling and splits. */
  seed: z.number().int().default(DEFAULT_CODEBOOK_SEED),
  /** 'random': K distinct training points (Faiss); 'kmeans++': D² sampling (bound-pruned, O(n·K·D) at worst). */
  init: z.enum(['random', 'kmeans++']).default('random'),
  /** Subsample to at most this many points per centre (Faiss default 256). */
  maxPointsPerCentroid: z.number().int().min(1).default(256),
  /** Warn below this many points per centre (Faiss default 39). */
  minPointsPerCentroid: z.number().int().min(1).default(39),
  /** Queries per assignment batch (bounds the float32 scratch: chunk·D·4 bytes). */
  chunk: z.number().int().min(1).default(4096),
  /** Keep a float32 copy of the training points (n·D·4 bytes) across iterations when n·D ≤ this; 0 re-reads every iteration. */
  cacheFloats: z.number().int().min(0).default(DEFAULT_CACHE_FLOATS),
  /**
   * Exact bound-based pruning (Hamerly bounds, with the centres that moved most bounded
   * apart): skip the full search for points that provably keep their centre. Same
   * assignments, distances and centres as full Lloyd, bit for bit (see Assigner.assignPruned).
   */
  prune: z.boolean().default(true),
});
export type KmeansConfig = z.input<typeof KmeansConfigSchema>;

/** Statistics of one iteration (Faiss's ClusteringIterationStats plus the split count). */
export interface KmeansIterStats {
  iter: number;
  /** Σ over training points of the squared distance to the assigned centre (before the update). */
  objective: number;
  /** objective / (n·D): mean squared error per element. */
  mse: number;
  /** K·Σ n_k² / n²: 1 when all clusters have the same size. */
  imbalance: number;
  /** Empty clusters re-seeded by splitting after this iteration's update. */
  nsplit: number;
  /** Wall time of the iteration, seconds. */
  seconds: number;
  /** Fraction of the n·K point–centre distance computations skipped by bound-based pruning (0 without; counts the extra distances the bounds needed). */
  skipped: number;
}

export interface KmeansResult {
  /** [K, D] centres in assignment space (pixel + encoding). */
  centersAssign: Float32Array;
  /** [K, D] pixel-space means of the same members; the same array as centersAssign when no encoding. */
  centersPixel: Float32Array;
  /** [K] members per centre in the last assignment (after the split heuristic's even-halving). */
  counts: Float32Array;
  stats: KmeansIterStats[];
  /** Points actually clustered (after subsampling). */
  nTrain: number;
}

/** Assign every point to its nearest centre, in chunks of `chunk` points. */
export function assignPoints(points: PatchPoints, centers: Float32Array, K: number, chunk: number): { ids: Int32Array; distSq: Float32Array } {
  return new Assigner(points, chunk, 0).assign(centers, K);
}

/**
 * Repeated nearest-centre assignment of one point set (one call per Lloyd iteration). Keeps
 * its buffers between calls: the float32 points themselves when n·D ≤ `cacheFloats` (read
 * once), otherwise one chunk buffer; and the search scratch of the previous index. Results
 * are those of `assignPoints` exactly (the same FlatIndex search on the same floats).
 */
class Assigner {
  private readonly all: Float32Array | null;
  /** One chunk of converted points for `assign` without the float copy (made on first use). */
  private buf: Float32Array | null = null;
  private prevIndex: FlatIndex | undefined;
  /** Hamerly state, valid for `boundCenters`: per point, its centre and a lower bound on the distance to every other centre. */
  private ids: Int32Array | null = null;
  private lower: Float64Array | null = null;
  private boundCenters: Float32Array | null = null;
  /** Per point: mean, sum and ‖shifted row‖ of its mean shift (made in the first pruned call). */
  private rowStats: Required<ShiftedRowStats> | null = null;
  /** The gathered points of one chunk for the full search, and for the search over the moved centres. */
  private full: PreparedSlots | null = null;
  private cand: PreparedSlots | null = null;
  /** ROWS_PER_PASS converted rows, when there is no float copy; one row for exact distances. */
  private rowTmp: Float32Array | null = null;
  private exactRow: Float32Array | null = null;
  /** ‖x_i − c_a‖ at the last call (from the float32 distances: an estimate, for choosing M only). */
  private lastDist: Float64Array | null = null;
  /** ‖x_i‖² (float64) per point, made with the float copy or in the first pruned call. */
  private normSq: Float64Array | null = null;
  /** Points whose search was skipped in the last `assignPruned` call. */
  lastSkippedPoints = 0;
  /** Centres the candidates were bounded against (the set M, one sgemm scan) in the last call. */
  lastMoved = 0;
  /** Points that passed the first bound and were searched against M in the last call. */
  lastCandidates = 0;

  constructor(private readonly points: PatchPoints, private readonly chunk: number, cacheFloats: number) {
    const { n, D } = points;
    if (n * D <= cacheFloats) {
      // Row by row, so that ‖x_i‖² (for pruning) is summed while the row is in cache.
      const all = new Float32Array(n * D);
      const normSq = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        points.readAssign(i, 1, all.subarray(i * D, (i + 1) * D));
        let xx = 0;
        for (let j = i * D, e = j + D; j < e; j++) xx += all[j]! * all[j]!;
        normSq[i] = xx;
      }
      this.all = all;
      this.normSq = normSq;
    } else {
      this.all = null;
    }
  }

  assign(centers: Float32Array, K: number): { ids: Int32Array; distSq: Float32Array } {
    const { points, chunk } = this;
    const { n, D } = points;
    const index = new FlatIndex(centers, K, D, { reuseScratchOf: this.prevIndex });
    this.prevIndex = index;
    if (this.all) return index.search(this.all, n);
    const ids = new Int32Array(n);
    const distSq = new Float32Array(n);
    const buf = (this.buf ??= new Float32Array(Math.min(chunk, n) * D));
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      points.readAssign(start, count, buf);
      const r = index.search(buf.subarray(0, count * D), count);
      ids.set(r.ids, start);
      distSq.set(r.distSq, start);
    }
    return { ids, distSq };
  }

  /**
   * The same result as `assign` (ids and float32 distances, bit for bit), skipping the full
   * search for points that provably keep their centre. Bounds (Hamerly, with the centres that
   * moved most handled apart, as in Yinyang's group filter): point i with centre a keeps a
   * lower bound l_i on ‖x_i − c_j‖ for every j ≠ a at the previous centres. This iteration the
   * centres are split into M, the centres that moved most (how many: chooseMovedCount), and
   * the rest, which moved at most δ_S. Point i keeps a when
   *   u_i < l_i − δ_S   and   u_i < min_{j ∈ M, j ≠ a} ‖x_i − c'_j‖,
   * with u_i = ‖x_i − c'_a‖ the float64 `exactDistSq` the search itself would return; the
   * second condition is checked against proven lower bounds on the distances to M (an sgemm
   * scan over M, FlatIndex.lowerBoundsPrepared, no exact distances). Drifts are padded
   * upwards and distances by a relative 1e-9, far above their float64 rounding, so a strict
   * inequality leaves no tie with a lower id, and the result is that of the full search.
   *
   * Each point is visited once per call, while its row is in cache: converted to float32 (or
   * read from the float copy), its u_i computed, and its mean-shifted row (the search's
   * operand; its mean, sum and norm are kept from the first call) written for whichever
   * search it goes to. The full search reuses u_i when a point keeps its centre.
   */
  assignPruned(centers: Float32Array, K: number): { ids: Int32Array; distSq: Float32Array } {
    const { points, chunk } = this;
    const { n, D } = points;
    const index = new FlatIndex(centers, K, D, { reuseScratchOf: this.prevIndex });
    this.prevIndex = index;
    const first = !this.ids;
    if (first) {
      this.ids = new Int32Array(n);
      this.lower = new Float64Array(n);
      this.boundCenters = new Float32Array(K * D);
      this.rowStats = { means: new Float64Array(n), sums: new Float64Array(n), shiftedNorms: new Float64Array(n) };
      this.normSq ??= new Float64Array(n);
      const cap = Math.min(chunk, n);
      this.full = new PreparedSlots(cap, D);
      this.cand = new PreparedSlots(cap, D);
      if (!this.all) this.rowTmp = new Float32Array(ROWS_PER_PASS * D);
    }
    const normSq = this.normSq!;
    const rowStats = this.rowStats!;
    const ids = this.ids!;
    const lower = this.lower!;
    const old = this.boundCenters!;
    const full = this.full!;
    const cand = this.cand!;
    // Drift of each centre since the bounds were made (padded upwards).
    let deltaS = 0;
    let moved: Int32Array = new Int32Array(0);
    if (!first) {
      const drift = new Float64Array(K);
      for (let k = 0; k < K; k++) {
        let s = 0;
        for (let i = k * D, e = i + D; i < e; i++) {
          const v = centers[i]! - old[i]!;
          s += v * v;
        }
        drift[k] = s === 0 ? 0 : Math.sqrt(s) * (1 + 1e-9) + 1e-300;
      }
      const order = Array.from({ length: K }, (_, k) => k).sort((x, y) => drift[y]! - drift[x]! || x - y);
      const mCount = chooseMovedCount(drift, order, ids, lower, this.lastDist!);
      moved = Int32Array.from(order.slice(0, mCount)).sort();
      deltaS = mCount < K ? drift[order[mCount]!]! : 0;
    }
    let movedIndex: FlatIndex | null = null;
    if (moved.length > 0) {
      const cm = new Float32Array(moved.length * D);
      moved.forEach((k, j) => cm.set(centers.subarray(k * D, (k + 1) * D), j * D));
      movedIndex = new FlatIndex(cm, moved.length, D);
    }
    const outIds = new Int32Array(n);
    const distSq = new Float32Array(n);
    const cap = full.cap;
    const candU = new Float64Array(cap);
    const candBound = new Float64Array(cap);
    const lowM = new Float64Array(cap);
    const lowMId = new Int32Array(cap);
    const lowM2 = new Float64Array(cap);
    const secondSq = new Float64Array(cap);
    const all = this.all;
    const rowTmp = this.rowTmp;
    // Without the float copy, points that are a table lookup of their uint8 values are read as codes (no float row written).
    const coded = all || first ? null : points.codedValues;
    const u8 = points.u8;
    const codeTable = new Float32Array(256);
    let skipped = 0;
    let candidates = 0;
    // Candidates against the moved centres: lower bounds on their distances to M.
    const flushCandidates = (): void => {
      const c = cand.count;
      candidates += c;
      if (c === 0) return;
      movedIndex!.lowerBoundsPrepared(cand.queries(this.distReader(cand)), c, lowM, lowMId, lowM2);
      for (let j = 0; j < c; j++) {
        const i = cand.rowOf[j]!;
        const a = ids[i]!;
        // A lower bound on ‖x_i − c'_j‖ over j ∈ M, j ≠ a.
        const boundM = Math.sqrt(moved[lowMId[j]!] === a ? lowM2[j]! : lowM[j]!);
        if (candU[j]! < boundM) {
          outIds[i] = a;
          distSq[i] = cand.knownDistSq[j]!;
          lower[i] = Math.min(candBound[j]!, boundM);
          skipped++;
        } else {
          if (full.count === full.cap) flushFull();
          full.addFrom(cand, j);
        }
      }
      cand.count = 0;
    };
    // Everything else: the full search.
    const flushFull = (): void => {
      const m = full.count;
      if (m === 0) return;
      const res = index.searchPrepared(full.queries(this.distReader(full)), m, secondSq);
      for (let j = 0; j < m; j++) {
        const i = full.rowOf[j]!;
        outIds[i] = res.ids[j]!;
        distSq[i] = res.distSq[j]!;
        lower[i] = Math.sqrt(secondSq[j]!);
      }
      full.count = 0;
    };
    full.count = cand.count = 0;
    for (let p0 = 0; p0 < n; p0 += ROWS_PER_PASS) {
      const rows = Math.min(ROWS_PER_PASS, n - p0);
      if (full.count + rows > full.cap) flushFull();
      if (cand.count + rows > cand.cap) flushCandidates();
      let src = rowTmp!;
      let base = 0;
      if (all) {
        src = all;
        base = p0 * D;
      } else if (!coded) points.readAssign(p0, rows, rowTmp!);
      for (let r = 0, off = base; r < rows; r++, off += D) {
        const i = p0 + r;
        if (first) {
          // The shift, and the statistics kept for every later call.
          shiftRowByOwnMean(src, off, D, full.shifted, full.count * D, rowStats, i, 'training point', i);
          if (!all) {
            let xx = 0;
            for (let j = off, e = off + D; j < e; j++) xx += src[j]! * src[j]!;
            normSq[i] = xx;
          }
          full.add(i, -1, NaN, rowStats, normSq);
          continue;
        }
        // u_i for every point: the bounds' test, and the distance itself whenever the point keeps its centre.
        const a = ids[i]!;
        const d2 = coded ? exactDistSqCoded(u8, i * D, coded, centers, a * D, D) : exactDistSq(src, off, centers, a * D, D);
        const bound = lower[i]! - deltaS;
        const u = Math.sqrt(d2) * (1 + 1e-9);
        if (u < bound && !movedIndex) {
          // No centre moved more than δ_S: the first bound is the whole test.
          outIds[i] = a;
          distSq[i] = d2;
          lower[i] = bound;
          skipped++;
          candidates++;
          continue;
        }
        const to = u < bound ? cand : full;
        if (to === cand) {
          candBound[cand.count] = bound;
          candU[cand.count] = u;
        }
        if (coded) shiftCodedRowByMean(u8, i * D, coded, D, rowStats.means[i]!, codeTable, to.shifted, to.count * D);
        else shiftRowByMean(src, off, D, rowStats.means[i]!, to.shifted, to.count * D);
        to.add(i, a, d2, rowStats, normSq);
      }
    }
    flushCandidates();
    flushFull();
    ids.set(outIds);
    old.set(centers);
    const lastDist = (this.lastDist ??= new Float64Array(n));
    for (let i = 0; i < n; i++) lastDist[i] = Math.sqrt(distSq[i]!);
    this.lastSkippedPoints = skipped;
    this.lastMoved = moved.length;
    this.lastCandidates = candidates;
    return { ids: outIds, distSq };
  }

  /**
   * exactDistSq from the original row of the point in slot q of `slots` (for the search's
   * exact distances): from the float copy, from the uint8 codes, or from a decoded row.
   */
  private distReader(slots: PreparedSlots): (q: number, centres: Float32Array, cOff: number) => number {
    const { points, all } = this;
    const D = points.D;
    if (all) return (q, centres, cOff) => exactDistSq(all, slots.rowOf[q]! * D, centres, cOff, D);
    const coded = points.codedValues;
    if (coded) return (q, centres, cOff) => exactDistSqCoded(points.u8, slots.rowOf[q]! * D, coded, centres, cOff, D);
    const row = (this.exactRow ??= new Float32Array(D));
    let rowIndex = -1;
    return (q, centres, cOff) => {
      const i = slots.rowOf[q]!;
      if (i !== rowIndex) points.readAssign(i, 1, row);
      rowIndex = i;
      return exactDistSq(row, 0, centres, cOff, D);
    };
  }
}

/**
 * How many of the most-moved centres to put in M (0, or K/16, K/8, K/4, K/2 of them; never a
 * centre that did not move): the one that minimises the estimated distance count
 * (n − candidates)·K + candidates·|M|, with candidates estimated by ‖x_i − c_a‖ ≤ last
 * distance + drift of c_a. Any choice gives the same assignment; this only picks the cheapest.
 */
function chooseMovedCount(drift: Float64Array, order: number[], ids: Int32Array, lower: Float64Array, lastDist: Float64Array): number {
  const K = drift.length;
  const n = ids.length;
  let moving = 0;
  while (moving < K && drift[order[moving]!]! > 0) moving++;
  let best = 0;
  let bestCost = Infinity;
  for (const m of new Set([0, K >> 4, K >> 3, K >> 2, K >> 1].map((m) => Math.min(m, moving)))) {
    const deltaS = m < K ? drift[order[m]!]! : 0;
    let candidates = 0;
    for (let i = 0; i < n; i++) if (lastDist[i]! + drift[ids[i]!]! < lower[i]! - deltaS) candidates++;
    const cost = (n - candidates) * K + candidates * m;
    if (cost < bestCost) {
      bestCost = cost;
      best = m;
    }
  }
  return best;
}

/** Points converted, bounded and shifted per pass: a few rows, so each is still in cache for the next step. */
const ROWS_PER_PASS = 8;

/**
 * Up to `cap` points gathered for one search: their mean-shifted rows [cap, D], the statistics
 * kept for them, and per slot the point's index and a known centre with its exact distance.
 */
class PreparedSlots {
  count = 0;
  readonly shifted: Float32Array;
  readonly rowOf: Int32Array;
  readonly means: Float64Array;
  readonly sums: Float64Array;
  readonly shiftedNorms: Float64Array;
  readonly normSq: Float64Array;
  readonly knownId: Int32Array;
  readonly knownDistSq: Float64Array;

  constructor(readonly cap: number, private readonly D: number) {
    this.shifted = new Float32Array(cap * D);
    this.rowOf = new Int32Array(cap);
    this.means = new Float64Array(cap);
    this.sums = new Float64Array(cap);
    this.shiftedNorms = new Float64Array(cap);
    this.normSq = new Float64Array(cap);
    this.knownId = new Int32Array(cap);
    this.knownDistSq = new Float64Array(cap);
  }

  /** Record point i in the next slot, whose shifted row the caller has written. */
  add(i: number, knownId: number, knownDistSq: number, stats: Required<ShiftedRowStats>, normSq: Float64Array): void {
    const s = this.count++;
    this.rowOf[s] = i;
    this.means[s] = stats.means[i]!;
    this.sums[s] = stats.sums[i]!;
    this.shiftedNorms[s] = stats.shiftedNorms[i]!;
    this.normSq[s] = normSq[i]!;
    this.knownId[s] = knownId;
    this.knownDistSq[s] = knownDistSq;
  }

  /** Move slot j of `other` (row and all) into the next slot. */
  addFrom(other: PreparedSlots, j: number): void {
    const s = this.count++;
    const D = this.D;
    this.shifted.set(other.shifted.subarray(j * D, (j + 1) * D), s * D);
    this.rowOf[s] = other.rowOf[j]!;
    this.means[s] = other.means[j]!;
    this.sums[s] = other.sums[j]!;
    this.shiftedNorms[s] = other.shiftedNorms[j]!;
    this.normSq[s] = other.normSq[j]!;
    this.knownId[s] = other.knownId[j]!;
    this.knownDistSq[s] = other.knownDistSq[j]!;
  }

  queries(distSq: PreparedQueries['distSq']): PreparedQueries {
    return { shifted: this.shifted, means: this.means, sums: this.sums, shiftedNorms: this.shiftedNorms, normSq: this.normSq, distSq, knownId: this.knownId, knownDistSq: this.knownDistSq };
  }
}

/**
 * Stable counting sort of positions by cluster id: the members of cluster k are
 * order[start[k] .. start[k+1]), in increasing position.
 */
export function groupByCluster(ids: ArrayLike<number>, K: number): { order: Int32Array; start: Int32Array } {
  const n = ids.length;
  const start = new Int32Array(K + 1);
  for (let i = 0; i < n; i++) start[ids[i]! + 1]!++;
  for (let k = 0; k < K; k++) start[k + 1]! += start[k]!;
  const order = new Int32Array(n);
  const fill = start.slice(0, K);
  for (let i = 0; i < n; i++) order[fill[ids[i]!]!++] = i;
  return { order, start };
}

/**
 * Means of each cluster's members (Faiss compute_centroids), written to `outAssign` and, when
 * given, `outPixel`. Clusters with no members keep their previous centres and are reported by
 * count 0. Members are visited cluster by cluster (counting sort), summing uint8 values as
 * exact integers, so the accumulators are D long, not K·D.
 */
export function computeCentroids(points: PatchPoints, ids: Int32Array, K: number, outAssign: Float32Array, outPixel: Float32Array | null): Float64Array {
  const { D } = points;
  const { order, start } = groupByCluster(ids, K);
  const counts = Float64Array.from({ length: K }, (_, k) => start[k + 1]! - start[k]!);
  const pixelSum = new Float64Array(D);
  const encSum = points.encoded ? new Float64Array(D) : null;
  for (let k = 0; k < K; k++) {
    const c = counts[k]!;
    if (c === 0) continue;
    points.sumRows(order, start[k]!, start[k + 1]!, pixelSum, encSum);
    const base = k * D;
    const toUnit = 1 / (255 * c);
    for (let d = 0; d < D; d++) {
      const pixel = pixelSum[d]! * toUnit;
      if (outPixel) outPixel[base + d] = pixel;
      outAssign[base + d] = encSum ? pixel + encSum[d]! / c : pixel;
    }
  }
  return counts;
}

/**
 * Faiss split_clusters: each empty centre ci copies a cluster cj chosen with probability
 * (n_j − 1)/(n − K) (scanning from cj = 0 round-robin), both get a symmetric relative
 * perturbation of ±1/1024 (alternating by dimension), and the members are assumed split evenly.
 * `tables` are perturbed identically (assignment and pixel centres stay in step). With an
 * `active` mask, inactive slots are neither re-seeded nor split and K counts active slots only.
 * Returns the (ci, cj) pairs in the order they were made.
 */
export function splitClusters(counts: Float64Array, n: number, D: number, tables: Float32Array[], rng: Rng, active?: Uint8Array): [number, number][] {
  const EPS = 1 / 1024;
  const K = counts.length;
  const kActive = active ? active.reduce((s, a) => s + a, 0) : K;
  const pairs: [number, number][] = [];
  // With no more points than live centres there is nothing to split (and p would be undefined).
  if (n <= kActive) return pairs;
  for (let ci = 0; ci < K; ci++) {
    if (counts[ci] !== 0 || (active && !active[ci])) continue;
    let cj = 0;
    for (;; cj = (cj + 1) % K) {
      const p = (counts[cj]! - 1) / (n - kActive);
      if (rng.next() < p) break;
    }
    for (const t of new Set(tables)) {
      t.copyWithin(ci * D, cj * D, (cj + 1) * D);
      for (let d = 0; d < D; d++) {
        const up = d % 2 === 0;
        t[ci * D + d]! *= up ? 1 + EPS : 1 - EPS;
        t[cj * D + d]! *= up ? 1 - EPS : 1 + EPS;
      }
    }
    counts[ci] = Math.floor(counts[cj]! / 2);
    counts[cj]! -= counts[ci]!;
    pairs.push([ci, cj]);
  }
  return pairs;
}

/** Coordinates per block of the block-mean lower bound used by k-means++ (16 RGB pixels). */
const SEED_BLOCK = 48;

/**
 * ‖x − c‖² as k-means++ has always summed it: float64, one accumulator, d = 0..D−1. Kept
 * apart (and not `exactDistSq`) because the D² weights, and so the chosen seeds, depend on
 * these exact float64 values.
 */
function seedDistSq(x: Float32Array, c: Float32Array, cOff: number, D: number): number {
  let s = 0;
  for (let d = 0; d < D; d++) {
    const diff = x[d]! - c[cOff + d]!;
    s += diff * diff;
  }
  return s;
}

/**
 * S_b/√|b| for one row: block sums (blocks of SEED_BLOCK consecutive coordinates, the last
 * one shorter) scaled so that Σ_b (S_b(x)/√|b| − S_b(c)/√|b|)² is the block-mean bound.
 */
function scaledBlockSums(x: Float32Array, xOff: number, D: number, out: Float64Array, outOff: number): void {
  for (let b = 0, d = 0; d < D; b++) {
    const e = Math.min(D, d + SEED_BLOCK);
    const len = e - d;
    let s = 0;
    for (; d < e; d++) s += x[xOff + d]!;
    out[outOff + b] = s / Math.sqrt(len);
  }
}

/**
 * k-means++ seeding (D² sampling) in assignment space. Each new centre c only lowers the
 * D² weight minDist[i] of the points it is nearer to, so the update skips every point for which
 * a cheap lower bound on ‖x_i − c‖² already reaches minDist[i], and computes `seedDistSq`, the
 * same float64 sum as always, for the rest. The weights, and so the chosen seeds, are exactly
 * those of the plain O(n·K·D) update (tested). Lower bounds, cheapest first:
 *  - triangle inequality: ‖x − c‖ ≥ ‖c − c_a‖ − ‖x − c_a‖ (c_a the point's nearest seed), so
 *    ‖c − c_a‖ ≥ 2·√minDist proves it (one comparison per point, one distance per seed pair);
 *  - block means: projecting onto vectors constant on blocks of SEED_BLOCK coordinates cannot
 *    lengthen x − c, so ‖x − c‖² ≥ Σ_b (S_b(x) − S_b(c))²/|b| with S_b the block sums
 *    (D/48 terms instead of D).
 * Both are padded (relative 1e-8 and 1e-9, and an absolute term far above the float64 rounding
 * of the block sums), so a skipped point is one whose `seedDistSq` would not have been below
 * minDist[i]. Extra memory: n·D/6 bytes of block sums and K·D floats of seeds.
 */
function kmeansPlusPlusInit(points: PatchPoints, K: number, rng: Rng, chunk: number): Int32Array {
  const { n, D } = points;
  const B = Math.ceil(D / SEED_BLOCK);
  const chosen = new Int32Array(K);
  const minDist = new Float64Array(n).fill(Infinity);
  /** Per point: which seed (index into `chosen`) gave minDist; −1 before the first. */
  const nearest = new Int32Array(n).fill(-1);
  /** Scaled block sums of every point [n, B]. */
  const sums = new Float64Array(n * B);
  /** The largest |value| of any point, for the absolute padding of the block bound. */
  let maxAbs = 0;
  const buf = new Float32Array(Math.min(chunk, n) * D);
  for (let start = 0; start < n; start += chunk) {
    const count = Math.min(chunk, n - start);
    points.readAssign(start, count, buf);
    for (let r = 0; r < count; r++) scaledBlockSums(buf, r * D, D, sums, (start + r) * B);
    for (let i = 0; i < count * D; i++) maxAbs = Math.max(maxAbs, Math.abs(buf[i]!));
  }
  // Rounding of a block sum is ≤ |b|²·u64·maxAbs, of the bound's float64 arithmetic far less than 1e-9 of it.
  const blockPad = 1e-9 * D * (maxAbs * maxAbs + 1e-30);
  const seeds = new Float32Array(K * D);
  const seedSums = new Float64Array(B);
  const pairDistSq = new Float64Array(K);
  const row = new Float32Array(D);
  chosen[0] = rng.int(n);
  for (let c = 0; ; c++) {
    points.readAssign(chosen[c]!, 1, seeds.subarray(c * D, (c + 1) * D));
    scaledBlockSums(seeds, c * D, D, seedSums, 0);
    // ‖c − c_j‖² for the earlier seeds, padded downwards.
    for (let j = 0; j < c; j++) pairDistSq[j] = exactDistSq(seeds, c * D, seeds, j * D, D) * (1 - 1e-9);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const md = minDist[i]!;
      const a = nearest[i]!;
      // ‖c − c_a‖ ≥ 2·√minDist, squared and padded.
      if (a >= 0 && pairDistSq[a]! >= 4 * md * (1 + 1e-8)) {
        total += md;
        continue;
      }
      if (a >= 0) {
        let lb = 0;
        for (let b = 0, o = i * B; b < B; b++, o++) {
          const diff = sums[o]! - seedSums[b]!;
          lb += diff * diff;
        }
        if (lb * (1 - 1e-9) - blockPad >= md) {
          total += md;
          continue;
        }
      }
      points.readAssign(i, 1, row);
      const s = seedDistSq(row, seeds, c * D, D);
      if (s < md) {
        minDist[i] = s;
        nearest[i] = c;
      }
      total += minDist[i]!;
    }
    if (c + 1 === K) break;
    chosen[c + 1] = sampleByWeight(minDist, total, rng);
  }
  return chosen;
}

/**
 * Reference k-means++ seeding: the plain D² update, every point against every new seed,
 * O(n·K·D), with a float32 copy of all points (n·D·4 bytes). For tests and benchmarks of
 * `kmeansPlusPlusInit`, which must pick exactly these seeds.
 */
export function plainKmeansPlusPlus(points: PatchPoints, K: number, rng: Rng): Int32Array {
  const { n, D } = points;
  const all = new Float32Array(n * D);
  points.readAssign(0, n, all);
  const minDist = new Float64Array(n).fill(Infinity);
  const chosen = new Int32Array(K);
  chosen[0] = rng.int(n);
  const row = new Float32Array(D);
  for (let c = 0; ; c++) {
    let total = 0;
    for (let i = 0; i < n; i++) {
      row.set(all.subarray(i * D, (i + 1) * D));
      const s = seedDistSq(row, all, chosen[c]! * D, D);
      if (s < minDist[i]!) minDist[i] = s;
      total += minDist[i]!;
    }
    if (c + 1 === K) break;
    chosen[c + 1] = sampleByWeight(minDist, total, rng);
  }
  return chosen;
}

/** D² sampling: index i with probability w_i/total (scanning in order), uniform when all weights are 0. */
function sampleByWeight(w: Float64Array, total: number, rng: Rng): number {
  const n = w.length;
  // All remaining points coincide with chosen centres: fall back to uniform choice.
  let r = rng.next() * total;
  if (!(total > 0)) return rng.int(n);
  for (let i = 0; i < n; i++) {
    r -= w[i]!;
    if (r < 0) return i;
  }
  return n - 1;
}

/**
 * Indices (into `train`) of the K initial centres, drawn from `rng` exactly as `kmeans` draws
 * them after subsampling: 'random' = K distinct points (Faiss), 'kmeans++' = D² sampling.
 * Exported so that a benchmark can hand another tool the same initial centres.
 */
export function initialCentreIndices(train: PatchPoints, K: number, init: 'random' | 'kmeans++', rng: Rng, chunk: number): ArrayLike<number> {
  return init === 'random' ? rng.sampleIndices(train.n, K) : kmeansPlusPlusInit(train, K, rng, chunk);
}

/**
 * Full nearest-centre assignment of all training points to the [K, D] centres, done elsewhere
 * (cluster workers, src/cluster/): exact, as FlatIndex.search, ids in [0, K).
 */
export type AssignAll = (centers: Float32Array, K: number) => { ids: Int32Array; distSq: Float32Array };

/**
 * Cluster `points` into K centres. `onIter` sees each iteration's statistics as they happen,
 * with that iteration's assignment and the updated centres (live arrays: copy to keep).
 * With `assignAll`, every iteration's assignment is that function's (plain full assignment,
 * no pruning: the same result, since pruning is exact). Throws UsageError when K exceeds the
 * number of points.
 */
export function kmeans(points: PatchPoints, config: KmeansConfig, onIter?: (s: KmeansIterStats, state: { ids: Int32Array; centersAssign: Float32Array }) => void, assignAll?: AssignAll): KmeansResult {
  const cfg = KmeansConfigSchema.parse(config);
  const K = cfg.k;
  const { D } = points;
  if (K > points.n) throw new UsageError(`k-means: K = ${K} is larger than the number of training patches (${points.n}); lower --size or add images`);
  const rng = new Rng(cfg.seed);

  let train = points;
  const maxN = K * cfg.maxPointsPerCentroid;
  if (points.n > maxN) train = points.subset(rng.sampleIndices(points.n, maxN));
  else if (points.n < K * cfg.minPointsPerCentroid) {
    warnOnce('kmeans-few-points', `clustering ${points.n} points to ${K} centroids: Faiss recommends at least ${K * cfg.minPointsPerCentroid} (${cfg.minPointsPerCentroid} per centroid)`);
  }
  const n = train.n;
  if (assignAll && train !== points) throw new UsageError(`k-means: an external assignment needs every point trained on (n = ${points.n} > ${maxN} = K·maxPointsPerCentroid)`);

  const seeds = initialCentreIndices(train, K, cfg.init, rng, cfg.chunk);
  const centersAssign = new Float32Array(K * D);
  for (let k = 0; k < K; k++) train.readAssign(seeds[k]!, 1, centersAssign.subarray(k * D, (k + 1) * D));
  const centersPixel = train.encoded ? new Float32Array(K * D) : centersAssign;
  if (train.encoded) for (let k = 0; k < K; k++) train.readPixel(seeds[k]!, 1, centersPixel.subarray(k * D, (k + 1) * D));

  const stats: KmeansIterStats[] = [];
  let counts: Float64Array = new Float64Array(K);
  // Reading the points once is counted in iteration 0's time.
  let t0 = performance.now();
  // With an external assignment the points are never searched here: no float copy (n·D·4 bytes) to make.
  const assigner = new Assigner(train, cfg.chunk, assignAll ? 0 : cfg.cacheFloats);
  for (let iter = 0; iter < cfg.iters; iter++) {
    if (iter > 0) t0 = performance.now();
    const { ids, distSq } = assignAll ? assignAll(centersAssign, K) : cfg.prune ? assigner.assignPruned(centersAssign, K) : assigner.assign(centersAssign, K);
    // Distances computed: K per fully searched point, |M| + 1 per candidate (search over M, exact u).
    const computed = (n - assigner.lastSkippedPoints) * K + assigner.lastCandidates * (assigner.lastMoved + 1);
    const skipped = cfg.prune ? Math.max(0, 1 - computed / (n * K)) : 0;
    let objective = 0;
    for (let i = 0; i < n; i++) objective += distSq[i]!;
    counts = computeCentroids(train, ids, K, centersAssign, train.encoded ? centersPixel : null);
    let sumSq = 0;
    for (let k = 0; k < K; k++) sumSq += counts[k]! * counts[k]!;
    const imbalance = (K * sumSq) / (n * n);
    const nsplit = splitClusters(counts, n, D, [centersAssign, centersPixel], rng).length;
    const s: KmeansIterStats = { iter, objective, mse: objective / (n * D), imbalance, nsplit, seconds: (performance.now() - t0) / 1000, skipped };
    stats.push(s);
    onIter?.(s, { ids, centersAssign });
  }
  return { centersAssign, centersPixel, counts: Float32Array.from(counts), stats, nTrain: n };
}
