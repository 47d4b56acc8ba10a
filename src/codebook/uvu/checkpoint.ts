/**
 * Checkpoints of an iterative clustering run: one safetensors file per completed round,
 * written atomically, with a sha256 of all tensor bytes in the metadata so truncation and
 * tampering are both detected. The newest two are kept; on resume a corrupt newest one is
 * refused with a warning and the previous good one is used.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type Tensor } from '../../io/safetensors.js';
import { UvuError, warnOnce } from '../../util/errors.js';
import { PATCH_DIM } from '../../patches/patchify.js';
import type { ClusterState, RoundLog } from './state.js';

export const CHECKPOINT_FORMAT = 'uvu-cluster-checkpoint';
const KEEP = 2;

const fileFor = (round: number): string => `round-${String(round).padStart(6, '0')}.safetensors`;

function checksum(tensors: Record<string, Tensor>): string {
  const h = createHash('sha256');
  for (const name of Object.keys(tensors).sort()) {
    const d = tensors[name]!.data;
    h.update(name);
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

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
    checksum: checksum(tensors),
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

/** Read and fully validate one checkpoint file. */
export function readCheckpoint(path: string, identity: string): ClusterState {
  const { tensors, metadata } = readSafetensors(path);
  const bad = (what: string): never => {
    throw new UvuError(`${path}: corrupt checkpoint: ${what}`);
  };
  if (metadata.format !== CHECKPOINT_FORMAT) bad(`format is ${JSON.stringify(metadata.format)}`);
  if (metadata.checksum !== checksum(tensors)) bad('tensor bytes do not match the recorded sha256 (file damaged or edited)');
  if (metadata.identity !== identity) {
    throw new UvuError(`${path}: checkpoint was made with other parameters or data; start a new run (different --checkpoint-dir) or use the same config`);
  }
  const t = (name: string): Tensor => tensors[name] ?? bad(`missing tensor ${name}`);
  const K = t('centers_assign').shape[0]!;
  const n = t('cache_features').shape[0]!;
  const features = new Uint8Array(t('cache_features').data.buffer as ArrayBuffer, 0, n * PATCH_DIM);
  return {
    K,
    D: PATCH_DIM,
    round: Number(metadata.round),
    centersAssign: t('centers_assign').data as Float32Array,
    centersPixel: t('centers_pixel').data as Float32Array,
    weight: t('weight').data as Float64Array,
    active: t('active').data as Uint8Array,
    moved: t('moved').data as Uint8Array,
    distCount: t('dist_count').data as Float64Array,
    distSum: t('dist_sum').data as Float64Array,
    distSumSq: t('dist_sum_sq').data as Float64Array,
    distMax: t('dist_max').data as Float64Array,
    cache: {
      slots: Array.from(t('cache_slots').data as Int32Array),
      features,
      row: t('cache_row').data as Uint16Array,
      col: t('cache_col').data as Uint16Array,
      cols: t('cache_cols').data as Uint16Array,
      n,
    },
    totals: JSON.parse(metadata.totals ?? bad('missing totals')) as ClusterState['totals'],
    history: JSON.parse(metadata.history ?? bad('missing history')) as RoundLog[],
    converged: metadata.converged === 'true',
  };
}

/**
 * The newest good checkpoint in `dir`, or null when there is none. A corrupt newest one is
 * reported and skipped (the previous good one is kept on disk and used).
 */
export function loadLatestCheckpoint(dir: string, identity: string): ClusterState | null {
  const names = listCheckpoints(dir);
  for (const name of names) {
    const path = join(dir, name);
    try {
      return readCheckpoint(path, identity);
    } catch (err) {
      if (err instanceof UvuError && /other parameters/.test(err.message)) throw err;
      warnOnce(`ckpt-${path}`, `${(err as Error).message}; refusing it and trying the previous checkpoint`);
    }
  }
  if (names.length > 0) throw new UvuError(`${dir}: none of the ${names.length} checkpoint(s) is usable (see the warnings above); remove the folder to start over`);
  return null;
}
