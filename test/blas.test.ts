import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blasInfo, setBlasThreads, sgemm, sgemmTs } from '../src/linalg/blas.js';
import { AssignPool } from '../src/codebook/uvu/assign.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { buildPatchStore } from '../src/patches/build.js';
import { PatchStore } from '../src/patches/store.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { sgemmFallback } from '../src/linalg/gemm-fallback.js';
import { UsageError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';

function randomMatrix(rng: Rng, length: number): Float32Array {
  const a = new Float32Array(length);
  for (let i = 0; i < length; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

/** Float64 reference: C = alpha·op(A)·op(B) + beta·C, row-major. */
function naiveGemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) {
        const a = transA ? A[p * lda + i]! : A[i * lda + p]!;
        const b = transB ? B[j * ldb + p]! : B[p * ldb + j]!;
        s += a * b;
      }
      out[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * ldc + j]!);
    }
  }
  return out;
}

type Gemm = typeof sgemm;

/**
 * Runs `gemm` on views that start at an offset inside larger buffers, with leading
 * dimensions larger than the logical widths, and checks the result, the untouched
 * padding and the elements before the views.
 */
function checkGemm(gemm: Gemm, transA: boolean, transB: boolean, M: number, N: number, K: number, seed: number): void {
  const rng = new Rng(seed);
  const [aRows, aCols] = transA ? [K, M] : [M, K];
  const [bRows, bCols] = transB ? [N, K] : [K, N];
  const lda = aCols + 3;
  const ldb = bCols + 1;
  const ldc = N + 2;
  const offA = 5, offB = 7, offC = 3;
  const Abuf = randomMatrix(rng, offA + aRows * lda);
  const Bbuf = randomMatrix(rng, offB + bRows * ldb);
  const Cbuf = randomMatrix(rng, offC + M * ldc);
  const Cbefore = Cbuf.slice();
  const A = Abuf.subarray(offA);
  const B = Bbuf.subarray(offB);
  const C = Cbuf.subarray(offC);
  const alpha = -1.5, beta = 0.25;
  const expected = naiveGemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const tol = 1e-5 * K + 1e-6;
  for (let i = 0; i < offC; i++) assert.equal(Cbuf[i], Cbefore[i], 'element before the C view changed');
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < ldc; j++) {
      const got = C[i * ldc + j]!;
      if (j >= N) {
        assert.equal(got, Cbefore[offC + i * ldc + j], `padding C[${i}, ${j}] changed`);
        continue;
      }
      const want = expected[i * N + j]!;
      assert.ok(Math.abs(got - want) <= tol, `trans=${transA},${transB} ${M}×${N}×${K}: C[${i},${j}] = ${got}, expected ${want}`);
    }
  }
}

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [7, 5, 3],
  [13, 17, 31],
  [65, 33, 300], // crosses the fallback's MC and KC blocks
  [5, 1030, 9], // crosses the fallback's NC block
];

for (const [name, gemm] of [
  ['sgemm (native BLAS when present)', sgemm],
  ['sgemmTs (checked fallback)', sgemmTs],
  ['sgemmFallback (kernel, direct)', sgemmFallback],
] as [string, Gemm][]) {
  test(`${name} matches a float64 triple loop for every trans combination, odd sizes and offset views`, () => {
    let seed = 1;
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [M, N, K] of shapes) checkGemm(gemm, transA, transB, M, N, K, seed++);
      }
    }
  });
}

test('beta = 0 ignores NaN already in C; K = 0 scales C by beta', () => {
  for (const gemm of [sgemm, sgemmTs]) {
    const A = new Float32Array([1, 2, 3, 4]);
    const B = new Float32Array([1, 0, 0, 1]);
    const C = new Float32Array([NaN, NaN, NaN, NaN]);
    gemm(false, false, 2, 2, 2, 1, A, 2, B, 2, 0, C, 2);
    assert.deepEqual(Array.from(C), [1, 2, 3, 4]);
    gemm(false, false, 2, 2, 0, 1, A, 2, B, 2, 2, C, 2);
    assert.deepEqual(Array.from(C), [2, 4, 6, 8]);
  }
});

