import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kmeans, splitClusters, assignPoints, initialCentreIndices, plainKmeansPlusPlus, type KmeansConfig } from '../src/codebook/kmeans.js';
import { PatchPoints, gridPositions } from '../src/codebook/points.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { loadImage } from '../src/image/io.js';
import { patchify } from '../src/patches/patchify.js';
import { bundledPhotoPath, type BundledPhoto } from '../src/data/bundled.js';
import { Rng } from '../src/util/rng.js';
import { UsageError } from '../src/util/errors.js';

const D = 3072;

async function photoPoints(pe = NO_POSENC): Promise<PatchPoints> {
  const img = await loadImage(bundledPhotoPath('nagasaki-boats'), { maxPixels: 512 * 512 });
  const { patches, rows, cols } = patchify(img);
  return new PatchPoints(patches, rows * cols, D, gridPositions(rows, cols), pe);
}

test('k-means on real photo patches: objective never increases, and the run is reproducible', async () => {
  const points = await photoPoints();
  const a = kmeans(points, { k: 16, iters: 8, seed: 7 });
  for (let i = 1; i < a.stats.length; i++) {
    const prev = a.stats[i - 1]!.objective;
    // Lloyd with exact assignment cannot increase the objective; allow float32 rounding of means.
    assert.ok(a.stats[i]!.objective <= prev * (1 + 1e-6), `iteration ${i}: ${a.stats[i]!.objective} > ${prev}`);
  }
  assert.ok(a.stats.at(-1)!.objective < a.stats[0]!.objective * 0.9, 'k-means should improve on its random init');
  const b = kmeans(points, { k: 16, iters: 8, seed: 7 });
  assert.deepEqual(b.centersPixel, a.centersPixel);
  const c = kmeans(points, { k: 16, iters: 8, seed: 8 });
  assert.notDeepEqual(c.centersPixel, a.centersPixel);
  // Centres are the means of their members: recompute from the final assignment.
  assert.equal(a.counts.reduce((s, x) => s + x, 0), points.n);
  assert.ok(a.stats.every((s) => s.imbalance >= 1 - 1e-9));
});

test('the returned centres are no worse than the last iteration; pixel centres stay in [0,1]', async () => {
  const points = await photoPoints();
  const r = kmeans(points, { k: 8, iters: 30, seed: 1 });
  const { distSq } = assignPoints(points, r.centersAssign, 8, 1024);
  const obj = distSq.reduce((s, x) => s + x, 0);
  assert.ok(obj <= r.stats.at(-1)!.objective * (1 + 1e-6));
  assert.ok(r.centersPixel.every((x) => x >= 0 && x <= 1));
});

test('empty clusters are re-seeded by splitting (Faiss split_clusters)', () => {
  // 3 distinct patches repeated 50 times; K = 6 random init picks duplicates → empty clusters.
  const n = 150;
  const u8 = new Uint8Array(n * D);
  for (let i = 0; i < n; i++) u8.fill([10, 120, 240][i % 3]!, i * D, (i + 1) * D);
  const points = new PatchPoints(u8, n, D, null, NO_POSENC);
  const r = kmeans(points, { k: 6, iters: 4, seed: 3 });
  assert.ok(r.stats.some((s) => s.nsplit > 0), 'expected at least one split');
  assert.ok(r.centersPixel.every(Number.isFinite));

  // Direct check of the split rule: the copy is perturbed by ±1/1024, alternating by dimension.
  const table = new Float32Array(3 * 4).fill(0.5);
  const counts = new Float64Array([0, 10, 6]);
  const pairs = splitClusters(counts, 16, 4, [table], new Rng(0));
  assert.equal(pairs.length, 1);
  assert.equal(pairs[0]![0], 0);
  const EPS = 1 / 1024;
  const cj = pairs[0]![1];
  assert.ok(cj === 1 || cj === 2);
  assert.equal(counts[0]! + counts[cj]!, cj === 1 ? 10 : 6);
  assert.ok(Math.abs(table[0]! - 0.5 * (1 + EPS)) < 1e-7 && Math.abs(table[1]! - 0.5 * (1 - EPS)) < 1e-7);
  assert.ok(Math.abs(table[cj * 4]! - 0.5 * (1 - EPS)) < 1e-7 && Math.abs(table[cj * 4 + 1]! - 0.5 * (1 + EPS)) < 1e-7);
});

test('k-means++ seeds one centre per well-separated blob', () => {
  const n = 200;
  const u8 = new Uint8Array(n * D);
  const rng = new Rng(5);
  const levels = [20, 90, 160, 230];
  for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) u8[i * D + d] = levels[i % 4]! + rng.int(3);
  const points = new PatchPoints(u8, n, D, null, NO_POSENC);
  const r = kmeans(points, { k: 4, iters: 1, seed: 11, init: 'kmeans++' });
  assert.deepEqual(Array.from(r.counts), [50, 50, 50, 50]);
  // With positional encoding the pixel centres stay the plain means of the members.
  const pe = { type: '2d-sincos' as const, scale: 0.1 };
  const pos = { row: new Uint16Array(n), col: Uint16Array.from({ length: n }, (_, i) => i % 4), cols: new Uint16Array(n).fill(4) };
  const withPe = kmeans(new PatchPoints(u8, n, D, pos, pe), { k: 4, iters: 2, seed: 11, init: 'kmeans++' });
  assert.notEqual(withPe.centersAssign, withPe.centersPixel);
  for (let k = 0; k < 4; k++) {
    const mean = withPe.centersPixel[k * D]! * 255;
    assert.ok(levels.some((l) => Math.abs(mean - (l + 1)) < 0.5), `pixel centre ${k} = ${mean}`);
  }
});

