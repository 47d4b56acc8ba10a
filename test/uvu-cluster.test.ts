import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPatchStore } from '../src/patches/build.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { buildUvuCodebook, balancedSample, dedupByRoundedDistance } from '../src/codebook/uvu/build.js';
import { parseUvuConfig, type UvuClusterConfigInput } from '../src/codebook/uvu/config.js';
import { loadCodebook } from '../src/codebook/file.js';
import { Rng } from '../src/util/rng.js';
import { UsageError, UvuError } from '../src/util/errors.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'uvu-cluster-'));
const storeA = join(work, 'store-a');
const storeB = join(work, 'store-b');
// Two stores from disjoint photos: A to build, B to refine with.
await buildPatchStore(BUNDLED_PHOTOS.slice(0, 6).map(bundledPhotoPath), { out: storeA, maxPixels: 384 * 384, offsets: true, seed: 1, progress: false });
await buildPatchStore(BUNDLED_PHOTOS.slice(6).map(bundledPhotoPath), { out: storeB, maxPixels: 384 * 384, progress: false });

// Small enough for seconds per run, large enough that clusters get cached and re-clustered.
const base: UvuClusterConfigInput = { size: 16, roundSize: 384, poolFactor: 2, delta: 6, alpha: 24, epsilon: 0, maxRounds: 4, valSize: 256, initIters: 4, reclusterIters: 4, shardSize: 100, seed: 5 };
const cfg = (over: Partial<UvuClusterConfigInput> = {}) => parseUvuConfig({ ...base, ...over });
let n = 0;
const ckpt = () => join(work, `ckpt-${n++}`);

test('dedup drops samples whose rounded distance repeats within a cluster, not across clusters', () => {
  const ids = Int32Array.from([0, 0, 0, 1, 1]);
  // Distances to the centre (not squared):
  const d = [0.5, 0.500004, 0.50001, 0.5, 0.7];
  const keep = dedupByRoundedDistance(ids, Float32Array.from(d, (x) => x * x), 5);
  // 0.500004 rounds to 0.50000 like 0.5 → dropped; 0.50001 is new; cluster 1's 0.5 is kept.
  assert.deepEqual(Array.from(keep), [1, 0, 1, 1, 1]);
});

test('hierarchical sampling caps every cluster at ⌈N/K_active⌉ and fills the rest at random', () => {
  // Cluster 0 dominates the pool (flat background), clusters 1..3 are small.
  const ids = Int32Array.from([...Array(900).fill(0), ...Array(30).fill(1), ...Array(40).fill(2), ...Array(30).fill(3)]);
  const chosen = balancedSample(ids, 4, 4, 200, new Rng(1));
  assert.equal(chosen.length, 200);
  const per = [0, 0, 0, 0];
  for (const i of chosen) per[ids[i]!]!++;
  // cap = 50: clusters 1..3 give all their members (100), cluster 0 gives 50 + the 50 filled at random.
  assert.deepEqual(per.slice(1), [30, 40, 30]);
  assert.equal(per[0], 100);
  assert.ok(chosen.every((v, i) => i === 0 || v > chosen[i - 1]!), 'positions ascending');
  assert.deepEqual(balancedSample(ids, 4, 4, 200, new Rng(1)), chosen);
});

test('rounds cache long-tail clusters, re-cluster the cache, and end with every slot active', async () => {
  const r = await buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: ckpt() });
  assert.equal(r.state.round, 4);
  assert.ok(r.state.totals.clustersCached > 0, 'some clusters should be cached with δ = 6');
  assert.ok(r.state.totals.reclusters > 0, 'the cache should have been re-clustered');
  assert.ok(r.state.active.every((a) => a === 1));
  assert.equal(r.state.cache.n, 0);
  assert.equal(r.codebook.K, 16);
  assert.ok(r.codebook.centersAssign, 'PE on: assignment centres are kept');
  assert.ok(r.codebook.centersPixel.every((x) => x >= 0 && x <= 1));
  for (const h of r.state.history) assert.ok(h.prp > 0 && h.prp < 1 && h.k_active <= 16);
});

