/**
 * Single-precision matrix product through the machine's BLAS (loaded at first use with
 * koffi), with a pure-TypeScript fallback kernel when none can be loaded.
 *
 * Library choice: env UVU_BLAS=none forces the fallback; UVU_BLAS=/path/lib.so picks a
 * library; otherwise OpenBLAS / reference-ABI libblas on Linux, Accelerate on macOS.
 * OPENBLAS_* environment variables (core type, cache sizes) are left untouched: they are
 * the machine owner's tuning and both uvu and any comparison tool must run under them.
 */
import koffi, { type LibraryHandle } from 'koffi';
import { UsageError, warnOnce } from '../util/errors.js';
import { sgemmFallback, type SgemmFn } from './gemm-fallback.js';

export type { SgemmFn };

export type BlasBackend = 'openblas' | 'accelerate' | 'blas' | 'fallback';

export interface BlasInfo {
  backend: BlasBackend;
  /** Path or soname of the loaded library; null for the fallback. */
  library: string | null;
  /** Worker threads the library uses, when it can tell (OpenBLAS); otherwise null. */
  threads: number | null;
}

/** CBLAS enum values (cblas.h). */
const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

/** Rough speed ratio of OpenBLAS over the TypeScript kernel on a modern x86 core (measured by bench/search.ts). */
const FALLBACK_SLOWDOWN = 40;

interface LoadedBlas {
  info: Omit<BlasInfo, 'threads'>;
  native: ((...args: unknown[]) => void) | null;
  getThreads: (() => number) | null;
  setThreads: ((n: number) => void) | null;
}

let loaded: LoadedBlas | null = null;

function candidateLibraries(): { path: string; backend: BlasBackend }[] {
  const requested = process.env['UVU_BLAS'];
  if (requested && requested !== 'auto') {
    const lower = requested.toLowerCase();
    const backend: BlasBackend = lower.includes('openblas') ? 'openblas' : lower.includes('accelerate') ? 'accelerate' : 'blas';
    return [{ path: requested, backend }];
  }
  if (process.platform === 'darwin') {
    return [
      { path: '/System/Library/Frameworks/Accelerate.framework/Accelerate', backend: 'accelerate' },
      { path: 'libopenblas.dylib', backend: 'openblas' },
    ];
  }
  if (process.platform === 'win32') {
    return [{ path: 'libopenblas.dll', backend: 'openblas' }];
  }
  return [
    { path: 'libopenblas.so.0', backend: 'openblas' },
    { path: 'libopenblas.so', backend: 'openblas' },
    { path: 'libblas.so.3', backend: 'blas' },
  ];
}

function tryFunc(lib: LibraryHandle, decl: string): ((...args: unknown[]) => unknown) | null {
  try {
    return lib.func(decl) as (...args: unknown[]) => unknown;
  } catch {
    return null;
  }
}

function load(): LoadedBlas {
  if (loaded) return loaded;
  const fallback: LoadedBlas = { info: { backend: 'fallback', library: null }, native: null, getThreads: null, setThreads: null };
  if ((process.env['UVU_BLAS'] ?? '').toLowerCase() === 'none') {
    loaded = fallback;
    return loaded;
  }
  const tried: string[] = [];
  for (const cand of candidateLibraries()) {
    tried.push(cand.path);
    let lib: LibraryHandle;
    try {
      lib = koffi.load(cand.path);
    } catch {
      continue;
    }
    // Pointer parameters are declared as plain `float *`: koffi then passes a typed
    // array's memory (honouring its byteOffset) without copying in or out.
    const native = tryFunc(
      lib,
      'void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, float *A, int lda, float *B, int ldb, float beta, float *C, int ldc)',
    );
    if (!native) continue;
    const getThreads = tryFunc(lib, 'int openblas_get_num_threads(void)') as (() => number) | null;
    const setThreads = tryFunc(lib, 'void openblas_set_num_threads(int n)') as ((n: number) => void) | null;
    // A generic libblas.so.3 may be OpenBLAS behind the alternatives system.
    const backend: BlasBackend = cand.backend === 'blas' && getThreads ? 'openblas' : cand.backend;
    loaded = { info: { backend, library: cand.path }, native: native as (...args: unknown[]) => void, getThreads, setThreads };
    return loaded;
  }
  warnOnce(
    'no-blas',
    `no BLAS library found (tried ${tried.join(', ')}); using the TypeScript fallback kernel, ~${FALLBACK_SLOWDOWN}× slower`,
  );
  loaded = fallback;
  return loaded;
}

