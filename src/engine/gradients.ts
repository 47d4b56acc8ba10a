/**
 * Registers tfjs-core's own gradient functions (Sum, Softmax, GatherV2, …: every kernel
 * tfjs can differentiate). The package's Node entry point (the CommonJS bundle in `main`)
 * ships without them; upstream keeps them in `dist/register_all_gradients.js`, which
 * `@tensorflow/tfjs` and tfjs-layers import for their users. That file and its imports are
 * bundler-style ES modules, loaded here through ./tfjs-esm-hook.ts. They are a second copy
 * of tfjs-core's modules, but tfjs keeps the engine and the kernel and gradient registries
 * in one global namespace (and Tensor `instanceof` checks are structural), so what they
 * register is what the bundle's tf.grad / tf.variableGrads use. Costs about a second of
 * start-up, once per process.
 *
 * One of them is then wrapped: tfjs's BatchMatMul gradient does not sum over broadcast
 * batch dims, so e.g. tf.matMul((B,T,C), (C,N)) could not be differentiated. (The
 * gradient of tf.fused.matMul lives inside that op and keeps the limitation: give it
 * inputs with equal batch dims, or 2-D `a`.)
 */
import { register } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { UvuError } from '../util/errors.js';

const GRADIENTS_ENTRY = '@tensorflow/tfjs-core/dist/register_all_gradients.js';

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
  // Already there when @tensorflow/tfjs was loaded too.
  if (tf.getGradient(tf.Softmax) === undefined) {
    register('./tfjs-esm-hook.js', import.meta.url);
    await import(GRADIENTS_ENTRY);
  }
  fixBatchMatMulGradient();
}