test('the codebook does not depend on the number of workers', async () => {
  const one = await buildUvuCodebook({ storeDir: storeA, config: cfg({ maxRounds: 2 }), checkpointDir: ckpt() });
  const two = await buildUvuCodebook({ storeDir: storeA, config: cfg({ maxRounds: 2, workers: 2 }), checkpointDir: ckpt() });
  assert.deepEqual(two.codebook.centersAssign, one.codebook.centersAssign);
  assert.deepEqual(two.codebook.centersPixel, one.codebook.centersPixel);
  assert.deepEqual(two.state.history.map((h) => h.objective), one.state.history.map((h) => h.objective));
});

test('a crashed run resumed from its checkpoint ends with exactly the uninterrupted codebook', async () => {
  const full = await buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: ckpt() });
  const dir = ckpt();
  await assert.rejects(
    buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: dir, onRound: (log) => { if (log.round === 2) throw new Error('simulated crash'); } }),
    /simulated crash/,
  );
  await assert.rejects(buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: dir }), (e: unknown) => e instanceof UsageError && /--resume/.test((e as Error).message));
  const resumed = await buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: dir, resume: true });
  assert.deepEqual(resumed.codebook.centersAssign, full.codebook.centersAssign);
  assert.deepEqual(resumed.codebook.centersPixel, full.codebook.centersPixel);
  assert.deepEqual(resumed.codebook.counts, full.codebook.counts);
});

test('kill -9 during a CLI build, then --resume: same codebook as an uninterrupted run', async () => {
  const args = (out: string) => [CLI, 'codebook', 'build', '--method', 'uvu', '--patches', storeA, '--size', '16', '--round-size', '384', '--delta', '6', '--alpha', '24', '--epsilon', '0', '--max-rounds', '8', '--val-size', '256', '--seed', '9', '--out', out, '--quiet'];
  const ref = join(work, 'ref.safetensors');
  assert.equal(spawnSync(process.execPath, args(ref)).status, 0);
  const out = join(work, 'killed.safetensors');
  const child = spawn(process.execPath, args(out), { stdio: 'ignore' });
  // Kill once the second round's checkpoint exists (or at the latest after 20 s).
  const ckptDir = `${out}.ckpt`;
  const t0 = Date.now();
  while (Date.now() - t0 < 20_000 && !(existsSync(ckptDir) && readdirSync(ckptDir).some((f) => f >= 'round-000002'))) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.equal(existsSync(out), false, 'no codebook may exist before the run finished');
  const resumed = spawnSync(process.execPath, [...args(out), '--resume'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  const a = loadCodebook(ref);
  const b = loadCodebook(out);
  assert.deepEqual(b.centersAssign, a.centersAssign);
  assert.deepEqual(b.centersPixel, a.centersPixel);
  // The JSONL log holds one line per round.
  assert.equal(readFileSync(`${out}.log.jsonl`, 'utf8').trim().split('\n').length, (b.build.rounds as number));
});

test('a corrupt newest checkpoint is refused and the previous good one is used', async () => {
  const dir = ckpt();
  await assert.rejects(buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: dir, onRound: (log) => { if (log.round === 3) throw new Error('stop'); } }));
  const names = readdirSync(dir).sort();
  assert.deepEqual(names, ['round-000002.safetensors', 'round-000003.safetensors']);
  const newest = join(dir, names[1]!);
  const bytes = readFileSync(newest);
  bytes[bytes.length - 10] ^= 0xff; // flip bits in the tensor data
  writeFileSync(newest, bytes);
  const full = await buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: ckpt() });
  const resumed = await buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: dir, resume: true });
  assert.deepEqual(resumed.codebook.centersPixel, full.codebook.centersPixel);
  // Truncated copies of every checkpoint: nothing usable, a clear error.
  const broken = ckpt();
  await assert.rejects(buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: broken, onRound: (log) => { if (log.round === 1) throw new Error('stop'); } }));
  for (const f of readdirSync(broken)) writeFileSync(join(broken, f), readFileSync(join(broken, f)).subarray(0, 1000));
  await assert.rejects(buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: broken, resume: true }), (e: unknown) => e instanceof UvuError && /none of the 2 checkpoint/.test((e as Error).message));
});

