import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { gelu, rmsNorm, swiglu } from '../src/model/ops.js';
import { crossEntropy } from '../src/train/loss.js';
import { Rng } from '../src/util/rng.js';
import { assertClose, checkGradients, uniform } from './fixtures.js';

await initEngine();


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
});

test('each fused op and the fused cross-entropy: gradients match finite differences', () => {
  const rng = new Rng(3);
  checkGradients((g, u) => swiglu(g as tf.Tensor2D, u as tf.Tensor2D), [uniform(rng, [3, 4], 2), uniform(rng, [3, 4], 2)], 'swiglu');
  checkGradients((x) => gelu(x as tf.Tensor2D), [uniform(rng, [3, 4], 2)], 'gelu');
  checkGradients((x, w) => rmsNorm(x as tf.Tensor2D, w as tf.Tensor1D, 1e-6), [uniform(rng, [3, 5], 2), uniform(rng, [5], 1)], 'rmsNorm');
  checkGradients((z) => crossEntropy(z as tf.Tensor2D, Int32Array.from([2, 0, 4])), [uniform(rng, [3, 5], 3)], 'crossEntropy');
});
