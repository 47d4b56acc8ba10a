/**
 * The vision tower of the tape-free step, on the tfjs tape: VisionPart (train-step.ts) over
 * UvuModel.encodeImages. forward returns the features; backward differentiates
 * Σ features ⊙ ∂features with tf.variableGrads over the vision and projector parameters (its
 * gradient with respect to the features is exactly ∂features), which recomputes the forward.
 */
import { tf } from '../engine/tf.js';
import type { GradMap } from '../optim/adamw.js';
import { UvuError } from '../util/errors.js';
import type { ImageInput, UvuModel } from './model.js';
import type { VisionPart } from './train-step.js';

export class TapeVision implements VisionPart {
  private images: ImageInput[] = [];
  private readonly names: string[];

  constructor(private readonly model: UvuModel) {
    this.names = [...model.params.keys()].filter((n) => n.startsWith('visual.'));
  }

  forward(images: ImageInput[]): Float32Array {
    this.images = images;
    return tf.tidy(() => Float32Array.from(this.model.encodeImages(images).dataSync() as Float32Array));
  }

  backward(dFeatures: Float32Array, grads: GradMap): void {
    const C = this.model.config.text_config.hidden_size;
    const vars = this.names.map((n) => this.model.params.get(n)!);
    const { value, grads: g } = tf.variableGrads(() => tf.sum(tf.mul(this.model.encodeImages(this.images), tf.tensor2d(dFeatures, [dFeatures.length / C, C]))), vars);
    value.dispose();
    const byVar = new Map(this.names.map((n) => [this.model.params.get(n)!.name, n]));
    for (const [varName, t] of Object.entries(g)) {
      const name = byVar.get(varName)!;
      const dst = grads.get(name);
      if (!dst) throw new UvuError(`train step: no gradient buffer for ${name}`);
      const src = t.dataSync() as Float32Array;
      for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
      t.dispose();
    }
  }
}
