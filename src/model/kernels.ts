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

/** y[n, :] += b for every row n of y (N, C). */
export function addBiasRows(y: Float32Array, b: Float32Array, N: number, C: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) for (let c = 0; c < C; c++) y[o + c]! += b[c]!;
}

/** out[c] += Σ_n x[n, c] over the rows of x (N, C): the gradient of a broadcast bias. */
export function sumRowsInto(x: Float32Array, out: Float32Array, N: number, C: number): void {
  for (let n = 0, o = 0; n < N; n++, o += C) for (let c = 0; c < C; c++) out[c]! += x[o + c]!;
}
