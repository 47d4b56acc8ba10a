/**
 * The coordinator side of a cluster run: an AssignBackend (src/codebook/uvu/assign.ts) that cuts
 * each round's assignment into shard jobs on a BullMQ queue and merges the workers' result files
 * in shard order, so the round's output is exactly that of the in-process pool.
 *
 * Data plane: the round's centres (+ slot ids) and pool indices are written once to the shared
 * work folder as content-addressed safetensors; each job names them by hash. Workers write one
 * result file per shard (u32 ids + f32 squared distances), named by the job key.
 *
 * Job keys are (run, round, hash of the round's inputs, shard), so a coordinator restarted with
 * --resume re-creates the same keys for the round it was in and reuses every result file already
 * there; only the missing shards are queued again. Adding a job whose key is already queued does
 * nothing (BullMQ job ids), so the coordinator re-adds the outstanding ones every few seconds:
 * a Redis restarted without its data gets them back. When Redis stays unreachable for
 * `redisTimeoutMs`, the round stops with one line and a resume hint; nothing finished is lost.
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { AssignBackend, AssignBackendContext, AssignJob, AssignOutput } from '../codebook/uvu/assign.js';
import { PATCH_DIM } from '../patches/patchify.js';
import { UvuError } from '../util/errors.js';
import { info, progress } from '../util/progress.js';
import { bullConnection, connectRedis, describeRedisError, type RedisTarget } from './redis.js';
import { FsStorage, putContent, type ClusterStorage } from './storage.js';
import { CODE_VERSION, PAYLOAD_VERSION, resultName, type AssignPayload } from './payload.js';
import { coordinatorKey, scanKeys, workerKey } from './status.js';

export interface RedisBackendOptions {
  target: RedisTarget;
  queue: string;
  /** The run's work folder on shared storage (centres, indices, results). */
  workDir: string;
  /** Attempts per job for errors other than refusals (a refusal fails at once). */
  attempts?: number;
  /** How often the result folder is checked (ms). */
  pollMs?: number;
  /** Stop the round when Redis has not answered for this long (ms). */
  redisTimeoutMs?: number;
  /** What a job's `round` counts in log lines ("round", or "iteration" for k-means). */
  unit?: string;
  /** Where log lines go (default: stderr unless --quiet; a thread whose parent is blocked writes to fd 2 itself). */
  log?: (line: string) => void;
  /** Show a progress bar over each round's shards (default true). */
  bar?: boolean;
}

/** What one round moved and cost, measured by the coordinator (for logs and the benchmark). */
export interface RoundTransfer {
  round: number;
  shards: number;
  reused: number;
  patches: number;
  /** Bytes written by the coordinator (centres + indices) and read back from workers (results). */
  bytesCentres: number;
  bytesIndices: number;
  bytesResults: number;
  /** Coordinator time to read and merge the result files (ms). */
  mergeMs: number;
  /** Wall time of the round's assignment, queueing to merged (ms). */
  wallMs: number;
  /** Per job, as the workers measured it: sum over jobs of load / compute / write (ms). */
  workerLoadMs: number;
  workerComputeMs: number;
  workerWriteMs: number;
  workers: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `p`, or a rejection after `ms` (Redis calls wait forever while the server is away). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timed out')), ms))]);
}

export class RedisAssignBackend implements AssignBackend {
  readonly rounds: RoundTransfer[] = [];
  private firstRun = true;
  private lastRedisOk = Date.now();

  private constructor(
    private readonly opts: Required<RedisBackendOptions>,
    private readonly ctx: AssignBackendContext,
    private readonly storage: ClusterStorage,
    private readonly queue: Queue,
    private readonly client: Redis,
    private readonly storeDir: string,
    private readonly workDir: string,
  ) {}

  static async open(options: RedisBackendOptions, ctx: AssignBackendContext): Promise<RedisAssignBackend> {
    const opts = { attempts: 3, pollMs: 50, redisTimeoutMs: 60_000, unit: 'round', log: info, bar: true, ...options };
    (await connectRedis(opts.target)).disconnect();
    const queue = new Queue(opts.queue, { connection: bullConnection(opts.target) });
    queue.on('error', () => {}); // reconnects by itself; the round notices a long outage (redisTimeoutMs)
    const client = new Redis(opts.target.options);
    client.on('error', () => {});
    const workDir = resolve(opts.workDir);
    return new RedisAssignBackend(opts, ctx, new FsStorage(workDir), queue, client, resolve(ctx.storeDir), workDir);
  }

  get description(): string {
    return `workers on queue ${this.opts.queue} at ${this.opts.target.shown} (work folder ${this.workDir})`;
  }

