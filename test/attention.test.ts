import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { bidirectionalSelfAttention, causalSelfAttention, type RopeTables } from '../src/model/attention.js';
import { Rng } from '../src/util/rng.js';
import { assertClose, checkGradients, uniform } from './fixtures.js';

await initEngine();


function ropeTables(P: number, hd: number, theta = 10000): RopeTables {
  const cos = new Float32Array(P * hd);
  const sin = new Float32Array(P * hd);
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = p / Math.pow(theta, (2 * i) / hd);
      cos[p * hd + i] = cos[p * hd + i + hd / 2] = Math.cos(a);
      sin[p * hd + i] = sin[p * hd + i + hd / 2] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * The composition of tfjs ops the model used before attention.ts (kept here as the reference):
 * softmax(scale·s) over the last axis as one custom op, causal rows r seeing keys ≤ r mod T.
 */
function scaledSoftmax(s: tf.Tensor, scale: number, causal: boolean): tf.Tensor {
  const T = s.shape[s.shape.length - 1]!;
  const op = tf.customGrad((x) => {
    const z = (x as tf.Tensor).dataSync() as Float32Array;
    const y = new Float32Array(z.length);
    for (let o = 0, r = 0; o < z.length; o += T, r++) {
      const visible = causal ? (r % T) + 1 : T;
      let max = -Infinity;
      for (let k = 0; k < visible; k++) if (z[o + k]! > max) max = z[o + k]!;
      let sum = 0;
      for (let k = 0; k < visible; k++) sum += y[o + k] = Math.exp(scale * (z[o + k]! - max));
      const inv = 1 / sum;
      for (let k = 0; k < visible; k++) y[o + k]! *= inv;
    }
    return {
      value: tf.tensor(y, (x as tf.Tensor).shape),
      gradFunc: (dy: tf.Tensor) => {
        const d = dy.dataSync() as Float32Array;
        const g = new Float32Array(y.length);
        for (let o = 0, r = 0; o < y.length; o += T, r++) {
          const visible = causal ? (r % T) + 1 : T;
          let dot = 0;
          for (let k = 0; k < visible; k++) dot += d[o + k]! * y[o + k]!;
          for (let k = 0; k < visible; k++) g[o + k] = scale * y[o + k]! * (d[o + k]! - dot);
        }
        return tf.tensor(g, dy.shape);
      },
    };
  });
  return op(s) as tf.Tensor;
}


test('the reference softmax equals tf.softmax with a causal mask, forward and backward', () => {
  const rng = new Rng(2);
  const s = uniform(rng, [2, 6, 3], 3); // (B, g·T, T) with T = 3, g = 2
  const scale = 0.7;
  const maskT = tf.tensor2d(Array.from({ length: 6 * 3 }, (_, i) => ((i % 3) > (Math.floor(i / 3) % 3) ? -1e9 : 0)), [6, 3]);
  const composite = (x: tf.Tensor): tf.Tensor => tf.softmax(tf.add(tf.mul(x, scale), maskT));
  assertClose(scaledSoftmax(s, scale, true).dataSync(), composite(s).dataSync(), 1e-6, 'causal softmax');
  assertClose(scaledSoftmax(s, scale, false).dataSync(), tf.softmax(tf.mul(s, scale)).dataSync(), 1e-6, 'softmax');
  const probe = uniform(rng, s.shape);
  const gFused = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(scaledSoftmax(x, scale, true), probe)))(s);
  const gRef = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(composite(x), probe)))(s);
  assertClose(gFused.dataSync(), gRef.dataSync(), 1e-5, 'causal softmax grad');

});

/** Decoder attention as tfjs ops: RoPE via a rotate-half matrix, GQA with g heads stacked on rows. */
function decoderComposite(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, B: number, T: number, H: number, Hkv: number, hd: number, rope: RopeTables): tf.Tensor {
  const g = H / Hkv;
  const cos = tf.tensor(rope.cos.subarray(0, T * hd), [T, 1, hd]);
  const sin = tf.tensor(rope.sin.subarray(0, T * hd), [T, 1, hd]);
  const m = new Float32Array(hd * hd);
  for (let i = 0; i < hd / 2; i++) {
    m[(i + hd / 2) * hd + i] = -1;
    m[i * hd + i + hd / 2] = 1;
  }
  const rot = tf.tensor2d(m, [hd, hd]);
  const applyRope = (x: tf.Tensor): tf.Tensor => tf.add(tf.mul(x, cos), tf.mul(tf.reshape(tf.matMul(tf.reshape(x, [-1, hd]) as tf.Tensor2D, rot), x.shape), sin));
  const qr = applyRope(tf.reshape(q, [B, T, H, hd]));
  const qg = tf.reshape(tf.transpose(tf.reshape(qr, [B, T, Hkv, g, hd]), [0, 2, 3, 1, 4]), [B, Hkv, g * T, hd]);
  const kt = tf.transpose(applyRope(tf.reshape(k, [B, T, Hkv, hd])), [0, 2, 1, 3]);
  const vt = tf.transpose(tf.reshape(v, [B, T, Hkv, hd]), [0, 2, 1, 3]);
  const att = scaledSoftmax(tf.matMul(qg, kt, false, true), 1 / Math.sqrt(hd), true);
  const y = tf.matMul(att, vt);
  return tf.reshape(tf.transpose(tf.reshape(y, [B, Hkv, g, T, hd]), [0, 3, 1, 2, 4]), [B * T, H * hd]);
}

