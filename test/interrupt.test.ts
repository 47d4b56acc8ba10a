/**
 * Ctrl-C on the long, resumable commands: the first SIGINT stops `patches build` and `train` at
 * their next safe point with exit 130 and a resumable state, and `--resume` finishes the job.
 * The signal is sent once the job has written its first resume state (polled), so the tests do
 * not depend on timing.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { buildPatchStore } from '../src/patches/build.js';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { saveCodebook } from '../src/codebook/file.js';
import { buildDataset } from '../src/data/build.js';
import { CLI } from './hostile.js';
import { TEST_MODEL } from './fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-interrupt-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Runs `uvu ARGS`, sends SIGINT once `ready()` holds, and returns the exit status and stderr. */
async function interruptWhen(args: string[], ready: () => boolean): Promise<{ status: number | null; stderr: string; signalled: boolean }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let signalled = false;
  for (let waited = 0; waited < 60_000 && child.exitCode === null; waited += 20) {
    if (ready()) {
      child.kill('SIGINT');
      signalled = true;
      break;
    }
    await sleep(20);
  }
  const status = await exited;
  return { status, stderr, signalled };
}

test('Ctrl-C stops patches build with exit 130; --resume ends with the store of an uninterrupted build', async () => {
  const photos = BUNDLED_PHOTOS.map(bundledPhotoPath);
  const opts = ['--max-pixels', String(128 * 128), '--offsets', '--passes', '16', '--seed', '3', '--shard-size', '128'];
  const out = join(work, 'store');
  const r = await interruptWhen(['patches', 'build', ...photos, '--out', out, ...opts], () => existsSync(join(out, 'build-state.json')));
  assert.ok(r.signalled, `the build ended before its first shard was sealed: ${r.stderr}`);
  assert.equal(r.status, 130, r.stderr);
  assert.match(r.stderr, /stopped after \d+ input\(s\); .* is resumable: rerun with --resume/);
  assert.ok(!existsSync(join(out, 'manifest.json')), 'an interrupted build must not look finished');

  const resumed = spawnSync(process.execPath, [CLI, 'patches', 'build', ...photos, '--out', out, ...opts, '--resume', '--json'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  const whole = await buildPatchStore(photos, { out: join(work, 'whole'), maxPixels: 128 * 128, offsets: true, passes: 16, seed: 3, shardSize: 128, progress: false });
  assert.equal((JSON.parse(resumed.stdout) as { fingerprint: string }).fingerprint, whole.manifest!.fingerprint);
});

test('Ctrl-C stops train after the current step with exit 130 and a checkpoint; --resume continues from it', async () => {
  const store = join(work, 'train-store');
  await buildPatchStore([bundledPhotoPath('black-canyon'), bundledPhotoPath('march-pastoral')], { out: store, maxPixels: 128 * 128, progress: false });
  const codebook = join(work, 'cb.safetensors');
  saveCodebook(codebook, buildKmeansCodebook(store, { method: 'kmeans', size: 16, iters: 2, seed: 1 }));
  const data = join(work, 'data');
  await buildDataset({ out: data, imageTokenizer: codebook, photos: ['bundled'], text: ['moby-dick'], textDocs: 1, trainTokenizer: 300, context: 64, maxPixels: 64 * 64, valFraction: 0.2, seed: 1 });
  const run = join(work, 'run');
  const config = join(work, 'train.json');
  // Far more steps than can run before the signal; a checkpoint (and log) after every step.
  writeFileSync(config, JSON.stringify({ data, out: run, model: TEST_MODEL, steps: 100_000, batch_size: 2, checkpoint_every: 1, angle_every: 0, eval_batches: 1 }));

  const r = await interruptWhen(['train', '--config', config], () => existsSync(join(run, 'log.jsonl')));
  assert.ok(r.signalled, r.stderr);
  assert.equal(r.status, 130, r.stderr);
  const m = /stopped after step (\d+) of 100000/.exec(r.stderr);
  assert.ok(m, r.stderr);
  const stopped = Number(m[1]);
  const state = JSON.parse(readFileSync(join(run, 'checkpoint', 'state.json'), 'utf8')) as { step: number };
  assert.equal(state.step, stopped, 'the checkpoint is the step the run reported');
  assert.equal(readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').length, stopped, 'one log line per completed step');

  const resumed = spawnSync(process.execPath, [CLI, 'train', '--config', config, '--resume', '--set', `steps=${stopped + 2}`, '--json'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  const summary = JSON.parse(resumed.stdout) as { steps: number; resumedFrom: number; interrupted: boolean };
  assert.deepEqual([summary.resumedFrom, summary.steps, summary.interrupted], [stopped, stopped + 2, false]);
});
