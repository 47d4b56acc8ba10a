/**
 * Cluster status in Redis, for `uvu cluster status`: each worker keeps a heartbeat hash
 * (uvu:<queue>:worker:<host>:<pid>) that expires 3 beats after its last one, and the coordinator
 * keeps one (uvu:<queue>:coordinator) with the round and its shards. Queue depths come from BullMQ.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

export const HEARTBEAT_MS = 2000;

export const workerKey = (queue: string, id: string): string => `uvu:${queue}:worker:${id}`;
export const coordinatorKey = (queue: string): string => `uvu:${queue}:coordinator`;

export interface WorkerStatus {
  id: string;
  host: string;
  pid: number;
  version: string;
  concurrency: number;
  blas_threads: number;
  /** Job keys running now. */
  current_jobs: string[];
  jobs_done: number;
  jobs_refused: number;
  patches: number;
  /** Patches per second of busy time (job wall time on this worker). */
  patches_per_s: number | null;
  seconds_since_heartbeat: number;
}

export interface CoordinatorStatus {
  host: string;
  pid: number;
  run: string;
  round: number;
  shards_done: number;
  shards_total: number;
  shards_reused: number;
  seconds_since_update: number;
}

export interface ClusterStatus {
  queue: string;
  counts: Record<string, number>;
  workers: WorkerStatus[];
  coordinator: CoordinatorStatus | null;
}

/** Keys matching `pattern`, by SCAN (never the blocking KEYS). */
export async function scanKeys(client: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys.sort();
}

const num = (s: string | undefined): number => (s === undefined ? 0 : Number(s));

export async function readClusterStatus(client: Redis, queue: Queue): Promise<ClusterStatus> {
  const now = Date.now();
  const workers: WorkerStatus[] = [];
  for (const key of await scanKeys(client, workerKey(queue.name, '*'))) {
    const h = await client.hgetall(key);
    if (!h.pid) continue;
    const busy = num(h.busy_ms) / 1000;
    workers.push({
      id: key.slice(workerKey(queue.name, '').length),
      host: h.host ?? '?',
      pid: num(h.pid),
      version: h.version ?? '?',
      concurrency: num(h.concurrency),
      blas_threads: num(h.blas_threads),
      current_jobs: h.jobs_now ? h.jobs_now.split(',') : [],
      jobs_done: num(h.jobs_done),
      jobs_refused: num(h.refused),
      patches: num(h.patches),
      patches_per_s: busy > 0 ? num(h.patches) / busy : null,
      seconds_since_heartbeat: (now - num(h.seen)) / 1000,
    });
  }
  const c = await client.hgetall(coordinatorKey(queue.name));
  const coordinator: CoordinatorStatus | null = c.pid
    ? { host: c.host ?? '?', pid: num(c.pid), run: c.run ?? '?', round: num(c.round), shards_done: num(c.shards_done), shards_total: num(c.shards_total), shards_reused: num(c.shards_reused), seconds_since_update: (now - num(c.seen)) / 1000 }
    : null;
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
  return { queue: queue.name, counts, workers, coordinator };
}

/** Human-readable status, one block per part. */
export function formatClusterStatus(s: ClusterStatus, shown: string): string {
  const lines = [`queue ${s.queue} on ${shown}: ${Object.entries(s.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`];
  if (s.coordinator) {
    const c = s.coordinator;
    lines.push(`coordinator ${c.host}:${c.pid} run ${c.run.slice(0, 10)}: round ${c.round}, shards ${c.shards_done}/${c.shards_total} (${c.shards_reused} reused), updated ${c.seconds_since_update.toFixed(0)} s ago`);
  } else lines.push('coordinator: none running');
  lines.push(`workers alive: ${s.workers.length}`);
  for (const w of s.workers) {
    const rate = w.patches_per_s === null ? '–' : w.patches_per_s.toFixed(0);
    lines.push(`  ${w.host}:${w.pid}  uvu ${w.version}  ${w.concurrency}×${w.blas_threads} threads  jobs done ${w.jobs_done} (refused ${w.jobs_refused})  ${rate} patches/s  now: ${w.current_jobs.length ? w.current_jobs.join(', ') : 'idle'}`);
  }
  return lines.join('\n');
}
