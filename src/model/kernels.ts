/**
 * Buffer-level kernels of the tape-free training step (llm.c style): each forward next to its
 * backward, on flat row-major Float32Arrays the caller allocates once and reuses every step.
 * Activations are (N, C) row blocks; Linear weights are Hugging Face [out, in].
 *
 * Backward kernels accumulate into parameter gradients (+=), so a parameter used twice (the tied
 * embedding / head) or a gradient split over several passes adds up, and overwrite (=) the input
 * gradient unless told to accumulate, so residual streams can sum into one buffer.
 */
import { sgemm } from '../linalg/blas.js';

/**
 * Linear layer: y = x Wᵀ (+ b)
 *   x (N, inDim), W [outDim, inDim], b (outDim) or null, y (N, outDim)
 * One sgemm with the transpose flag (no explicit transpose), then the bias row added to each row.
 */
export function linearForward(x: Float32Array, W: Float32Array, b: Float32Array | null, y: Float32Array, N: number, inDim: number, outDim: number): void {
  sgemm(false, true, N, outDim, inDim, 1, x, inDim, W, inDim, 0, y, outDim);
  if (b) addBiasRows(y, b, N, outDim);
}

/**
 * Backward of linearForward, given dy (N, outDim):
 *   dW += dyᵀ x   [outDim, inDim]
 *   db += Σ_rows dy   (outDim), when db is given
 *   dx  = dy W    (N, inDim), when dx is given; += when accumulateDx
 */
export function linearBackward(
  dy: Float32Array,
  x: Float32Array,
  W: Float32Array,
  dx: Float32Array | null,
  dW: Float32Array,
  db: Float32Array | null,
  N: number,
  inDim: number,
  outDim: number,
  accumulateDx = false,
): void {
  sgemm(true, false, outDim, inDim, N, 1, dy, outDim, x, inDim, 1, dW, inDim);
  if (db) sumRowsInto(dy, db, N, outDim);
  if (dx) sgemm(false, false, N, inDim, outDim, 1, dy, outDim, W, inDim, accumulateDx ? 1 : 0, dx, inDim);
}

/**
 * LayerNorm over the rows of x (N, C), weight w and bias b (C):
 *   μ = mean(x),  r = 1/√(mean((x − μ)²) + eps),  x̂ = (x − μ)·r,  y = x̂ ⊙ w + b
 * μ and r per row go to mean, rstd (N) for the backward. Every step rounds to float32 where the
 * tfjs composition it replaces (UvuModel.layerNorm: mean, sub, square, mean, add, rsqrt, mul,
 * mul, add; tfjs's Mean divides each element by C, then sums in double) does, so y is
 * bit-identical to it.
 */
export function layerNormForward(x: Float32Array, w: Float32Array, b: Float32Array, y: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number, eps: number): void {
  const fr = Math.fround;
  const epsF = fr(eps);
  for (let n = 0, o = 0; n < N; n++, o += C) {
    let s = 0;
    for (let c = 0; c < C; c++) s += fr(x[o + c]! / C);
    const mu = fr(s);
    let v = 0;
    for (let c = 0; c < C; c++) {
      const xc = fr(x[o + c]! - mu);
      v += fr(fr(xc * xc) / C);
    }
    const r = fr(1 / Math.sqrt(fr(fr(v) + epsF)));
    mean[n] = mu;
    rstd[n] = r;
    for (let c = 0; c < C; c++) y[o + c] = fr(fr(fr(x[o + c]! - mu) * r) * w[c]!) + b[c]!;
  }
}

/**
 * Backward of layerNormForward, given dy (N, C) and the forward's x, mean, rstd:
 *   dw += Σ_rows dy ⊙ x̂,  db += Σ_rows dy
 *   dx  = r·(g − mean(g) − x̂·mean(g ⊙ x̂)),  g = dy ⊙ w   (= unless accumulateDx: +=)
 * dx may not alias dy.
 */
