/**
 * The paper's codebook construction (summary §Key Designs 1–2, DESIGN.md §2 and §5):
 *
 *   init    draw N_round patches, assign them to K random ones, drop samples whose rounded
 *           intra-cluster distance repeats (dedup), run an initial k-means.
 *   round   draw a pool of poolFactor·N_round patches, assign it to the active centres,
 *           keep at most ⌈N_round/K_active⌉ per cluster (hierarchical sampling; the rest filled
 *           at random), dedup, update the global distance dictionary, re-seed empty clusters by
 *           splitting, send clusters with fewer than δ members to the long-tail cache, fold
 *           the members of the others into their centres (streaming means weighted by counts),
 *           re-cluster the cache once it holds α features, measure the validation objective.
 *   stop    when the objective changes by less than ε (relative) or after max rounds; a final
 *           re-cluster empties the cache so every slot holds a centre.
 *
 * Memory: the store is never loaded; see `estimateMemory`. Every round ends with an atomic
 * checkpoint, and a resumed run ends with exactly the codebook of an uninterrupted one: all
 * randomness of round r comes from a generator seeded by (seed, r).
 */
import { createHash } from 'node:crypto';
import { PatchStore, type PatchMetaArrays } from '../../patches/store.js';
import { PATCH, PATCH_DIM } from '../../patches/patchify.js';
import { PatchPoints } from '../points.js';
import { assignPoints, groupByCluster, kmeans, splitClusters } from '../kmeans.js';
import { MetricsAccumulator } from '../metrics.js';
import type { Codebook } from '../file.js';
import { Rng } from '../../util/rng.js';
import { UsageError, UvuError } from '../../util/errors.js';
import { info } from '../../util/progress.js';
import { checkUvuConfig, type UvuClusterConfig } from './config.js';
import { cacheAppend, emptyCache, newState, type ClusterState, type RoundLog } from './state.js';
import { loadLatestCheckpoint, saveCheckpoint } from './checkpoint.js';
import { AssignPool, type AssignBackend, type AssignBackendFactory } from './assign.js';

const D = PATCH_DIM;

export interface UvuBuildOptions {
  storeDir: string;
  /**
   * Check every shard's sha256 once, in this thread, before the first round (default true). The
   * assignment pool's readers (worker threads) then open the store without checking again.
   */
  verify?: boolean;
  config: UvuClusterConfig;
  /** Folder for per-round checkpoints. */
  checkpointDir: string;
  /** Continue from the newest good checkpoint in checkpointDir. */
  resume?: boolean;
  /** Start from these centres instead of the initial k-means (incremental refinement). */
  initial?: Codebook;
  /**
   * Where each round's assignment runs (default: an AssignPool of `config.workers` threads in
   * this process). The codebook is the same for every backend.
   */
  assignBackend?: AssignBackendFactory;
  /** Called after every round (and its checkpoint). */
  onRound?: (log: RoundLog, state: ClusterState) => void;
}

export interface UvuBuildResult {
  codebook: Codebook;
  state: ClusterState;
  /** Slots whose centre was replaced (split re-seed or re-cluster) during this run. */
  movedSlots: number;
}

/** Seeded generator for round r (round 0 = initialisation), independent of earlier rounds. */
function roundRng(seed: number, round: number): Rng {
  const h = createHash('sha256').update(`uvu-round:${seed}:${round}`).digest();
  return new Rng(h.readUInt32LE(0));
}

/** Estimated peak memory of a run in bytes, by part (printed at start, checked against --max-memory). */
export function estimateMemory(cfg: UvuClusterConfig): Record<string, number> {
  const K = cfg.size;
  const threads = Math.max(1, cfg.workers);
  const tableBytes = K * D * 4;
  const poolN = Math.ceil(cfg.poolFactor * cfg.roundSize);
  return {
    centre_tables: 2 * tableBytes, // assignment + pixel centres
    search_index: threads * (tableBytes <= 2 ** 30 ? tableBytes : 0) + threads * (1024 * 4096 * 4 + 2 * 1024 * D * 4 + cfg.shardSize * D * 5),
    round_patches: 2 * cfg.roundSize * D, // selected uint8 rows (+ a subset copy during init)
    pool_assignment: poolN * 12,
    cache: (cfg.alpha + cfg.roundSize) * D,
    validation: cfg.valSize * D,
    runtime: 200 * 2 ** 20, // Node, sharp, BLAS buffers
  };
}