/** ViT attention as tfjs ops, from the fused qkv projection. */
function vitComposite(qkv: tf.Tensor, nImg: number, n: number, H: number): tf.Tensor {
  const C = qkv.shape[1]! / 3;
  const hd = C / H;
  const x = tf.transpose(tf.reshape(qkv, [nImg, n, 3, H, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(x, 0);
  const att = scaledSoftmax(tf.matMul(q!, k!, false, true), 1 / Math.sqrt(hd), false);
  return tf.reshape(tf.transpose(tf.matMul(att, v!), [0, 2, 1, 3]), [nImg * n, C]);
}

/** Value of f and its gradients for the loss Σ f(xs)·probe. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], probe: tf.Tensor): Float32Array[] {
  return tf.tidy(() => {
    const y = f(...xs).dataSync().slice() as Float32Array;
    const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(...a), probe)))(xs);
    return [y, ...grads.map((g) => g.dataSync().slice() as Float32Array)];
  });
}

test('fused decoder attention (GQA, RoPE, causal) equals the tfjs composition bit for bit, forward and backward', () => {
  const rng = new Rng(5);
  // The last shape spans several row chunks of the causal products (CAUSAL_ROW_CHUNK), at the reference head size.
  for (const [B, T, H, Hkv, hd] of [[2, 7, 6, 2, 4], [1, 5, 2, 2, 6], [2, 4, 4, 1, 2], [1, 150, 4, 2, 32]] as const) {
    const rope = ropeTables(T, hd);
    const q = uniform(rng, [B * T, H * hd], 2);
    const k = uniform(rng, [B * T, Hkv * hd], 2);
    const v = uniform(rng, [B * T, Hkv * hd], 2);
    const probe = uniform(rng, [B * T, H * hd]);
    const shape = { B, T, H, Hkv, hd, positions: null, segmentStart: null };
    const fused = valueAndGrads((a, b, c) => causalSelfAttention(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor2D, shape, rope), [q, k, v], probe);
    const composite = valueAndGrads((a, b, c) => decoderComposite(a!, b!, c!, B, T, H, Hkv, hd, rope), [q, k, v], probe);
    ['y', '∂q', '∂k', '∂v'].forEach((what, i) => assert.deepEqual(fused[i], composite[i], `${what} at B=${B} T=${T} H=${H} Hkv=${Hkv} hd=${hd}`));
  }
});

test('fused ViT attention equals the tfjs composition bit for bit, forward and backward', () => {
  const rng = new Rng(6);
  for (const [nImg, n, H, hd] of [[2, 8, 4, 3], [1, 5, 2, 4]] as const) {
    const qkv = uniform(rng, [nImg * n, 3 * H * hd], 2);
    const probe = uniform(rng, [nImg * n, H * hd]);
    const fused = valueAndGrads((x) => bidirectionalSelfAttention(x as tf.Tensor2D, nImg, n, H), [qkv], probe);
    const composite = valueAndGrads((x) => vitComposite(x!, nImg, n, H), [qkv], probe);
    assert.deepEqual(fused[0], composite[0], 'y');
    assert.deepEqual(fused[1], composite[1], '∂qkv');
  }
});


test('fused attention gradients match finite differences', () => {
  const rng = new Rng(7);
  const rope = ropeTables(4, 4);
  const shape = { B: 1, T: 4, H: 2, Hkv: 1, hd: 4, positions: null, segmentStart: null };
  checkGradients((q, k, v) => causalSelfAttention(q as tf.Tensor2D, k as tf.Tensor2D, v as tf.Tensor2D, shape, rope), [uniform(rng, [4, 8]), uniform(rng, [4, 4]), uniform(rng, [4, 4])], 'decoder');
  checkGradients((x) => bidirectionalSelfAttention(x as tf.Tensor2D, 2, 3, 2), [uniform(rng, [6, 12])], 'vit');
});
