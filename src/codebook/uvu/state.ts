/**
 * The state of an iterative clustering run, everything a checkpoint must hold to resume exactly:
 * centres in both spaces, streaming weights, the active set, the global per-cluster distance
 * dictionary, the long-tail cache, counters and the validation history.
 */
import { PATCH_DIM } from '../../patches/patchify.js';

/** Long-tail cache: centres that left the active set and the features of their members. */
export interface LongTailCache {
  /** Codebook slots waiting for a re-cluster (their centres stay in the tables meanwhile). */
  slots: number[];
  /** Member features, uint8 rows [n, D]. Grows by whole rounds; bounded by α + one round. */
  features: Uint8Array;
  /** Grid position of each feature (row, col, cols), for the positional encoding. */
  row: Uint16Array;
  col: Uint16Array;
  cols: Uint16Array;
  /** Number of features held. */
  n: number;
}

/** Per-round log line (also the JSONL schema). */
export interface RoundLog {
  round: number;
  /** Mean squared distance of the validation sample to the active centres (assignment space). */
  objective: number;
  /** PRP of the validation sample reconstructed with the pixel centres of its tokens. */
  prp: number;
  k_active: number;
  /** Clusters that went to the cache this round. */
  clusters_cached: number;
  /** Features in the cache after the round. */
  cache_size: number;
  /** Re-clusters of the cache this round. */
  reclusters: number;
  /** Duplicates dropped by the rounded-distance rule this round. */
  duplicates_dropped: number;
  /** Empty clusters re-seeded by splitting this round. */
  splits: number;
  /** Patches assigned this round (pool) per second of round wall time. */
  patches_per_s: number;
  seconds: number;
}

export interface ClusterState {
  K: number;
  D: number;
  /** Rounds completed. */
  round: number;
  /** [K, D] assignment-space centres (pixel + encoding). */
  centersAssign: Float32Array;
  /** [K, D] pixel-space centres (means of raw pixels of the same members). */
  centersPixel: Float32Array;
  /** [K] members folded into each centre so far (streaming weights). */
  weight: Float64Array;
  /** [K] 1 = active (patches are assigned to it), 0 = waiting in the cache. */
  active: Uint8Array;
  /** Global distance dictionary, [K] each: members, Σd, Σd², max d (L2 distance to the centre at assignment). */
  distCount: Float64Array;
  distSum: Float64Array;
  distSumSq: Float64Array;
  distMax: Float64Array;
  cache: LongTailCache;
  /** [K] 1 = the slot's centre was replaced (split re-seed or re-cluster) during this run: its token id "moved". */
  moved: Uint8Array;
  /** Totals over the run. */
  totals: { duplicatesDropped: number; reclusters: number; splits: number; clustersCached: number; patchesAssigned: number };
  history: RoundLog[];
  converged: boolean;
}

export function emptyCache(): LongTailCache {
  return { slots: [], features: new Uint8Array(0), row: new Uint16Array(0), col: new Uint16Array(0), cols: new Uint16Array(0), n: 0 };
}

export function newState(K: number, centersAssign: Float32Array, centersPixel: Float32Array, weight: Float64Array): ClusterState {
  return {
    K,
    D: PATCH_DIM,
    round: 0,
    centersAssign,
    centersPixel,
    weight,
    active: new Uint8Array(K).fill(1),
    distCount: new Float64Array(K),
    distSum: new Float64Array(K),
    distSumSq: new Float64Array(K),
    distMax: new Float64Array(K),
    cache: emptyCache(),
    moved: new Uint8Array(K),
    totals: { duplicatesDropped: 0, reclusters: 0, splits: 0, clustersCached: 0, patchesAssigned: 0 },
    history: [],
    converged: false,
  };
}

/** Append `n` feature rows (and positions) to the cache. */
export function cacheAppend(cache: LongTailCache, rows: Uint8Array, row: ArrayLike<number>, col: ArrayLike<number>, cols: ArrayLike<number>, n: number): void {
  const D = PATCH_DIM;
  const total = cache.n + n;
  const grow = <T extends Uint8Array | Uint16Array>(a: T, per: number, make: (len: number) => T): T => {
    if (a.length >= total * per) return a;
    const b = make(Math.max(total * per, a.length * 2));
    b.set(a.subarray(0, cache.n * per));
    return b;
  };
  cache.features = grow(cache.features, D, (l) => new Uint8Array(l));
  cache.row = grow(cache.row, 1, (l) => new Uint16Array(l));
  cache.col = grow(cache.col, 1, (l) => new Uint16Array(l));
  cache.cols = grow(cache.cols, 1, (l) => new Uint16Array(l));
  cache.features.set(rows.subarray(0, n * D), cache.n * D);
  for (let i = 0; i < n; i++) {
    cache.row[cache.n + i] = row[i]!;
    cache.col[cache.n + i] = col[i]!;
    cache.cols[cache.n + i] = cols[i]!;
  }
  cache.n = total;
}