test('impossible parameters are rejected before any work', async () => {
  const run = (over: Partial<UvuClusterConfigInput>) => buildUvuCodebook({ storeDir: storeA, config: cfg(over), checkpointDir: ckpt() });
  await assert.rejects(run({ delta: 24 }), /δ = 24 ≥ N_round\/K = 24\.00/);
  await assert.rejects(run({ alpha: 4, delta: 6 }), /α = 4 is smaller than δ = 6/);
  await assert.rejects(run({ size: 10_000_000, roundSize: 10_000_000 }), /larger than the \d+ patches of the store/);
  await assert.rejects(run({ maxMemoryMiB: 100 }), /exceeds --max-memory 100 MiB; the largest part is runtime/);
  assert.throws(() => parseUvuConfig({ ...base, lambda: 3 }), /Unrecognized key/);
  assert.throws(() => parseUvuConfig({ ...base, delta: 'two' }), /delta/);
});

test('refine on new photos keeps the ids of unchanged clusters and reports how many moved', async () => {
  const built = await buildUvuCodebook({ storeDir: storeA, config: cfg(), checkpointDir: ckpt() });
  const refined = await buildUvuCodebook({ storeDir: storeB, config: cfg({ maxRounds: 2 }), checkpointDir: ckpt(), initial: built.codebook });
  const moved = refined.state.moved;
  assert.equal(refined.movedSlots, moved.reduce((a, b) => a + b, 0));
  assert.ok(refined.movedSlots < 16, 'some ids must stay');
  const D = 3072;
  for (let k = 0; k < 16; k++) {
    if (moved[k]) continue;
    // A kept slot is the weighted mean of its old centre and its new members: it stays close.
    let shiftSq = 0;
    let normSq = 0;
    for (let d = 0; d < D; d++) {
      shiftSq += (refined.codebook.centersPixel[k * D + d]! - built.codebook.centersPixel[k * D + d]!) ** 2;
      normSq += built.codebook.centersPixel[k * D + d]! ** 2;
    }
    assert.ok(shiftSq < 0.25 * normSq, `slot ${k} moved by ${Math.sqrt(shiftSq)}`);
  }
});

test('CLI: --method uvu with a config file, --json summary, refine', () => {
  const config = join(work, 'uvu.json');
  writeFileSync(config, JSON.stringify({ size: 16, roundSize: 384, delta: 6, alpha: 24, maxRounds: 2, valSize: 256 }));
  const out = join(work, 'cli.safetensors');
  const r = spawnSync(process.execPath, [CLI, 'codebook', 'build', '--method', 'uvu', '--patches', storeA, '--config', config, '--out', out, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.rounds, 2);
  assert.equal(summary.config.alpha, 24);
  const bad = join(work, 'bad.json');
  writeFileSync(bad, JSON.stringify({ size: 16, deltaa: 3 }));
  const e = spawnSync(process.execPath, [CLI, 'codebook', 'build', '--method', 'uvu', '--patches', storeA, '--config', bad, '--out', join(work, 'never.safetensors')], { encoding: 'utf8' });
  assert.equal(e.status, 2);
  assert.match(e.stderr, /bad\.json.*deltaa/);
  copyFileSync(out, join(work, 'copy.safetensors'));
  const ref = spawnSync(process.execPath, [CLI, 'codebook', 'refine', join(work, 'copy.safetensors'), '--patches', storeB, '--out', join(work, 'refined.safetensors'), '--max-rounds', '1', '--json'], { encoding: 'utf8' });
  assert.equal(ref.status, 0, ref.stderr);
  const rs = JSON.parse(ref.stdout);
  assert.equal(rs.moved_ids + rs.stable_ids, 16);
  assert.ok(rs.token_changes_on_new_data >= 0 && rs.token_changes_on_new_data <= 1);
});
