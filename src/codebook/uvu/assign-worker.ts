/** Worker thread of AssignPool: assigns its share of a job's shards (see assign.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { PatchStore } from '../../patches/store.js';
import { setBlasThreads } from '../../linalg/blas.js';
import type { PosEnc } from '../posenc.js';
import { assignShards, type AssignJob, type AssignOutput } from './assign.js';

const { storeDir, pe, shardSize } = workerData as { storeDir: string; pe: PosEnc; shardSize: number };
// The workers already use every core between them.
setBlasThreads(1);
const store = PatchStore.open(storeDir);

parentPort!.on('message', (msg: { job: AssignJob; out: AssignOutput; first: number; stride: number }) => {
  try {
    assignShards(store, pe, msg.job, shardSize, msg.first, msg.stride, msg.out);
    parentPort!.postMessage({ ok: true });
  } catch (err) {
    parentPort!.postMessage({ ok: false, error: (err as Error).message });
  }
});