export function layerNormBackward(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  dx: Float32Array,
  dw: Float32Array,
  db: Float32Array,
  N: number,
  C: number,
  accumulateDx = false,
): void {
  for (let n = 0, o = 0; n < N; n++, o += C) {
    const mu = mean[n]!;
    const r = rstd[n]!;
    let sumG = 0;
    let sumGX = 0;
    for (let c = 0; c < C; c++) {
      const xhat = (x[o + c]! - mu) * r;
      const d = dy[o + c]!;
      const g = d * w[c]!;
      sumG += g;
      sumGX += g * xhat;
      dw[c]! += d * xhat;
      db[c]! += d;
    }
    const mG = sumG / C;
    const mGX = sumGX / C;
    for (let c = 0; c < C; c++) {
      const xhat = (x[o + c]! - mu) * r;
      const v = r * (dy[o + c]! * w[c]! - mG - xhat * mGX);
      if (accumulateDx) dx[o + c]! += v;
      else dx[o + c] = v;
    }
  }
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** 2^(j/32), j = 0 … 31, and 2^q, q = −64 … 63 (at index q + 64): the scale of tanhFast's e^x. */
const EXP2_FRAC = Float64Array.from({ length: 32 }, (_, j) => 2 ** (j / 32));
const EXP2_INT = Float64Array.from({ length: 128 }, (_, i) => 2 ** (i - 64));
/** ln2/32 split so that k·LN2_32_HI is exact for |k| < 2²⁰ (fdlibm's ln2_hi, ln2_lo over 32). */
const LN2_32_HI = 6.9314718036912381649e-1 / 32;
const LN2_32_LO = 1.90821492927058770002e-10 / 32;

/**
 * tanh(z) in double to ~5e-15 relative, in plain arithmetic (Math.tanh is a call into the C math
 * library, 2–3× the time of all of GELU's other work):
 *   tanh z = M / (M + 2),  M = e^{2z} − 1  (no cancellation for either sign of z)
 *   e^x − 1 = s·expm1(r) + (s − 1),  x = k·ln2/32 + r, |r| ≤ ln2/64, s = 2^(k/32)
 *   expm1(r) by its Taylor series through r⁶ (remainder < 4e-16 relative), Estrin's scheme
 * z is clamped to ±20, where tanh rounds to ±1 in double as Math.tanh returns. NaN gives NaN.
 * Straight-line, short-latency code (no data-dependent branches), so loops over it pipeline.
 */
function tanhFast(z: number): number {
  const x = 2 * Math.min(Math.max(z, -20), 20);
  const k = Math.floor(x * (32 * Math.LOG2E) + 0.5);
  const r = x - k * LN2_32_HI - k * LN2_32_LO;
  const r2 = r * r;
  const em = r + r2 * (0.5 + r * 0.16666666666666666) + r2 * r2 * (0.041666666666666664 + r * 0.008333333333333333 + r2 * 0.001388888888888889);
  const s = EXP2_FRAC[k & 31]! * EXP2_INT[(k >> 5) + 64]!;
  const M = s * em + (s - 1);
  return M / (M + 2);
}

/**
 * Relative distance within which tanhFast(z) and Math.tanh(z) both lie from tanh(z) with a wide
 * margin (their errors: ≤ 5e-15 measured, ≤ 2 ulp): when every value within it of tanhFast(z)
 * rounds to the same float32, that float32 is fround(Math.tanh(z)); otherwise (about 2 values in
 * 10⁵) Math.tanh decides. So the result is exactly what fround(Math.tanh(z)) gives.
 */
const TANH_TOL = 1e-12;

/** fround(Math.tanh(z)), bit for bit (up to the sign of a zero), at a fraction of its cost. */
export function tanhF32(z: number): number {
  const fr = Math.fround;
  const t = tanhFast(z);
  const f = fr(t);
  const d = TANH_TOL * t;
  return fr(t - d) === f && fr(t + d) === f ? f : fr(Math.tanh(z));
}

/**
 * GELU, tanh approximation (SigLIP's gelu_pytorch_tanh), elementwise over n values:
 *   t = tanh(c(x + 0.044715x³)),  y = ½x(1 + t),  c = √(2/π)
 * t (n) is kept, rounded to float32, for the backward; y is computed from it.
 */
export function geluForward(x: Float32Array, t: Float32Array, y: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const th = (t[i] = tanhF32(GELU_C * (v + 0.044715 * v * v * v)));
    y[i] = 0.5 * v * (1 + th);
  }
}

