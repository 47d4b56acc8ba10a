/** `uvu worker` and `uvu cluster status`: the machines of a distributed codebook build (src/cluster/). */
import { Command } from 'commander';
import { cpus } from 'node:os';
import { Queue } from 'bullmq';
import { UsageError } from '../util/errors.js';
import { bullConnection, connectRedis, parseRedisUrl, redisUrlFrom, REDIS_URL_ENV, type RedisTarget } from '../cluster/redis.js';
import { DEFAULT_QUEUE } from '../cluster/payload.js';
import { runWorker } from '../cluster/worker.js';
import { formatClusterStatus, readClusterStatus } from '../cluster/status.js';
import { applyOutputOptions, emit, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';

/** The Redis target from --redis or UVU_REDIS_URL (a usage error when neither is set). */
export function redisTarget(flag: string | true | undefined, command: string): RedisTarget {
  const url = redisUrlFrom(flag === true ? undefined : flag);
  if (!url) throw new UsageError(`${command}: give --redis URL or set ${REDIS_URL_ENV}`);
  return parseRedisUrl(url);
}

export function workerCommand(): Command {
  return withOutputOptions(
    new Command('worker')
      .option('--redis [url]', `Redis of the cluster, redis://:PASSWORD@host:port (default: $${REDIS_URL_ENV}, which keeps the password out of the process list)`)
      .requiredOption('--store-root <dir>', 'jobs may read patch stores only inside this folder (the shared mount)')
      .requiredOption('--work-root <dir>', 'jobs may read and write work folders only inside this folder')
      .option('--concurrency <n>', 'jobs at once (one compute thread each)', parsePositiveInt, 1)
      .option('--blas-threads <t>', 'OpenBLAS threads of this process (default: cores / concurrency)', parsePositiveInt)
      .option('--queue <name>', 'BullMQ queue', DEFAULT_QUEUE)
      .option('--lock-duration <ms>', 'job lock: a job whose worker stops renewing it for this long is handed to another worker', parsePositiveInt, 30_000)
      .option('--stalled-interval <ms>', 'how often this worker looks for stalled jobs', parsePositiveInt, 15_000),
  ).action(async (o: OutputOptions & { redis?: string | true; storeRoot: string; workRoot: string; concurrency: number; blasThreads?: number; queue: string; lockDuration: number; stalledInterval: number }) => {
    applyOutputOptions(o);
    const target = redisTarget(o.redis, 'worker');
    const summary = await runWorker({
      target,
      queue: o.queue,
      storeRoot: o.storeRoot,
      workRoot: o.workRoot,
      concurrency: o.concurrency,
      blasThreads: o.blasThreads ?? Math.max(1, Math.floor(cpus().length / o.concurrency)),
      lockMs: o.lockDuration,
      stalledMs: o.stalledInterval,
    });
    // The log line "stopped after N job(s)" already went to stderr; --json adds the totals on stdout.
    if (o.json) emit(o, summary, () => '');
  });
}

export function clusterCommand(): Command {
  const cmd = new Command('cluster');
  withOutputOptions(
    cmd
      .command('status')
      .description('workers alive (host, pid, version, current job), queue depths, the coordinator\'s round and shards, patches/s per worker')
      .option('--redis [url]', `Redis of the cluster (default: $${REDIS_URL_ENV})`)
      .option('--queue <name>', 'BullMQ queue', DEFAULT_QUEUE),
  ).action(async (o: OutputOptions & { redis?: string | true; queue: string }) => {
    applyOutputOptions(o);
    const target = redisTarget(o.redis, 'cluster status');
    const client = await connectRedis(target);
    const queue = new Queue(o.queue, { connection: bullConnection(target) });
    try {
      const status = await readClusterStatus(client, queue);
      emit(o, { redis: target.shown, ...status }, () => formatClusterStatus(status, target.shown));
    } finally {
      client.disconnect();
      await queue.close();
    }
  });
  return cmd;
}
