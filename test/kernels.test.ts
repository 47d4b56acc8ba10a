import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { linearBackward, linearForward } from '../src/model/kernels.js';
import { Rng } from '../src/util/rng.js';

await initEngine('blas');

function normals(n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal();
  return out;
}

test('linear kernels: forward and backward equal tfjs fused matMul and its gradients bit for bit', () => {
  const rng = new Rng(3);
  const [N, inDim, outDim] = [7, 5, 4];
  const x = normals(N * inDim, rng);
  const W = normals(outDim * inDim, rng);
  const b = normals(outDim, rng);
  const dy = normals(N * outDim, rng);

  const y = new Float32Array(N * outDim);
  linearForward(x, W, b, y, N, inDim, outDim);
  const dx = new Float32Array(N * inDim);
  const dW = new Float32Array(outDim * inDim);
  const db = new Float32Array(outDim);
  linearBackward(dy, x, W, dx, dW, db, N, inDim, outDim);

  const [xt, Wt, bt, dyt] = [tf.tensor2d(x, [N, inDim]), tf.tensor2d(W, [outDim, inDim]), tf.tensor1d(b), tf.tensor2d(dy, [N, outDim])];
  const f = (a: tf.Tensor, w: tf.Tensor, c: tf.Tensor): tf.Tensor => tf.fused.matMul({ a: a as tf.Tensor2D, b: w as tf.Tensor2D, transposeB: true, bias: c });
  assert.deepEqual(y, f(xt, Wt, bt).dataSync());
  const [gx, gW, gb] = tf.grads(f)([xt, Wt, bt], dyt);
  assert.deepEqual(dx, gx!.dataSync());
  assert.deepEqual(dW, gW!.dataSync());
  for (let o = 0; o < outDim; o++) assert.ok(Math.abs(db[o]! - gb!.dataSync()[o]!) <= 1e-6 * (1 + Math.abs(db[o]!)), `bias gradient ${o}`);

  // Parameter gradients accumulate; the input gradient is overwritten unless asked to accumulate.
  linearBackward(dy, x, W, dx, dW, db, N, inDim, outDim, true);
  for (let i = 0; i < dW.length; i++) assert.ok(Math.abs(dW[i]! - 2 * gW!.dataSync()[i]!) <= 1e-5 * (1 + Math.abs(dW[i]!)));
  for (let i = 0; i < dx.length; i++) assert.ok(Math.abs(dx[i]! - 2 * gx!.dataSync()[i]!) <= 1e-5 * (1 + Math.abs(dx[i]!)));
  linearBackward(dy, x, W, dx, dW, null, N, inDim, outDim);
  assert.deepEqual(dx, gx!.dataSync());
});

test('paramValues is the variable itself: a write through it changes what the model computes with', async () => {
  const { UvuModel } = await import('../src/model/model.js');
  const { ModelConfigSchema } = await import('../src/model/config.js');
  const { Vocab } = await import('../src/tokens/vocab.js');
  const { readFileSync } = await import('node:fs');
  const raw = JSON.parse(readFileSync('configs/tiny.json', 'utf8')) as { model: unknown };
  const model = UvuModel.init(ModelConfigSchema.parse(raw.model), new Vocab({ textSize: 256, K: 16 }), 0);
  const w = model.paramValues('model.norm.weight');
  w[0] = 7;
  assert.equal(model.params.get('model.norm.weight')!.dataSync()[0], 7);
  model.dispose();
});
