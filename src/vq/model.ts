/**
 * The patch-level VQ-VAE of DESIGN.md §9 (van den Oord et al. 2017, "Neural Discrete
 * Representation Learning"), one 32×32×3 patch at a time:
 *
 *   x  [B,3072] unit floats (u8/255 via U8_TO_UNIT)
 *   z_e = enc2(act(enc1(x − ½)))                 [B,C]   C = codeDim
 *   k   = argmin_k ‖z_e − e_k‖²                   [B]     e = codebook [K,C]
 *   z_q = z_e + sg[e_k − z_e]                     straight-through estimator: value e_k, gradient to z_e
 *   x̂  = out(dec2(act(dec1(z_q))))               [B,3072] out = sigmoid or identity
 *   L   = mean(x̂ − x)² + mean(sg[z_e] − e_k)² + β·mean(z_e − sg[e_k])²
 *
 * Means are per element (like PyTorch's F.mse_loss), so the three terms have comparable
 * scales whatever B, C and the patch size. Weights are plain tf.Variables; dense layers are
 * x·W + b with W stored [in, out]. GELU and the output layer + reconstruction loss are fused
 * JS kernels with hand-written gradients (checked against tfjs autodiff in test/vq.test.ts):
 * composed of tfjs-cpu elementwise ops they cost more than all the step's matrix products.
 */
import { requireEngine, tf } from '../engine/tf.js';
import type { VqArch, VqConfig } from './config.js';
import { PATCH_DIM } from '../patches/patchify.js';
import type { Rng } from '../util/rng.js';

/** Parameter names, in file order. Dense weights are [in, out]. */
export const PARAM_NAMES = ['enc1.w', 'enc1.b', 'enc2.w', 'enc2.b', 'codebook', 'dec1.w', 'dec1.b', 'dec2.w', 'dec2.b'] as const;
export type ParamName = (typeof PARAM_NAMES)[number];
export type VqWeights = Record<ParamName, Float32Array>;

/** Shape of every parameter for an architecture. */
export function paramShapes(a: VqArch): Record<ParamName, number[]> {
  return {
    'enc1.w': [PATCH_DIM, a.hidden],
    'enc1.b': [a.hidden],
    'enc2.w': [a.hidden, a.codeDim],
    'enc2.b': [a.codeDim],
    codebook: [a.K, a.codeDim],
    'dec1.w': [a.codeDim, a.hidden],
    'dec1.b': [a.hidden],
    'dec2.w': [a.hidden, PATCH_DIM],
    'dec2.b': [PATCH_DIM],
  };
}

const numel = (shape: number[]): number => shape.reduce((p, d) => p * d, 1);

/**
 * Glorot-uniform dense weights and zero biases from a seeded Rng (tfjs-core has no seeded
 * initializers of its own). The codebook starts at zero: training seeds it from encoder outputs.
 */
export function randomWeights(a: VqArch, rng: Rng): VqWeights {
  const shapes = paramShapes(a);
  const w = {} as VqWeights;
  for (const name of PARAM_NAMES) {
    const shape = shapes[name];
    const data = new Float32Array(numel(shape));
    if (name.endsWith('.w')) {
      const limit = Math.sqrt(6 / (shape[0]! + shape[1]!));
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng.next() - 1) * limit;
    }
    w[name] = data;
  }
  return w;
}

/** Metadata carried with a model from training to its file: store fingerprint and measured metrics. */
export interface VqMeta {
  /** Fingerprint of the patch store it was trained on ('' when unknown). */
  data: string;
  /** Metrics measured after training (held-out MSE, PSNR, PRP, …). */
  metrics: Record<string, unknown>;
}

/** √(2/π), for the tanh approximation of GELU. */
const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh approximation: ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³), as one JS pass
 * that also keeps the derivative ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²) for the
 * backward pass (composed of tf ops it is a dozen elementwise kernels each way).
 */
export const gelu: (x: tf.Tensor) => tf.Tensor = tf.customGrad((xIn) => {
  const x = xIn as tf.Tensor;
  const xv = x.dataSync() as Float32Array;
  const y = new Float32Array(xv.length);
  const dydx = new Float32Array(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const v = xv[i]!;
    const t = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
    y[i] = 0.5 * v * (1 + t);
    dydx[i] = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * v * v);
  }
  return {
    value: tf.tensor(y, x.shape),
    gradFunc: (dy: tf.Tensor) => {
      const g = dy.dataSync() as Float32Array;
      const dx = new Float32Array(g.length);
      for (let i = 0; i < g.length; i++) dx[i] = g[i]! * dydx[i]!;
      return tf.tensor(dx, x.shape);
    },
  };
});

