/**
 * Checkpoints of an iterative clustering run: one safetensors file per completed round,
 * written atomically, with a sha256 of all tensor bytes in the metadata so truncation and
 * tampering are both detected. The newest two are kept; on resume a corrupt newest one is
 * refused with a warning and the previous good one is used. Reading checks every tensor's dtype
 * and shape against K, the cache against its size, and the JSON metadata against schemas.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { metadataJson, readSafetensors, tensorsSha256, writeSafetensors, type SafeDtype, type Tensor } from '../../io/safetensors.js';
import { UvuError, warnOnce } from '../../util/errors.js';
import { parseOrFail } from '../../util/fsio.js';
import { PATCH_DIM } from '../../patches/patchify.js';
import type { ClusterState, RoundLog } from './state.js';

export const CHECKPOINT_FORMAT = 'uvu-cluster-checkpoint';
const KEEP = 2;

const fileFor = (round: number): string => `round-${String(round).padStart(6, '0')}.safetensors`;

function tensorsOf(s: ClusterState): Record<string, Tensor> {
  const c = s.cache;
  return {
    centers_assign: { dtype: 'F32', shape: [s.K, s.D], data: s.centersAssign },
    centers_pixel: { dtype: 'F32', shape: [s.K, s.D], data: s.centersPixel },
    weight: { dtype: 'F64', shape: [s.K], data: s.weight },
    active: { dtype: 'U8', shape: [s.K], data: s.active },
    moved: { dtype: 'U8', shape: [s.K], data: s.moved },
    dist_count: { dtype: 'F64', shape: [s.K], data: s.distCount },
    dist_sum: { dtype: 'F64', shape: [s.K], data: s.distSum },
    dist_sum_sq: { dtype: 'F64', shape: [s.K], data: s.distSumSq },
    dist_max: { dtype: 'F64', shape: [s.K], data: s.distMax },
    cache_slots: { dtype: 'I32', shape: [c.slots.length], data: Int32Array.from(c.slots) },
    cache_features: { dtype: 'U8', shape: [c.n, s.D], data: c.features.subarray(0, c.n * s.D) },
    cache_row: { dtype: 'U16', shape: [c.n], data: c.row.subarray(0, c.n) },
    cache_col: { dtype: 'U16', shape: [c.n], data: c.col.subarray(0, c.n) },
    cache_cols: { dtype: 'U16', shape: [c.n], data: c.cols.subarray(0, c.n) },
  };
}

/**
 * Write the checkpoint of `state` (after round state.round) into `dir`, then drop all but the
 * newest KEEP. `identity` is what a resume must match (config without workers, store fingerprint).
 */
export function saveCheckpoint(dir: string, state: ClusterState, identity: string): string {
  mkdirSync(dir, { recursive: true });
  const tensors = tensorsOf(state);
  const path = join(dir, fileFor(state.round));
  writeSafetensors(path, tensors, {
    format: CHECKPOINT_FORMAT,
    identity,
    round: String(state.round),
    totals: JSON.stringify(state.totals),
    history: JSON.stringify(state.history),
    converged: String(state.converged),
    checksum: tensorsSha256(tensors),
  });
  const all = listCheckpoints(dir);
  for (const old of all.slice(KEEP)) rmSync(join(dir, old), { force: true });
  return path;
}

/** Checkpoint file names in `dir`, newest first. */
function listCheckpoints(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => /^round-\d{6}\.safetensors$/.test(n)).sort().reverse();
}

const count = z.number().int().nonnegative();
const TotalsSchema = z.object({ duplicatesDropped: count, reclusters: count, splits: count, clustersCached: count, patchesAssigned: count }).strict();
/** A measured value (JSON writes a NaN or ∞ measurement as null). */
const measure = z.number().nullable();
const RoundLogSchema = z.object({
  round: count,
  objective: measure,
  prp: measure,
  k_active: count,
  clusters_cached: count,
  cache_size: count,
  reclusters: count,
  duplicates_dropped: count,
  splits: count,
  patches_per_s: measure,
  seconds: measure,
}).loose();

/**
 * Read and fully validate one checkpoint file. `K`, when given, is the codebook size the run's
 * config asks for (the identity hash covers the config, but the tensors must agree with it too).
 */
