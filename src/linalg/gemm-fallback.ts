/**
 * Pure-TypeScript single-precision GEMM, used when no native BLAS library can be loaded
 * (or when forced with UVU_BLAS=none). Same contract as cblas_sgemm with CblasRowMajor:
 *
 *   C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C
 *
 * where op(A) = A ([M, K], row stride lda) or Aᵀ (A stored [K, M], row stride lda), and
 * likewise for B. Offsets are expressed by passing subarray views.
 *
 * Structure (after Goto/BLIS): the K dimension is split into blocks of KC, N into blocks
 * of NC and M into blocks of MC; each block of op(A) and op(B) is packed into contiguous
 * float64 micro-panels of MR rows / NR columns, so the 4×4 micro-kernel reads both
 * operands sequentially whatever the transposition, and keeps its 16 accumulators in
 * registers (float64 locals). Packing makes all four trans combinations equally fast.
 */

/** Row-major sgemm signature shared by the native binding and the fallback kernel. */
export type SgemmFn = (
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
) => void;

/** Register tile: 4 rows of op(A) × 4 columns of op(B) per micro-kernel call. */
const MR = 4;
const NR = 4;
/** Cache blocks (in elements): a KC×NC panel of B (≈ 256·1024·8 B = 2 MB) stays in L2/L3, an MC×KC panel of A (≈ 64·256·8 B = 128 KB) in L2. */
const KC = 256;
const MC = 64;
const NC = 1024;

let packedA = new Float64Array(MC * KC);
let packedB = new Float64Array(KC * NC);
/** One MR×NR tile of results, used for edge tiles only. */
const edgeTile = new Float64Array(MR * NR);

/**
 * Pack op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row micro-panels: panel r holds, for each p,
 * the MR values op(A)[i0 + r·MR + t, p0 + p] (t = 0..MR-1) contiguously; rows beyond mc are zero.
 */
function packA(transA: boolean, A: Float32Array, lda: number, i0: number, mc: number, p0: number, kc: number): void {
  const panels = Math.ceil(mc / MR);
  if (packedA.length < panels * MR * kc) packedA = new Float64Array(panels * MR * kc);
  const dst = packedA;
  for (let panel = 0; panel < panels; panel++) {
    const base = panel * MR * kc;
    for (let t = 0; t < MR; t++) {
      const i = panel * MR + t;
      if (i >= mc) {
        for (let p = 0; p < kc; p++) dst[base + p * MR + t] = 0;
        continue;
      }
      const row = i0 + i;
      if (!transA) {
        const src = row * lda + p0;
        for (let p = 0; p < kc; p++) dst[base + p * MR + t] = A[src + p]!;
      } else {
        let src = p0 * lda + row;
        for (let p = 0; p < kc; p++, src += lda) dst[base + p * MR + t] = A[src]!;
      }
    }
  }
}

/**
 * Pack op(B)[p0 : p0+kc, j0 : j0+nc] into NR-column micro-panels: panel s holds, for each
 * p, the NR values op(B)[p0 + p, j0 + s·NR + t] contiguously; columns beyond nc are zero.
 */
function packB(transB: boolean, B: Float32Array, ldb: number, p0: number, kc: number, j0: number, nc: number): void {
  const panels = Math.ceil(nc / NR);
  if (packedB.length < panels * NR * kc) packedB = new Float64Array(panels * NR * kc);
  const dst = packedB;
  for (let panel = 0; panel < panels; panel++) {
    const base = panel * NR * kc;
    for (let t = 0; t < NR; t++) {
      const j = panel * NR + t;
      if (j >= nc) {
        for (let p = 0; p < kc; p++) dst[base + p * NR + t] = 0;
        continue;
      }
      const col = j0 + j;
      if (!transB) {
        let src = p0 * ldb + col;
        for (let p = 0; p < kc; p++, src += ldb) dst[base + p * NR + t] = B[src]!;
      } else {
        const src = col * ldb + p0;
        for (let p = 0; p < kc; p++) dst[base + p * NR + t] = B[src + p]!;
      }
    }
  }
}

