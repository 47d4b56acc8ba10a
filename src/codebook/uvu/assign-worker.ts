/** Worker thread of AssignPool: assigns its share of a job's shards (see assign.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { PatchStore } from '../../patches/store.js';
import type { PosEnc } from '../posenc.js';
import { assignShards, type AssignJob, type AssignOutput } from './assign.js';

const { storeDir, pe, shardSize } = workerData as { storeDir: string; pe: PosEnc; shardSize: number };
// The pool runs each job with a single-threaded BLAS (withBlasThreads in assign.ts): the workers
// already use every core between them.
// The main thread checked every shard's sha256 once before starting the pool (buildUvuCodebook).
const store = PatchStore.open(storeDir, { verify: false });

parentPort!.on('message', (msg: { job: AssignJob; out: AssignOutput; first: number; stride: number }) => {
  try {
    assignShards(store, pe, msg.job, shardSize, msg.first, msg.stride, msg.out);
    parentPort!.postMessage({ ok: true });
  } catch (err) {
    parentPort!.postMessage({ ok: false, error: (err as Error).message });
  }
});