/** Patches of several bundled photos (more points than one photo, for pruning to bite). */
async function manyPhotoPoints(names: BundledPhoto[]): Promise<PatchPoints> {
  const parts: Uint8Array[] = [];
  for (const name of names) {
    const img = await loadImage(bundledPhotoPath(name), { maxPixels: 512 * 512 });
    parts.push(patchify(img).patches);
  }
  const total = parts.reduce((s, p) => s + p.length, 0);
  const u8 = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    u8.set(p, off);
    off += p.length;
  }
  return new PatchPoints(u8, total / D, D, null, NO_POSENC);
}

test('bound-based pruning gives full Lloyd bit for bit, every iteration, and skips distances', async () => {
  const photos = await manyPhotoPoints(['nagasaki-boats', 'black-canyon', 'march-pastoral', 'acanthus-mollis']);
  const rows = Math.floor(photos.n / 32);
  const withPe = new PatchPoints(photos.u8, rows * 32, D, gridPositions(rows, 32), { type: '2d-sincos', scale: 0.1 });
  // The pruned paths: rows from the float copy; read as uint8 codes (no copy); decoded row by
  // row with a positional encoding (no copy). Small chunks make the batches fill and flush
  // mid-pass, candidates that fail the moved-centre test included.
  const cases: [string, PatchPoints, number, Partial<KmeansConfig>][] = [
    ['float copy', photos, 8, {}],
    ['float copy', photos, 32, {}],
    ['codes', photos, 8, { cacheFloats: 0, chunk: 97 }],
    ['codes', photos, 32, { cacheFloats: 0, chunk: 97 }],
    ['posenc, no copy', withPe, 16, { cacheFloats: 0, chunk: 97 }],
  ];
  for (const [name, points, k, opts] of cases) {
    const iters = 6;
    const snapshots = (): { on: (s: unknown, st: { ids: Int32Array; centersAssign: Float32Array }) => void; ids: Int32Array[]; centres: Float32Array[] } => {
      const ids: Int32Array[] = [];
      const centres: Float32Array[] = [];
      return { ids, centres, on: (_s, st) => (ids.push(st.ids.slice()), centres.push(st.centersAssign.slice())) };
    };
    const f = snapshots();
    const p = snapshots();
    const full = kmeans(points, { k, iters, seed: 5, prune: false }, f.on);
    const pruned = kmeans(points, { ...opts, k, iters, seed: 5, prune: true }, p.on);
    const what = `${name}, K=${k}`;
    assert.ok(full.stats.every((s) => s.skipped === 0));
    // Every iteration: the same assignment, centres, objective (Σ of the float32 distances) and sizes.
    for (let i = 0; i < iters; i++) {
      assert.deepEqual(p.ids[i], f.ids[i], `${what} iteration ${i}: assignment`);
      assert.deepEqual(p.centres[i], f.centres[i], `${what} iteration ${i}: centres`);
      assert.equal(pruned.stats[i]!.objective, full.stats[i]!.objective, `${what} iteration ${i}: objective`);
      assert.equal(pruned.stats[i]!.imbalance, full.stats[i]!.imbalance, `${what} iteration ${i}: imbalance`);
      assert.equal(pruned.stats[i]!.nsplit, full.stats[i]!.nsplit, `${what} iteration ${i}: splits`);
    }
    assert.deepEqual(pruned.centersPixel, full.centersPixel);
    assert.deepEqual(pruned.counts, full.counts);
    assert.equal(pruned.stats[0]!.skipped, 0, 'the first iteration has no bounds');
    const later = pruned.stats.slice(2).map((s) => s.skipped);
    assert.ok(later.every((x) => x > 0 && x < 1), `${what}: fractions skipped ${pruned.stats.map((s) => s.skipped.toFixed(3)).join(' ')}`);
  }
});

test('k-means++ with bound-pruned D² updates picks exactly the seeds of the plain update', async () => {
  const photos = await manyPhotoPoints(['nagasaki-boats', 'black-canyon']);
  // Duplicated rows (zero distances, ties) and a positional encoding (negative values) as well.
  const n = 300;
  const dup = new Uint8Array(n * D);
  for (let i = 0; i < n; i++) dup.set(photos.u8.subarray((i % 40) * D, (i % 40 + 1) * D), i * D);
  const pe = { type: '2d-sincos' as const, scale: 0.1 };
  const rows = Math.floor(photos.n / 32);
  const cases: [string, PatchPoints, number][] = [
    ['photos', photos, 48],
    ['duplicates', new PatchPoints(dup, n, D, null, NO_POSENC), 45],
    ['posenc', new PatchPoints(photos.u8, rows * 32, D, gridPositions(rows, 32), pe), 24],
  ];
  for (const [name, points, K] of cases) {
    for (const seed of [1, 2]) {
      const want = Array.from(plainKmeansPlusPlus(points, K, new Rng(seed)));
      const got = Array.from(initialCentreIndices(points, K, 'kmeans++', new Rng(seed), 100));
      assert.deepEqual(got, want, `${name}, seed ${seed}`);
    }
  }
});

test('K larger than the number of points is a usage error', async () => {
  const u8 = new Uint8Array(3 * D);
  assert.throws(() => kmeans(new PatchPoints(u8, 3, D, null, NO_POSENC), { k: 4 }), (e: unknown) => e instanceof UsageError && /K = 4 is larger than the number of training patches \(3\)/.test((e as Error).message));
});
