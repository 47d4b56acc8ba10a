import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsAccumulator, quantile } from '../src/codebook/metrics.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import type { Codebook } from '../src/codebook/file.js';

const D = 3072;

function codebookOf(values: number[][]): Codebook {
  const K = values.length;
  const centersPixel = new Float32Array(K * D);
  values.forEach((v, k) => {
    for (let d = 0; d < D; d++) centersPixel[k * D + d] = v[d % v.length]!;
  });
  return { K, D, patchSize: 32, centersPixel, centersAssign: null, counts: new Float32Array(K), pe: NO_POSENC, build: {}, data: '', metrics: {} };
}

/** u8 patch whose first half of dims is `a`, second half `b`. */
function patch(a: number, b: number): Uint8Array {
  const p = new Uint8Array(D);
  p.fill(a, 0, D / 2);
  p.fill(b, D / 2);
  return p;
}

test('metrics match hand-computed values (PRP, MSE, PSNR, R², PSC, utilization, radii)', () => {
  // Centres: all-0 and all-1. Patches: all 0 → c0 (error 0); half 0.2 / half 0 → c0 (error 0.04·D/2);
  // all 1 → c1 (error 0).
  const cb = codebookOf([[0], [1]]);
  const patches = new Uint8Array(3 * D);
  patches.set(patch(0, 0), 0);
  patches.set(patch(51, 0), D); // 51/255 = 0.2
  patches.set(patch(255, 255), 2 * D);
  const acc = new MetricsAccumulator(cb);
  const ids = acc.add(patches, 3, null);
  assert.deepEqual(Array.from(ids), [0, 0, 1]);
  const m = acc.result();
  // Per-element MSE = (0.04·D/2) / (3·D) = 1/150. Pixels are float32(u8/255), hence 1e-7 tolerances.
  const mse = 0.04 / 2 / 3;
  // Var of {0, 0.2, 1} = 0.56/3; of {0, 0, 1} = 2/9 (larger) → σ²_max = 2/9.
  const sigma2Max = 2 / 9;
  assert.ok(Math.abs(m.mse - mse) < 1e-7, `mse ${m.mse}`);
  assert.ok(Math.abs(m.sigma2_max - sigma2Max) < 1e-7);
  assert.ok(Math.abs(m.prp - (1 - mse / sigma2Max)) < 1e-7, `prp ${m.prp}`); // = 0.97
  assert.ok(Math.abs(m.prp - 0.97) < 1e-7);
  assert.ok(Math.abs(m.psnr - 10 * Math.log10(150)) < 1e-6);
  // R² = 1 − 0.02·D / (D/2·0.56/... ): Σ‖p − p̄‖² = D/2·0.56 + D/2·(2/3).
  assert.ok(Math.abs(m.r2 - (1 - 0.02 / (0.28 + 1 / 3))) < 1e-7, `r2 ${m.r2}`);
  assert.equal(m.k_active, 2);
  assert.equal(m.utilization, 1);
  // Radii: c0 → sqrt(0.02·D), c1 → 0, so PSC = min = 0.
  assert.equal(m.psc, 0);
  assert.ok(Math.abs(m.radius_q90 - 0.9 * Math.sqrt(0.02 * D)) < 1e-4);
});

test('PSC is the smallest cluster radius over K_active; unused codes lower utilization', () => {
  const cb = codebookOf([[0], [1], [0.5]]);
  const patches = new Uint8Array(2 * D);
  patches.set(patch(51, 0), 0); // → c0, radius sqrt(0.02·D)
  patches.set(patch(204, 204), D); // 0.8 → c1, radius sqrt(0.04·D)
  const acc = new MetricsAccumulator(cb);
  assert.deepEqual(Array.from(acc.add(patches, 2, null)), [0, 1]);
  const m = acc.result();
  assert.equal(m.k_active, 2);
  assert.ok(Math.abs(m.utilization - 2 / 3) < 1e-12);
  assert.ok(Math.abs(m.psc - Math.sqrt(0.02 * D) / 2) < 1e-4, `psc ${m.psc}`);
  assert.ok(Math.abs(m.radius_q10 - (Math.sqrt(0.02 * D) + 0.1 * (Math.sqrt(0.04 * D) - Math.sqrt(0.02 * D)))) < 1e-4);
});

test('quantile interpolates linearly', () => {
  assert.equal(quantile([1, 2, 3, 4, 5], 0.5), 3);
  assert.equal(quantile([0, 10], 0.1), 1);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});