/**
 * C[M, N] = alpha · op(A) · op(B) + beta · C, row-major, single precision storage with
 * float64 accumulation inside each KC block. Arguments as cblas_sgemm (RowMajor);
 * validation of sizes is the caller's job (see `sgemm` in blas.ts).
 */
export const sgemmFallback: SgemmFn = (transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) => {
  if (M <= 0 || N <= 0) return;
  // Apply beta once up front; every K block then accumulates alpha·(partial product).
  if (beta !== 1) {
    for (let i = 0; i < M; i++) {
      const row = i * ldc;
      if (beta === 0) C.fill(0, row, row + N);
      else for (let j = 0; j < N; j++) C[row + j] = beta * C[row + j]!;
    }
  }
  if (K <= 0 || alpha === 0) return;

  for (let j0 = 0; j0 < N; j0 += NC) {
    const nc = Math.min(NC, N - j0);
    for (let p0 = 0; p0 < K; p0 += KC) {
      const kc = Math.min(KC, K - p0);
      packB(transB, B, ldb, p0, kc, j0, nc);
      for (let i0 = 0; i0 < M; i0 += MC) {
        const mc = Math.min(MC, M - i0);
        packA(transA, A, lda, i0, mc, p0, kc);
        macroKernel(mc, nc, kc, alpha, C, (i0 * ldc) + j0, ldc);
      }
    }
  }
};

/** Multiply the packed mc×kc block of A by the packed kc×nc block of B and add alpha·result into C. */
function macroKernel(mc: number, nc: number, kc: number, alpha: number, C: Float32Array, cBase: number, ldc: number): void {
  const a = packedA;
  const b = packedB;
  for (let jr = 0; jr < nc; jr += NR) {
    const bBase = (jr / NR) * NR * kc;
    const fullCols = nc - jr >= NR;
    for (let ir = 0; ir < mc; ir += MR) {
      const aBase = (ir / MR) * MR * kc;
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
      let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
      let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      let ai = aBase;
      let bi = bBase;
      for (let p = 0; p < kc; p++, ai += MR, bi += NR) {
        const a0 = a[ai]!, a1 = a[ai + 1]!, a2 = a[ai + 2]!, a3 = a[ai + 3]!;
        const b0 = b[bi]!, b1 = b[bi + 1]!, b2 = b[bi + 2]!, b3 = b[bi + 3]!;
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
      }
      const c = cBase + ir * ldc + jr;
      if (fullCols && mc - ir >= MR) {
        C[c] += alpha * c00; C[c + 1] += alpha * c01; C[c + 2] += alpha * c02; C[c + 3] += alpha * c03;
        const c1 = c + ldc;
        C[c1] += alpha * c10; C[c1 + 1] += alpha * c11; C[c1 + 2] += alpha * c12; C[c1 + 3] += alpha * c13;
        const c2 = c1 + ldc;
        C[c2] += alpha * c20; C[c2 + 1] += alpha * c21; C[c2 + 2] += alpha * c22; C[c2 + 3] += alpha * c23;
        const c3 = c2 + ldc;
        C[c3] += alpha * c30; C[c3 + 1] += alpha * c31; C[c3 + 2] += alpha * c32; C[c3 + 3] += alpha * c33;
      } else {
        // Edge tile: write only the rows/columns that exist.
        const t = edgeTile;
        t[0] = c00; t[1] = c01; t[2] = c02; t[3] = c03;
        t[4] = c10; t[5] = c11; t[6] = c12; t[7] = c13;
        t[8] = c20; t[9] = c21; t[10] = c22; t[11] = c23;
        t[12] = c30; t[13] = c31; t[14] = c32; t[15] = c33;
        const rows = Math.min(MR, mc - ir);
        const cols = Math.min(NR, nc - jr);
        for (let r = 0; r < rows; r++) {
          for (let s = 0; s < cols; s++) C[c + r * ldc + s] += alpha * t[r * NR + s]!;
        }
      }
    }
  }
}
