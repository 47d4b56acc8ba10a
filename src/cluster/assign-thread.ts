/**
 * Compute thread of `uvu worker` (one per --concurrency slot): runs one assignment job at a time
 * off the main thread, so the main thread keeps renewing BullMQ's job lock and sending
 * heartbeats however long a shard takes. It caches open stores and the round's centres and
 * indices (by content hash) between jobs; the main thread has already checked the payload's
 * version and paths (worker.ts).
 */
import { parentPort } from 'node:worker_threads';
import { PatchStore } from '../patches/store.js';
import { PATCH_DIM } from '../patches/patchify.js';
import { assignShards } from '../codebook/uvu/assign.js';
import type { Tensor } from '../io/safetensors.js';
import { FsStorage, getContent } from './storage.js';
import { resultName, type AssignPayload, type AssignReturn } from './payload.js';

/** A refusal: the job can never succeed on any worker as it stands (BullMQ does not retry it). */
class Refusal extends Error {}

const stores = new Map<string, PatchStore>();
/** Content-addressed tensors by "folder/hash"; the newest few (a round's centres and indices). */
const cache = new Map<string, Record<string, Tensor>>();
const CACHE_ENTRIES = 4;

async function cached(storage: FsStorage, folder: string, hash: string): Promise<{ tensors: Record<string, Tensor>; hit: boolean }> {
  const key = `${storage.where}|${folder}/${hash}`;
  const hit = cache.get(key);
  if (hit) return { tensors: hit, hit: true };
  let tensors: Record<string, Tensor>;
  try {
    tensors = await getContent(storage, folder, hash);
  } catch (err) {
    if (/does not match its hash/.test((err as Error).message)) throw new Refusal((err as Error).message);
    throw err;
  }
  cache.set(key, tensors);
  for (const k of cache.keys()) if (cache.size > CACHE_ENTRIES) cache.delete(k);
  return { tensors, hit: false };
}

function tensor(t: Record<string, Tensor>, name: string, dtype: Tensor['dtype'], where: string): Tensor {
  const x = t[name];
  if (!x || x.dtype !== dtype) throw new Refusal(`${where}: no ${dtype} tensor "${name}"`);
  return x;
}

async function run(p: AssignPayload, worker: string): Promise<AssignReturn> {
  let store = stores.get(p.store);
  if (!store) {
    store = PatchStore.open(p.store); // shards' sha256 checked on first read in this thread
    stores.set(p.store, store);
  }
  if (store.fingerprint !== p.fingerprint) {
    throw new Refusal(`${p.store}: this worker's store has fingerprint ${store.fingerprint.slice(0, 12)}…, the job was made for ${p.fingerprint.slice(0, 12)}… (another build of the store?)`);
  }
  const storage = new FsStorage(p.work);
  const t0 = performance.now();
  const c = await cached(storage, 'centres', p.centres);
  const ix = await cached(storage, 'indices', p.indices);
  const centers = tensor(c.tensors, 'centers', 'F32', `centres/${p.centres}`);
  const slots = tensor(c.tensors, 'slots', 'I32', `centres/${p.centres}`);
  const indices = tensor(ix.tensors, 'indices', 'U32', `indices/${p.indices}`).data as Uint32Array;
  const Ka = slots.data.length;
  if (centers.shape.length !== 2 || centers.shape[0] !== Ka || centers.shape[1] !== PATCH_DIM) throw new Refusal(`centres/${p.centres}: centers are [${centers.shape.join(', ')}], expected [${Ka}, ${PATCH_DIM}]`);
  const start = p.shard * p.shardSize;
  if (start >= indices.length) throw new Refusal(`shard ${p.shard} × ${p.shardSize} lies beyond the ${indices.length} indices of the round`);
  const sub = indices.subarray(start, Math.min(indices.length, start + p.shardSize));
  for (const i of [sub[0]!, sub[sub.length - 1]!]) if (i >= store.count) throw new Refusal(`indices/${p.indices}: store index ${i} ≥ ${store.count} patches of ${p.store}`);
  const t1 = performance.now();
  const n = sub.length;
  const out = { ids: new Int32Array(n), distSq: new Float32Array(n) };
  assignShards(store, p.pe, { indices: sub, centers: centers.data as Float32Array, slots: slots.data as Int32Array }, n, 0, 1, out);
  const t2 = performance.now();
  const timings = { load_ms: (t1 - t0).toFixed(3), compute_ms: (t2 - t1).toFixed(3) };
  const bytes = await storage.put(resultName(p.key), { ids: { dtype: 'U32', shape: [n], data: new Uint32Array(out.ids.buffer) }, dist_sq: { dtype: 'F32', shape: [n], data: out.distSq } }, { key: p.key, worker, centres: p.centres, indices: p.indices, shard: String(p.shard), ...timings });
  const t3 = performance.now();
  return { worker, patches: n, bytes, loadMs: t1 - t0, computeMs: t2 - t1, writeMs: t3 - t2 };
}

parentPort!.on('message', (msg: { payload: AssignPayload; worker: string }) => {
  run(msg.payload, msg.worker).then(
    (ret) => parentPort!.postMessage({ ok: true, ret }),
    (err: Error) => parentPort!.postMessage({ ok: false, refuse: err instanceof Refusal, error: err.message }),
  );
});
