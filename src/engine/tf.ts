/**
 * The autograd engine: TensorFlow.js (tfjs-core 4.22) with its matrix products on the
 * machine's BLAS. All uvu code imports `tf` from here, never from '@tensorflow/*'.
 *
 * Backends, chosen with `initEngine`:
 *   'blas' → 'uvu-blas' (default): tfjs-backend-cpu's kernels, except BatchMatMul and
 *            _FusedMatMul, which call sgemm (./blas-kernels.ts); gradients of matMul are
 *            matMuls, so the backward pass runs on BLAS too. UnsortedSegmentSum (the
 *            gradient of gather) is a direct scatter-add (./segment-kernels.ts); broadcasting
 *            Add/Sub/Multiply/RealDiv, Softmax, Transpose and Sum have fast float32 paths
 *            (./elementwise-kernels.ts).
 *   'cpu'  → the stock 'cpu' backend, untouched (for comparison).
 *   'wasm' → the stock 'wasm' backend (single-threaded under Node), loaded on first request.
 *
 * Importing this module starts nothing. `initEngine(name)` does, once per process, before any tf
 * operation: it registers tfjs's gradient functions (./gradients.ts) and the BLAS backend, and
 * makes `name` the backend of what follows. Library functions that run tf check it was called
 * (`requireEngine`). The chained-op API (`x.sum()`) is not registered: write `tf.sum(x)`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { UsageError, UvuError } from '../util/errors.js';
import { blasKernelConfigs } from './blas-kernels.js';
import { segmentKernelConfigs } from './segment-kernels.js';
import { elementwiseKernelConfigs } from './elementwise-kernels.js';
import { registerTfjsGradients } from './gradients.js';

export { tf };

export type EngineName = 'blas' | 'cpu' | 'wasm';
export const ENGINE_NAMES: readonly EngineName[] = ['blas', 'cpu', 'wasm'];

/** The tfjs backend name behind each engine. */
export const BACKEND_OF: Readonly<Record<EngineName, string>> = { blas: 'uvu-blas', cpu: 'cpu', wasm: 'wasm' };

/** Above the stock backends' priorities (cpu 1, wasm 2), so tfjs also picks it by default. */
const BLAS_PRIORITY = 3;

/**
 * A MathBackendCPU prints "install tfjs-node to speed things up" on first use; uvu chose its
 * backend on purpose, so that banner is switched off (it is the only effect of `firstUse`).
 */
function withoutNodeBanner<T extends object>(backend: T): T {
  const b = backend as { firstUse?: unknown };
  if (typeof b.firstUse === 'boolean') b.firstUse = false;
  return backend;
}

function registerBlasBackend(): void {
  const name = BACKEND_OF.blas;
  if (tf.findBackendFactory(name)) return;
  tf.registerBackend(name, () => withoutNodeBanner(new MathBackendCPU()), BLAS_PRIORITY);
  tf.copyRegisteredKernels('cpu', name);
  for (const config of [...blasKernelConfigs(name), ...segmentKernelConfigs(name), ...elementwiseKernelConfigs(name)]) {
    tf.unregisterKernel(config.kernelName, name);
    tf.registerKernel(config);
  }
}

let started = false;

/**
 * Starts the engine (registers gradients and the BLAS backend, once) and makes `name` the backend
 * of every following tf operation; tensors made before move over when used. Call it again to
 * switch engines.
 */
export async function initEngine(name: EngineName = 'blas'): Promise<void> {
  if (!ENGINE_NAMES.includes(name)) throw new UsageError(`unknown engine '${String(name)}' (expected ${ENGINE_NAMES.join(', ')})`);
  if (!started) {
    await registerTfjsGradients();
    registerBlasBackend();
    started = true;
  }
  const backendName = BACKEND_OF[name];
  if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend(backendName))) {
    throw new UvuError(`src/engine/tf.ts: TensorFlow.js could not initialise its '${backendName}' backend`);
  }
  await tf.ready();
  withoutNodeBanner(tf.backend());
}

/** The engine tf operations run on now, or null before initEngine. */
export function activeEngine(): EngineName | null {
  if (!started) return null;
  const backendName = tf.getBackend();
  return ENGINE_NAMES.find((e) => BACKEND_OF[e] === backendName) ?? null;
}

/**
 * Fails unless initEngine ran (and, with `name`, unless that engine is the active one): without
 * it tfjs would quietly start its stock cpu backend, which has no gradients registered.
 */
export function requireEngine(who: string, name?: EngineName): void {
  const active = activeEngine();
  if (active === null) throw new UvuError(`${who}: the tensor engine is not started; call initEngine() (src/engine/tf.ts) first`);
  if (name !== undefined && active !== name) throw new UvuError(`${who}: asked for engine '${name}' but '${active}' is active; call initEngine('${name}') first`);
}

export interface KernelTime {
  /** tfjs kernel name, e.g. 'BatchMatMul'. */
  name: string;
  ms: number;
  calls: number;
}

export interface KernelProfile {
  /** Sum of kernel times (ms). */
  totalMs: number;
  /** Elapsed time of the whole call (ms): kernels plus the JS between them (tape, bookkeeping). */
  wallMs: number;
  /** Per kernel name, slowest first. */
  byKernel: KernelTime[];
}

/**
 * Runs `fn` under tf.profile and sums kernel times by kernel name, e.g. to report the share
 * of a training step spent in BatchMatMul/_FusedMatMul. Only registered kernels count:
 * composite ops with custom gradients (fused.matMul, softmaxCrossEntropy) also appear in
 * tfjs's profile, with times that include their kernels'. Every tensor `fn` makes is disposed.
 */
export async function profileKernels(fn: () => void | tf.Tensor | tf.Tensor[]): Promise<KernelProfile> {
  const backendName = tf.getBackend();
  const t0 = performance.now();
  const info = await tf.profile(() => {
    tf.tidy(() => {
      fn();
    });
  });
  const wallMs = performance.now() - t0;
  const byName = new Map<string, KernelTime>();
  let totalMs = 0;
  for (const k of info.kernels) {
    if (!tf.getKernel(k.name, backendName)) continue;
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : NaN;
    const entry = byName.get(k.name) ?? { name: k.name, ms: 0, calls: 0 };
    entry.ms += ms;
    entry.calls++;
    byName.set(k.name, entry);
    totalMs += ms;
  }
  const byKernel = [...byName.values()].sort((x, y) => y.ms - x.ms);
  return { totalMs, wallMs, byKernel };
}