  /** Run a Redis call, recording when Redis last answered; fails the round after a long outage. */
  private async redis<T>(what: string, call: () => Promise<T>, round: number, done: number, total: number): Promise<T | undefined> {
    try {
      const r = await within(call(), 2000);
      this.lastRedisOk = Date.now();
      return r;
    } catch (err) {
      if (Date.now() - this.lastRedisOk > this.opts.redisTimeoutMs) {
        throw new UvuError(`${describeRedisError(this.opts.target, err)} (${what}; no answer for ${(this.opts.redisTimeoutMs / 1000).toFixed(0)} s) in ${this.opts.unit} ${round} with ${done}/${total} shards done and kept in ${this.workDir}; start Redis again and rerun the same command with --resume`);
      }
      return undefined;
    }
  }

  async run(job: AssignJob, round: number): Promise<AssignOutput> {
    const t0 = performance.now();
    const n = job.indices.length;
    const Ka = job.slots.length;
    const centres = await putContent(this.storage, 'centres', { centers: { dtype: 'F32', shape: [Ka, PATCH_DIM], data: job.centers }, slots: { dtype: 'I32', shape: [Ka], data: job.slots } });
    const indices = await putContent(this.storage, 'indices', { indices: { dtype: 'U32', shape: [n], data: job.indices } });
    const size = this.ctx.shardSize;
    const nShards = Math.ceil(n / size);
    const inputs = createHash('sha256').update(`${centres.hash}:${indices.hash}:${size}:${this.ctx.fingerprint}:${JSON.stringify(this.ctx.pe)}`).digest('hex');
    const keys = Array.from({ length: nShards }, (_, s) => `${this.ctx.runId.slice(0, 12)}-r${round}-${inputs.slice(0, 12)}-s${s}`);
    await this.prune(new Set(keys), centres.hash, indices.hash);

    const outstanding = new Set<number>();
    for (let s = 0; s < nShards; s++) if (!(await this.storage.has(resultName(keys[s]!)))) outstanding.add(s);
    const reused = nShards - outstanding.size;
    if (reused > 0) this.opts.log(`${this.opts.unit} ${round}: reusing ${reused} of ${nShards} shard results already in ${this.workDir}`);
    const payload = (s: number): AssignPayload => ({ kind: 'assign', version: PAYLOAD_VERSION, code: CODE_VERSION, store: this.storeDir, fingerprint: this.ctx.fingerprint, work: this.workDir, centres: centres.hash, indices: indices.hash, round, shard: s, shardSize: size, pe: this.ctx.pe, key: keys[s]! });
    const submit = async (): Promise<void> => {
      const list = [...outstanding];
      if (this.firstRun) {
        // A resumed run: a job of this key that failed before would block its re-add; clear it.
        for (const s of list) {
          const old = await this.queue.getJob(keys[s]!);
          if (old && (await old.isFailed())) await old.remove();
        }
        this.firstRun = false;
      }
      await this.queue.addBulk(list.map((s) => ({ name: 'assign', data: payload(s), opts: { jobId: keys[s]!, attempts: this.opts.attempts, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: true, removeOnFail: { age: 24 * 3600 } } })));
    };
    const bar = this.opts.bar ? progress(`${this.opts.unit} ${round} shards`, nShards, 'shards') : { set() {}, tick() {}, stop() {} };
    bar.set(reused);
    await this.redis('queueing the shards', submit, round, reused, nShards);
    let lastSubmit = Date.now();
    let lastCheck = Date.now();
    let warnedIdle = false;
    const tStart = Date.now();
    while (outstanding.size > 0) {
      await sleep(this.opts.pollMs);
      const present = new Set(await this.storage.list('results'));
      for (const s of [...outstanding]) {
        if (present.has(`${keys[s]}.safetensors`)) {
          outstanding.delete(s);
          bar.tick();
        }
      }
      const done = nShards - outstanding.size;
      if (outstanding.size > 0 && Date.now() - lastCheck > 1000) {
        lastCheck = Date.now();
        await this.redis('publishing status', () => this.publish(round, done, nShards, reused), round, done, nShards);
        const failed = await this.redis('checking for failed jobs', () => this.queue.getJobs(['failed'], 0, 1000), round, done, nShards);
        for (const j of failed ?? []) {
          const s = keys.indexOf(j.id ?? '');
          if (s >= 0 && outstanding.has(s)) {
            bar.stop();
            throw new UvuError(`${this.opts.unit} ${round}, shard ${s}: ${j.failedReason}`);
          }
        }
        if (!warnedIdle && Date.now() - tStart > 10_000 && done === reused) {
          const alive = await this.redis('looking for workers', () => scanKeys(this.client, workerKey(this.opts.queue, '*')), round, done, nShards);
          if (alive?.length === 0) {
            warnedIdle = true;
            this.opts.log(`${this.opts.unit} ${round}: no worker is listening on queue ${this.opts.queue}; start \`uvu worker --redis --store-root … --work-root …\` on machines that see ${this.storeDir} and ${this.workDir}`);
          }
        }
        if (Date.now() - lastSubmit > 5000) {
          lastSubmit = Date.now();
          await this.redis('re-queueing outstanding shards', submit, round, done, nShards);
        }
      }
    }
    bar.stop();
    const tMerge = performance.now();
    const ids = new Int32Array(n);
    const distSq = new Float32Array(n);
    const stats: RoundTransfer = { round, shards: nShards, reused, patches: n, bytesCentres: centres.bytes, bytesIndices: indices.bytes, bytesResults: 0, mergeMs: 0, wallMs: 0, workerLoadMs: 0, workerComputeMs: 0, workerWriteMs: 0, workers: 0 };
    const workers = new Set<string>();
    for (let s = 0; s < nShards; s++) {
      const name = resultName(keys[s]!);
      const { tensors, metadata } = await this.storage.get(name);
      const start = s * size;
      const len = Math.min(size, n - start);
      const r = tensors.ids;
      const d = tensors.dist_sq;
      if (metadata.key !== keys[s] || r?.dtype !== 'U32' || d?.dtype !== 'F32' || r.data.length !== len || d.data.length !== len) {
        throw new UvuError(`${this.workDir}/${name}: not the result of shard ${s} (${len} patches) of round ${round}; remove it and rerun with --resume`);
      }
      ids.set(new Int32Array(r.data.buffer, r.data.byteOffset, len), start);
      distSq.set(d.data as Float32Array, start);
      stats.bytesResults += 8 * len + 8 + 256; // tensor bytes + header (approximate for the header)
      stats.workerLoadMs += Number(metadata.load_ms ?? 0);
      stats.workerComputeMs += Number(metadata.compute_ms ?? 0);
      workers.add(metadata.worker ?? '?');
    }
    const activeSlot = new Uint8Array(Math.max(0, ...job.slots) + 1);
    for (const k of job.slots) activeSlot[k] = 1;
    for (let i = 0; i < n; i++) if (!activeSlot[ids[i]!]) throw new UvuError(`round ${round}: a worker returned slot ${ids[i]}, which is not an active centre`);
    stats.mergeMs = performance.now() - tMerge;
    stats.wallMs = performance.now() - t0;
    stats.workers = workers.size;
    this.rounds.push(stats);
    await this.redis('publishing status', () => this.publish(round, nShards, nShards, reused), round, nShards, nShards);
    this.opts.log(`${this.opts.unit} ${round}: ${nShards} shards (${reused} reused) on ${workers.size} worker(s): ${n} patches in ${(stats.wallMs / 1000).toFixed(2)} s, merge ${stats.mergeMs.toFixed(0)} ms, moved ${((stats.bytesCentres + stats.bytesIndices + stats.bytesResults) / 2 ** 20).toFixed(1)} MiB`);
    return { ids, distSq };
  }

