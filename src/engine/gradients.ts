/**
 * Registers TensorFlow.js's gradient functions (Sum, Softmax, GatherV2, …: every kernel tfjs can
 * differentiate). tfjs-core's Node entry point ships without them; the supported way to get them
 * is the `@tensorflow/tfjs` package, whose Node bundle registers them on the one tfjs-core module
 * instance (it requires '@tensorflow/tfjs-core' like we do). package.json pins every
 * @tensorflow package to the same exact version, so that npm installs a single tfjs-core: two
 * copies would each have their own registries. Loading it costs ~0.7 s, once, in initEngine.
 *
 * One of them is then wrapped: tfjs's BatchMatMul gradient does not sum over broadcast
 * batch dims, so e.g. tf.matMul((B,T,C), (C,N)) could not be differentiated. (The
 * gradient of tf.fused.matMul lives inside that op and keeps the limitation: give it
 * inputs with equal batch dims, or 2-D `a`.)
 */
import * as tf from '@tensorflow/tfjs-core';
import { UvuError } from '../util/errors.js';

/** Sums `grad` over the axes along which an input of `shape` was broadcast, back to `shape`. */
function sumToShape(grad: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, grad.shape);
  return axes.length === 0 ? grad : tf.reshape(tf.sum(grad, axes), shape);
}

function fixBatchMatMulGradient(): void {
  const upstream = tf.getGradient(tf.BatchMatMul);
  if (!upstream) throw new UvuError('src/engine/gradients.ts: tfjs-core registered no BatchMatMul gradient');
  tf.unregisterGradient(tf.BatchMatMul);
  tf.registerGradient({
    ...upstream,
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const grads = upstream.gradFunc(dy, saved, attrs);
      return { a: () => sumToShape(grads['a']!(), a.shape), b: () => sumToShape(grads['b']!(), b.shape) };
    },
  });
}

export async function registerTfjsGradients(): Promise<void> {
  await import('@tensorflow/tfjs');
  if (tf.getGradient(tf.Softmax) === undefined) {
    throw new UvuError('src/engine/gradients.ts: @tensorflow/tfjs registered no gradients on this tfjs-core (two tfjs-core copies installed? run npm ls @tensorflow/tfjs-core)');
  }
  fixBatchMatMulGradient();
}
