import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { geluBackward, geluForward, layerNormBackward, layerNormForward, tanhF32 } from '../src/model/kernels.js';
import { UvuModel, type ImageInput } from '../src/model/model.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { VisionStep } from '../src/model/vision-step.js';
import { Vocab } from '../src/tokens/vocab.js';
import type { GradMap } from '../src/optim/adamw.js';
import { Rng } from '../src/util/rng.js';

await initEngine('blas');

function normals(n: number, rng: Rng, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * rng.normal();
  return out;
}

/** max |got − want| / max(1, max |want|): the error on the reference's scale. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let scale = 1;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
  }
  return err / scale;
}

/** The tfjs composition LayerNorm had before kernels.ts (UvuModel.layerNorm), as the reference. */
function layerNormTf(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
  const mean = tf.mean(x, -1, true);
  const xc = tf.sub(x, mean);
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
  return tf.add(tf.mul(tf.mul(xc, rstd), w), b);
}

/** GELU tanh from tfjs primitives: ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
function geluTf(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
}

test('layerNorm kernel: forward bit-identical to the tfjs composition, backward equal to its gradients to float32 rounding', () => {
  const rng = new Rng(5);
  const [N, C, eps] = [9, 24, 1e-6];
  const x = normals(N * C, rng, 3);
  for (let i = 0; i < x.length; i++) x[i]! += 2; // a mean far from 0
  const w = normals(C, rng);
  const b = normals(C, rng);
  const dy = normals(N * C, rng);
  const y = new Float32Array(N * C);
  const mean = new Float32Array(N);
  const rstd = new Float32Array(N);
  layerNormForward(x, w, b, y, mean, rstd, N, C, eps);
  const [xt, wt, bt] = [tf.tensor2d(x, [N, C]), tf.tensor1d(w), tf.tensor1d(b)];
  assert.deepEqual(y, layerNormTf(xt, wt, bt, eps).dataSync());

  const dx = new Float32Array(N * C).fill(0.5);
  const dw = new Float32Array(C).fill(1);
  const db = new Float32Array(C).fill(1);
  layerNormBackward(dy, x, w, mean, rstd, dx, dw, db, N, C, true);
  const [gx, gw, gb] = tf.grads((a: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => layerNormTf(a, c, d, eps))([xt, wt, bt], tf.tensor2d(dy, [N, C]));
  const shift = (g: tf.Tensor, by: number): Float32Array => (g.dataSync() as Float32Array).map((v) => v + by);
  // Accumulation: dx, dw and db started at 0.5, 1 and 1.
  const errs = [relErr(dx, shift(gx!, 0.5)), relErr(dw, shift(gw!, 1)), relErr(db, shift(gb!, 1))];
  // Measured 7.5e-8, 1.1e-7, 1.2e-7.
  assert.ok(Math.max(...errs) < 1e-6, `layerNorm gradient error (x, w, b) ${errs.map((e) => e.toExponential(2)).join(', ')}`);
});

test('gelu kernel: forward and backward equal GELU-tanh composed from tfjs ops to float32 rounding', () => {
  const rng = new Rng(6);
  const n = 4000;
  const x = normals(n, rng, 3);
  const dy = normals(n, rng);
  const t = new Float32Array(n);
  const y = new Float32Array(n);
  geluForward(x, t, y, n);
  const dx = new Float32Array(n);
  geluBackward(dy, x, t, dx, n);
  const xt = tf.tensor1d(x);
  const yErr = relErr(y, geluTf(xt).dataSync());
  const [gx] = tf.grads((a: tf.Tensor) => geluTf(a))([xt], tf.tensor1d(dy));
  const dErr = relErr(dx, gx!.dataSync());
  // Measured 4.0e-8 and 1.4e-7 (the composition rounds after each of its ops).
  assert.ok(yErr < 1e-6 && dErr < 1e-6, `gelu error: forward ${yErr.toExponential(2)}, backward ${dErr.toExponential(2)}`);
  // In place (dx = dy) gives the same.
  const d2 = dy.slice();
  geluBackward(d2, x, t, d2, n);
  assert.deepEqual(d2, dx);
});

test('tanhF32 is fround(Math.tanh(z)) exactly: random z over many scales, float32 rounding midpoints, edge cases', () => {
  const rng = new Rng(12);
  const same = (z: number): boolean => tanhF32(z) === Math.fround(Math.tanh(z)) || (Number.isNaN(z) && Number.isNaN(tanhF32(z)));
  let checked = 0;
  const fail: number[] = [];
  const check = (z: number): void => {
    checked++;
    if (!same(z) && fail.length < 3) fail.push(z);
  };
  for (const scale of [1e-30, 1e-6, 1e-3, 0.05, 0.3, 1, 3, 10, 30]) for (let i = 0; i < 200_000; i++) check(scale * (2 * rng.next() - 1));
  // z whose tanh lies (nearly) on the midpoint between two float32 values: the fallback's case.
  const f32 = new Float32Array(2);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < 200_000; i++) {
    f32[0] = 0.999 * (2 * rng.next() - 1);
    u32[1] = u32[0]! + 1;
    const mid = (f32[0]! + f32[1]!) / 2;
    for (const z of [Math.atanh(mid), Math.atanh(mid) * (1 + 1e-15), Math.atanh(mid) * (1 - 1e-15)]) check(z);
  }
  for (const z of [0, -0, 5e-324, -5e-324, 19.99, 20, -20, 25, -25, 1e300, Infinity, -Infinity, NaN]) check(z);
  assert.deepEqual(fail, [], `${fail.length} of ${checked} values differ from fround(Math.tanh), e.g. ${fail.join(', ')}`);
});

// A ViT of two blocks (as configs/reference.json) with random non-trivial parameters.
function visionModel(): UvuModel {
  const config = ModelConfigSchema.parse({
    vision_config: { hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32 },
    projector_config: { hidden_size: 24 },
    text_config: { hidden_size: 20, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 },
  });
  const model = UvuModel.init(config, new Vocab({ textSize: 256, K: 8 }), 1);
  const rng = new Rng(11);
  for (const [name] of model.paramShapes()) {
    if (!name.startsWith('visual.')) continue;
    const v = model.paramValues(name);
    const isNormWeight = /norm/.test(name) && name.endsWith('.weight');
    for (let i = 0; i < v.length; i++) v[i] = isNormWeight ? 1 + 0.3 * rng.normal() : name.endsWith('.bias') ? 0.1 * rng.normal() : 0.15 * rng.normal();
  }
  return model;
}

function image(rng: Rng, rows: number, cols: number, row: number): ImageInput {
  const pixels = new Uint8Array(rows * 32 * cols * 32 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.int(256);
  return { row, start: 0, rows, cols, pixels };
}

/** Two grid sizes, interleaved, so grouping and the output order are exercised. */
function images(seed: number): ImageInput[] {
  const rng = new Rng(seed);
  return [image(rng, 2, 2, 0), image(rng, 1, 3, 1), image(rng, 2, 2, 2)];
}

