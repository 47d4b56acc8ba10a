/**
 * Distributed codebook build (src/cluster/): a coordinator and `uvu worker` processes through a
 * real redis-server (UVU_TEST_REDIS_URL, or one started here) and BullMQ. Every build is
 * compared byte for byte with the in-process build of the same store and config.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents } from 'bullmq';
import { buildPatchStore } from '../src/patches/build.js';
import { PatchStore } from '../src/patches/store.js';
import { loadCodebook } from '../src/codebook/file.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { bullConnection, parseRedisUrl, maskRedisUrl } from '../src/cluster/redis.js';
import { FsStorage, putContent } from '../src/cluster/storage.js';
import { CODE_VERSION, PAYLOAD_VERSION, type AssignPayload } from '../src/cluster/payload.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { startTestRedis, type TestRedis } from './redis-server.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'uvu-dist-'));
const store = join(work, 'store');
await buildPatchStore(BUNDLED_PHOTOS.slice(0, 6).map(bundledPhotoPath), { out: store, maxPixels: 512 * 512, offsets: true, seed: 1, progress: false });

let shared: TestRedis | null = null;
const sharedUrl = process.env.UVU_TEST_REDIS_URL || (shared = await startTestRedis()).url;
after(async () => {
  await shared?.stop();
});

let queues = 0;
const newQueue = (): string => `test-${process.pid}-${queues++}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Small config: 8 shards per round, clusters cached and re-clustered within 3 rounds. */
const buildArgs = (out: string, rounds = 3): string[] => ['codebook', 'build', '--method', 'uvu', '--patches', store, '--size', '16', '--round-size', '384', '--delta', '6', '--alpha', '24', '--epsilon', '0', '--max-rounds', String(rounds), '--val-size', '256', '--seed', '5', '--shard-size', '96', '--out', out, '--quiet'];

const reference = join(work, 'reference.safetensors');
const ref = spawnSync(process.execPath, [CLI, ...buildArgs(reference)], { encoding: 'utf8' });
assert.equal(ref.status, 0, ref.stderr);

