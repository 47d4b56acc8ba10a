/**
 * Helper thread of kmeans-remote.ts: holds the coordinator backend (coordinator.ts) and runs one
 * assignment per message, writing ids and distances into the shared arrays, then wakes the
 * waiting k-means thread (state 1, or 2 with the error message).
 */
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { KmeansTrainingSet } from '../codebook/build.js';
import { RedisAssignBackend } from './coordinator.js';
import type { RedisTarget } from './redis.js';

const data = workerData as { target: RedisTarget; queue: string; workDir: string; shardSize: number; runId: string; quiet: boolean; training: KmeansTrainingSet; control: Int32Array; message: Uint8Array };
const { training, control, message } = data;

function answer(state: 1 | 2, error = ''): void {
  const bytes = Buffer.from(error.slice(0, 1000), 'utf8').subarray(0, message.length);
  message.set(bytes);
  Atomics.store(control, 1, bytes.length);
  Atomics.store(control, 0, state);
  Atomics.notify(control, 0);
}

// The waiting thread sees no events while it waits: anything that escapes must wake it too.
process.on('uncaughtException', (err) => answer(2, err.message));
process.on('unhandledRejection', (err) => answer(2, String((err as Error)?.message ?? err)));

// The parent thread is blocked in Atomics.wait: log lines go to fd 2 directly, not through it.
const log = (line: string): void => {
  if (!data.quiet) writeSync(2, `${line}\n`);
};
const backend = RedisAssignBackend.open(
  { target: data.target, queue: data.queue, workDir: data.workDir, unit: 'iteration', log, bar: false },
  { storeDir: training.storeDir, fingerprint: training.fingerprint, pe: training.pe, shardSize: data.shardSize, runId: data.runId },
);
backend.catch(() => {}); // reported by the first message

type Msg = { kind: 'assign'; centers: Float32Array; K: number; iter: number; ids: Int32Array; distSq: Float32Array } | { kind: 'close' };

parentPort!.on('message', (msg: Msg) => {
  void (async () => {
    try {
      const b = await backend;
      if (msg.kind === 'close') {
        await b.close();
        answer(1);
        return;
      }
      const slots = Int32Array.from({ length: msg.K }, (_, k) => k);
      const out = await b.run({ indices: training.indices, centers: msg.centers, slots }, msg.iter);
      msg.ids.set(out.ids);
      msg.distSq.set(out.distSq);
      answer(1);
    } catch (err) {
      answer(2, (err as Error).message);
    }
  })();
});