function visionGrads(model: UvuModel): GradMap {
  return new Map(model.paramShapes().filter(([n]) => n.startsWith('visual.')).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1))]));
}

test('VisionStep.forward equals UvuModel.encodeImages bit for bit, with two grid sizes in one call', () => {
  const model = visionModel();
  const imgs = images(1);
  const step = new VisionStep(model);
  const got = step.forward(imgs);
  const want = tf.tidy(() => model.encodeImages(imgs).dataSync() as Float32Array);
  assert.equal(got.length, (4 + 3 + 4) * 20);
  assert.deepEqual(got, want, `max error ${relErr(got, want).toExponential(2)}`);
  model.dispose();
});

test('VisionStep.backward equals tfjs gradients of sum(encodeImages ⊙ ∂features) for every vision and projector parameter', () => {
  const model = visionModel();
  const imgs = images(2);
  const step = new VisionStep(model);
  const nVis = step.forward(imgs).length / 20;
  const dFeat = normals(nVis * 20, new Rng(3));
  const grads = visionGrads(model);
  step.backward(dFeat, grads);

  const names = [...grads.keys()];
  const vars = names.map((n) => model.params.get(n)!);
  const want = tf.variableGrads(() => tf.sum(tf.mul(model.encodeImages(imgs), tf.tensor2d(dFeat, [nVis, 20]))) as tf.Scalar, vars).grads;
  assert.equal(names.length, 2 + 2 * 12 + 2 + 4);
  let worst = 0;
  let worstName = '';
  for (const n of names) {
    const e = relErr(grads.get(n)!, want[model.params.get(n)!.name]!.dataSync());
    if (e > worst) [worst, worstName] = [e, n];
  }
  // Measured 3.95e-7 (visual.blocks.0.mlp.fc2.bias): float32 rounding of sums taken in another order.
  assert.ok(worst < 4e-6, `largest gradient error ${worst.toExponential(2)} (${worstName})`);
  model.dispose();
});

test('VisionStep reuses its buffers: a repeated call gives what a fresh step gives, and gradients accumulate', () => {
  const model = visionModel();
  const imgsA = images(4);
  const imgsB = [images(5)[1]!]; // another shape in between
  const step = new VisionStep(model);
  const first = step.forward(imgsA).slice();
  const dFeat = normals(first.length, new Rng(8));
  const g1 = visionGrads(model);
  step.backward(dFeat, g1);
  const other = step.forward(imgsB);
  step.backward(normals(other.length, new Rng(9)), visionGrads(model));

  const again = step.forward(imgsA);
  assert.deepEqual(again, first);
  assert.equal(step.forward(imgsA), again, 'the output buffer of a shape is reused');
  const g2 = new Map([...g1].map(([n, g]) => [n, g.slice()]));
  step.backward(dFeat, g2);
  const fresh = new VisionStep(model);
  assert.deepEqual(fresh.forward(imgsA), first);
  const g3 = visionGrads(model);
  fresh.backward(dFeat, g3);
  for (const [n, g] of g1) {
    assert.deepEqual(g, g3.get(n), `${n}: a fresh step's gradient`);
    // Accumulated inside sgemm (β = 1) and row sums, so equal to g + g to rounding only.
    const e = relErr(g2.get(n)!, g.map((v) => 2 * v));
    assert.ok(e < 1e-6, `${n} accumulates with +=: error ${e.toExponential(2)}`);
  }
  assert.throws(() => step.backward(new Float32Array(3), g3), /∂features has 3 values/);
  // No images: no features, no gradient.
  assert.equal(step.forward([]).length, 0);
  const g4 = visionGrads(model);
  step.backward(new Float32Array(0), g4);
  for (const g of g4.values()) assert.ok(g.every((v) => v === 0));
  // More shapes than the step caches: the oldest buffer sets are dropped, results stay right.
  const rng = new Rng(10);
  for (let c = 1; c <= 34; c++) step.forward([image(rng, 1, c, 0)]);
  assert.deepEqual(step.forward(imgsA), first);
  model.dispose();
});
