/**
 * Row gather and its gradient on the 'uvu-blas' backend:
 *   - GatherV2 along axis 0: row copies (the stock kernel maps every element's index separately);
 *   - UnsortedSegmentSum (the backward pass of gather: embedding lookups, visual-token placement):
 *     a direct scatter-add, O(N·D). The stock cpu kernel compares every segment against every row
 *     (O(numSegments·N·D)); with a vocabulary of a few thousand ids that one kernel took ~75 % of
 *     a training step.
 */
import { GatherV2, UnsortedSegmentSum, getKernel, util, type KernelConfig, type KernelFunc, type TensorInfo, type UnsortedSegmentSumAttrs, type UnsortedSegmentSumInputs } from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { UvuError } from '../util/errors.js';

/** out[s, :] = Σ_{i : ids[i] = s} x[i, :] for x [N, ...rest], ids [N] → out [numSegments, ...rest]. */
export function segmentSum(x: Float32Array, ids: ArrayLike<number>, N: number, D: number, numSegments: number): Float32Array {
  const out = new Float32Array(numSegments * D);
  for (let i = 0; i < N; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue; // tf semantics: out-of-range ids are dropped
    const src = i * D;
    const dst = s * D;
    for (let j = 0; j < D; j++) out[dst + j]! += x[src + j]!;
  }
  return out;
}

const unsortedSegmentSum: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as unknown as UnsortedSegmentSumInputs;
  const { numSegments } = attrs as unknown as UnsortedSegmentSumAttrs;
  const cpu = backend as MathBackendCPU;
  const xInfo = x as TensorInfo;
  const idsInfo = segmentIds as TensorInfo;
  if (xInfo.dtype !== 'float32' || idsInfo.shape.length !== 1 || idsInfo.shape[0] !== xInfo.shape[0]) {
    throw new UvuError(`src/engine/segment-kernels.ts: UnsortedSegmentSum supports float32 x [N, …] with ids [N], got x ${xInfo.dtype} [${xInfo.shape}] and ids [${idsInfo.shape}]`);
  }
  const N = xInfo.shape[0]!;
  const D = util.sizeFromShape(xInfo.shape.slice(1));
  const values = segmentSum(cpu.data.get(xInfo.dataId).values as Float32Array, cpu.data.get(idsInfo.dataId).values as Int32Array, N, D, numSegments);
  return cpu.makeTensorInfo([numSegments, ...xInfo.shape.slice(1)], 'float32', values);
};

/** out[i, :] = x[ids[i], :] for x [V, ...rest] and ids [n]; ids out of range are an error (as in tf). */
export function gatherRows(x: Float32Array | Int32Array, ids: ArrayLike<number>, V: number, D: number): Float32Array | Int32Array {
  const n = ids.length;
  const out = x instanceof Float32Array ? new Float32Array(n * D) : new Int32Array(n * D);
  for (let i = 0; i < n; i++) {
    const s = ids[i]!;
    if (!(s >= 0 && s < V)) throw new UvuError(`gather: index ${s} is outside [0, ${V})`);
    out.set(x.subarray(s * D, s * D + D), i * D);
  }
  return out;
}

const gatherV2: KernelFunc = (args) => {
  const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
  const { axis, batchDims } = args.attrs as unknown as { axis: number; batchDims: number };
  const ax = util.parseAxisParam(axis, x.shape)[0];
  if (ax !== 0 || (batchDims ?? 0) !== 0 || (x.dtype !== 'float32' && x.dtype !== 'int32') || indices.shape.length !== 1) {
    return getKernel(GatherV2, 'cpu')!.kernelFunc(args);
  }
  const cpu = args.backend as MathBackendCPU;
  const V = x.shape[0]!;
  const D = util.sizeFromShape(x.shape.slice(1));
  const ids = cpu.data.get(indices.dataId).values as Int32Array;
  const values = gatherRows(cpu.data.get(x.dataId).values as Float32Array | Int32Array, ids, V, D);
  return cpu.makeTensorInfo([indices.shape[0]!, ...x.shape.slice(1)], x.dtype, values);
};

export function segmentKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: GatherV2, backendName, kernelFunc: gatherV2 },
    { kernelName: UnsortedSegmentSum, backendName, kernelFunc: unsortedSegmentSum },
  ];
}
