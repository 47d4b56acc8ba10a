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

/**
 * GELU, tanh approximation (SigLIP's gelu_pytorch_tanh), elementwise over n values:
 *   t = tanh(c(x + 0.044715x³)),  y = ½x(1 + t),  c = √(2/π)
 * t (n) is kept for the backward; y is computed from t rounded to float32.
 */
export function geluForward(x: Float32Array, t: Float32Array, y: Float32Array, n: number): void {
  const fr = Math.fround;
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const th = (t[i] = fr(Math.tanh(GELU_C * (v + 0.044715 * v * v * v))));
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
export function addBiasRows(y: Float32Array, b: Float32Array, N: number, C: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) for (let c = 0; c < C; c++) y[o + c]! += b[c]!;
}

/** out[c] += Σ_n x[n, c] over the rows of x (N, C): the gradient of a broadcast bias. */
export function sumRowsInto(x: Float32Array, out: Float32Array, N: number, C: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) for (let c = 0; c < C; c++) out[c]! += x[o + c]!;
}