/** Slots with active = 1 and their centres gathered into one [Ka, D] table. */
function activeCentres(state: ClusterState, table: Float32Array): { slots: Int32Array; centers: Float32Array } {
  const slots: number[] = [];
  for (let k = 0; k < state.K; k++) if (state.active[k]) slots.push(k);
  const centers = new Float32Array(slots.length * D);
  slots.forEach((k, j) => centers.set(table.subarray(k * D, (k + 1) * D), j * D));
  return { slots: Int32Array.from(slots), centers };
}

/**
 * Dedup by rounded distance: within each cluster, a sample whose distance to the centre,
 * rounded to `decimals`, already occurred is dropped. Returns a keep mask.
 */
export function dedupByRoundedDistance(ids: Int32Array, distSq: Float32Array, decimals: number): Uint8Array {
  const scale = 10 ** decimals;
  const seen = new Map<number, Set<number>>();
  const keep = new Uint8Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const key = Math.round(Math.sqrt(distSq[i]!) * scale);
    let set = seen.get(ids[i]!);
    if (!set) seen.set(ids[i]!, (set = new Set()));
    if (set.has(key)) continue;
    set.add(key);
    keep[i] = 1;
  }
  return keep;
}

/**
 * Hierarchical (cluster-balanced) sampling: at most ⌈target/K_active⌉ pool members per cluster,
 * chosen at random, then the rest of `target` filled at random from the leftovers.
 * Returns pool positions, ascending.
 */
