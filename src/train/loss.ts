/**
 * The joint objective of DESIGN §6: L = w_img·L_image + w_text·L_text, each a mean cross-entropy
 * over its supervised positions. Logits are computed only at supervised positions (in SFT that is a
 * few answer tokens per row), which keeps the (n, V) head product small.
 */
import { tf } from '../engine/tf.js';
import type { ModelInputs, UvuModel } from '../model/model.js';
import type { LossTargets, LossWeights } from '../model/train-step.js';
import { crossEntropyBackward, crossEntropyForward } from '../model/kernels.js';
import { UvuError } from '../util/errors.js';

export type { LossTargets, LossWeights } from '../model/train-step.js';

export interface LossParts {
  /** w_img·L_image + w_text·L_text (a term whose weight is 0 is left out entirely). */
  total: tf.Scalar;
  /** Mean CE over supervised image-code targets (0 when there are none or w_img = 0). */
  image: tf.Scalar;
  /** Mean CE over supervised text/special targets. */
  text: tf.Scalar;
}

/** Counts of supervised positions, for logging. */
export function supervisedCounts(t: LossTargets): { image: number; text: number } {
  let image = 0;
  let text = 0;
  for (let i = 0; i < t.targets.length; i++) {
    image += t.imageMask[i]!;
    text += t.textMask[i]!;
  }
  return { image, text };
}

/** Forward pass and loss for one batch (call inside tf.tidy or a gradient function). */
export function unifiedLoss(model: UvuModel, inputs: ModelInputs, t: LossTargets, w: LossWeights): LossParts {
  // Rows that carry a supervised target under these weights.
  const rows: number[] = [];
  for (let i = 0; i < t.targets.length; i++) {
    if ((w.text > 0 && t.textMask[i]! > 0) || (w.image > 0 && t.imageMask[i]! > 0)) rows.push(i);
  }
  const zero = tf.scalar(0);
  if (rows.length === 0) return { total: zero, image: zero, text: zero };
  const n = rows.length;
  const targets = new Int32Array(n);
  const textMask = new Float32Array(n);
  const imageMask = new Float32Array(n);
  let nText = 0;
  let nImage = 0;
  rows.forEach((r, i) => {
    targets[i] = t.targets[r]!;
    textMask[i] = w.text > 0 ? t.textMask[r]! : 0;
    imageMask[i] = w.image > 0 ? t.imageMask[r]! : 0;
    nText += textMask[i]!;
    nImage += imageMask[i]!;
  });
  const hidden = tf.gather(model.forwardHidden(inputs), tf.tensor1d(Int32Array.from(rows), 'int32')) as tf.Tensor2D; // (n, C)
  const ce = crossEntropy(model.logits(hidden), targets); // (n)
  const text = nText > 0 ? tf.div(tf.sum(tf.mul(ce, tf.tensor1d(textMask))), nText) : zero;
  const image = nImage > 0 ? tf.div(tf.sum(tf.mul(ce, tf.tensor1d(imageMask))), nImage) : zero;
  const total = tf.add(tf.mul(text, w.text), tf.mul(image, w.image)) as tf.Scalar;
  return { total, image: image as tf.Scalar, text: text as tf.Scalar };
}

/**
 * Per-row cross-entropy, logits (n, V) → (n): ce_i = logsumexp(logits_i) − logits_i[target_i].
 * One fused pass per row, forward and backward (∂ce_i/∂logits_i = softmax_i − onehot(target_i)),
 * like llm.c's fused classifier: composing it from tfjs ops costs several (n, V) broadcasts.
 */
export function crossEntropy(logits: tf.Tensor2D, targets: Int32Array): tf.Tensor1D {
  const [n, V] = logits.shape;
  if (targets.length !== n) throw new UvuError(`crossEntropy: ${targets.length} targets for ${n} rows`);
  const fused = tf.customGrad((x) => {
    const probs = new Float32Array(n * V); // softmax, kept for the backward pass
    const loss = new Float32Array(n);
    crossEntropyForward((x as tf.Tensor2D).dataSync() as Float32Array, targets, probs, loss, n, V);
    return {
      value: tf.tensor1d(loss),
      gradFunc: (dy: tf.Tensor) => {
        crossEntropyBackward(probs, targets, dy.dataSync() as Float32Array, probs, n, V); // in place: the forward is done with probs
        return tf.tensor2d(probs, [n, V]);
      },
    };
  });
  return fused(logits) as tf.Tensor1D;
}
