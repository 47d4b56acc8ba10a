/**
 * A throw-away redis-server for tests and benchmarks: a free loopback port, a password, its own
 * folder; stopped (and restartable, for the AOF test) by the caller. UVU_TEST_REDIS_URL (set by
 * .ci/run) points the tests that need no private server at a shared one instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/** Fails loudly (not a skip) when redis-server is missing: CI installs it (.ci/run). */
export function requireRedisServer(): string {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('redis-server is not installed: these tests need it (Debian: apt-get install redis-server; .ci/run installs it)');
  return 'redis-server';
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  url: string;
  password: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
  /** Start again on the same port and folder (with AOF: with the data it had). */
  start(): Promise<void>;
}

async function waitForPing(port: number, password: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const c = new Redis({ host: '127.0.0.1', port, password, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      return;
    } catch {
      c.disconnect();
      if (Date.now() - t0 > timeoutMs) throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function startTestRedis(opts: { aof?: boolean } = {}): Promise<TestRedis> {
  const bin = requireRedisServer();
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'uvu-redis-'));
  let child: ChildProcess | null = null;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', password, '--dir', dir, '--save', '', '--appendonly', opts.aof ? 'yes' : 'no', '--appendfsync', 'always', '--logfile', join(dir, 'redis.log')];
  const r: TestRedis = {
    url: `redis://:${password}@127.0.0.1:${port}`,
    password,
    port,
    dir,
    async start() {
      child = spawn(bin, args, { stdio: 'ignore' });
      await waitForPing(port, password);
    },
    async stop() {
      const c = child;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((res) => c.once('exit', res));
      c.kill('SIGTERM'); // redis-server flushes its AOF and exits
      await exited;
      child = null;
    },
  };
  await r.start();
  return r;
}