export function balancedSample(ids: Int32Array, K: number, kActive: number, target: number, rng: Rng): Uint32Array {
  const n = ids.length;
  if (target >= n) return Uint32Array.from({ length: n }, (_, i) => i);
  const cap = Math.ceil(target / kActive);
  const { order: byCluster, start } = groupByCluster(ids, K);
  const chosen = new Uint8Array(n);
  let taken = 0;
  for (let k = 0; k < K; k++) {
    const size = start[k + 1]! - start[k]!;
    if (size === 0) continue;
    if (size <= cap) {
      for (let j = start[k]!; j < start[k + 1]!; j++) chosen[byCluster[j]!] = 1;
      taken += size;
    } else {
      for (const j of rng.sampleIndices(size, cap)) chosen[byCluster[start[k]! + j]!] = 1;
      taken += cap;
    }
  }
  if (taken < target) {
    const left: number[] = [];
    for (let i = 0; i < n; i++) if (!chosen[i]) left.push(i);
    for (const j of rng.sampleIndices(left.length, Math.min(target - taken, left.length))) chosen[left[j]!] = 1;
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (chosen[i]) out.push(i);
  return Uint32Array.from(out);
}

/** Initial centres: random centres → dedup by rounded distance → k-means on what is left. */
function initialise(store: PatchStore, cfg: UvuClusterConfig): ClusterState {
  const rng = roundRng(cfg.seed, 0);
  const n = Math.min(store.count, cfg.roundSize);
  const { patches, meta } = store.readIndices(rng.sampleIndices(store.count, n).sort());
  const points = new PatchPoints(patches, n, D, meta, cfg.pe);
  const seeds = rng.sampleIndices(n, cfg.size);
  const seedCentres = new Float32Array(cfg.size * D);
  for (let k = 0; k < cfg.size; k++) points.readAssign(seeds[k]!, 1, seedCentres.subarray(k * D, (k + 1) * D));
  const { ids, distSq } = assignPoints(points, seedCentres, cfg.size, 4096);
  const keep = dedupByRoundedDistance(ids, distSq, cfg.dedupDecimals);
  const kept: number[] = [];
  keep.forEach((k, i) => k && kept.push(i));
  if (kept.length < cfg.size) throw new UvuError(`${store.dir}: only ${kept.length} distinct patches remain after dedup, fewer than K = ${cfg.size}`);
  const r = kmeans(points.subset(kept), { k: cfg.size, iters: cfg.initIters, seed: rng.nextU32(), maxPointsPerCentroid: Math.ceil(kept.length / cfg.size), minPointsPerCentroid: 1 });
  const state = newState(cfg.size, r.centersAssign, points.encoded ? r.centersPixel : Float32Array.from(r.centersPixel), Float64Array.from(r.counts));
  state.totals.duplicatesDropped = n - kept.length;
  return state;
}

/** Start state from an existing codebook (refinement): every slot active, weights = its counts. */
function stateFromCodebook(cb: Codebook): ClusterState {
  const assign = Float32Array.from(cb.centersAssign ?? cb.centersPixel);
  return newState(cb.K, assign, Float32Array.from(cb.centersPixel), Float64Array.from(cb.counts, (c) => Math.max(1, c)));
}

/** Re-cluster the cache into as many centres as it took in; they return to the active set. */
function recluster(state: ClusterState, cfg: UvuClusterConfig, rng: Rng): void {
  const c = state.cache;
  const slots = c.slots;
  const points = new PatchPoints(c.features.subarray(0, c.n * D), c.n, D, { row: c.row, col: c.col, cols: c.cols }, cfg.pe);
  const r = kmeans(points, { k: slots.length, iters: cfg.reclusterIters, seed: rng.nextU32(), maxPointsPerCentroid: Math.ceil(c.n / slots.length), minPointsPerCentroid: 1 });
  slots.forEach((k, j) => {
    state.centersAssign.set(r.centersAssign.subarray(j * D, (j + 1) * D), k * D);
    state.centersPixel.set(r.centersPixel.subarray(j * D, (j + 1) * D), k * D);
    state.weight[k] = r.counts[j]!;
    state.active[k] = 1;
    state.moved[k] = 1;
  });
  state.cache = emptyCache();
  state.totals.reclusters++;
}

/** The fixed validation sample: `n` patches ([n, 3072] u8) and their grid positions. */
type ValSample = { patches: Uint8Array; meta: PatchMetaArrays; n: number };

/** Validation objective (assignment space) and PRP with the current active centres. */
function validate(state: ClusterState, cfg: UvuClusterConfig, val: ValSample): { objective: number; prp: number } {
  const a = activeCentres(state, state.centersAssign);
  const p = activeCentres(state, state.centersPixel);
  const view: Codebook = { K: a.slots.length, D, patchSize: PATCH, centersPixel: p.centers, centersAssign: a.centers, counts: new Float32Array(a.slots.length), pe: cfg.pe, build: {}, data: '', metrics: {} };
  const acc = new MetricsAccumulator(view);
  acc.add(val.patches, val.n, val.meta);
  const m = acc.result();
  return { objective: m.mean_dist_sq, prp: m.prp };
}

/** A round's candidate pool: ascending store indices with their nearest active slot and squared distance (assignment space). */
interface CandidatePool {
  indices: Uint32Array;
  ids: Int32Array;
  distSq: Float32Array;
  /** Active clusters when the pool was assigned (K_active of the sampling cap). */
  kActive: number;
}

/** The round's members S (after sampling and dedup): features, slot of each, and distance to it (not squared). */
interface RoundMembers {
  points: PatchPoints;
  ids: Int32Array;
  dist: Float64Array;
  /** Sampled members dropped by the rounded-distance dedup. */
  duplicates: number;
}

/** Step 1. Draw poolFactor·N_round store indices and assign them to the active centres (sharded, possibly on workers). */
async function assignCandidatePool(state: ClusterState, cfg: UvuClusterConfig, store: PatchStore, pool: AssignBackend, rng: Rng, round: number): Promise<CandidatePool> {
  const poolN = Math.min(store.count, Math.ceil(cfg.poolFactor * cfg.roundSize));
  const indices = rng.sampleIndices(store.count, poolN).sort();
  const active = activeCentres(state, state.centersAssign);
  const { ids, distSq } = await pool.run({ indices, centers: active.centers, slots: active.slots }, round);
  return { indices, ids, distSq, kActive: active.slots.length };
}

/**
 * Step 2. Hierarchical sampling of N_round pool members (capped per cluster), then dedup by
 * rounded distance within each cluster; reads the kept patches from the store.
 */
function sampleMembers(state: ClusterState, cfg: UvuClusterConfig, store: PatchStore, cand: CandidatePool, rng: Rng): RoundMembers {
  const chosen = balancedSample(cand.ids, state.K, cand.kActive, cfg.roundSize, rng);
  const ids = Int32Array.from(chosen, (i) => cand.ids[i]!);
  const distSq = Float32Array.from(chosen, (i) => cand.distSq[i]!);
  const keep = dedupByRoundedDistance(ids, distSq, cfg.dedupDecimals);
  const keptPos: number[] = [];
  keep.forEach((k, i) => k && keptPos.push(i));
  const { patches, meta } = store.readIndices(Uint32Array.from(keptPos, (i) => cand.indices[chosen[i]!]!));
  return {
    points: new PatchPoints(patches, keptPos.length, D, meta, cfg.pe),
    ids: Int32Array.from(keptPos, (i) => ids[i]!),
    dist: Float64Array.from(keptPos, (i) => Math.sqrt(distSq[i]!)),
    duplicates: chosen.length - keptPos.length,
  };
}

/**
 * Step 3. Add the members' distances to the global distance dictionary (count, sum, sum of
 * squares, max per slot). Returns |S_k|, the round's member count per slot ([K]).
 */
function updateDistanceDictionary(state: ClusterState, members: RoundMembers): Float64Array {
  const m = new Float64Array(state.K);
  for (let i = 0; i < members.ids.length; i++) {
    const k = members.ids[i]!;
    const d = members.dist[i]!;
    m[k]!++;
    state.distCount[k]!++;
    state.distSum[k]! += d;
    state.distSumSq[k]! += d * d;
    if (d > state.distMax[k]!) state.distMax[k] = d;
  }
  return m;
}

/** Of slots ci and cj of `table` ([K, D]), the one nearer to `row` ([D]) by squared distance; cj on a tie. */
function nearerSlot(row: Float32Array, table: Float32Array, ci: number, cj: number): number {
  let di = 0;
  let dj = 0;
  for (let d = 0; d < D; d++) {
    di += (row[d]! - table[ci * D + d]!) ** 2;
    dj += (row[d]! - table[cj * D + d]!) ** 2;
  }
  return di < dj ? ci : cj;
}

/**
 * Step 4. Re-seed empty active clusters by splitting a large one (Faiss-style perturbation);
 * the split cluster's members are re-divided between the two centres by exact distance, and
 * `m` is updated to match. Returns the number of splits.
 */
function splitEmptyClusters(state: ClusterState, members: RoundMembers, m: Float64Array, rng: Rng): number {
  const ids = members.ids;
  const pairs = splitClusters(m, ids.length, D, [state.centersAssign, state.centersPixel], rng, state.active);
  const row = new Float32Array(D);
  for (const [ci, cj] of pairs) {
    state.weight[ci] = 0;
    state.moved[ci] = 1;
    m[ci] = 0;
    m[cj] = 0;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] !== cj) continue;
      members.points.readAssign(i, 1, row);
      const k = nearerSlot(row, state.centersAssign, ci, cj);
      ids[i] = k;
      m[k]!++;
    }
  }
  return pairs.length;
}

