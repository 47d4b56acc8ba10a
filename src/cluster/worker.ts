/**
 * `uvu worker`: takes assignment jobs from the BullMQ queue, runs each on a compute thread
 * (assign-thread.ts) and writes its result file to the run's shared work folder.
 *
 * Before a job runs, the worker checks its payload: the format and the uvu version must be its
 * own, and the store and work folders must lie inside the roots this worker was started with
 * (`--store-root`, `--work-root`), after resolving symbolic links: a payload cannot make a worker
 * read or write anywhere else. The compute thread then checks the store's fingerprint and the
 * centres' and indices' content hashes. Any of these refusals fails the job for good
 * (UnrecoverableError: no retry) with a message naming this worker and the problem.
 *
 * A worker killed mid-job stops renewing its job lock; BullMQ's stalled-job check (run by the
 * other workers every `stalledMs`) puts the job back in the queue and another worker runs it.
 * SIGTERM / SIGINT: stop taking jobs, finish the ones running (worker.close()), then exit.
 * A heartbeat hash (status.ts) tells `uvu cluster status` who is alive and what it is doing.
 */
import { hostname } from 'node:os';
import { realpathSync } from 'node:fs';
import { isAbsolute, relative, sep } from 'node:path';
import { Worker as ThreadWorker } from 'node:worker_threads';
import { Worker, UnrecoverableError, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { setBlasThreads } from '../linalg/blas.js';
import { describeZodError } from '../util/fsio.js';
import { UvuError } from '../util/errors.js';
import { info } from '../util/progress.js';
import { bullConnection, connectRedis, type RedisTarget } from './redis.js';
import { AssignPayloadSchema, CODE_VERSION, PAYLOAD_VERSION, type AssignPayload, type AssignReturn } from './payload.js';
import { HEARTBEAT_MS, workerKey } from './status.js';

export interface WorkerOptions {
  target: RedisTarget;
  queue: string;
  /** Folders a job's store and work paths must lie in. */
  storeRoot: string;
  workRoot: string;
  /** Jobs run at once (one compute thread each). */
  concurrency: number;
  /** OpenBLAS threads of this process (shared by its compute threads). */
  blasThreads: number;
  /** BullMQ lock duration and stalled-check interval (ms): how soon a dead worker's job moves on. */
  lockMs: number;
  stalledMs: number;
}

/** Real path of `root` (it must exist: a worker without its roots mounted cannot work). */
function realRoot(root: string, flag: string): string {
  try {
    return realpathSync(root);
  } catch {
    throw new UvuError(`${flag} ${root}: no such folder (is the shared storage mounted here?)`);
  }
}

/**
 * The real path of `path` (from a job) when it lies inside `root` (a real path), or why not.
 * The job then runs on the real path, so a link changed after the check cannot redirect it.
 */
export function insideRoot(path: string, root: string): { real: string } | { problem: string } {
  if (!isAbsolute(path)) return { problem: 'is not an absolute path' };
  if (path.split(/[/\\]/).includes('..')) return { problem: 'contains ".."' };
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return { problem: 'does not exist on this worker' };
  }
  const rel = relative(root, real);
  if (rel === '' || !(rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel))) return { real };
  return { problem: `lies outside ${root}` };
}

/** Compute threads: each runs one job at a time. */
class ThreadPool {
  private readonly idle: ThreadWorker[] = [];
  constructor(n: number) {
    for (let i = 0; i < n; i++) this.idle.push(new ThreadWorker(new URL('./assign-thread.js', import.meta.url)));
  }

