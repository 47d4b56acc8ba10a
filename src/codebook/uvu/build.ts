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
import { AssignPool } from './assign.js';

const D = PATCH_DIM;

export interface UvuBuildOptions {
  storeDir: string;
  config: UvuClusterConfig;
  /** Folder for per-round checkpoints. */
  checkpointDir: string;
  /** Continue from the newest good checkpoint in checkpointDir. */
  resume?: boolean;
  /** Start from these centres instead of the initial k-means (incremental refinement). */
  initial?: Codebook;
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

/** Validation objective (assignment space) and PRP with the current active centres. */
function validate(state: ClusterState, cfg: UvuClusterConfig, val: { patches: Uint8Array; meta: PatchMetaArrays; n: number }): { objective: number; prp: number } {
  const a = activeCentres(state, state.centersAssign);
  const p = activeCentres(state, state.centersPixel);
  const view: Codebook = { K: a.slots.length, D, patchSize: PATCH, centersPixel: p.centers, centersAssign: a.centers, counts: new Float32Array(a.slots.length), pe: cfg.pe, build: {}, data: '', metrics: {} };
  const acc = new MetricsAccumulator(view);
  acc.add(val.patches, val.n, val.meta);
  const m = acc.result();
  return { objective: m.mean_dist_sq, prp: m.prp };
}

/** One round (state.round + 1). */
async function runRound(state: ClusterState, cfg: UvuClusterConfig, store: PatchStore, pool: AssignPool, val: { patches: Uint8Array; meta: PatchMetaArrays; n: number }): Promise<RoundLog> {
  const t0 = performance.now();
  const round = state.round + 1;
  const rng = roundRng(cfg.seed, round);
  const K = state.K;

  // 1. Candidate pool, assigned to the active centres (sharded, possibly parallel).
  const poolN = Math.min(store.count, Math.ceil(cfg.poolFactor * cfg.roundSize));
  const poolIdx = rng.sampleIndices(store.count, poolN).sort();
  const active = activeCentres(state, state.centersAssign);
  const { ids: poolIds, distSq: poolDist } = await pool.run({ indices: poolIdx, centers: active.centers, slots: active.slots });

  // 2. Hierarchical sampling, then dedup by rounded distance.
  const chosen = balancedSample(poolIds, K, active.slots.length, cfg.roundSize, rng);
  const ids = Int32Array.from(chosen, (i) => poolIds[i]!);
  const distSq = Float32Array.from(chosen, (i) => poolDist[i]!);
  const keep = dedupByRoundedDistance(ids, distSq, cfg.dedupDecimals);
  const keptPos: number[] = [];
  keep.forEach((k, i) => k && keptPos.push(i));
  const duplicates = chosen.length - keptPos.length;
  const { patches, meta } = store.readIndices(Uint32Array.from(keptPos, (i) => poolIdx[chosen[i]!]!));
  const members = new PatchPoints(patches, keptPos.length, D, meta, cfg.pe);
  const memberIds = Int32Array.from(keptPos, (i) => ids[i]!);
  const memberDist = Float64Array.from(keptPos, (i) => Math.sqrt(distSq[i]!));

  // 3. Global distance dictionary.
  const m = new Float64Array(K);
  for (let i = 0; i < memberIds.length; i++) {
    const k = memberIds[i]!;
    const d = memberDist[i]!;
    m[k]!++;
    state.distCount[k]!++;
    state.distSum[k]! += d;
    state.distSumSq[k]! += d * d;
    if (d > state.distMax[k]!) state.distMax[k] = d;
  }

  // 4. Empty active clusters: re-seed by splitting a large one; its members are re-divided
  //    between the two perturbed centres by exact distance.
  const pairs = splitClusters(m, memberIds.length, D, [state.centersAssign, state.centersPixel], rng, state.active);
  const row = new Float32Array(D);
  for (const [ci, cj] of pairs) {
    state.weight[ci] = 0;
    state.moved[ci] = 1;
    m[ci] = 0;
    m[cj] = 0;
    for (let i = 0; i < memberIds.length; i++) {
      if (memberIds[i] !== cj) continue;
      members.readAssign(i, 1, row);
      let di = 0;
      let dj = 0;
      for (let d = 0; d < D; d++) {
        di += (row[d]! - state.centersAssign[ci * D + d]!) ** 2;
        dj += (row[d]! - state.centersAssign[cj * D + d]!) ** 2;
      }
      const k = di < dj ? ci : cj;
      memberIds[i] = k;
      m[k]!++;
    }
  }

  // 5. Long tail: active clusters with 0 < |S_k| < δ leave for the cache with their members.
  let cached = 0;
  const toCache: number[] = [];
  for (let k = 0; k < K; k++) {
    if (state.active[k] && m[k]! > 0 && m[k]! < cfg.delta) {
      state.active[k] = 0;
      state.cache.slots.push(k);
      cached++;
    }
  }
  for (let i = 0; i < memberIds.length; i++) if (!state.active[memberIds[i]!]) toCache.push(i);
  if (toCache.length > 0) {
    const sub = members.subset(toCache);
    cacheAppend(state.cache, sub.u8, sub.pos!.row, sub.pos!.col, sub.pos!.cols, sub.n);
  }

  // 6. Streaming centre update of the remaining active clusters, cluster by cluster.
  const { order, start } = groupByCluster(memberIds, K);
  const pixelSum = new Float64Array(D);
  const encSum = members.encoded ? new Float64Array(D) : null;
  for (let k = 0; k < K; k++) {
    const count = start[k + 1]! - start[k]!;
    if (count === 0 || !state.active[k]) continue;
    members.sumRows(order, start[k]!, start[k + 1]!, pixelSum, encSum);
    const w = state.weight[k]!;
    const total = w + count;
    for (let d = 0; d < D; d++) {
      const pixel = pixelSum[d]! / 255;
      state.centersPixel[k * D + d] = (w * state.centersPixel[k * D + d]! + pixel) / total;
      state.centersAssign[k * D + d] = (w * state.centersAssign[k * D + d]! + pixel + (encSum ? encSum[d]! : 0)) / total;
    }
    state.weight[k] = total;
  }

  // 7. Re-cluster the cache once it is full.
  const reclustersBefore = state.totals.reclusters;
  if (state.cache.n >= cfg.alpha && state.cache.slots.length > 0) recluster(state, cfg, rng);

  // 8. Bookkeeping and the convergence test on the fixed validation sample.
  const v = validate(state, cfg, val);
  const prev = state.history.at(-1)?.objective;
  state.converged = prev !== undefined && Math.abs(prev - v.objective) / prev < cfg.epsilon;
  state.round = round;
  state.totals.duplicatesDropped += duplicates;
  state.totals.splits += pairs.length;
  state.totals.clustersCached += cached;
  state.totals.patchesAssigned += poolN;
  const seconds = (performance.now() - t0) / 1000;
  const log: RoundLog = {
    round,
    objective: v.objective,
    prp: v.prp,
    k_active: state.active.reduce((a, b) => a + b, 0),
    clusters_cached: cached,
    cache_size: state.cache.n,
    reclusters: state.totals.reclusters - reclustersBefore,
    duplicates_dropped: duplicates,
    splits: pairs.length,
    patches_per_s: poolN / seconds,
    seconds,
  };
  state.history.push(log);
  return log;
}

/** Everything a resumed run must share with the original: config (less workers/memory) and data. */
function runIdentity(cfg: UvuClusterConfig, fingerprint: string, initial?: Codebook): string {
  const { workers: _w, maxMemoryMiB: _m, ...rest } = cfg;
  const start = initial ? createHash('sha256').update(new Uint8Array(initial.centersPixel.buffer, initial.centersPixel.byteOffset, initial.centersPixel.byteLength)).digest('hex') : 'kmeans-init';
  return createHash('sha256').update(JSON.stringify(rest)).update(fingerprint).update(start).digest('hex');
}

const MiB = 2 ** 20;

/** Build (or refine) a codebook with the paper's iterative hierarchical clustering. */
export async function buildUvuCodebook(opts: UvuBuildOptions): Promise<UvuBuildResult> {
  const cfg = opts.config;
  const store = PatchStore.open(opts.storeDir);
  checkUvuConfig(cfg, store.count);
  if (opts.initial && opts.initial.K !== cfg.size) throw new UsageError(`the codebook has K = ${opts.initial.K}, the config says ${cfg.size}`);
  const memory = estimateMemory(cfg);
  const peak = Object.values(memory).reduce((a, b) => a + b, 0);
  info(`uvu clustering: K = ${cfg.size}, N_round = ${cfg.roundSize}, δ = ${cfg.delta}, α = ${cfg.alpha}, ε = ${cfg.epsilon}, pe = ${cfg.pe.type} λ = ${cfg.pe.scale}; estimated peak memory ${(peak / MiB).toFixed(0)} MiB (${Object.entries(memory).map(([k, v]) => `${k} ${(v / MiB).toFixed(0)}`).join(', ')})`);
  if (cfg.maxMemoryMiB !== undefined && peak > cfg.maxMemoryMiB * MiB) {
    const biggest = Object.entries(memory).sort((a, b) => b[1] - a[1])[0]![0];
    const hint = { centre_tables: '--size', search_index: '--size or --workers', round_patches: '--round-size', pool_assignment: '--pool-factor', cache: '--alpha or --round-size', validation: '--val-size', runtime: '--max-memory' }[biggest];
    throw new UsageError(`estimated peak memory ${(peak / MiB).toFixed(0)} MiB exceeds --max-memory ${cfg.maxMemoryMiB} MiB; the largest part is ${biggest} (${(memory[biggest]! / MiB).toFixed(0)} MiB): lower ${hint}`);
  }

  const identity = runIdentity(cfg, store.fingerprint, opts.initial);
  let state = loadLatestCheckpoint(opts.checkpointDir, identity);
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

  const pool = new AssignPool(opts.storeDir, cfg.pe, cfg.workers, cfg.shardSize);
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