test('sgemm rejects buffers too short for the shape (native code must not read past them)', () => {
  const A = new Float32Array(6);
  const B = new Float32Array(6);
  const C = new Float32Array(4);
  assert.throws(() => sgemm(false, false, 2, 2, 4, 1, A, 4, B, 2, 0, C, 2), UsageError);
  assert.throws(() => sgemm(false, true, 2, 3, 3, 1, A, 3, B, 3, 0, C, 2), UsageError);
  assert.throws(() => sgemm(false, false, 2, 2, 3, 1, A, 2, B, 2, 0, C, 2), /leading dimension of A/);
  assert.throws(() => sgemm(false, false, -1, 2, 3, 1, A, 3, B, 2, 0, C, 2), /M must be/);
});

test('blasInfo reports a consistent backend', () => {
  const info = blasInfo();
  assert.ok(['openblas', 'accelerate', 'blas', 'fallback'].includes(info.backend));
  if (info.backend === 'fallback') assert.equal(info.library, null);
  else assert.equal(typeof info.library, 'string');
  if (info.threads !== null) assert.ok(info.threads >= 1);
});

test('UVU_BLAS=none selects the fallback, warns once, and still computes (child process)', () => {
  const blasUrl = new URL('../src/linalg/blas.js', import.meta.url).href;
  const script = `
    const { blasInfo, sgemm } = await import(${JSON.stringify(blasUrl)});
    const C = new Float32Array(4);
    sgemm(false, false, 2, 2, 2, 1, new Float32Array([1,2,3,4]), 2, new Float32Array([1,1,1,1]), 2, 0, C, 2);
    console.log(JSON.stringify({ info: blasInfo(), C: Array.from(C) }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, UVU_BLAS: 'none' },
    encoding: 'utf8',
  });
  const { info, C } = JSON.parse(out) as { info: { backend: string; library: null }; C: number[] };
  assert.equal(info.backend, 'fallback');
  assert.equal(info.library, null);
  assert.deepEqual(C, [3, 3, 7, 7]);
});

test('UVU_BLAS naming a missing library falls back with a one-line warning', () => {
  const blasUrl = new URL('../src/linalg/blas.js', import.meta.url).href;
  const script = `
    const { blasInfo } = await import(${JSON.stringify(blasUrl)});
    console.log(blasInfo().backend); blasInfo();`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, UVU_BLAS: '/nonexistent/libblas-missing.so' },
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout.trim(), 'fallback');
  const warnings = result.stderr.split('\n').filter((l) => l.includes('no BLAS library found'));
  assert.equal(warnings.length, 1, result.stderr);
  assert.match(warnings[0]!, /tried \/nonexistent\/libblas-missing\.so.*fallback kernel/);
});

test('assignment worker threads leave the main thread\'s BLAS thread count as it was', async (t) => {
  const original = blasInfo().threads;
  if (original === null) {
    t.skip('the BLAS in use has no thread-count API (not OpenBLAS)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'uvu-blas-threads-'));
  try {
    await buildPatchStore([bundledPhotoPath('nagasaki-boats')], { out: join(dir, 'store'), maxPixels: 256 * 256, progress: false });
    const store = PatchStore.open(join(dir, 'store'));
    const n = store.count;
    store.close();
    const K = 4;
    const centers = new Float32Array(K * PATCH_DIM).map((_, i) => (i % 7) / 7);
    const job = { indices: Uint32Array.from({ length: n }, (_, i) => i), centers, slots: Int32Array.from({ length: K }, (_, k) => k) };
    // A count the workers' single-threaded jobs cannot leave behind by accident.
    setBlasThreads(3);
    const pool = new AssignPool(join(dir, 'store'), NO_POSENC, 2, 16);
    try {
      const viaWorkers = await pool.run(job);
      assert.equal(blasInfo().threads, 3, 'the worker threads changed the process-wide BLAS thread count');
      const inProcess = new AssignPool(join(dir, 'store'), NO_POSENC, 1, 16);
      assert.deepEqual(await inProcess.run(job), viaWorkers);
      await inProcess.close();
    } finally {
      await pool.close();
    }
  } finally {
    setBlasThreads(original);
    rmSync(dir, { recursive: true, force: true });
  }
});
