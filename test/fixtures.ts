import assert from 'node:assert/strict';
import { tf } from '../src/engine/tf.js';
import { Rng } from '../src/util/rng.js';
import type { Sequence } from '../src/data/sequence.js';

/**
 * Shared test fixtures and helpers. TEST_MODEL: the smallest model of the shape the code supports (ViT of one
 * layer, one decoder layer, GQA with 4 query / 2 key-value heads), small enough to train in seconds.
 */
export const TEST_MODEL = {
  vision_config: { hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 },
  projector_config: { hidden_size: 32 },
  text_config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64 },
};

/** A tensor of uniform values in [−scale, scale) from `rng`. */
export function uniform(rng: Rng, shape: number[], scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * rng.next() - 1) * scale;
  return tf.tensor(a, shape);
}

/** Every |got − want| ≤ tol · max|want| (the error relative to the reference's scale). */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= tol * scale, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

/** Central finite differences of sum(f(x)·probe) w.r.t. each input, compared with tf.grads. */
export function checkGradients(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], what: string, eps = 1e-2, tol = 2e-2): void {
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

/** The w×h crop at column x0 of the top rows of an RGB image (HWC, u8). */
export function cropRgb(image: { data: Uint8Array; width: number }, x0: number, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) out.set(image.data.subarray((y * image.width + x0) * 3, (y * image.width + x0 + w) * 3), y * w * 3);
  return out;
}

/** Two sequences as the two rows of a [2, T] batch (ids padded with `pad`, flags 0 past each sequence). */
export function twoRows(first: Sequence, second: Sequence, T: number, pad: number): { ids: Int32Array; flags: Uint8Array } {
  const ids = new Int32Array(2 * T).fill(pad);
  const flags = new Uint8Array(2 * T);
  ids.set(first.ids, 0);
  flags.set(first.flags, 0);
  ids.set(second.ids, T);
  flags.set(second.flags, T);
  return { ids, flags };
}