/** Which BLAS is in use (loads it on first call). */
export function blasInfo(): BlasInfo {
  const l = load();
  return { ...l.info, threads: l.getThreads ? l.getThreads() : null };
}

/** Set the BLAS worker thread count when the library supports it; returns whether it did. */
export function setBlasThreads(n: number): boolean {
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`BLAS thread count must be a positive integer, got ${n}`);
  const l = load();
  if (!l.setThreads) return false;
  l.setThreads(n);
  return true;
}

/**
 * Runs `fn` with the BLAS on `n` threads and restores the previous count afterwards, also when
 * `fn` fails. OpenBLAS keeps one thread count for the whole process (worker threads included), so
 * a caller that needs fewer threads for a while must put the count back: otherwise everything
 * that runs later on the main thread stays on `n` threads.
 */
export async function withBlasThreads<T>(n: number, fn: () => Promise<T>): Promise<T> {
  const l = load();
  const before = l.getThreads ? l.getThreads() : null;
  if (before === null || !setBlasThreads(n)) return fn();
  try {
    return await fn();
  } finally {
    setBlasThreads(before);
  }
}

/** Minimum array length holding a rows×cols row-major matrix with leading dimension ld. */
function checkMatrix(name: string, arr: Float32Array, rows: number, cols: number, ld: number): void {
  if (!(ld >= Math.max(1, cols))) throw new UsageError(`sgemm: leading dimension of ${name} is ${ld}, must be ≥ ${Math.max(1, cols)}`);
  if (rows > 0 && cols > 0 && arr.length < (rows - 1) * ld + cols) {
    throw new UsageError(`sgemm: ${name} holds ${arr.length} floats, needs ${(rows - 1) * ld + cols} for ${rows}×${cols} with ld ${ld}`);
  }
}

function checkArgs(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  C: Float32Array,
  ldc: number,
): void {
  for (const [name, v] of [['M', M], ['N', N], ['K', K]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new UsageError(`sgemm: ${name} must be a non-negative 32-bit integer, got ${v}`);
  }
  // Stored shapes: A is [M, K] (or [K, M] when transposed), B is [K, N] (or [N, K]), C is [M, N].
  checkMatrix('A', A, transA ? K : M, transA ? M : K, lda);
  checkMatrix('B', B, transB ? N : K, transB ? K : N, ldb);
  checkMatrix('C', C, M, N, ldc);
}

/**
 * C[M, N] = alpha · op(A) · op(B) + beta · C, row-major (cblas_sgemm with CblasRowMajor).
 * op(X) = Xᵀ when the trans flag is set. To start at an offset, pass a subarray view.
 * Bounds are checked before the call (native code must never read past an array).
 */
export const sgemm: SgemmFn = (transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) => {
  checkArgs(transA, transB, M, N, K, A, lda, B, ldb, C, ldc);
  if (M === 0 || N === 0) return;
  const l = load();
  if (!l.native) {
    sgemmFallback(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (K === 0) {
    // Some BLAS builds mishandle K = 0; the result is beta·C.
    sgemmFallback(transA, transB, M, N, 0, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  l.native(
    CBLAS_ROW_MAJOR,
    transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
    transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
    M,
    N,
    K,
    alpha,
    A,
    lda,
    B,
    ldb,
    beta,
    C,
    ldc,
  );
};

/** The fallback kernel behind the same bounds checks (for tests, benchmarks, and `backend: 'fallback'`). */
export const sgemmTs: SgemmFn = (transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) => {
  checkArgs(transA, transB, M, N, K, A, lda, B, ldb, C, ldc);
  sgemmFallback(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
};

/** The sgemm for a requested backend: 'auto' = native BLAS when available, 'fallback' = TypeScript kernel. */
export function sgemmFor(backend: 'auto' | 'fallback'): SgemmFn {
  return backend === 'fallback' ? sgemmTs : sgemm;
}
