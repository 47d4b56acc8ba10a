import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { FlatIndex, bruteForceNearest, exactDistSq, exactDistSqCoded, shiftCodedRowByMean, shiftRowByOwnMean, type PreparedQueries, type SearchResult } from '../src/codebook/search.js';
import { sgemm } from '../src/linalg/blas.js';
import { UsageError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';

const P = 32;
const D = 3 * P * P;

function assertSameAsReference(got: SearchResult, queries: Float32Array, n: number, centers: Float32Array, K: number, dim: number, label: string): void {
  const ref = bruteForceNearest(queries, n, centers, K, dim);
  for (let q = 0; q < n; q++) {
    assert.equal(got.ids[q], ref.ids[q], `${label}: query ${q} → ${got.ids[q]}, reference ${ref.ids[q]}`);
    assert.equal(got.distSq[q], ref.distSq[q], `${label}: query ${q} distance ${got.distSq[q]} vs ${ref.distSq[q]}`);
  }
}

function uniform(rng: Rng, length: number, lo = 0, hi = 1): Float32Array {
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = lo + (hi - lo) * rng.next();
  return a;
}

/** Patches [count, D] (u8) cut at random positions from one @stdlib photo. */
async function photoPatches(name: string, count: number, seed: number): Promise<Uint8Array> {
  const root = fileURLToPath(new URL('../../node_modules/@stdlib/', import.meta.url));
  const dir = readdirSync(root).find((d) => d === `datasets-img-${name}`);
  assert.ok(dir, `photo package datasets-img-${name} not installed`);
  const { data, info } = await sharp(`${root}${dir}/data/image.jpg`).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  const rng = new Rng(seed);
  const out = new Uint8Array(count * D);
  for (let s = 0; s < count; s++) {
    const y0 = rng.int(info.height - P + 1);
    const x0 = rng.int(info.width - P + 1);
    for (let y = 0; y < P; y++) {
      const src = ((y0 + y) * info.width + x0) * 3;
      out.set(data.subarray(src, src + P * 3), s * D + y * P * 3);
    }
  }
  return out;
}

function toFloat(u8: Uint8Array): Float32Array {
  const f = new Float32Array(u8.length);
  for (let i = 0; i < u8.length; i++) f[i] = u8[i]! / 255;
  return f;
}

test('random data: ids and distances equal the float64 reference (several chunkings)', () => {
  const rng = new Rng(11);
  const dim = 96, K = 301, n = 257;
  const centers = uniform(rng, K * dim);
  const queries = uniform(rng, n * dim);
  for (const opts of [{}, { chunkQueries: 64, chunkCenters: 100 }, { chunkQueries: 1, chunkCenters: 7 }]) {
    const index = new FlatIndex(centers, K, dim, opts);
    assertSameAsReference(index.search(queries, n), queries, n, centers, K, dim, `chunks ${JSON.stringify(opts)}`);
  }
});

test('real photo patches (D = 3072): exact against the reference, also with the TypeScript fallback kernel', async () => {
  const centersU8 = await photoPatches('nagasaki-boats', 300, 1);
  const queriesU8 = await photoPatches('nagasaki-boats', 120, 2);
  const centers = toFloat(centersU8);
  const queries = toFloat(queriesU8);
  const ref = bruteForceNearest(queries, 120, centers, 300, D);
  for (const backend of ['auto', 'fallback'] as const) {
    const index = new FlatIndex(centers, 300, D, { chunkQueries: 50, chunkCenters: 128, backend });
    const got = index.search(queries, 120);
    assert.deepEqual(Array.from(got.ids), Array.from(ref.ids), `backend ${backend}`);
    assert.deepEqual(Array.from(got.distSq), Array.from(ref.distSq), `backend ${backend}`);
  }
});

test('codebook-like near-duplicate centres from flat photo regions stay exact', async () => {
  // Centres = photo patches plus tiny perturbations, so many centres are near-ties.
  const base = toFloat(await photoPatches('black-canyon', 40, 3));
  const rng = new Rng(4);
  const K = 200;
  const centers = new Float32Array(K * D);
  for (let k = 0; k < K; k++) {
    const src = (k % 40) * D;
    for (let i = 0; i < D; i++) centers[k * D + i] = base[src + i]! + (rng.next() - 0.5) * 1e-3;
  }
  const queries = toFloat(await photoPatches('black-canyon', 60, 5));
  const index = new FlatIndex(centers, K, D, { chunkQueries: 32, chunkCenters: 64 });
  assertSameAsReference(index.search(queries, 60), queries, 60, centers, K, D, 'near-duplicates');
});

test('adversarial ties: duplicate centres, queries equal to centres, ties go to the lowest id', () => {
  const rng = new Rng(21);
  const dim = 64, K = 50;
  const centers = uniform(rng, K * dim);
  // Centres 10, 30 and 49 duplicate centre 3; centre 20 duplicates centre 40 (higher id first in the pair 40/20 → 20 wins).
  for (const k of [10, 30, 49]) centers.copyWithin(k * dim, 3 * dim, 4 * dim);
  centers.copyWithin(20 * dim, 40 * dim, 41 * dim);
  const n = K;
  const queries = centers.slice(); // every query equals a centre
  const index = new FlatIndex(centers, K, dim, { chunkQueries: 16, chunkCenters: 13 });
  const got = index.search(queries, n);
  assertSameAsReference(got, queries, n, centers, K, dim, 'duplicates');
  assert.equal(got.ids[49], 3);
  assert.equal(got.ids[30], 3);
  assert.equal(got.ids[40], 20);
  assert.equal(got.distSq[40], 0);
});

test('queries exactly equidistant from two centres pick the lower id', () => {
  const dim = 48, K = 6;
  const rng = new Rng(5);
  const centers = uniform(rng, K * dim, 0.2, 0.8);
  // Centres 1 and 4 are mirror images around the query q: c = q ± δ with exactly representable δ.
  const q = new Float32Array(dim).fill(0.5);
  for (let i = 0; i < dim; i++) {
    const delta = (i % 3) / 64;
    centers[4 * dim + i] = 0.5 + delta;
    centers[1 * dim + i] = 0.5 - delta;
  }
  // Keep every other centre strictly farther away.
  for (const k of [0, 2, 3, 5]) for (let i = 0; i < dim; i++) centers[k * dim + i] = 0.9;
  const got = new FlatIndex(centers, K, dim).search(q, 1);
  assert.equal(got.ids[0], 1);
  assertSameAsReference(got, q, 1, centers, K, dim, 'equidistant');
});

test('large-norm offsets (values near 1.0, worst cancellation) stay exact', () => {
  const rng = new Rng(7);
  const K = 400, n = 150;
  const centers = uniform(rng, K * D, 0.995, 1.0);
  const queries = uniform(rng, n * D, 0.995, 1.0);
  const index = new FlatIndex(centers, K, D, { chunkQueries: 64, chunkCenters: 128 });
  const got = index.search(queries, n);
  assertSameAsReference(got, queries, n, centers, K, D, 'near 1.0');
  // The data really is hard: a plain float32 argmin of the expanded form gets some wrong.
  const ref = bruteForceNearest(queries, n, centers, K, D);
  const scores = new Float32Array(n * K);
  sgemm(false, true, n, K, D, -2, queries, D, centers, D, 0, scores, K);
  let naiveWrong = 0;
  for (let q = 0; q < n; q++) {
    let best = Infinity;
    let bestId = -1;
    for (let k = 0; k < K; k++) {
      let normSq = Math.fround(0);
      for (let i = k * D; i < (k + 1) * D; i++) normSq = Math.fround(normSq + Math.fround(centers[i]! * centers[i]!));
      const s = Math.fround(normSq + scores[q * K + k]!);
      if (s < best) {
        best = s;
        bestId = k;
      }
    }
    if (bestId !== ref.ids[q]) naiveWrong++;
  }
  assert.ok(naiveWrong > 0, 'expected the naive float32 argmin to fail on some queries');
});

test('K not a multiple of the chunk, n = 1, K = 1', () => {
  const rng = new Rng(9);
  const dim = 33;
  const centers = uniform(rng, 1001 * dim);
  const queries = uniform(rng, 70 * dim);
  assertSameAsReference(new FlatIndex(centers, 1001, dim, { chunkCenters: 256, chunkQueries: 33 }).search(queries, 70), queries, 70, centers, 1001, dim, 'K=1001');
  assertSameAsReference(new FlatIndex(centers, 1001, dim).search(queries.subarray(0, dim), 1), queries.subarray(0, dim), 1, centers, 1001, dim, 'n=1');
  const one = new FlatIndex(centers.subarray(0, dim), 1, dim);
  const res = one.search(queries, 70);
  assert.ok(res.ids.every((id) => id === 0));
  assertSameAsReference(res, queries, 70, centers.subarray(0, dim), 1, dim, 'K=1');
  assert.equal(one.search(new Float32Array(0), 0).ids.length, 0);
});

test('searchU8 equals search on the converted floats, for the default and a custom scale', async () => {
  const centers = toFloat(await photoPatches('french-alpine-landscape', 150, 8));
  const queriesU8 = await photoPatches('french-alpine-landscape', 70, 9);
  const index = new FlatIndex(centers, 150, D, { chunkQueries: 32 }); // several conversion blocks
  const fromU8 = index.searchU8(queriesU8, 70);
  const fromFloat = index.search(toFloat(queriesU8), 70);
  assert.deepEqual(Array.from(fromU8.ids), Array.from(fromFloat.ids));
  assert.deepEqual(Array.from(fromU8.distSq), Array.from(fromFloat.distSq));
  const scaled = new Float32Array(queriesU8.length);
  for (let i = 0; i < queriesU8.length; i++) scaled[i] = queriesU8[i]! * 0.5;
  assert.deepEqual(Array.from(index.searchU8(queriesU8, 70, 0.5).ids), Array.from(index.search(scaled, 70).ids));
});

test('prepared queries (caller-made shift, coded rows, known distances) give search bit for bit; lower bounds hold', async () => {
  const K = 150, n = 70;
  const centers = toFloat(await photoPatches('french-alpine-landscape', K, 8));
  const u8 = await photoPatches('french-alpine-landscape', n, 9);
  const x = toFloat(u8);
  const values = toFloat(Uint8Array.from({ length: 256 }, (_, v) => v));
  const stats = { means: new Float64Array(n), sums: new Float64Array(n), shiftedNorms: new Float64Array(n) };
  const shifted = new Float32Array(n * D);
  const coded = new Float32Array(D);
  const table = new Float32Array(256);
  const normSq = new Float64Array(n);
  for (let q = 0; q < n; q++) {
    shiftRowByOwnMean(x, q * D, D, shifted, q * D, stats, q, 'query', q);
    shiftCodedRowByMean(u8, q * D, values, D, stats.means[q]!, table, coded, 0);
    assert.deepEqual(coded, shifted.subarray(q * D, (q + 1) * D), `query ${q}: coded shift`);
    for (const k of [0, 77, K - 1]) assert.equal(exactDistSqCoded(u8, q * D, values, centers, k * D, D), exactDistSq(x, q * D, centers, k * D, D));
    for (let i = q * D; i < (q + 1) * D; i++) normSq[q] += x[i]! * x[i]!;
  }
  const index = new FlatIndex(centers, K, D, { chunkQueries: 32 });
  const secondWant = new Float64Array(n);
  const want = index.searchWithSecond(x, n, secondWant);
  const ref = bruteForceNearest(x, n, centers, K, D);
  // Known centres: the winner for even queries, another centre for odd ones.
  const knownId = Int32Array.from({ length: n }, (_, q) => (q % 2 ? (ref.ids[q]! + 1) % K : ref.ids[q]!));
  const knownDistSq = Float64Array.from({ length: n }, (_, q) => exactDistSq(x, q * D, centers, knownId[q]! * D, D));
  let rowsRead = 0;
  const prepared: PreparedQueries = { shifted, ...stats, normSq, knownId, knownDistSq, distSq: (q, c, cOff) => (rowsRead++, exactDistSq(x, q * D, c, cOff, D)) };
  const second = new Float64Array(n);
  const got = index.searchPrepared(prepared, n, second);
  assert.deepEqual(Array.from(got.ids), Array.from(want.ids));
  assert.deepEqual(Array.from(got.distSq), Array.from(want.distSq));
  assert.deepEqual(Array.from(second), Array.from(secondWant));
  assert.ok(rowsRead < n, `${rowsRead} exact distances for ${n} queries: the known winners' are reused`);
  // Lower bounds only: below every exact distance (all but the first centre's, for the second).
  const first = new Float64Array(n), firstId = new Int32Array(n), next = new Float64Array(n);
  index.lowerBoundsPrepared(prepared, n, first, firstId, next);
  for (let q = 0; q < n; q++) {
    assert.ok(firstId[q]! >= 0 && firstId[q]! < K);
    for (let k = 0; k < K; k++) {
      const d = exactDistSq(x, q * D, centers, k * D, D);
      assert.ok(first[q]! <= d, `query ${q}, centre ${k}: first bound ${first[q]} > ${d}`);
      if (k !== firstId[q]) assert.ok(next[q]! <= d, `query ${q}, centre ${k}: second bound ${next[q]} > ${d}`);
    }
    assert.ok(first[q]! <= next[q]!);
  }
});

test('reuses scratch across calls: repeated and interleaved searches give the same answer', () => {
  const rng = new Rng(13);
  const dim = 40, K = 90;
  const centers = uniform(rng, K * dim);
  const a = uniform(rng, 300 * dim);
  const b = uniform(rng, 5 * dim);
  const index = new FlatIndex(centers, K, dim, { chunkQueries: 128, chunkCenters: 50 });
  const first = index.search(a, 300);
  index.search(b, 5);
  assert.deepEqual(Array.from(index.search(a, 300).ids), Array.from(first.ids));
});

test('bad input is rejected with clear errors', () => {
  const centers = new Float32Array(4 * 8);
  assert.throws(() => new FlatIndex(centers, 4, 7), UsageError);
  assert.throws(() => new FlatIndex(centers, 0, 8), /K must be/);
  assert.throws(() => new FlatIndex(centers, 4, 8, { chunkQueries: 0 }), /chunkQueries/);
  const index = new FlatIndex(centers, 4, 8);
  assert.throws(() => index.search(new Float32Array(3 * 7), 3), /dimension mismatch/);
  assert.throws(() => index.searchU8(new Uint8Array(10), 1), UsageError);
  const nan = new Float32Array(8);
  nan[3] = NaN;
  assert.throws(() => index.search(nan, 1), /non-finite/);
  const badCenters = centers.slice();
  badCenters[5] = Infinity;
  assert.throws(() => new FlatIndex(badCenters, 4, 8), /centre 0 .*non-finite/);
});
