/**
 * TensorFlow.js kernels for BatchMatMul and _FusedMatMul on the 'uvu-blas' backend (a
 * MathBackendCPU whose other kernels are the stock cpu ones): the matrix products go to
 * sgemm (src/linalg/blas.ts), everything else behaves like tfjs-backend-cpu.
 *
 * Tensor data is used in place: inputs are read as the backend's own Float32Arrays (passed
 * to BLAS as subarray views; koffi hands native code the view's memory, byteOffset
 * included, without copying), and the output array BLAS writes is the one the result
 * tensor keeps. Bias and activation of _FusedMatMul are applied in that same array.
 */
import {
  BatchMatMul,
  _FusedMatMul,
  broadcast_util,
  getKernel,
  util,
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
  type _FusedMatMulAttrs,
  type _FusedMatMulInputs,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { sgemm } from '../linalg/blas.js';
import { UvuError } from '../util/errors.js';

type Activation = _FusedMatMulAttrs['activation'];

/** The stock cpu kernel of that name (used for non-float32 inputs and unusual broadcasts). */
function cpuKernel(kernelName: string): KernelFunc {
  const config = getKernel(kernelName, 'cpu');
  if (!config) throw new UvuError(`src/engine/blas-kernels.ts: the cpu backend has no ${kernelName} kernel (import @tensorflow/tfjs-backend-cpu first)`);
  return config.kernelFunc;
}

/** The Float32Array a cpu-style backend keeps for a float32 tensor (no copy). */
function f32Values(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const values = backend.data.get(t.dataId).values;
  if (!(values instanceof Float32Array)) throw new UvuError(`src/engine/blas-kernels.ts: float32 tensor [${t.shape}] is not backed by a Float32Array`);
  return values;
}

/**
 * For each flat index of `outShape`, the flat index of `inShape` it reads under NumPy
 * broadcasting (shapes aligned on the right, size-1 dimensions repeated).
 */
function broadcastSource(inShape: number[], outShape: number[]): Int32Array {
  const n = util.sizeFromShape(outShape);
  const src = new Int32Array(n);
  const lead = outShape.length - inShape.length;
  const inStrides = [...util.computeStrides(inShape), 1]; // element strides of inShape
  for (let i = 0; i < n; i++) {
    let rest = i;
    let s = 0;
    for (let d = outShape.length - 1; d >= 0; d--) {
      const size = outShape[d]!;
      const coord = rest % size;
      rest = (rest - coord) / size;
      const di = d - lead;
      if (di >= 0 && inShape[di] !== 1) s += coord * inStrides[di]!;
    }
    src[i] = s;
  }
  return src;
}

/** Result of a batched product: values [...batch, M, N] row-major and that shape. */
interface Product {
  values: Float32Array;
  shape: number[];
}

/**
 * op(A)·op(B) for every batch: a is [...batchA, M, K] ([..., K, M] when transposeA), b is
 * [...batchB, K, N] ([..., N, K] when transposeB); the batch dims broadcast against each
 * other (rank ≥ 2 each). Output [...broadcast(batchA, batchB), M, N].
 */
function batchedProduct(backend: MathBackendCPU, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): Product {
  const rankA = a.shape.length;
  const rankB = b.shape.length;
  util.assert(rankA >= 2 && rankB >= 2, () => `Error in matMul: inputs must have rank ≥ 2, got ranks ${rankA} and ${rankB}.`);
  const M = transposeA ? a.shape[rankA - 1]! : a.shape[rankA - 2]!;
  const K = transposeA ? a.shape[rankA - 2]! : a.shape[rankA - 1]!;
  const kB = transposeB ? b.shape[rankB - 1]! : b.shape[rankB - 2]!;
  const N = transposeB ? b.shape[rankB - 2]! : b.shape[rankB - 1]!;
  util.assert(
    K === kB,
    () => `Error in matMul: inner shapes (${K}) and (${kB}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const batchShape = broadcast_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
  const shape = [...batchShape, M, N];
  const batch = util.sizeFromShape(batchShape);
  const values = new Float32Array(batch * M * N);
  if (values.length === 0 || K === 0) return { values, shape }; // empty sums are 0

  const A = f32Values(backend, a);
  const B = f32Values(backend, b);
  const lda = a.shape[rankA - 1]!; // row length of A as stored
  const ldb = b.shape[rankB - 1]!;
  const batchA = util.sizeFromShape(batchShapeA);
  const batchB = util.sizeFromShape(batchShapeB);
  if (batchB === 1 && batchA === batch && !transposeA) {
    // One B for every batch (a linear layer on (B,T,C) activations): A's batches stacked
    // are one (batch·M)×K matrix, so a single large sgemm does it all.
    sgemm(false, transposeB, batch * M, N, K, 1, A, lda, B, ldb, 0, values, N);
    return { values, shape };
  }
  const srcA = broadcastSource(batchShapeA, batchShape);
  const srcB = broadcastSource(batchShapeB, batchShape);
  const sizeA = M * K;
  const sizeB = K * N;
  const sizeC = M * N;
  for (let i = 0; i < batch; i++) {
    const ia = srcA[i]! * sizeA;
    const ib = srcB[i]! * sizeB;
    sgemm(
      transposeA, transposeB, M, N, K, 1,
      A.subarray(ia, ia + sizeA), lda,
      B.subarray(ib, ib + sizeB), ldb,
      0, values.subarray(i * sizeC, (i + 1) * sizeC), N,
    );
  }
  return { values, shape };
}

/** Whether `v` broadcasts along the last axis only: float32, size 1 or N (last dim N), rank ≤ outRank. */
function isRowVector(v: TensorInfo, N: number, outRank: number): boolean {
  if (v.dtype !== 'float32' || v.shape.length > outRank) return false;
  const size = util.sizeFromShape(v.shape);
  return size === 1 || (size === N && v.shape[v.shape.length - 1] === N);
}

/** x[i, j] += bias[j] over rows of length N (bias of length 1 or N). */
function addRowVector(x: Float32Array, N: number, bias: Float32Array): void {
  if (bias.length === 1) {
    const b0 = bias[0]!;
    for (let i = 0; i < x.length; i++) x[i]! += b0;
    return;
  }
  for (let r = 0; r < x.length; r += N) {
    for (let j = 0; j < N; j++) x[r + j]! += bias[j]!;
  }
}

/** Elementwise activations, with the same formulas as tfjs-backend-cpu's kernels. */
function activateInPlace(x: Float32Array, activation: Activation, leakyAlpha: number): void {
  switch (activation) {
    case 'relu':
      for (let i = 0; i < x.length; i++) x[i] = Math.max(0, x[i]!);
      return;
    case 'relu6':
      for (let i = 0; i < x.length; i++) x[i] = Math.min(Math.max(0, x[i]!), 6);
      return;
    case 'elu':
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        x[i] = v >= 0 ? v : Math.exp(v) - 1;
      }
      return;
    case 'leakyrelu':
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        x[i] = v < 0 ? leakyAlpha * v : v;
      }
      return;
    case 'sigmoid':
      for (let i = 0; i < x.length; i++) x[i] = 1 / (1 + Math.exp(-x[i]!));
      return;
    default:
      throw new UvuError(`src/engine/blas-kernels.ts: activation '${activation}' is not elementwise`);
  }
}

/** x < 0 ? alpha[j]·x : x over rows of length N (alpha of length 1 or N). */
function preluRows(x: Float32Array, N: number, alpha: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v < 0) x[i] = (alpha.length === 1 ? alpha[0]! : alpha[i % N]!) * v;
  }
}

const batchMatMul: KernelFunc = (args) => {
  const { a, b } = args.inputs as BatchMatMulInputs;
  if (a!.dtype !== 'float32' || b!.dtype !== 'float32') return cpuKernel('BatchMatMul')(args);
  const backend = args.backend as MathBackendCPU;
  const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
  const { values, shape } = batchedProduct(backend, a!, b!, transposeA, transposeB);
  return backend.makeTensorInfo(shape, 'float32', values);
};

const fusedMatMul: KernelFunc = (args) => {
  const { a, b, bias, preluActivationWeights } = args.inputs as _FusedMatMulInputs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return cpuKernel('_FusedMatMul')(args);
  const backend = args.backend as MathBackendCPU;
  const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as unknown as _FusedMatMulAttrs;
  const product = batchedProduct(backend, a, b, transposeA, transposeB);
  const N = product.shape[product.shape.length - 1]!;
  const rank = product.shape.length;
  let out: TensorInfo = backend.makeTensorInfo(product.shape, 'float32', product.values);
  let values = product.values;

  // Anything other than a row vector (or scalar) goes through the cpu kernels, whose
  // broadcasting may also change the output shape.
  const replaceBy = (next: TensorInfo): void => {
    backend.disposeIntermediateTensorInfo(out);
    out = next;
    values = f32Values(backend, out);
  };
  if (bias) {
    if (isRowVector(bias, N, rank)) addRowVector(values, N, f32Values(backend, bias));
    else replaceBy(cpuKernel('Add')({ inputs: { a: out, b: bias }, backend }) as TensorInfo);
  }
  if (activation === 'prelu') {
    if (!preluActivationWeights) throw new UvuError('src/engine/blas-kernels.ts: prelu activation without preluActivationWeights');
    if (isRowVector(preluActivationWeights, N, rank)) preluRows(values, N, f32Values(backend, preluActivationWeights));
    else replaceBy(cpuKernel('Prelu')({ inputs: { x: out, alpha: preluActivationWeights }, backend }) as TensorInfo);
  } else if (activation && activation !== 'linear') {
    activateInPlace(values, activation, leakyreluAlpha ?? 0.2);
  }
  return out;
};

/** Kernel configs for a backend; register them after copying the cpu kernels. */
export function blasKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: BatchMatMul, backendName, kernelFunc: batchMatMul },
    { kernelName: _FusedMatMul, backendName, kernelFunc: fusedMatMul },
  ];
}
