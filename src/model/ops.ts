/**
 * Fused transformer ops with hand-written backward passes (llm.c style: forward and backward
 * side by side), as tf.customGrad functions so they compose with tfjs autograd. Each replaces
 * a chain of tfjs kernels that would each stream the whole tensor through memory:
 *
 *   swiglu         y = silu(g) ⊙ u                         decoder MLP, (N, I)
 *   gelu           y = GELU_tanh(x)                        ViT MLP, (N, I)
 *   rmsNorm        y = x / rms(x) ⊙ w                      decoder norms, (N, C)
 *
 * Values are computed in JS on the tensors' Float32Arrays (the engine is a CPU backend); swiglu and
 * rmsNorm are the buffer-level kernels of kernels.ts, which the tape-free step (train-step.ts) calls too.
 * Attention, with its softmax, is one fused op of its own (attention.ts).
 */
import { tf } from '../engine/tf.js';
import { geluBackward, geluForward, rmsNormBackward, rmsNormForward, swigluBackward, swigluForward } from './kernels.js';

const f32 = (t: tf.Tensor): Float32Array => t.dataSync() as Float32Array;

/**
 * SwiGLU gate: y = silu(g) ⊙ u, silu(g) = g·σ(g).
 *   backward: ∂g = dy · u · σ(g)(1 + g(1 − σ(g))),  ∂u = dy · silu(g)
 */
export function swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((g, u) => {
    const gv = f32(g as tf.Tensor);
    const uv = f32(u as tf.Tensor);
    const sig = new Float32Array(gv.length);
    const y = new Float32Array(gv.length);
    swigluForward(gv, uv, sig, y, gv.length);
    return {
      value: tf.tensor2d(y, gate.shape),
      gradFunc: (dy: tf.Tensor) => {
        const dg = new Float32Array(gv.length);
        const du = new Float32Array(gv.length);
        swigluBackward(f32(dy), gv, uv, sig, dg, du, gv.length);
        return [tf.tensor2d(dg, gate.shape), tf.tensor2d(du, gate.shape)];
      },
    };
  });
  return op(gate, up) as tf.Tensor2D;
}

/** GELU, tanh approximation (SigLIP's gelu_pytorch_tanh): geluForward / geluBackward (kernels.ts) as one tape node. */
export function gelu(x: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((xin) => {
    const xv = f32(xin as tf.Tensor);
    const t = new Float32Array(xv.length);
    const y = new Float32Array(xv.length);
    geluForward(xv, t, y, xv.length);
    return {
      value: tf.tensor2d(y, x.shape),
      gradFunc: (dy: tf.Tensor) => {
        const g = new Float32Array(xv.length);
        geluBackward(f32(dy), xv, t, g, xv.length);
        return tf.tensor2d(g, x.shape);
      },
    };
  });
  return op(x) as tf.Tensor2D;
}

/**
 * RMSNorm over rows of x (N, C) with weight w (C): y = x·r ⊙ w, r = 1/√(mean(x²) + eps).
 *   backward: ∂w = Σ_rows dy ⊙ x·r,  ∂x = r·(dy⊙w − x·r² · mean(dy⊙w⊙x))
 */
export function rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  const [N, C] = x.shape;
  const op = tf.customGrad((xin, win) => {
    const xv = f32(xin as tf.Tensor);
    const wv = f32(win as tf.Tensor);
    const rstd = new Float32Array(N);
    const y = new Float32Array(xv.length);
    rmsNormForward(xv, wv, y, rstd, N, C, eps);
    return {
      value: tf.tensor2d(y, [N, C]),
      gradFunc: (dy: tf.Tensor) => {
        const dx = new Float32Array(xv.length);
        const dw = new Float32Array(C);
        rmsNormBackward(f32(dy), xv, wv, rstd, dx, dw, N, C);
        return [tf.tensor2d(dx, [N, C]), tf.tensor1d(dw)];
      },
    };
  });
  return op(x, w) as tf.Tensor2D;
}
