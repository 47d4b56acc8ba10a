/**
 * Baseline k-means ("Pure K-means" in the paper's ablation), modelled on Faiss `Clustering.cpp`:
 * random (or k-means++) init, Lloyd iterations with exact BLAS assignment, subsampling to at most
 * `maxPointsPerCentroid`·K points, empty clusters re-seeded by splitting large ones exactly as
 * Faiss's `split_clusters`, and the objective and imbalance recorded every iteration.
 *
 * Memory: the points stay uint8 (n·D bytes); centres are K·D float32 per table; centroids are
 * computed cluster by cluster with one float64 accumulator of D, never a K·D float64 table.
 */
import { z } from 'zod';
import { FlatIndex } from './search.js';
import type { PatchPoints } from './points.js';
import { Rng } from '../util/rng.js';
import { UsageError, warnOnce } from '../util/errors.js';
import { DEFAULT_CODEBOOK_SEED } from '../util/defaults.js';

export const KmeansConfigSchema = z.object({
  /** Number of centres K. */
  k: z.number().int().min(1),
  /** Lloyd iterations (Faiss default 25). */
  iters: z.number().int().min(1).default(25),
  /** Seed for init, subsampling and splits. */
  seed: z.number().int().default(DEFAULT_CODEBOOK_SEED),
  /** 'random': K distinct training points (Faiss); 'kmeans++': D² sampling, O(n·K·D) extra work. */
  init: z.enum(['random', 'kmeans++']).default('random'),
  /** Subsample to at most this many points per centre (Faiss default 256). */
  maxPointsPerCentroid: z.number().int().min(1).default(256),
  /** Warn below this many points per centre (Faiss default 39). */
  minPointsPerCentroid: z.number().int().min(1).default(39),
  /** Queries per assignment batch (bounds the float32 scratch: chunk·D·4 bytes). */
  chunk: z.number().int().min(1).default(4096),
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
  const { n, D } = points;
  const index = new FlatIndex(centers, K, D);
  const ids = new Int32Array(n);
  const distSq = new Float32Array(n);
  const buf = new Float32Array(Math.min(chunk, n) * D);
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

/** k-means++ seeding (D² sampling) in assignment space; O(n·K·D). */
function kmeansPlusPlusInit(points: PatchPoints, K: number, rng: Rng, chunk: number): Int32Array {
  const { n, D } = points;
  const chosen = new Int32Array(K);
  const minDist = new Float64Array(n).fill(Infinity);
  const centre = new Float32Array(D);
  const buf = new Float32Array(Math.min(chunk, n) * D);
  chosen[0] = rng.int(n);
  for (let c = 0; ; c++) {
    points.readAssign(chosen[c]!, 1, centre);
    let total = 0;
    for (let start = 0; start < n; start += chunk) {
      const count = Math.min(chunk, n - start);
      points.readAssign(start, count, buf);
      for (let i = 0; i < count; i++) {
        let s = 0;
        for (let d = 0, b = i * D; d < D; d++, b++) {
          const diff = buf[b]! - centre[d]!;
          s += diff * diff;
        }
        if (s < minDist[start + i]!) minDist[start + i] = s;
        total += minDist[start + i]!;
      }
    }
    if (c + 1 === K) break;
    // All remaining points coincide with chosen centres: fall back to uniform choice.
    let r = rng.next() * total;
    let pick = total > 0 ? n - 1 : rng.int(n);
    if (total > 0) {
      for (let i = 0; i < n; i++) {
        r -= minDist[i]!;
        if (r < 0) {
          pick = i;
          break;
        }
      }
    }
    chosen[c + 1] = pick;
  }
  return chosen;
}

/**
 * Cluster `points` into K centres. `onIter` sees each iteration's statistics as they happen.
 * Throws UsageError when K exceeds the number of points.
 */
export function kmeans(points: PatchPoints, config: KmeansConfig, onIter?: (s: KmeansIterStats) => void): KmeansResult {
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

  const seeds = cfg.init === 'random' ? rng.sampleIndices(n, K) : kmeansPlusPlusInit(train, K, rng, cfg.chunk);
  const centersAssign = new Float32Array(K * D);
  for (let k = 0; k < K; k++) train.readAssign(seeds[k]!, 1, centersAssign.subarray(k * D, (k + 1) * D));
  const centersPixel = train.encoded ? new Float32Array(K * D) : centersAssign;
  if (train.encoded) for (let k = 0; k < K; k++) train.readPixel(seeds[k]!, 1, centersPixel.subarray(k * D, (k + 1) * D));

  const stats: KmeansIterStats[] = [];
  let counts: Float64Array = new Float64Array(K);
  for (let iter = 0; iter < cfg.iters; iter++) {
    const t0 = performance.now();
    const { ids, distSq } = assignPoints(train, centersAssign, K, cfg.chunk);
    let objective = 0;
    for (let i = 0; i < n; i++) objective += distSq[i]!;
    counts = computeCentroids(train, ids, K, centersAssign, train.encoded ? centersPixel : null);
    let sumSq = 0;
    for (let k = 0; k < K; k++) sumSq += counts[k]! * counts[k]!;
    const imbalance = (K * sumSq) / (n * n);
    const nsplit = splitClusters(counts, n, D, [centersAssign, centersPixel], rng).length;
    const s: KmeansIterStats = { iter, objective, mse: objective / (n * D), imbalance, nsplit, seconds: (performance.now() - t0) / 1000 };
    stats.push(s);
    onIter?.(s);
  }
  return { centersAssign, centersPixel, counts: Float32Array.from(counts), stats, nTrain: n };
}