interface Proc {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function run(args: string[], url: string): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, UVU_REDIS_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.resume();
  return { child, stderr: () => err, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

/** A worker with short lock/stall times (a dead worker's job moves on within ~3 s); resolves once it is listening. */
async function startWorker(url: string, queue: string, roots = { store: work, work }): Promise<Proc> {
  const w = run(['worker', '--redis', '--queue', queue, '--store-root', roots.store, '--work-root', roots.work, '--blas-threads', '1', '--lock-duration', '2000', '--stalled-interval', '1000'], url);
  const t0 = Date.now();
  while (!/queue .* on redis/.test(w.stderr())) {
    if (w.child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`worker did not start: ${w.stderr()}`);
    await sleep(20);
  }
  return w;
}

async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
  await Promise.all(procs.map((p) => p.exited));
}

test('three workers build the byte-identical codebook of the in-process build', async () => {
  const q = newQueue();
  const workers = await Promise.all([0, 1, 2].map(() => startWorker(sharedUrl, q)));
  const out = join(work, 'three.safetensors');
  const c = run([...buildArgs(out), '--redis', '--queue', q], sharedUrl);
  assert.equal(await c.exited, 0, c.stderr());
  assert.equal(sha(out), sha(reference));
  // Status while workers are up: three alive, no job left.
  const s = spawnSync(process.execPath, [CLI, 'cluster', 'status', '--redis', '--queue', q, '--json'], { env: { ...process.env, UVU_REDIS_URL: sharedUrl }, encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  const status = JSON.parse(s.stdout);
  assert.equal(status.workers.length, 3);
  assert.equal(status.counts.waiting + status.counts.active, 0);
  assert.ok(status.workers.every((w: { version: string; jobs_done: number }) => w.version === CODE_VERSION));
  assert.equal(status.workers.reduce((a: number, w: { jobs_done: number }) => a + w.jobs_done, 0), 3 * 8, 'every shard of every round ran once');
  assert.ok(!s.stdout.includes(parseRedisUrl(sharedUrl).options.password ?? '\0'), 'the password is never printed');
  await stopAll(workers);
  // SIGTERM: every worker stopped cleanly and removed its heartbeat.
  for (const w of workers) assert.match(w.stderr(), /stopped after \d+ job/);
});

test('a worker killed with -9 holding a job: the stalled job goes to another worker, same codebook', async () => {
  const q = newQueue();
  const queue = new Queue(q, { connection: bullConnection(parseRedisUrl(sharedUrl)) });
  const events = new QueueEvents(q, { connection: bullConnection(parseRedisUrl(sharedUrl)) });
  await events.waitUntilReady();
  const stalled: string[] = [];
  events.on('stalled', ({ jobId }) => stalled.push(jobId));
  const victim = await startWorker(sharedUrl, q);
  const out = join(work, 'killed-worker.safetensors');
  const c = run([...buildArgs(out), '--redis', '--queue', q], sharedUrl);
  // Freeze the only worker; when it then holds an active job (locked by it), kill it.
  let held: string | undefined;
  while (!held) {
    assert.equal(c.child.exitCode, null, `the build ended before the worker could be caught mid-job: ${c.stderr()}`);
    victim.child.kill('SIGSTOP');
    held = (await queue.getActive())[0]?.id;
    if (!held) {
      victim.child.kill('SIGCONT');
      await sleep(5);
    }
  }
  victim.child.kill('SIGKILL');
  await victim.exited;
  const others = await Promise.all([0, 1].map(() => startWorker(sharedUrl, q)));
  assert.equal(await c.exited, 0, c.stderr());
  assert.equal(sha(out), sha(reference));
  assert.ok(stalled.includes(held), `job ${held} should have been found stalled (stalled: ${stalled.join(', ')})`);
  await stopAll(others);
  await events.close();
  await queue.close();
});

test('the coordinator killed mid-round: --resume reuses the finished shard results, same codebook', async () => {
  const q = newQueue();
  const worker = await startWorker(sharedUrl, q);
  const out = join(work, 'killed-coordinator.safetensors');
  const c1 = run([...buildArgs(out), '--redis', '--queue', q], sharedUrl);
  const results = join(`${out}.ckpt`, 'cluster', 'results');
  const t0 = Date.now();
  // Kill once a result of round 2 exists (round 1's checkpoint is then written).
  while (!(existsSync(results) && readdirSync(results).some((f) => /-r2-.*\.safetensors$/.test(f)))) {
    assert.equal(c1.child.exitCode, null, c1.stderr());
    assert.ok(Date.now() - t0 < 60_000, 'round 2 never started');
    await sleep(2);
  }
  c1.child.kill('SIGKILL');
  await c1.exited;
  assert.equal(existsSync(out), false);
  const c2 = run([...buildArgs(out), '--redis', '--queue', q, '--resume'].filter((a) => a !== '--quiet'), sharedUrl);
  assert.equal(await c2.exited, 0, c2.stderr());
  assert.match(c2.stderr(), /resuming after round 1/);
  assert.match(c2.stderr(), /round 2: reusing [1-8] of 8 shard results/);
  assert.equal(sha(out), sha(reference));
  await stopAll([worker]);
});

test('Redis restarted (AOF) during a build: it continues or stops with a resume hint; same codebook', async () => {
  const redis = await startTestRedis({ aof: true });
  try {
    const q = newQueue();
    const workers = await Promise.all([0, 1].map(() => startWorker(redis.url, q)));
    const out = join(work, 'redis-restart.safetensors');
    const c = run([...buildArgs(out, 4), '--redis', '--queue', q].filter((a) => a !== '--quiet'), redis.url);
    const ckpt = `${out}.ckpt`;
    while (!(existsSync(ckpt) && readdirSync(ckpt).includes('round-000001.safetensors'))) {
      assert.equal(c.child.exitCode, null, c.stderr());
      await sleep(5);
    }
    await redis.stop();
    await sleep(1000);
    await redis.start();
    const code = await c.exited;
    if (code !== 0) {
      const lines = c.stderr().trim().split('\n');
      assert.match(lines.at(-1)!, /^uvu: error: .*--resume/);
      const again = run([...buildArgs(out, 4), '--redis', '--queue', q, '--resume'], redis.url);
      assert.equal(await again.exited, 0, again.stderr());
    }
    const full = join(work, 'reference-4.safetensors');
    assert.equal(spawnSync(process.execPath, [CLI, ...buildArgs(full, 4)]).status, 0);
    assert.equal(sha(out), sha(full));
    await stopAll(workers);
  } finally {
    await redis.stop();
  }
});

test('k-means --redis: every iteration assigned by workers, the same codebook as in-process', async () => {
  // 9 photos at 768²: > 4096 patches, so the training set spans two shards of 4096.
  const big = join(work, 'store-kmeans');
  await buildPatchStore(BUNDLED_PHOTOS.map(bundledPhotoPath), { out: big, maxPixels: 768 * 768, progress: false });
  const q = newQueue();
  const workers = await Promise.all([0, 1].map(() => startWorker(sharedUrl, q)));
  // All patches (K = 24: 256·K > store) and a random sample of them (--sample): both index paths.
  for (const extra of [['--size', '24'], ['--size', '8', '--sample', '4500']]) {
    const args = (out: string) => ['codebook', 'build', '--method', 'kmeans', '--patches', big, '--iters', '2', '--pe', '2d-sincos', ...extra, '--out', out, '--quiet'];
    const local = join(work, `kmeans-local-${extra[1]}.safetensors`);
    const remote = join(work, `kmeans-remote-${extra[1]}.safetensors`);
    const l = run(args(local), sharedUrl);
    assert.equal(await l.exited, 0, l.stderr());
    const r = run([...args(remote), '--redis', '--queue', q, '--shard-size', '4096'], sharedUrl);
    assert.equal(await r.exited, 0, r.stderr());
    const a = loadCodebook(local);
    const b = loadCodebook(remote);
    assert.ok(b.K === a.K && (b.build.trained_on as number) > 4096, `trained on ${b.build.trained_on} patches: two shards`);
    assert.deepEqual(b.centersPixel, a.centersPixel);
    assert.deepEqual(b.centersAssign, a.centersAssign);
    assert.deepEqual(b.counts, a.counts);
    assert.deepEqual(b.metrics.objective_per_iter, a.metrics.objective_per_iter);
  }
  const s = spawnSync(process.execPath, [CLI, 'cluster', 'status', '--redis', '--queue', q, '--json'], { env: { ...process.env, UVU_REDIS_URL: sharedUrl }, encoding: 'utf8' });
  const jobs = JSON.parse(s.stdout).workers.reduce((n: number, w: { jobs_done: number }) => n + w.jobs_done, 0);
  assert.equal(jobs, 2 * 2 * 2, 'two builds × 2 iterations × 2 shards ran on the workers');
  await stopAll(workers);
});

test('a wrong password is refused with one line that does not show it; a remote URL needs one', () => {
  const wrong = sharedUrl.replace(/:\/\/[^@]*@/, '://:not-the-password@');
  for (const args of [['worker', '--store-root', work, '--work-root', work], ['cluster', 'status'], [...buildArgs(join(work, 'never.safetensors')), '--redis']]) {
    const r = spawnSync(process.execPath, [CLI, ...args, ...(args[0] === 'codebook' ? [] : ['--redis'])], { env: { ...process.env, UVU_REDIS_URL: wrong }, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^uvu: error: redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/?: Redis refused the password/m);
    assert.ok(!r.stderr.includes('not-the-password'));
  }
  const open = spawnSync(process.execPath, [CLI, 'cluster', 'status', '--redis', 'redis://10.0.0.7:6379'], { encoding: 'utf8' });
  assert.equal(open.status, 2);
  assert.match(open.stderr, /needs a password/);
  assert.equal(maskRedisUrl('redis://u:secret@h:1/0'), 'redis://u:***@h:1/0');
});

test('jobs naming paths outside the roots, another version, another store or altered centres are refused, not retried', async () => {
  const roots = { store: join(work, 'roots', 'stores'), work: join(work, 'roots', 'runs') };
  mkdirSync(roots.store, { recursive: true });
  mkdirSync(join(roots.work, 'run'), { recursive: true });
  const inside = join(roots.store, 'store');
  symlinkSync(store, inside); // a link inside the root to a store elsewhere: refused too (real paths)
  const realStore = join(roots.store, 'real');
  await buildPatchStore([bundledPhotoPath(BUNDLED_PHOTOS[0])], { out: realStore, maxPixels: 128 * 128, progress: false });
  symlinkSync('/etc', join(roots.work, 'escape'));
  const runDir = join(roots.work, 'run');
  const storage = new FsStorage(runDir);
  const centres = await putContent(storage, 'centres', { centers: { dtype: 'F32', shape: [2, PATCH_DIM], data: new Float32Array(2 * PATCH_DIM) }, slots: { dtype: 'I32', shape: [2], data: Int32Array.from([0, 1]) } });
  const indices = await putContent(storage, 'indices', { indices: { dtype: 'U32', shape: [4], data: Uint32Array.from([0, 1, 2, 3]) } });
  const fingerprint = PatchStore.open(realStore).fingerprint;
  const good: AssignPayload = { kind: 'assign', version: PAYLOAD_VERSION, code: CODE_VERSION, store: realStore, fingerprint, work: runDir, centres: centres.hash, indices: indices.hash, round: 1, shard: 0, shardSize: 4, pe: { type: 'none', scale: 0 }, key: 'probe' };
  const q = newQueue();
  const w = await startWorker(sharedUrl, q, roots);
  const queue = new Queue(q, { connection: bullConnection(parseRedisUrl(sharedUrl)) });
  const events = new QueueEvents(q, { connection: bullConnection(parseRedisUrl(sharedUrl)) });
  await events.waitUntilReady();
  const submit = async (name: string, data: object): Promise<string> => {
    const job = await queue.add(name, data, { jobId: `${name}-${q}`, attempts: 3 });
    try {
      await job.waitUntilFinished(events, 30_000);
      return 'completed';
    } catch (err) {
      const state = await queue.getJob(job.id!);
      assert.equal(state?.attemptsMade, 1, `${name}: a refusal is not retried`);
      return (err as Error).message;
    }
  };
  assert.equal(await submit('good', good), 'completed');
  assert.ok(existsSync(join(runDir, 'results', 'probe.safetensors')));
  assert.match(await submit('abs', { ...good, store: '/etc' }), /refuses the job: store path "\/etc" lies outside/);
  assert.match(await submit('dots', { ...good, store: `${roots.store}/../../../../etc` }), /store path .* contains "\.\."/);
  assert.match(await submit('relative', { ...good, store: 'store' }), /is not an absolute path/);
  assert.match(await submit('symlink', { ...good, store: inside }), /lies outside/);
  assert.match(await submit('workescape', { ...good, work: join(roots.work, 'escape') }), /work path .* lies outside/);
  assert.match(await submit('key', { ...good, key: '../../x' }), /malformed payload: .*key/);
  assert.match(await submit('code', { ...good, code: '0.0.0-other' }), /made by uvu "0\.0\.0-other", this worker runs uvu/);
  assert.match(await submit('format', { ...good, version: PAYLOAD_VERSION + 1 }), /payload format \d+, this worker reads format/);
  assert.match(await submit('fingerprint', { ...good, fingerprint: 'f'.repeat(64) }), /fingerprint [0-9a-f]{12}…, the job was made for ffffffffffff/);
  // Other centres, one byte altered after writing: the content no longer has the hash the job names.
  const other = await putContent(storage, 'centres', { centers: { dtype: 'F32', shape: [2, PATCH_DIM], data: new Float32Array(2 * PATCH_DIM).fill(0.5) }, slots: { dtype: 'I32', shape: [2], data: Int32Array.from([0, 1]) } });
  const path = join(runDir, 'centres', `${other.hash}.safetensors`);
  const bytes = readFileSync(path);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(path, bytes);
  assert.match(await submit('centres', { ...good, centres: other.hash, key: 'probe2' }), /content does not match its hash/);
  await stopAll([w]);
  assert.match(w.stderr(), /refuses the job/);
  await events.close();
  await queue.close();
});