export function readCheckpoint(path: string, identity: string, K?: number): ClusterState {
  const { tensors, metadata } = readSafetensors(path);
  const bad = (what: string): never => {
    throw new UvuError(`${path}: corrupt checkpoint: ${what}`);
  };
  if (metadata.format !== CHECKPOINT_FORMAT) bad(`format is ${JSON.stringify(metadata.format)}`);
  if (metadata.checksum !== tensorsSha256(tensors)) bad('tensor bytes do not match the recorded sha256 (file damaged or edited)');
  if (metadata.identity !== identity) {
    throw new UvuError(`${path}: checkpoint was made with other parameters or data; start a new run (different --checkpoint-dir) or use the same config`);
  }
  /** Tensor `name`, checked to have `dtype` and `shape` (-1: any size, the same for every use of that dimension's name). */
  const t = (name: string, dtype: SafeDtype, shape: number[]): Tensor => {
    const x = tensors[name] ?? bad(`missing tensor ${name}`);
    if (x.dtype !== dtype || x.shape.length !== shape.length || x.shape.some((d, i) => shape[i]! >= 0 && d !== shape[i])) {
      bad(`tensor ${name} is ${x.dtype} ${JSON.stringify(x.shape)}, expected ${dtype} [${shape.map((d) => (d < 0 ? 'n' : d)).join(', ')}]`);
    }
    return x;
  };
  const k = t('centers_assign', 'F32', [-1, PATCH_DIM]).shape[0]!;
  if (k < 1 || (K !== undefined && k !== K)) bad(`it holds ${k} centres, the run's config asks for K = ${K ?? '≥ 1'}`);
  const n = t('cache_features', 'U8', [-1, PATCH_DIM]).shape[0]!;
  const slotCount = t('cache_slots', 'I32', [-1]).shape[0]!;
  for (const name of ['cache_row', 'cache_col', 'cache_cols']) t(name, 'U16', [n]);
  for (const name of ['weight', 'dist_count', 'dist_sum', 'dist_sum_sq', 'dist_max']) {
    const d = t(name, 'F64', [k]).data as Float64Array;
    for (let i = 0; i < k; i++) if (!(Number.isFinite(d[i]!) && d[i]! >= 0)) bad(`${name}[${i}] is ${d[i]}, expected a finite value ≥ 0`);
  }
  t('centers_pixel', 'F32', [k, PATCH_DIM]);
  for (const name of ['active', 'moved']) if ((t(name, 'U8', [k]).data as Uint8Array).some((v) => v > 1)) bad(`${name} holds a value other than 0 or 1`);
  for (const name of ['centers_assign', 'centers_pixel']) if ((tensors[name]!.data as Float32Array).some((v) => !Number.isFinite(v))) bad(`${name} has a non-finite value`);
  const slots = tensors.cache_slots!.data as Int32Array;
  if (slots.some((s) => s < 0 || s >= k)) bad(`cache_slots holds a slot outside 0 … ${k - 1}`);
  if (slotCount > k) bad(`cache_slots holds ${slotCount} slots, more than the ${k} centres`);
  const round = Number(metadata.round);
  if (!(Number.isSafeInteger(round) && round >= 0) || metadata.round !== String(round)) bad(`metadata "round" is ${JSON.stringify(metadata.round)}, expected a round number`);
  if (metadata.converged !== 'true' && metadata.converged !== 'false') bad(`metadata "converged" is ${JSON.stringify(metadata.converged)}, expected "true" or "false"`);
  const json = (key: string): unknown => metadataJson(metadata, key, `${path}: corrupt checkpoint`);
  // Validated, then kept as written (not zod's copies), so a resumed run writes them back unchanged.
  const totals = json('totals') as ClusterState['totals'];
  parseOrFail(TotalsSchema, totals, `${path}: corrupt checkpoint: metadata "totals"`);
  const history = json('history') as RoundLog[];
  parseOrFail(z.array(RoundLogSchema), history, `${path}: corrupt checkpoint: metadata "history"`);
  const features = t('cache_features', 'U8', [n, PATCH_DIM]).data as Uint8Array;
  const get = (name: string): Tensor => tensors[name]!;
  return {
    K: k,
    D: PATCH_DIM,
    round,
    centersAssign: get('centers_assign').data as Float32Array,
    centersPixel: get('centers_pixel').data as Float32Array,
    weight: get('weight').data as Float64Array,
    active: get('active').data as Uint8Array,
    moved: get('moved').data as Uint8Array,
    distCount: get('dist_count').data as Float64Array,
    distSum: get('dist_sum').data as Float64Array,
    distSumSq: get('dist_sum_sq').data as Float64Array,
    distMax: get('dist_max').data as Float64Array,
    cache: {
      slots: Array.from(get('cache_slots').data as Int32Array),
      features,
      row: get('cache_row').data as Uint16Array,
      col: get('cache_col').data as Uint16Array,
      cols: get('cache_cols').data as Uint16Array,
      n,
    },
    totals,
    history,
    converged: metadata.converged === 'true',
  };
}

/**
 * The newest good checkpoint in `dir`, or null when there is none. A corrupt newest one is
 * reported and skipped (the previous good one is kept on disk and used).
 */
export function loadLatestCheckpoint(dir: string, identity: string, K?: number): ClusterState | null {
  const names = listCheckpoints(dir);
  for (const name of names) {
    const path = join(dir, name);
    try {
      return readCheckpoint(path, identity, K);
    } catch (err) {
      if (err instanceof UvuError && /other parameters/.test(err.message)) throw err;
      warnOnce(`ckpt-${path}`, `${(err as Error).message}; refusing it and trying the previous checkpoint`);
    }
  }
  if (names.length > 0) throw new UvuError(`${dir}: none of the ${names.length} checkpoint(s) is usable (see the warnings above); remove the folder to start over`);
  return null;
}
