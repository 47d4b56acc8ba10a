/**
 * Float32 kernels for the 'uvu-blas' backend where tfjs-backend-cpu's generic code is the
 * bottleneck of a transformer step:
 *   - Add / Sub / Multiply / RealDiv with broadcasting: the stock kernel converts every output
 *     index to coordinates and back (arrays allocated per element) whenever shapes differ —
 *     RMSNorm, RoPE and bias gradients all broadcast. Here: an odometer over the outer dims and a
 *     strided inner loop.
 *   - Softmax over the last axis: one pass per row (max, exp, sum, scale) instead of five kernels
 *     with broadcasting.
 *   - Transpose: an odometer over the output with incremental input offsets.
 *   - Sum over a suffix or a prefix of the axes (row sums, and the bias/broadcast gradients)
 *     without first transposing the input.
 * Anything else (other dtypes, other axes) falls through to the stock cpu kernel.
 */
import {
  Add,
  Multiply,
  RealDiv,
  Softmax,
  Sub,
  Sum,
  Transpose,
  backend_util,
  broadcast_util,
  getKernel,
  util,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

const OPS = { [Add]: 0, [Sub]: 1, [Multiply]: 2, [RealDiv]: 3 } as const;

function values(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** The stock cpu kernel, looked up when first needed (the cpu backend registers on import). */
function stock(name: string): KernelFunc {
  return (args) => getKernel(name, 'cpu')!.kernelFunc(args);
}

/** Element strides of `shape` seen from `outShape` (0 along broadcast dimensions). */
function broadcastStrides(shape: number[], outShape: number[]): number[] {
  const strides = new Array<number>(outShape.length).fill(0);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const od = d + outShape.length - shape.length;
    if (shape[d] !== 1) strides[od] = s;
    s *= shape[d]!;
  }
  return strides;
}

/** out = a ∘ b under NumPy broadcasting, for op 0 add, 1 sub, 2 mul, 3 div. */
export function broadcastBinary(op: number, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[]): { out: Float32Array; shape: number[] } {
  const shape = broadcast_util.assertAndGetBroadcastShape(aShape, bShape);
  const size = util.sizeFromShape(shape);
  const out = new Float32Array(size);
  if (size === 0) return { out, shape };
  if (a.length === size && b.length === size) {
    // Same shapes (residual adds, gradient accumulation): one flat loop.
    switch (op) {
      case 0: for (let i = 0; i < size; i++) out[i] = a[i]! + b[i]!; break;
      case 1: for (let i = 0; i < size; i++) out[i] = a[i]! - b[i]!; break;
      case 2: for (let i = 0; i < size; i++) out[i] = a[i]! * b[i]!; break;
      default: for (let i = 0; i < size; i++) out[i] = a[i]! / b[i]!;
    }
    return { out, shape };
  }
  const r = shape.length;
  const sa = broadcastStrides(aShape, shape);
  const sb = broadcastStrides(bShape, shape);
  const inner = r > 0 ? shape[r - 1]! : 1;
  const ia = r > 0 ? sa[r - 1]! : 0;
  const ib = r > 0 ? sb[r - 1]! : 0;
  const idx = new Int32Array(Math.max(0, r - 1));
  let offA = 0;
  let offB = 0;
  for (let o = 0; o < size; o += inner) {
    switch (op) {
      case 0: for (let j = 0; j < inner; j++) out[o + j] = a[offA + j * ia]! + b[offB + j * ib]!; break;
      case 1: for (let j = 0; j < inner; j++) out[o + j] = a[offA + j * ia]! - b[offB + j * ib]!; break;
      case 2: for (let j = 0; j < inner; j++) out[o + j] = a[offA + j * ia]! * b[offB + j * ib]!; break;
      default: for (let j = 0; j < inner; j++) out[o + j] = a[offA + j * ia]! / b[offB + j * ib]!;
    }
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      offA += sa[d]!;
      offB += sb[d]!;
      if (idx[d]! < shape[d]!) break;
      offA -= sa[d]! * shape[d]!;
      offB -= sb[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return { out, shape };
}

function binaryKernel(name: keyof typeof OPS): KernelFunc {
  const fallback = stock(name);
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    const backend = args.backend as MathBackendCPU;
    const { out, shape } = broadcastBinary(OPS[name], values(backend, a), a.shape, values(backend, b), b.shape);
    return backend.makeTensorInfo(shape, 'float32', out);
  };
}

/** Softmax along the last axis, row by row. */
export function softmaxRows(x: Float32Array, D: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += D) {
    let max = -Infinity;
    for (let j = 0; j < D; j++) if (x[o + j]! > max) max = x[o + j]!;
    let sum = 0;
    for (let j = 0; j < D; j++) sum += out[o + j] = Math.exp(x[o + j]! - max);
    const inv = 1 / sum;
    for (let j = 0; j < D; j++) out[o + j]! *= inv;
  }
  return out;
}

const softmaxFallback = stock(Softmax);
const softmax: KernelFunc = (args) => {
  const { logits } = args.inputs as { logits: TensorInfo };
  const { dim } = args.attrs as unknown as { dim: number };
  const rank = logits.shape.length;
  if (logits.dtype !== 'float32' || rank === 0 || (dim !== -1 && dim !== rank - 1)) return softmaxFallback(args);
  const backend = args.backend as MathBackendCPU;
  return backend.makeTensorInfo(logits.shape, 'float32', softmaxRows(values(backend, logits), logits.shape[rank - 1]!));
};

/** out = x transposed by perm (out dim d is x dim perm[d]). */
export function transposeValues(x: Float32Array | Int32Array, shape: number[], perm: number[]): Float32Array | Int32Array {
  const r = shape.length;
  const outShape = perm.map((p) => shape[p]!);
  const size = x.length;
  const out = x instanceof Float32Array ? new Float32Array(size) : new Int32Array(size);
  if (size === 0) return out;
  const inStrides = new Array<number>(r);
  for (let d = r - 1, s = 1; d >= 0; d--) {
    inStrides[d] = s;
    s *= shape[d]!;
  }
  const st = perm.map((p) => inStrides[p]!); // input stride along each output dim
  const inner = outShape[r - 1]!;
  const si = st[r - 1]!;
  const idx = new Int32Array(Math.max(0, r - 1));
  let off = 0;
  for (let o = 0; o < size; o += inner) {
    for (let j = 0; j < inner; j++) out[o + j] = x[off + j * si]!;
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      off += st[d]!;
      if (idx[d]! < outShape[d]!) break;
      off -= st[d]! * outShape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

const transposeFallback = stock(Transpose);
const transpose: KernelFunc = (args) => {
  const { x } = args.inputs as { x: TensorInfo };
  const { perm } = args.attrs as unknown as { perm: number[] };
  if ((x.dtype !== 'float32' && x.dtype !== 'int32') || x.shape.length < 2) return transposeFallback(args);
  const backend = args.backend as MathBackendCPU;
  const v = backend.data.get(x.dataId).values as Float32Array | Int32Array;
  return backend.makeTensorInfo(perm.map((p) => x.shape[p]!), x.dtype, transposeValues(v, x.shape, perm));
};

const sumFallback = stock(Sum);
/** Sum over axes that form a suffix (row sums) or a prefix (column sums) of the shape. */
const sum: KernelFunc = (args) => {
  const { x } = args.inputs as { x: TensorInfo };
  const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
  if (x.dtype !== 'float32' || x.shape.length === 0) return sumFallback(args);
  const r = x.shape.length;
  const axes = util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
  const contiguous = axes.every((a, i) => i === 0 || a === axes[i - 1]! + 1);
  const suffix = contiguous && axes.length > 0 && axes[axes.length - 1] === r - 1;
  const prefix = contiguous && axes.length > 0 && axes[0] === 0;
  if (!suffix && !prefix) return sumFallback(args);
  const backend = args.backend as MathBackendCPU;
  const v = values(backend, x);
  const reduced = util.sizeFromShape(axes.map((a) => x.shape[a]!));
  const kept = v.length / Math.max(1, reduced);
  const out = new Float32Array(kept);
  if (suffix) {
    for (let o = 0; o < kept; o++) {
      let s = 0;
      for (let j = 0, base = o * reduced; j < reduced; j++) s += v[base + j]!;
      out[o] = s;
    }
  } else {
    for (let i = 0; i < reduced; i++) for (let j = 0, base = i * kept; j < kept; j++) out[j]! += v[base + j]!;
  }
  const outShape = backend_util.computeOutAndReduceShapes(x.shape, axes)[0];
  const shape = keepDims ? backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
  return backend.makeTensorInfo(shape, 'float32', out);
};

export function elementwiseKernelConfigs(backendName: string): KernelConfig[] {
  return [
    ...(Object.keys(OPS) as (keyof typeof OPS)[]).map((name) => ({ kernelName: name, backendName, kernelFunc: binaryKernel(name) })),
    { kernelName: Softmax, backendName, kernelFunc: softmax },
    { kernelName: Transpose, backendName, kernelFunc: transpose },
    { kernelName: Sum, backendName, kernelFunc: sum },
  ];
}
