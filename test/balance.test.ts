import { test } from 'node:test';
import assert from 'node:assert/strict';
import { balanceImageTargets, codeProbabilities, entropyBits } from '../src/data/balance.js';
import { Rng } from '../src/util/rng.js';

const OFFSET = 1000; // id of image code 0
const PAD = 7;

/** A [n] batch: image targets with the given code ids at every other position, text targets between. */
function batchOf(codes: number[]): { targets: Int32Array; imageMask: Float32Array; textMask: Float32Array } {
  const n = 2 * codes.length;
  const targets = new Int32Array(n).fill(PAD);
  const imageMask = new Float32Array(n);
  const textMask = new Float32Array(n);
  codes.forEach((k, j) => {
    targets[2 * j] = OFFSET + k;
    imageMask[2 * j] = 1;
    targets[2 * j + 1] = 42 + (j % 5); // a text target
    textMask[2 * j + 1] = 1;
  });
  return { targets, imageMask, textMask };
}

/** Kept image targets per code id. */
function keptPerCode(targets: Int32Array, mask: Float32Array): Map<number, number> {
  const m = new Map<number, number>();
  mask.forEach((v, i) => {
    if (v) m.set(targets[i]! - OFFSET, (m.get(targets[i]! - OFFSET) ?? 0) + 1);
  });
  return m;
}

test('p_k ∝ 1/f_k over seen codes, 0 for unseen ones', () => {
  const p = codeProbabilities(Float64Array.from([1, 2, 4, 8, 0, 16]));
  const z = 1 + 1 / 2 + 1 / 4 + 1 / 8 + 1 / 16;
  assert.deepEqual(Array.from(p), [1, 1 / 2, 1 / 4, 1 / 8, 0, 1 / 16].map((x) => x / z));
  assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-15);
});

test('hand-computed batch: τ, eligible ids, cap and kept positions are exactly §7', () => {
  const p = codeProbabilities(Float64Array.from([1, 2, 4, 8, 0, 16]));
  // 20 image targets: code 0 ×1, 1 ×2, 2 ×3, 3 ×4, 5 ×10 (interleaved).
  const codes = [5, 3, 5, 2, 5, 1, 5, 3, 5, 0, 5, 2, 5, 3, 5, 1, 5, 2, 5, 3];
  const b = batchOf(codes);
  const { imageMask, stats } = balanceImageTargets(b.targets, b.imageMask, p, OFFSET, new Rng(1), { qLo: 0.5, qHi: 0.5 });
  // Sorted per-target p: 10×p5, 4×p3, 3×p2, 2×p1, 1×p0; the 0.5-quantile sits at 9.5 → (p5 + p3)/2.
  assert.equal(stats.q, 0.5);
  assert.equal(stats.tau, (p[5]! + p[3]!) / 2);
  // E = {0, 1, 2, 3}; budget = 0.5·20 = 10; c = ⌊10/4⌋ = 2.
  assert.equal(stats.eligible, 4);
  assert.equal(stats.cap, 2);
  assert.deepEqual([...keptPerCode(b.targets, imageMask)].sort((x, y) => x[0] - y[0]), [[0, 1], [1, 2], [2, 2], [3, 2]]);
  assert.equal(stats.kept, 7);
  assert.equal(stats.before, 20);
  assert.equal(stats.keptFraction, 7 / 20);
  assert.equal(stats.entropyBefore, entropyBits([1, 2, 3, 4, 10]));
  assert.equal(stats.entropyAfter, entropyBits([1, 2, 2, 2]));
  assert.ok(Math.abs(entropyBits([1, 1, 1, 1]) - 2) < 1e-15);
  // Kept positions are image targets of the batch; text targets and the inputs are untouched.
  const before = batchOf(codes);
  imageMask.forEach((v, i) => assert.ok(v === 0 || b.imageMask[i] === 1));
  assert.deepEqual(b.targets, before.targets);
  assert.deepEqual(b.imageMask, before.imageMask);
  assert.deepEqual(b.textMask, before.textMask);
});

test('long-tailed batches: entropy rises, the kept fraction respects the budget, text is never touched', () => {
  // Zipf(1.1) over 512 codes: f_k from a large "training set", the batch drawn from the same law.
  const K = 512;
  const weights = Array.from({ length: K }, (_, k) => 1 / (k + 1) ** 1.1);
  const total = weights.reduce((a, b) => a + b, 0);
  const cdf: number[] = [];
  weights.reduce((acc, w) => (cdf.push(acc + w / total), acc + w / total), 0);
  const draw = (rng: Rng) => {
    const u = rng.next();
    let k = cdf.findIndex((c) => c > u);
    if (k < 0) k = K - 1;
    return k;
  };
  const rng = new Rng(7);
  const counts = new Float64Array(K);
  for (let i = 0; i < 200_000; i++) counts[draw(rng)]!++;
  const p = codeProbabilities(counts);
  for (let trial = 0; trial < 20; trial++) {
    const b = batchOf(Array.from({ length: 1500 }, () => draw(rng)));
    for (const budgetFraction of [0.25, 0.5, 1]) {
      const { imageMask, stats } = balanceImageTargets(b.targets, b.imageMask, p, OFFSET, new Rng(trial), { budgetFraction });
      assert.ok(stats.q >= 0.2 && stats.q <= 0.6);
      assert.ok(stats.entropyAfter >= stats.entropyBefore, `trial ${trial}: entropy ${stats.entropyBefore} → ${stats.entropyAfter}`);
      // c·|E| ≤ budget unless c was raised to 1: then at most one per eligible id.
      assert.ok(stats.kept <= Math.max(budgetFraction * stats.before, stats.eligible));
      assert.ok(stats.keptFraction <= Math.max(budgetFraction, stats.eligible / stats.before));
      const per = keptPerCode(b.targets, imageMask);
      for (const [k, c] of per) {
        assert.ok(p[k]! > stats.tau, 'only eligible ids are kept');
        assert.ok(c <= stats.cap);
      }
      assert.equal(per.size, stats.eligible, 'every eligible id keeps at least one position');
      imageMask.forEach((v, i) => assert.ok(v === 0 || b.imageMask[i] === 1, 'only image targets can be kept'));
    }
  }
});

test('balanced sampling is deterministic with a seed and varies without it', () => {
  const p = codeProbabilities(Float64Array.from({ length: 64 }, (_, k) => 1 + ((k * 37) % 50)));
  const rng = new Rng(3);
  const b = batchOf(Array.from({ length: 400 }, () => rng.int(64)));
  const r1 = balanceImageTargets(b.targets, b.imageMask, p, OFFSET, new Rng(99));
  const r2 = balanceImageTargets(b.targets, b.imageMask, p, OFFSET, new Rng(99));
  const r3 = balanceImageTargets(b.targets, b.imageMask, p, OFFSET, new Rng(100));
  assert.deepEqual(r1, r2);
  assert.notDeepEqual(r1.imageMask, r3.imageMask);
});

test('a batch without image targets keeps nothing and reports zeros', () => {
  const text = { targets: Int32Array.from([5, 6]), imageMask: new Float32Array(2) };
  const r = balanceImageTargets(text.targets, text.imageMask, codeProbabilities(Float64Array.from([1, 2])), OFFSET, new Rng(1));
  assert.deepEqual(Array.from(r.imageMask), [0, 0]);
  assert.equal(r.stats.keptFraction, 0);
  assert.equal(r.stats.kept, 0);
  assert.throws(() => balanceImageTargets(Int32Array.from([3]), Float32Array.from([1]), codeProbabilities(Float64Array.from([1, 2])), OFFSET, new Rng(1)), /not an image code/);
});
