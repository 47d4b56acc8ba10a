/**
 * Benchmark of exact nearest-codeword search (src/codebook/search.ts) against the raw
 * sgemm of the same BLAS and against Faiss IndexFlatL2 on the same data.
 *
 * Data: 32×32 RGB patches cut at random positions from the @stdlib photos (sampled with
 * replacement, plus uniform noise of ±2/255 so repeats are not exact duplicates); the
 * centres are a second, independent sample. Sizes: full = 20,000 queries × 8,192
 * centres, small = 2,000 × 1,024; D = 3072. Each tool: best of 3 runs.
 *
 * Standalone: node dist/bench/search.js [--size small|full]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeRgb } from '../src/image/io.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { FlatIndex } from '../src/codebook/search.js';
import { blasInfo, sgemm, sgemmTs } from '../src/linalg/blas.js';
import { Rng } from '../src/util/rng.js';
import { readNpyI32, writeNpyF32 } from '../src/patches/npy.js';
import { bestOf, formatRows, type BenchRow, type BenchSize } from './rows.js';

const P = 32;
const D = 3 * P * P;
const REPEATS = 3;
const FAISS_PYTHON = '/usr/bin/python3';
const FAISS_SCRIPT = fileURLToPath(new URL('../../bench/faiss_search.py', import.meta.url));

interface Photo {
  data: Uint8Array;
  width: number;
  height: number;
}

/** The bundled photos at native size (decoded by the library's own loader). */
async function loadPhotos(): Promise<Photo[]> {
  const photos: Photo[] = [];
  for (const name of BUNDLED_PHOTOS) {
    const img = await decodeRgb(bundledPhotoPath(name));
    if (img.width >= P && img.height >= P) photos.push({ data: img.data, width: img.width, height: img.height });
  }
  return photos;
}