  /** Remove the files of other rounds (results, centres, indices no job of this round names). */
  private async prune(keys: Set<string>, centresHash: string, indicesHash: string): Promise<void> {
    const keep: Record<string, (name: string) => boolean> = {
      results: (f) => keys.has(f.replace(/\.safetensors$/, '')),
      centres: (f) => f === `${centresHash}.safetensors`,
      indices: (f) => f === `${indicesHash}.safetensors`,
    };
    for (const [folder, wanted] of Object.entries(keep)) {
      for (const f of await this.storage.list(folder)) if (f.endsWith('.safetensors') && !wanted(f)) await this.storage.remove(`${folder}/${f}`);
    }
  }

  private async publish(round: number, done: number, total: number, reused: number): Promise<void> {
    const key = coordinatorKey(this.opts.queue);
    await this.client
      .multi()
      .hset(key, { host: hostname(), pid: String(process.pid), run: this.ctx.runId, round: String(round), shards_done: String(done), shards_total: String(total), shards_reused: String(reused), seen: String(Date.now()) })
      .pexpire(key, 60_000)
      .exec();
  }

  async close(): Promise<void> {
    await within(this.client.del(coordinatorKey(this.opts.queue)), 2000).catch(() => {});
    this.client.disconnect();
    await within(this.queue.close(), 5000).catch(() => {});
  }
}
