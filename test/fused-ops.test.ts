import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { gelu, layerNorm, rmsNorm, swiglu } from '../src/model/ops.js';
import { crossEntropy } from '../src/train/loss.js';
import { Rng } from '../src/util/rng.js';

await initEngine();

function uniform(rng: Rng, shape: number[], scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * rng.next() - 1) * scale;
  return tf.tensor(a, shape);
}

/** Values of fn(...inputs) computed on the stock cpu backend (inputs copied there). */
async function onCpu(fn: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): Promise<Float32Array> {
  const data = inputs.map((t) => ({ v: t.dataSync().slice(), shape: t.shape, dtype: t.dtype }));
  await initEngine('cpu');
  try {
    return tf.tidy(() => (fn(...data.map((d) => tf.tensor(d.v, d.shape, d.dtype))).dataSync() as Float32Array).slice());
  } finally {
    await initEngine('blas');
  }
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

test('uvu-blas elementwise kernels (broadcast add/sub/mul/div, softmax, transpose, sum, gather, segment sum) equal stock cpu', async () => {
  const rng = new Rng(1);
  const shapes: [number[], number[]][] = [
    [[3, 4], [3, 4]],
    [[2, 3, 4], [4]],
    [[2, 3, 4], [3, 1]],
    [[5, 1, 4], [1, 3, 1]],
    [[2, 6, 2, 8], [6, 1, 8]],
    [[3, 4], []],
  ];
  for (const [sa, sb] of shapes) {
    const a = uniform(rng, sa);
    const b = tf.add(uniform(rng, sb), 2); // away from 0 for division
    for (const op of [tf.add, tf.sub, tf.mul, tf.div] as const) {
      const got = tf.tidy(() => op(a, b).dataSync().slice());
      const want = await onCpu((p, q) => op(p!, q!), [a, b]);
      assertClose(got, want, 1e-6, `${op.name} ${sa}∘${sb}`);
    }
  }
  const x = uniform(rng, [2, 3, 5, 7], 4);
  assertClose(tf.softmax(x).dataSync(), await onCpu((v) => tf.softmax(v!), [x]), 1e-6, 'softmax');
  for (const perm of [[0, 2, 1, 3], [3, 2, 1, 0], [1, 0, 3, 2]]) {
    assertClose(tf.transpose(x, perm).dataSync(), await onCpu((v) => tf.transpose(v!, perm), [x]), 0, `transpose ${perm}`);
  }
  for (const axis of [[3], [2, 3], [0], [0, 1], [1, 2]]) {
    for (const keep of [false, true]) {
      const got = tf.sum(x, axis, keep);
      const want = await onCpu((v) => tf.sum(v!, axis, keep), [x]);
      assert.deepEqual(got.shape, tf.tidy(() => tf.sum(tf.zeros(x.shape), axis, keep).shape));
      assertClose(got.dataSync(), want, 1e-5, `sum ${axis} keepDims ${keep}`);
    }
  }
  const table = uniform(rng, [10, 6]);
  const ids = tf.tensor1d([3, 0, 9, 3], 'int32');
  assertClose(tf.gather(table, ids).dataSync(), await onCpu((t, i) => tf.gather(t!, i!), [table, ids]), 0, 'gather');
  const rows = uniform(rng, [4, 6]);
  assertClose(tf.unsortedSegmentSum(rows, ids, 10).dataSync(), await onCpu((r, i) => tf.unsortedSegmentSum(r!, i as tf.Tensor1D, 10), [rows, ids]), 1e-6, 'segment sum');
});

/** Central finite differences of sum(f(x)·probe) w.r.t. each input, compared with tf.grads. */
function checkGradients(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], what: string, eps = 1e-2, tol = 2e-2): void {
  const probe = tf.tidy(() => uniform(new Rng(99), f(...inputs).shape));
  const loss = (...xs: tf.Tensor[]): tf.Scalar => tf.sum(tf.mul(f(...xs), probe));
  const analytic = tf.grads(loss)(inputs).map((g) => g.dataSync().slice());
  inputs.forEach((x, xi) => {
    const base = x.dataSync().slice() as Float32Array;
    const numeric = new Float32Array(base.length);
    for (let i = 0; i < base.length; i++) {
      const at = (delta: number): number =>
        tf.tidy(() => {
          const v = base.slice();
          v[i]! += delta;
          const xs = inputs.map((t, j) => (j === xi ? tf.tensor(v, x.shape) : t));
          return loss(...xs).dataSync()[0]!;
        });
      numeric[i] = (at(eps) - at(-eps)) / (2 * eps);
    }
    assertClose(analytic[xi]!, numeric, tol, `${what}: ∂/∂input${xi}`);
  });
}