/**
 * Step 5. Long tail: active clusters with 0 < |S_k| < δ leave the active set for the cache,
 * their slots and this round's members with them. Returns the number of clusters cached.
 */
function cacheLongTail(state: ClusterState, cfg: UvuClusterConfig, members: RoundMembers, m: Float64Array): number {
  let cached = 0;
  for (let k = 0; k < state.K; k++) {
    if (state.active[k] && m[k]! > 0 && m[k]! < cfg.delta) {
      state.active[k] = 0;
      state.cache.slots.push(k);
      cached++;
    }
  }
  const toCache: number[] = [];
  for (let i = 0; i < members.ids.length; i++) if (!state.active[members.ids[i]!]) toCache.push(i);
  if (toCache.length > 0) {
    const sub = members.points.subset(toCache);
    cacheAppend(state.cache, sub.u8, sub.pos!.row, sub.pos!.col, sub.pos!.cols, sub.n);
  }
  return cached;
}

/**
 * Step 6. Streaming centre update of the clusters still active, one at a time: each centre
 * becomes the count-weighted mean of itself (weight w) and its new members, pixel centres in
 * [0, 1] and assignment centres with the positional encoding added.
 */
function streamingUpdate(state: ClusterState, members: RoundMembers): void {
  const K = state.K;
  const { order, start } = groupByCluster(members.ids, K);
  const pixelSum = new Float64Array(D);
  const encSum = members.points.encoded ? new Float64Array(D) : null;
  for (let k = 0; k < K; k++) {
    const count = start[k + 1]! - start[k]!;
    if (count === 0 || !state.active[k]) continue;
    members.points.sumRows(order, start[k]!, start[k + 1]!, pixelSum, encSum);
    const w = state.weight[k]!;
    const total = w + count;
    for (let d = 0; d < D; d++) {
      const pixel = pixelSum[d]! / 255;
      state.centersPixel[k * D + d] = (w * state.centersPixel[k * D + d]! + pixel) / total;
      state.centersAssign[k * D + d] = (w * state.centersAssign[k * D + d]! + pixel + (encSum ? encSum[d]! : 0)) / total;
    }
    state.weight[k] = total;
  }
}