/** n patches [n, D] as floats u8/255 + uniform noise in ±2/255, clamped to [0, 1]. */
function samplePatches(photos: Photo[], n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n * D);
  const noise = 2 / 255;
  for (let s = 0; s < n; s++) {
    const photo = photos[rng.int(photos.length)]!;
    const y0 = rng.int(photo.height - P + 1);
    const x0 = rng.int(photo.width - P + 1);
    let o = s * D;
    for (let y = 0; y < P; y++) {
      let src = ((y0 + y) * photo.width + x0) * 3;
      for (let i = 0; i < P * 3; i++, o++, src++) {
        const v = photo.data[src]! / 255 + (2 * rng.next() - 1) * noise;
        out[o] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return out;
}

interface FaissResult {
  seconds: number;
  ids: Int32Array;
  version: string;
  ompThreads: number;
}

function runFaiss(queries: Float32Array, n: number, centers: Float32Array, K: number): FaissResult | string {
  if (!existsSync(FAISS_PYTHON)) return `${FAISS_PYTHON} not found`;
  const dir = mkdtempSync(join(tmpdir(), 'uvu-bench-search-'));
  try {
    writeNpyF32(join(dir, 'q.npy'), queries, [n, D]);
    writeNpyF32(join(dir, 'c.npy'), centers, [K, D]);
    let stdout: string;
    try {
      stdout = execFileSync(FAISS_PYTHON, [FAISS_SCRIPT, join(dir, 'q.npy'), join(dir, 'c.npy'), join(dir, 'ids.npy'), String(REPEATS)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: process.env,
      });
    } catch (err) {
      const e = err as { status?: number; stdout?: string };
      return e.status === 3 ? `faiss not installed for ${FAISS_PYTHON}` : `faiss run failed: ${String(e.stdout ?? err).trim()}`;
    }
    const parsed = JSON.parse(stdout.trim().split('\n').pop()!) as { best_s: number; faiss: string; omp_threads: number };
    return { seconds: parsed.best_s, ids: readNpyI32(join(dir, 'ids.npy')).data, version: parsed.faiss, ompThreads: parsed.omp_threads };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(opts: { size: BenchSize }): Promise<BenchRow[]> {
  const full = opts.size === 'full';
  const n = full ? 20_000 : 2_000;
  const K = full ? 8_192 : 1_024;
  const chunkQueries = 1024;
  const chunkCenters = 4096;
  const flop = 2 * n * K * D;
  const info = blasInfo();
  const env = `OPENBLAS_CORETYPE=${process.env['OPENBLAS_CORETYPE'] ?? '(unset)'}`;
  const blasNote = `${info.backend} ${info.library ?? ''} threads=${info.threads ?? '?'}; ${env}`.replace('  ', ' ');
  const shape = `n=${n} K=${K} D=${D}`;
  const rows: BenchRow[] = [];

  const photos = await loadPhotos();
  const queries = samplePatches(photos, n, new Rng(1));
  const centers = samplePatches(photos, K, new Rng(2));

  // Raw sgemm on the same blocks the search uses (no argmin), to separate BLAS speed from
  // our overhead. Repetitions alternate with the search's so background load hits both alike.
  const scores = new Float32Array(chunkQueries * Math.min(chunkCenters, K));
  const rawSgemm = (): void => {
    for (let q0 = 0; q0 < n; q0 += chunkQueries) {
      const qr = Math.min(chunkQueries, n - q0);
      for (let c0 = 0; c0 < K; c0 += chunkCenters) {
        const cc = Math.min(chunkCenters, K - c0);
        sgemm(false, true, qr, cc, D, -2, queries.subarray(q0 * D, (q0 + qr) * D), D, centers.subarray(c0 * D, (c0 + cc) * D), D, 0, scores, cc);
      }
    }
  };
  const index = new FlatIndex(centers, K, D, { chunkQueries, chunkCenters });
  let ours = index.search(queries, n); // warm-up (JIT, scratch allocation)
  let sgemmSeconds = Infinity;
  let searchSeconds = Infinity;
  for (let rep = 0; rep < REPEATS; rep++) {
    sgemmSeconds = Math.min(sgemmSeconds, bestOf(1, rawSgemm));
    searchSeconds = Math.min(searchSeconds, bestOf(1, () => {
      ours = index.search(queries, n);
    }));
  }
  const sgemmGflops = flop / sgemmSeconds / 1e9;
  rows.push({ bench: 'search', config: `raw sgemm blocks ${chunkQueries}×${chunkCenters}, ${shape}`, metric: 'throughput', value: sgemmGflops, unit: 'GFLOP/s', note: blasNote });

  const stats = index.lastSearchStats();
  const searchGflops = flop / searchSeconds / 1e9;
  rows.push({
    bench: 'search',
    config: `FlatIndex.search ${shape}`,
    metric: 'throughput (2nKD/t)',
    value: searchGflops,
    unit: 'GFLOP/s-eq',
    note: `${searchSeconds.toFixed(3)} s; re-ranked ${stats.reranked} queries (${stats.rerankDistances} exact distances), ${stats.exactScans} exact scans; ${env}`,
  });
  rows.push({ bench: 'search', config: `FlatIndex.search ${shape}`, metric: 'ratio to raw sgemm', value: searchGflops / sgemmGflops, unit: '×' });

  const faiss = runFaiss(queries, n, centers, K);
  if (typeof faiss === 'string') {
    rows.push({ bench: 'search', config: `Faiss IndexFlatL2.search ${shape}`, metric: 'throughput (2nKD/t)', value: NaN, unit: 'GFLOP/s-eq', note: `skipped: ${faiss}` });
  } else {
    const faissGflops = flop / faiss.seconds / 1e9;
    let agree = 0;
    for (let i = 0; i < n; i++) if (faiss.ids[i] === ours.ids[i]) agree++;
    const faissNote = `faiss ${faiss.version}, omp threads ${faiss.ompThreads}; ${env}`;
    rows.push({ bench: 'search', config: `Faiss IndexFlatL2.search ${shape}`, metric: 'throughput (2nKD/t)', value: faissGflops, unit: 'GFLOP/s-eq', note: `${faiss.seconds.toFixed(3)} s; ${faissNote}` });
    rows.push({ bench: 'search', config: `FlatIndex vs Faiss ${shape}`, metric: 'speed ratio ours/faiss', value: searchGflops / faissGflops, unit: '×' });
    rows.push({ bench: 'search', config: `FlatIndex vs Faiss ${shape}`, metric: 'id agreement', value: (100 * agree) / n, unit: '%', note: 'Faiss picks by float32 distance; ours is exact' });
  }

  // The TypeScript fallback kernel (used without a BLAS library), on a smaller product.
  const fm = full ? 256 : 128;
  const fn = 1024;
  const fa = queries.subarray(0, fm * D);
  const fb = centers.subarray(0, fn * D);
  const fc = new Float32Array(fm * fn);
  const fallbackSeconds = bestOf(REPEATS, () => sgemmTs(false, true, fm, fn, D, -2, fa, D, fb, D, 0, fc, fn));
  const fallbackGflops = (2 * fm * fn * D) / fallbackSeconds / 1e9;
  rows.push({ bench: 'search', config: `TypeScript fallback sgemm ${fm}×${fn}×${D} (NoTrans×Trans)`, metric: 'throughput', value: fallbackGflops, unit: 'GFLOP/s', note: 'single thread' });
  rows.push({ bench: 'search', config: 'TypeScript fallback vs BLAS sgemm', metric: 'slowdown', value: sgemmGflops / fallbackGflops, unit: '×' });
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--size');
  const size = (i >= 0 ? process.argv[i + 1] : 'small') as BenchSize;
  if (size !== 'small' && size !== 'full') {
    process.stderr.write(`usage: node dist/bench/search.js [--size small|full]\n`);
    process.exit(2);
  }
  const rows = await run({ size });
  process.stdout.write(formatRows(rows) + '\n');
}