test('fused ops match their tfjs compositions, forward and backward', () => {
  const rng = new Rng(2);
  const x = uniform(rng, [4, 5], 2) as tf.Tensor2D;
  const u = uniform(rng, [4, 5], 2) as tf.Tensor2D;
  const w = uniform(rng, [5], 1) as tf.Tensor1D;
  assertClose(swiglu(x, u).dataSync(), tf.mul(tf.mul(x, tf.sigmoid(x)), u).dataSync(), 1e-6, 'swiglu');
  const geluRef = (v: tf.Tensor): tf.Tensor => tf.mul(tf.mul(v, 0.5), tf.add(tf.tanh(tf.mul(tf.add(v, tf.mul(tf.pow(v, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
  assertClose(gelu(x).dataSync(), geluRef(x).dataSync(), 1e-6, 'gelu');
  const rmsRef = (v: tf.Tensor, wt: tf.Tensor): tf.Tensor => tf.mul(tf.mul(v, tf.rsqrt(tf.add(tf.mean(tf.square(v), -1, true), 1e-6))), wt);
  assertClose(rmsNorm(x, w, 1e-6).dataSync(), rmsRef(x, w).dataSync(), 1e-5, 'rmsNorm');
  const bias = uniform(rng, [5], 1) as tf.Tensor1D;
  const lnRef = (v: tf.Tensor, wt: tf.Tensor, bt: tf.Tensor): tf.Tensor => {
    const xc = tf.sub(v, tf.mean(v, -1, true));
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), 1e-6))), wt), bt);
  };
  assertClose(layerNorm(x, w, bias, 1e-6).dataSync(), lnRef(x, w, bias).dataSync(), 1e-5, 'layerNorm');
  const lnProbe = uniform(rng, [4, 5]);
  const lnGrads = (f: (...a: tf.Tensor[]) => tf.Tensor) => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(f(a, b, c), lnProbe)))([x, w, bias]);
  const gotLn = lnGrads((a, b, c) => layerNorm(a as tf.Tensor2D, b as tf.Tensor1D, c as tf.Tensor1D, 1e-6));
  const wantLn = lnGrads(lnRef);
  gotLn.forEach((g, i) => assertClose(g.dataSync(), wantLn[i]!.dataSync(), 1e-5, `layerNorm grad ${i}`));
});

test('each fused op and the fused cross-entropy: gradients match finite differences', () => {
  const rng = new Rng(3);
  checkGradients((g, u) => swiglu(g as tf.Tensor2D, u as tf.Tensor2D), [uniform(rng, [3, 4], 2), uniform(rng, [3, 4], 2)], 'swiglu');
  checkGradients((x) => gelu(x as tf.Tensor2D), [uniform(rng, [3, 4], 2)], 'gelu');
  checkGradients((x, w) => rmsNorm(x as tf.Tensor2D, w as tf.Tensor1D, 1e-6), [uniform(rng, [3, 5], 2), uniform(rng, [5], 1)], 'rmsNorm');
  checkGradients((x, w, b) => layerNorm(x as tf.Tensor2D, w as tf.Tensor1D, b as tf.Tensor1D, 1e-6), [uniform(rng, [3, 5], 2), uniform(rng, [5], 1), uniform(rng, [5], 1)], 'layerNorm');
  checkGradients((z) => crossEntropy(z as tf.Tensor2D, Int32Array.from([2, 0, 4])), [uniform(rng, [3, 5], 3)], 'crossEntropy');
});