/** What a round did, for its log line and the run totals. */
interface RoundCounts {
  round: number;
  t0: number;
  poolN: number;
  duplicates: number;
  splits: number;
  cached: number;
  reclusters: number;
}

/**
 * Step 8. Measure the validation objective, run the convergence test (relative change < ε),
 * advance state.round, add to the totals and append the round's log to the history.
 */
function closeRound(state: ClusterState, cfg: UvuClusterConfig, val: ValSample, c: RoundCounts): RoundLog {
  const v = validate(state, cfg, val);
  const prev = state.history.at(-1)?.objective;
  state.converged = prev !== undefined && Math.abs(prev - v.objective) / prev < cfg.epsilon;
  state.round = c.round;
  state.totals.duplicatesDropped += c.duplicates;
  state.totals.splits += c.splits;
  state.totals.clustersCached += c.cached;
  state.totals.patchesAssigned += c.poolN;
  const seconds = (performance.now() - c.t0) / 1000;
  const log: RoundLog = {
    round: c.round,
    objective: v.objective,
    prp: v.prp,
    k_active: state.active.reduce((a, b) => a + b, 0),
    clusters_cached: c.cached,
    cache_size: state.cache.n,
    reclusters: c.reclusters,
    duplicates_dropped: c.duplicates,
    splits: c.splits,
    patches_per_s: c.poolN / seconds,
    seconds,
  };
  state.history.push(log);
  return log;
}

/**
 * One round (state.round + 1). All its randomness comes from one generator seeded by
 * (seed, round), drawn in step order: pool indices, sampling, splits, re-cluster.
 */
async function runRound(state: ClusterState, cfg: UvuClusterConfig, store: PatchStore, pool: AssignBackend, val: ValSample): Promise<RoundLog> {
  const t0 = performance.now();
  const round = state.round + 1;
  const rng = roundRng(cfg.seed, round);
  const cand = await assignCandidatePool(state, cfg, store, pool, rng, round); // 1. candidate pool → active centres
  const members = sampleMembers(state, cfg, store, cand, rng); // 2. hierarchical sampling + dedup
  const m = updateDistanceDictionary(state, members); // 3. global distance dictionary
  const splits = splitEmptyClusters(state, members, m, rng); // 4. re-seed empty clusters
  const cached = cacheLongTail(state, cfg, members, m); // 5. long tail → cache
  streamingUpdate(state, members); // 6. streaming centre update
  const reclustersBefore = state.totals.reclusters; // 7. re-cluster the cache once it is full
  if (state.cache.n >= cfg.alpha && state.cache.slots.length > 0) recluster(state, cfg, rng);
  const reclusters = state.totals.reclusters - reclustersBefore;
  const counts = { round, t0, poolN: cand.indices.length, duplicates: members.duplicates, splits, cached, reclusters };
  return closeRound(state, cfg, val, counts); // 8. validation, convergence, bookkeeping
}

/** Everything a resumed run must share with the original: config (less workers/memory) and data. */
function runIdentity(cfg: UvuClusterConfig, fingerprint: string, initial?: Codebook): string {
  const { workers: _w, maxMemoryMiB: _m, ...rest } = cfg;
  const start = initial ? createHash('sha256').update(new Uint8Array(initial.centersPixel.buffer, initial.centersPixel.byteOffset, initial.centersPixel.byteLength)).digest('hex') : 'kmeans-init';
  return createHash('sha256').update(JSON.stringify(rest)).update(fingerprint).update(start).digest('hex');
}

const MiB = 2 ** 20;

/**
 * Print the run's parameters and estimated peak memory by part; refuse to start above
 * `maxMemoryMiB`, naming the largest part and the flag that shrinks it.
 */