/**
 * Backward of geluForward: ∂x = dy · (½(1 + t) + ½x(1 − t²)·c(1 + 3·0.044715x²)).
 * dx may be dy itself (in place).
 */
export function geluBackward(dy: Float32Array, x: Float32Array, t: Float32Array, dx: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const th = t[i]!;
    dx[i] = dy[i]! * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * v * v));
  }
}

/** y[n, :] += b for every row n of y (N, C). */
function addBiasRows(y: Float32Array, b: Float32Array, N: number, C: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) for (let c = 0; c < C; c++) y[o + c]! += b[c]!;
}

/** out[c] += Σ_n x[n, c] over the rows of x (N, C): the gradient of a broadcast bias. */
function sumRowsInto(x: Float32Array, out: Float32Array, N: number, C: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) for (let c = 0; c < C; c++) out[c]! += x[o + c]!;
}

// ---------------------------------------------------------------- decoder kernels (train-step.ts)
// Each rounds where the tfjs op it replaces rounds (src/model/ops.ts, src/train/loss.ts, tf.add),
// so the tape and the tape-free step agree bit for bit where the operation order is the same.

/**
 * RMSNorm over rows of x (N, C) with weight w (C): y = x·r ⊙ w, r = 1/√(mean(x²) + eps).
 * rstd (N) keeps r (float32) for the backward pass; sums in double.
 */
export function rmsNormForward(x: Float32Array, w: Float32Array, y: Float32Array, rstd: Float32Array, N: number, C: number, eps: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[o + c]! * x[o + c]!;
    const r = (rstd[n] = 1 / Math.sqrt(ss / C + eps));
    for (let c = 0; c < C; c++) y[o + c] = x[o + c]! * r * w[c]!;
  }
}

/**
 * Backward of rmsNormForward, given dy (N, C):
 *   dw += Σ_rows dy ⊙ x·r
 *   dx  = r·(dy⊙w − x·r² · mean(dy⊙w⊙x)), or dx += that (rounded to float32 first, as a separate
 *         tf.add of the two gradients would) when accumulateDx: the residual stream's gradient.
 */
export function rmsNormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, dx: Float32Array, dw: Float32Array, N: number, C: number, accumulateDx = false): void {
  const fr = Math.fround;
  for (let n = 0, o = 0; n < N; n++, o += C) {
    const r = rstd[n]!;
    let dot = 0; // Σ_c dy·w·x
    for (let c = 0; c < C; c++) {
      dot += dy[o + c]! * w[c]! * x[o + c]!;
      dw[c]! += dy[o + c]! * x[o + c]! * r;
    }
    const k = (r * r * dot) / C;
    if (accumulateDx) for (let c = 0; c < C; c++) dx[o + c]! += fr(r * (dy[o + c]! * w[c]! - x[o + c]! * k));
    else for (let c = 0; c < C; c++) dx[o + c] = r * (dy[o + c]! * w[c]! - x[o + c]! * k);
  }
}

/**
 * SwiGLU gate over n values: y = silu(g) ⊙ u, silu(g) = g·σ(g); sig keeps σ(g) (float32).
 */
export function swigluForward(g: Float32Array, u: Float32Array, sig: Float32Array, y: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    sig[i] = 1 / (1 + Math.exp(-g[i]!));
    y[i] = g[i]! * sig[i]! * u[i]!;
  }
}

