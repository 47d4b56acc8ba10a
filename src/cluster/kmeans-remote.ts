/**
 * `uvu codebook build --method kmeans --redis`: every Lloyd iteration's full assignment runs on
 * the cluster's workers. k-means itself (codebook/kmeans.ts) is synchronous and takes a
 * synchronous `AssignAll`, so the coordinator backend runs on a helper thread
 * (kmeans-remote-thread.ts) and this thread waits for each iteration's result with Atomics.wait:
 * the ids and distances arrive in shared memory, in point order, exactly as the in-process
 * assignment would give them (shards of a multiple of 4096 points keep FlatIndex's query blocks
 * where the in-process search puts them).
 */
import { Worker } from 'node:worker_threads';
import type { AssignAll } from '../codebook/kmeans.js';
import type { KmeansTrainingSet } from '../codebook/build.js';
import { UsageError, UvuError } from '../util/errors.js';
import type { RedisTarget } from './redis.js';

/** Shared-memory slots of the handshake: state (0 waiting, 1 done, 2 failed) and the error message's length. */
const STATE = 0;
const MSG_LEN = 1;
const MSG_BYTES = 4096;

export interface RemoteKmeansOptions {
  target: RedisTarget;
  queue: string;
  workDir: string;
  /** Points per job; a multiple of 4096. */
  shardSize: number;
  /** Identity of the run (options + store): names the jobs. */
  runId: string;
  /** No log lines (--quiet). */
  quiet: boolean;
}

export interface RemoteKmeans {
  assignAll: AssignAll;
  close(): void;
}

/** Start the coordinator thread for one k-means build over `training`. */
export function remoteKmeans(opts: RemoteKmeansOptions, training: KmeansTrainingSet): RemoteKmeans {
  if (opts.shardSize % 4096 !== 0) throw new UsageError(`--shard-size ${opts.shardSize}: k-means on workers needs a multiple of 4096 (the in-process search's blocks)`);
  const control = new Int32Array(new SharedArrayBuffer(8));
  const message = new Uint8Array(new SharedArrayBuffer(MSG_BYTES));
  const thread = new Worker(new URL('./kmeans-remote-thread.js', import.meta.url), {
    workerData: { target: opts.target, queue: opts.queue, workDir: opts.workDir, shardSize: opts.shardSize, runId: opts.runId, quiet: opts.quiet, training, control, message },
  });
  thread.unref();
  /** Send `msg` and block until the thread answers; throws its error as a UvuError. */
  const call = (msg: object): void => {
    Atomics.store(control, STATE, 0);
    thread.postMessage(msg);
    while (Atomics.load(control, STATE) === 0) Atomics.wait(control, STATE, 0, 1000);
    if (Atomics.load(control, STATE) === 2) throw new UvuError(Buffer.from(message.subarray(0, Atomics.load(control, MSG_LEN))).toString('utf8'));
  };
  let iter = 0;
  return {
    assignAll(centers: Float32Array, K: number) {
      const n = training.indices.length;
      const ids = new Int32Array(new SharedArrayBuffer(4 * n));
      const distSq = new Float32Array(new SharedArrayBuffer(4 * n));
      const shared = new Float32Array(new SharedArrayBuffer(centers.byteLength));
      shared.set(centers);
      call({ kind: 'assign', centers: shared, K, iter: ++iter, ids, distSq });
      return { ids: Int32Array.from(ids), distSq: Float32Array.from(distSq) };
    },
    close() {
      try {
        call({ kind: 'close' });
      } finally {
        void thread.terminate();
      }
    },
  };
}