/** sg[·]: identity in the forward pass, zero gradient (tfjs-core has no stopGradient op). */
const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad((x) => ({
  value: (x as tf.Tensor).clone(),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
}));

/**
 * Fused output layer + reconstruction loss: mean((out(a + b) − x)²) over all B·3072 elements,
 * with a = h·W [B,3072] (the decoder's last matMul, without bias), b the bias [3072], and
 * out = sigmoid or identity. One JS pass gives the loss, dL/da (for sigmoid 2(p − x)·p(1 − p)/N)
 * and dL/db (column sums of dL/da). Done with tf ops, the broadcasts of the bias and of the
 * mean's gradient cost more than every matrix product of the step.
 */
export function outputReconLoss(a: tf.Tensor2D, bias: tf.Tensor1D, x: tf.Tensor2D, sigmoid: boolean): tf.Scalar {
  const op = tf.customGrad((aIn, bIn) => {
    const av = (aIn as tf.Tensor).dataSync() as Float32Array;
    const bv = (bIn as tf.Tensor).dataSync() as Float32Array;
    const xv = x.dataSync() as Float32Array;
    const D = bv.length;
    const n = av.length;
    const dA = new Float32Array(n);
    const dB = new Float32Array(D);
    let sum = 0;
    for (let i = 0; i < n; i += D) {
      for (let j = 0; j < D; j++) {
        const y = av[i + j]! + bv[j]!;
        const p = sigmoid ? 1 / (1 + Math.exp(-y)) : y;
        const d = p - xv[i + j]!;
        sum += d * d;
        const g = (2 * d * (sigmoid ? p * (1 - p) : 1)) / n;
        dA[i + j] = g;
        dB[j]! += g;
      }
    }
    return {
      value: tf.scalar(sum / n),
      gradFunc: (dy: tf.Tensor) => {
        const s = dy.dataSync()[0]!; // 1 unless the loss is scaled
        if (s !== 1) {
          for (let i = 0; i < n; i++) dA[i]! *= s;
          for (let j = 0; j < D; j++) dB[j]! *= s;
        }
        return [tf.tensor(dA, a.shape), tf.tensor(dB, bias.shape)];
      },
    };
  });
  return op(a, bias) as tf.Scalar;
}

/** Loss terms of one batch (scalars) plus what the trainer needs for code statistics and restarts. */
export interface VqForward {
  /** recon + codebook + β·commit, the quantity minimised. */
  total: tf.Scalar;
  /** mean (x̂ − x)², per element of the unit-range patch. */
  recon: tf.Scalar;
  /** mean (z_e − e_k)², per code dimension (the codebook and commitment terms share this value). */
  commit: tf.Scalar;
  /** Chosen code per patch [B] int32. */
  ids: tf.Tensor1D;
  /** Encoder outputs [B,C]. */
  ze: tf.Tensor2D;
}

export class VqModel {
  readonly K: number;
  readonly codeDim: number;
  readonly vars: Record<ParamName, tf.Variable>;
  meta: VqMeta = { data: '', metrics: {} };

  constructor(
    readonly config: VqConfig,
    weights: VqWeights,
  ) {
    requireEngine('VqModel');
    this.K = config.K;
    this.codeDim = config.codeDim;
    const shapes = paramShapes(config);
    const vars = {} as Record<ParamName, tf.Variable>;
    for (const name of PARAM_NAMES) {
      const shape = shapes[name];
      const data = weights[name];
      if (data.length !== numel(shape)) throw new Error(`VqModel: ${name} has ${data.length} values, shape ${JSON.stringify(shape)} needs ${numel(shape)}`);
      const init = tf.tensor(data, shape, 'float32');
      vars[name] = tf.variable(init, true);
      init.dispose();
    }
    this.vars = vars;
  }

  /** Trainable variables in PARAM_NAMES order. */
  variables(): tf.Variable[] {
    return PARAM_NAMES.map((n) => this.vars[n]);
  }