  run(payload: AssignPayload, worker: string): Promise<AssignReturn> {
    const t = this.idle.pop();
    if (!t) throw new Error('no free compute thread (more jobs than --concurrency)');
    return new Promise<AssignReturn>((resolve, reject) => {
      const done = (): void => {
        t.off('message', onMessage);
        t.off('error', onError);
        this.idle.push(t);
      };
      const onMessage = (msg: { ok: boolean; ret?: AssignReturn; refuse?: boolean; error?: string }) => {
        done();
        if (msg.ok) resolve(msg.ret!);
        else reject(msg.refuse ? new UnrecoverableError(`worker ${worker} refuses the job: ${msg.error}`) : new Error(`worker ${worker}: ${msg.error}`));
      };
      const onError = (err: Error) => {
        done();
        reject(err);
      };
      t.on('message', onMessage);
      t.on('error', onError);
      t.postMessage({ payload, worker });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.idle.map((t) => t.terminate()));
  }
}

/** Check a job's payload (format, version, paths); throws UnrecoverableError naming the problem. */
export function checkPayload(data: unknown, storeRoot: string, workRoot: string, worker: string): AssignPayload {
  const refuse = (why: string): never => {
    throw new UnrecoverableError(`worker ${worker} refuses the job: ${why}`);
  };
  const v = (data as { version?: unknown; code?: unknown } | null) ?? {};
  if (v.version !== PAYLOAD_VERSION) refuse(`payload format ${JSON.stringify(v.version)}, this worker reads format ${PAYLOAD_VERSION} (update the workers and the coordinator to the same uvu version)`);
  if (v.code !== CODE_VERSION) refuse(`made by uvu ${JSON.stringify(v.code)}, this worker runs uvu ${CODE_VERSION} (run the same version everywhere)`);
  const parsed = AssignPayloadSchema.safeParse(data);
  if (!parsed.success) refuse(`malformed payload: ${describeZodError(parsed.error)}`);
  const p = parsed.data!;
  const store = insideRoot(p.store, storeRoot);
  if ('problem' in store) return refuse(`store path ${JSON.stringify(p.store)} ${store.problem} (--store-root)`);
  const work = insideRoot(p.work, workRoot);
  if ('problem' in work) return refuse(`work path ${JSON.stringify(p.work)} ${work.problem} (--work-root)`);
  return { ...p, store: store.real, work: work.real };
}

/** What a worker did, returned after a clean shutdown. */
export interface WorkerSummary {
  worker: string;
  jobs_done: number;
  jobs_refused: number;
  patches: number;
  busy_seconds: number;
  seconds: number;
}

/** Run a worker until SIGTERM / SIGINT; resolves after a clean shutdown. */
export async function runWorker(opts: WorkerOptions): Promise<WorkerSummary> {
  const storeRoot = realRoot(opts.storeRoot, '--store-root');
  const workRoot = realRoot(opts.workRoot, '--work-root');
  (await connectRedis(opts.target)).disconnect(); // one clear line for a wrong password or no server
  if (!setBlasThreads(opts.blasThreads)) info('uvu worker: this BLAS has no thread control; --blas-threads ignored');
  const id = `${hostname()}:${process.pid}`;
  const threads = new ThreadPool(opts.concurrency);
  const beat = new Redis(opts.target.options);
  beat.on('error', () => {}); // reconnects by itself; the heartbeat just pauses
  const key = workerKey(opts.queue, id);
  const current = new Set<string>();
  const totals = { jobs: 0, patches: 0, busyMs: 0, refused: 0 };
  const started = Date.now();
  const heartbeat = async (): Promise<void> => {
    try {
      await beat
        .multi()
        .hset(key, { host: hostname(), pid: String(process.pid), version: CODE_VERSION, concurrency: String(opts.concurrency), blas_threads: String(opts.blasThreads), jobs_now: [...current].join(','), jobs_done: String(totals.jobs), refused: String(totals.refused), patches: String(totals.patches), busy_ms: totals.busyMs.toFixed(0), started: String(started), seen: String(Date.now()) })
        .pexpire(key, 3 * HEARTBEAT_MS)
        .exec();
    } catch {
      /* Redis away: the next beat tries again */
    }
  };
  const timer = setInterval(() => void heartbeat(), HEARTBEAT_MS);

  const worker = new Worker(
    opts.queue,
    async (job: Job) => {
      const p = (() => {
        try {
          return checkPayload(job.data, storeRoot, workRoot, id);
        } catch (err) {
          totals.refused++;
          throw err;
        }
      })();
      current.add(p.key);
      void heartbeat();
      const t0 = performance.now();
      try {
        const ret = await threads.run(p, id);
        totals.jobs++;
        totals.patches += ret.patches;
        totals.busyMs += performance.now() - t0;
        return ret;
      } catch (err) {
        if (err instanceof UnrecoverableError) totals.refused++;
        throw err;
      } finally {
        current.delete(p.key);
        void heartbeat();
      }
    },
    { connection: bullConnection(opts.target), concurrency: opts.concurrency, lockDuration: opts.lockMs, stalledInterval: opts.stalledMs, maxStalledCount: 3, autorun: false },
  );
  worker.on('failed', (job, err) => info(`uvu worker ${id}: job ${job?.id ?? '?'} failed: ${err.message}`));
  worker.on('error', (err) => info(`uvu worker ${id}: ${err.message.split('\n')[0]}`));
  info(`uvu worker ${id}: uvu ${CODE_VERSION}, queue ${opts.queue} on ${opts.target.shown}, ${opts.concurrency} job(s) at once, ${opts.blasThreads} BLAS thread(s), store root ${storeRoot}, work root ${workRoot}`);
  await heartbeat();

  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      info(`uvu worker ${id}: ${signal}: finishing ${current.size} running job(s), taking no new ones`);
      void (async () => {
        await worker.close();
        clearInterval(timer);
        await threads.close();
        await beat.del(key).catch(() => {});
        beat.disconnect();
        info(`uvu worker ${id}: stopped after ${totals.jobs} job(s)`);
        resolve();
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  void worker.run();
  await stopped;
  return { worker: id, jobs_done: totals.jobs, jobs_refused: totals.refused, patches: totals.patches, busy_seconds: totals.busyMs / 1000, seconds: (Date.now() - started) / 1000 };
}