/** Backward of swigluForward: ∂g = dy · u · σ(g)(1 + g(1 − σ(g))),  ∂u = dy · silu(g). */
export function swigluBackward(dy: Float32Array, g: Float32Array, u: Float32Array, sig: Float32Array, dg: Float32Array, du: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const s = sig[i]!;
    dg[i] = dy[i]! * u[i]! * s * (1 + g[i]! * (1 - s));
    du[i] = dy[i]! * g[i]! * s;
  }
}

/** out = a + b elementwise over n values (float32 sums, as tf.add). */
export function addInto(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
}

/**
 * Per-row cross-entropy over logits (n, V), fused like llm.c's classifier:
 *   probs_i = softmax(logits_i),  loss_i = logsumexp(logits_i) − logits_i[target_i]
 * (exponentials and sums in double; probs and loss stored float32). probs may be logits itself.
 */
export function crossEntropyForward(logits: Float32Array, targets: ArrayLike<number>, probs: Float32Array, loss: Float32Array, n: number, V: number): void {
  for (let i = 0; i < n; i++) {
    const row = i * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[row + j]! > max) max = logits[row + j]!;
    const zt = logits[row + targets[i]!]!;
    let sum = 0;
    for (let j = 0; j < V; j++) sum += probs[row + j] = Math.exp(logits[row + j]! - max);
    for (let j = 0; j < V; j++) probs[row + j]! /= sum;
    loss[i] = Math.log(sum) + max - zt;
  }
}

/** Backward of crossEntropyForward given dLoss (n): ∂logits_i = (probs_i − onehot(target_i))·dLoss_i (dLogits may be probs). */
export function crossEntropyBackward(probs: Float32Array, targets: ArrayLike<number>, dLoss: ArrayLike<number>, dLogits: Float32Array, n: number, V: number): void {
  const fr = Math.fround;
  for (let i = 0; i < n; i++) {
    const row = i * V;
    const d = dLoss[i]!;
    const t = row + targets[i]!;
    const pt = probs[t]!; // read first: dLogits may be probs itself
    for (let j = 0; j < V; j++) dLogits[row + j] = probs[row + j]! * d;
    dLogits[t] = fr(pt - 1) * d;
  }
}

/** Embedding lookup: x[i, :] = table[ids[i], :] for the n rows of x (n, C). */
export function embeddingForward(table: Float32Array, ids: ArrayLike<number>, x: Float32Array, n: number, C: number): void {
  for (let i = 0; i < n; i++) x.set(table.subarray(ids[i]! * C, (ids[i]! + 1) * C), i * C);
}

/** Scratch of embeddingBackward for a table of V rows of C: per-row sums, and which rows were touched. */
export interface EmbeddingGradScratch {
  acc: Float32Array;
  touched: Uint8Array;
}

export function embeddingGradScratch(V: number, C: number): EmbeddingGradScratch {
  return { acc: new Float32Array(V * C), touched: new Uint8Array(V) };
}

/**
 * Backward of embeddingForward: dTable[v, :] += Σ_{i: ids[i] = v, keep[i]} dx[i, :] (all rows when
 * keep is null). Each row's sum is taken apart and then added, as the tape adds the gather
 * gradient (UnsortedSegmentSum, src/engine/segment-kernels.ts) to the tied head's.
 */
export function embeddingBackward(dx: Float32Array, ids: ArrayLike<number>, dTable: Float32Array, n: number, C: number, keep: Uint8Array | null, scratch: EmbeddingGradScratch): void {
  const { acc, touched } = scratch;
  for (let i = 0; i < n; i++) {
    if (keep && !keep[i]) continue;
    const v = ids[i]!;
    touched[v] = 1;
    for (let c = 0, o = v * C, r = i * C; c < C; c++) acc[o + c]! += dx[r + c]!;
  }
  for (let v = 0; v < touched.length; v++) {
    if (!touched[v]) continue;
    touched[v] = 0;
    for (let c = 0, o = v * C; c < C; c++) {
      dTable[o + c]! += acc[o + c]!;
      acc[o + c] = 0;
    }
  }
}
