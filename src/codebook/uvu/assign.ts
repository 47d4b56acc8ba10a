/**
 * A round's assignment, split into fixed shards of `shardSize` patches. Each shard reads its
 * patches from the store, encodes them (positional encoding) and finds the nearest active
 * centre with the exact FlatIndex. Shards write disjoint slices of the output, and every
 * per-patch result is exact, so the outcome is the same for 1 worker or many — and the same
 * shards could run on other machines and be concatenated in shard order.
 *
 * workers = 1 runs in-process (the BLAS uses every core); workers > 1 start worker threads
 * that each use a single-threaded BLAS while a job runs. OpenBLAS's thread count is one per
 * process, so the pool sets it to 1 for the job and puts it back afterwards: the main thread's
 * own BLAS work (validation, re-clustering) keeps every core.
 *
 * Where the shards run is an AssignBackend chosen by the caller (buildUvuCodebook's
 * `assignBackend`): this pool in-process or on threads, or a backend of a higher layer that sends
 * the shards to other machines (src/cluster/). Every backend returns the same exact per-patch
 * results, concatenated in shard order.
 */
import { Worker } from 'node:worker_threads';
import { PatchStore } from '../../patches/store.js';
import { PATCH_DIM } from '../../patches/patchify.js';
import { FlatIndex } from '../search.js';
import { PatchPoints } from '../points.js';
import { withBlasThreads } from '../../linalg/blas.js';
import type { PosEnc } from '../posenc.js';

export interface AssignJob {
  /** Store indices of the patches to assign, ascending. */
  indices: Uint32Array;
  /** [Ka, D] centres of the active slots, in slot order. */
  centers: Float32Array;
  /** Slot id of each of the Ka active centres. */
  slots: Int32Array;
}

export interface AssignOutput {
  /** Slot id of the nearest active centre, per patch. */
  ids: Int32Array;
  /** Exact squared distance in assignment space, per patch. */
  distSq: Float32Array;
}

/** Runs a round's assignment job somewhere; results exact per patch, in the job's order. */
export interface AssignBackend {
  /** One line for logs ("in-process", "3 worker threads on …", "Redis at …"). */
  readonly description: string;
  /** `round`: the clustering round the job belongs to (remote backends name their jobs by it). */
  run(job: AssignJob, round: number): Promise<AssignOutput>;
  close(): Promise<void>;
}

/** What a backend needs to know about the run it serves. */
export interface AssignBackendContext {
  storeDir: string;
  /** Content fingerprint of the store (remote workers check theirs against it). */
  fingerprint: string;
  pe: PosEnc;
  /** Patches per shard: the unit of work and of exact merging. */
  shardSize: number;
  /** Identity of the run (config and data): names remote jobs so that a resumed run finds them. */
  runId: string;
}

export type AssignBackendFactory = (ctx: AssignBackendContext) => AssignBackend | Promise<AssignBackend>;

/** Assign shards [first, first+stride, ...) of a job into `out` (runs in-process or in a worker). */
export function assignShards(store: PatchStore, pe: PosEnc, job: AssignJob, shardSize: number, first: number, stride: number, out: AssignOutput): void {
  const Ka = job.slots.length;
  const index = new FlatIndex(job.centers, Ka, PATCH_DIM);
  const nShards = Math.ceil(job.indices.length / shardSize);
  let buf = new Float32Array(0);
  for (let s = first; s < nShards; s += stride) {
    const start = s * shardSize;
    const n = Math.min(shardSize, job.indices.length - start);
    const { patches, meta } = store.readIndices(job.indices.subarray(start, start + n));
    if (buf.length < n * PATCH_DIM) buf = new Float32Array(n * PATCH_DIM);
    new PatchPoints(patches, n, PATCH_DIM, meta, pe).readAssign(0, n, buf);
    const r = index.search(buf.subarray(0, n * PATCH_DIM), n);
    for (let i = 0; i < n; i++) {
      out.ids[start + i] = job.slots[r.ids[i]!]!;
      out.distSq[start + i] = r.distSq[i]!;
    }
  }
}

/** Copy a typed array into shared memory so workers can read it without a copy each. */
function shared<T extends Float32Array | Int32Array | Uint32Array>(a: T, make: (b: SharedArrayBuffer) => T): T {
  const s = make(new SharedArrayBuffer(a.byteLength));
  s.set(a as never);
  return s;
}

/** Runs jobs on a fixed set of worker threads (or in-process when workers = 1). */
export class AssignPool implements AssignBackend {
  private readonly workers: Worker[] = [];
  private readonly store: PatchStore | null;

  constructor(private readonly storeDir: string, private readonly pe: PosEnc, private readonly nWorkers: number, private readonly shardSize: number) {
    // The caller checked the store's shards once (buildUvuCodebook): its readers here do not again.
    if (nWorkers === 1) {
      this.store = PatchStore.open(storeDir, { verify: false });
      return;
    }
    this.store = null;
    for (let w = 0; w < nWorkers; w++) {
      this.workers.push(new Worker(new URL('./assign-worker.js', import.meta.url), { workerData: { storeDir, pe, shardSize } }));
    }
  }

  async run(job: AssignJob): Promise<AssignOutput> {
    const n = job.indices.length;
    if (this.store) {
      const out = { ids: new Int32Array(n), distSq: new Float32Array(n) };
      assignShards(this.store, this.pe, job, this.shardSize, 0, 1, out);
      return out;
    }
    const sharedJob: AssignJob = {
      indices: shared(job.indices, (b) => new Uint32Array(b)),
      centers: shared(job.centers, (b) => new Float32Array(b)),
      slots: shared(job.slots, (b) => new Int32Array(b)),
    };
    const out: AssignOutput = { ids: new Int32Array(new SharedArrayBuffer(4 * n)), distSq: new Float32Array(new SharedArrayBuffer(4 * n)) };
    await withBlasThreads(1, () => this.runOnWorkers(sharedJob, out));
    return { ids: Int32Array.from(out.ids), distSq: Float32Array.from(out.distSq) };
  }

  /** Each worker w assigns shards w, w + nWorkers, … of the job into the shared `out`. */
  private async runOnWorkers(sharedJob: AssignJob, out: AssignOutput): Promise<void> {
    await Promise.all(
      this.workers.map(
        (worker, w) =>
          new Promise<void>((resolve, reject) => {
            const onMessage = (msg: { ok: boolean; error?: string }) => {
              worker.off('error', onError);
              if (msg.ok) resolve();
              else reject(new Error(`assignment worker ${w}: ${msg.error}`));
            };
            const onError = (err: Error) => {
              worker.off('message', onMessage);
              reject(err);
            };
            worker.once('message', onMessage);
            worker.once('error', onError);
            worker.postMessage({ job: sharedJob, out, first: w, stride: this.workers.length });
          }),
      ),
    );
  }

  async close(): Promise<void> {
    this.store?.close();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  get description(): string {
    return this.nWorkers === 1 ? 'in-process' : `${this.nWorkers} worker threads on ${this.storeDir}`;
  }
}