  private act(x: tf.Tensor2D): tf.Tensor2D {
    return (this.config.activation === 'relu' ? tf.relu(x) : gelu(x)) as tf.Tensor2D;
  }

  private dense(x: tf.Tensor2D, w: ParamName, b: ParamName): tf.Tensor2D {
    return tf.add(tf.matMul(x, this.vars[w] as tf.Tensor2D), this.vars[b]);
  }

  /** Encoder: unit-range patches [B,3072] → z_e [B,C]. Centring the input at ½ speeds training up markedly (zero-mean inputs condition the first layer). */
  encode(x: tf.Tensor2D): tf.Tensor2D {
    return this.dense(this.act(this.dense(tf.sub(x, 0.5) as tf.Tensor2D, 'enc1.w', 'enc1.b')), 'enc2.w', 'enc2.b');
  }

  /** Nearest code of each row of z [B,C] → ids [B] int32. ‖z‖² is the same for every k, so it is left out. */
  nearest(z: tf.Tensor2D): tf.Tensor1D {
    const e = this.vars.codebook as tf.Tensor2D;
    const eSq = tf.sum(tf.square(e), 1); // [K]
    const score = tf.sub(eSq, tf.mul(2, tf.matMul(z, e, false, true))); // [B,K] = ‖e_k‖² − 2 z·e_k
    return tf.argMin(score, 1) as tf.Tensor1D;
  }

  /** Code vectors of ids [B] → [B,C]. */
  codes(ids: tf.Tensor1D): tf.Tensor2D {
    return tf.gather(this.vars.codebook, ids) as tf.Tensor2D;
  }

  /** Decoder hidden layer: codes [B,C] → [B,hidden]. */
  private decodeHidden(z: tf.Tensor2D): tf.Tensor2D {
    return this.act(this.dense(z, 'dec1.w', 'dec1.b'));
  }

  /** Decoder: codes [B,C] → patches [B,3072] in unit range (linear output is not clamped here). */
  decode(z: tf.Tensor2D): tf.Tensor2D {
    const y = this.dense(this.decodeHidden(z), 'dec2.w', 'dec2.b');
    return this.config.output === 'sigmoid' ? tf.sigmoid(y) : y;
  }

  /** Loss of a batch x [B,3072]; differentiable with respect to every variable (call inside tf.variableGrads). */
  forward(x: tf.Tensor2D): VqForward {
    const ze = this.encode(x);
    // The choice of code is discrete: rebuild the ids from their values so the tape does not try
    // to differentiate gather with respect to its indices (tfjs fails on int32 gradients).
    const ids = tf.tensor1d(this.nearest(ze).dataSync() as Int32Array, 'int32');
    const e = this.codes(ids);
    const zq = tf.add(ze, stopGradient(tf.sub(e, ze))) as tf.Tensor2D; // straight-through
    const a = tf.matMul(this.decodeHidden(zq), this.vars['dec2.w'] as tf.Tensor2D) as tf.Tensor2D;
    const recon = outputReconLoss(a, this.vars['dec2.b'] as tf.Tensor1D, x, this.config.output === 'sigmoid');
    const codebookTerm = tf.mean(tf.squaredDifference(stopGradient(ze), e)) as tf.Scalar;
    const commit = tf.mean(tf.squaredDifference(ze, stopGradient(e))) as tf.Scalar;
    const total = tf.addN([recon, codebookTerm, tf.mul(this.config.beta, commit)]) as tf.Scalar;
    return { total, recon, commit, ids, ze };
  }

  /** Copy of every weight (for saving). */
  weights(): VqWeights {
    const w = {} as VqWeights;
    for (const name of PARAM_NAMES) w[name] = Float32Array.from(this.vars[name].dataSync() as Float32Array);
    return w;
  }

  /** Codebook as a copy [K·C]. */
  codebook(): Float32Array {
    return Float32Array.from(this.vars.codebook.dataSync() as Float32Array);
  }

  /** Replace the whole codebook [K·C] (initialisation, restarts). */
  setCodebook(values: Float32Array): void {
    if (values.length !== this.K * this.codeDim) throw new Error(`setCodebook: got ${values.length} values, need ${this.K}×${this.codeDim}`);
    const t = tf.tensor2d(values, [this.K, this.codeDim]);
    this.vars.codebook.assign(t);
    t.dispose();
  }

  dispose(): void {
    for (const v of Object.values(this.vars)) v.dispose();
  }
}