function announceAndCheckMemory(cfg: UvuClusterConfig): void {
  const memory = estimateMemory(cfg);
  const peak = Object.values(memory).reduce((a, b) => a + b, 0);
  info(`uvu clustering: K = ${cfg.size}, N_round = ${cfg.roundSize}, δ = ${cfg.delta}, α = ${cfg.alpha}, ε = ${cfg.epsilon}, pe = ${cfg.pe.type} λ = ${cfg.pe.scale}; estimated peak memory ${(peak / MiB).toFixed(0)} MiB (${Object.entries(memory).map(([k, v]) => `${k} ${(v / MiB).toFixed(0)}`).join(', ')})`);
  if (cfg.maxMemoryMiB !== undefined && peak > cfg.maxMemoryMiB * MiB) {
    const biggest = Object.entries(memory).sort((a, b) => b[1] - a[1])[0]![0];
    const hint = { centre_tables: '--size', search_index: '--size or --workers', round_patches: '--round-size', pool_assignment: '--pool-factor', cache: '--alpha or --round-size', validation: '--val-size', runtime: '--max-memory' }[biggest];
    throw new UsageError(`estimated peak memory ${(peak / MiB).toFixed(0)} MiB exceeds --max-memory ${cfg.maxMemoryMiB} MiB; the largest part is ${biggest} (${(memory[biggest]! / MiB).toFixed(0)} MiB): lower ${hint}`);
  }
}

/** Build (or refine) a codebook with the paper's iterative hierarchical clustering. */
export async function buildUvuCodebook(opts: UvuBuildOptions): Promise<UvuBuildResult> {
  const cfg = opts.config;
  const store = PatchStore.open(opts.storeDir, { verify: opts.verify ?? true });
  checkUvuConfig(cfg, store.count);
  if (opts.initial && opts.initial.K !== cfg.size) throw new UsageError(`the codebook has K = ${opts.initial.K}, the config says ${cfg.size}`);
  announceAndCheckMemory(cfg);

  store.verifyShards(); // once per run, here: the pool below opens the store without verification
  const identity = runIdentity(cfg, store.fingerprint, opts.initial);
  let state = loadLatestCheckpoint(opts.checkpointDir, identity, cfg.size);
  if (state && !opts.resume) throw new UsageError(`${opts.checkpointDir} holds checkpoints of an earlier run; pass --resume to continue it or choose another --checkpoint-dir`);
  if (state) info(`resuming after round ${state.round} from ${opts.checkpointDir}`);
  else {
    state = opts.initial ? stateFromCodebook(opts.initial) : initialise(store, cfg);
    saveCheckpoint(opts.checkpointDir, state, identity);
  }
  const valRng = roundRng(cfg.seed, -1);
  const valN = cfg.valSize;
  const valRead = store.readIndices(valRng.sampleIndices(store.count, valN).sort());
  const val = { patches: valRead.patches, meta: valRead.meta, n: valN };

  const backendContext = { storeDir: opts.storeDir, fingerprint: store.fingerprint, pe: cfg.pe, shardSize: cfg.shardSize, runId: identity };
  const pool = opts.assignBackend ? await opts.assignBackend(backendContext) : new AssignPool(opts.storeDir, cfg.pe, cfg.workers, cfg.shardSize);
  try {
    while (!state.converged && state.round < cfg.maxRounds) {
      const log = await runRound(state, cfg, store, pool, val);
      saveCheckpoint(opts.checkpointDir, state, identity);
      opts.onRound?.(log, state);
    }
  } finally {
    await pool.close();
  }
  if (state.cache.slots.length > 0) recluster(state, cfg, roundRng(cfg.seed, state.round + 1));

  const last = state.history.at(-1);
  const codebook: Codebook = {
    K: state.K,
    D,
    patchSize: PATCH,
    centersPixel: state.centersPixel,
    centersAssign: cfg.pe.type === 'none' || cfg.pe.scale === 0 ? null : state.centersAssign,
    counts: Float32Array.from(state.weight),
    pe: cfg.pe,
    build: { method: 'uvu', config: cfg, rounds: state.round, converged: state.converged, totals: state.totals, refined_from: opts.initial?.data ?? null },
    data: store.fingerprint,
    metrics: { val_objective: last?.objective ?? null, val_prp: last?.prp ?? null, objective_per_round: state.history.map((h) => h.objective) },
  };
  store.close();
  return { codebook, state, movedSlots: state.moved.reduce((a, b) => a + b, 0) };
}
