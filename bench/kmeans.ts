/**
 * One k-means iteration on real photo patches — ours (src/codebook/kmeans.ts) against
 * faiss.Kmeans (Debian python3-faiss) on the same patches, in the same run, under the same
 * OpenBLAS environment. full: 200,000 patches, K = 4096; small: 20,000 patches, K = 256.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kmeans } from '../src/codebook/kmeans.js';
import { PatchPoints } from '../src/codebook/points.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { exportSample, sampleExportIndices } from '../src/patches/npy.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { blasInfo } from '../src/linalg/blas.js';
import { benchStore } from './data.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

const FAISS_PYTHON = '/usr/bin/python3';
const FAISS_SCRIPT = fileURLToPath(new URL('../../bench/faiss_kmeans.py', import.meta.url));
const SEED = 1234;

export async function run(opts: { size: BenchSize }): Promise<BenchRow[]> {
  let want = opts.size === 'full' ? { n: 200_000, k: 4096, iters: 2 } : { n: 20_000, k: 256, iters: 3 };
  // UVU_BENCH_KMEANS=n,k,iters overrides the size (for quick side-by-side runs).
  const custom = process.env.UVU_BENCH_KMEANS?.split(',').map(Number);
  if (custom && custom.length === 3 && custom.every((x) => Number.isInteger(x) && x > 0)) want = { n: custom[0]!, k: custom[1]!, iters: custom[2]! };
  const { store, source } = await benchStore();
  const n = Math.min(want.n, store.count);
  const { k, iters } = want;
  const config = `n=${n} K=${k} D=${PATCH_DIM}, ${iters} iters`;
  const env = `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}; ${source}`;
  const rows: BenchRow[] = [];

  const dir = mkdtempSync(join(tmpdir(), 'uvu-bench-kmeans-'));
  try {
    const npy = join(dir, 'points.npy');
    exportSample(store, n, SEED, npy);
    const { patches } = store.readIndices(sampleExportIndices(store.count, n, SEED));
    const points = new PatchPoints(patches, n, PATCH_DIM, null, NO_POSENC);

    const ours = kmeans(points, { k, iters, seed: SEED });
    const oursPerIter = ours.stats.reduce((s, x) => s + x.seconds, 0) / iters;
    const flop = 2 * n * k * PATCH_DIM;
    rows.push({ bench: 'kmeans', config, metric: 'uvu time per iteration', value: oursPerIter, unit: 's', note: `BLAS ${blasInfo().backend}; ${env}` });
    rows.push({ bench: 'kmeans', config, metric: 'uvu assignment GFLOP/s-eq', value: flop / oursPerIter / 1e9, unit: 'GFLOP/s' });
    rows.push({ bench: 'kmeans', config, metric: 'uvu final MSE per element', value: ours.stats.at(-1)!.mse, unit: '' });
    const skipped = ours.stats.map((s) => s.skipped);
    rows.push({ bench: 'kmeans', config, metric: 'uvu distances skipped (last iteration)', value: skipped.at(-1)!, unit: 'fraction', note: `per iteration: ${skipped.map((x) => x.toFixed(3)).join(' ')}; per-iteration s: ${ours.stats.map((s) => s.seconds.toFixed(3)).join(' ')}` });

    let faiss: { per_iter_s: number; obj: number[]; faiss: string; omp_threads: number } | null = null;
    try {
      const out = execFileSync(FAISS_PYTHON, [FAISS_SCRIPT, npy, String(k), String(iters), String(SEED)], { encoding: 'utf8', maxBuffer: 1 << 24 });
      faiss = JSON.parse(out.trim().split('\n').at(-1)!);
    } catch (err) {
      rows.push({ bench: 'kmeans', config, metric: 'faiss.Kmeans', value: NaN, unit: '', note: `skipped: ${(err as Error).message.split('\n')[0]}` });
    }
    if (faiss) {
      rows.push({ bench: 'kmeans', config, metric: 'faiss.Kmeans time per iteration', value: faiss.per_iter_s, unit: 's', note: `faiss ${faiss.faiss}, ${faiss.omp_threads} OpenMP threads; same patches, same env` });
      rows.push({ bench: 'kmeans', config, metric: 'faiss final MSE per element', value: faiss.obj.at(-1)! / (n * PATCH_DIM), unit: '' });
      rows.push({ bench: 'kmeans', config, metric: 'uvu / faiss time per iteration', value: oursPerIter / faiss.per_iter_s, unit: '×', note: 'target ≤ 1.0' });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    store.close();
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const size: BenchSize = process.argv.includes('full') || process.argv.includes('--size=full') ? 'full' : 'small';
  console.log(formatRows(await run({ size })));
}
