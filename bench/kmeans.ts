/**
 * k-means iterations on real photo patches — ours (src/codebook/kmeans.ts) against
 * faiss.Kmeans (Debian python3-faiss) on the same patches, from the same initial centres, in the
 * same run, under the same OpenBLAS environment. Runs alternate (ours, Faiss, ours, Faiss, …) so
 * that background load hits both alike; rows give best-of and median time per iteration.
 * full: K = 256 and K = 4096 on 65,536 patches; small: K = 256 on 20,000.
 * UVU_BENCH_KMEANS=n,k,iters[,repeats] runs one custom configuration instead.
 * Also k-means++ seeding, bound-pruned (what `init: 'kmeans++'` runs) against the plain D² update
 * (plainKmeansPlusPlus), interleaved, on the same patches: the seeds must be the same.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initialCentreIndices, kmeans, plainKmeansPlusPlus, type KmeansResult } from '../src/codebook/kmeans.js';
import { PatchPoints } from '../src/codebook/points.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { exportSample, sampleExportIndices, writeNpyF32 } from '../src/patches/npy.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { blasInfo } from '../src/linalg/blas.js';
import { Rng } from '../src/util/rng.js';
import type { PatchStore } from '../src/patches/store.js';
import { benchStore } from './data.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

const FAISS_PYTHON = '/usr/bin/python3';
const FAISS_SCRIPT = fileURLToPath(new URL('../../bench/faiss_kmeans.py', import.meta.url));
const SEED = 1234;

interface Setup {
  n: number;
  k: number;
  iters: number;
  repeats: number;
}

interface FaissRun {
  per_iter_s: number;
  iter_s: number[];
  obj: number[];
  faiss: string;
  omp_threads: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (xs: number[], digits = 3): string => xs.map((x) => x.toFixed(digits)).join(' ');

async function runSetup(store: PatchStore, source: string, want: Setup): Promise<BenchRow[]> {
  const n = Math.min(want.n, store.count);
  const { k, iters, repeats } = want;
  // At most 256 points per centre: neither tool subsamples, so both cluster exactly these points.
  if (n > k * 256) throw new Error(`bench kmeans: n = ${n} > 256·K would make the tools subsample differently`);
  const config = `n=${n} K=${k} D=${PATCH_DIM}, ${iters} iters, same init`;
  const env = `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} OPENBLAS_L2_SIZE=${process.env.OPENBLAS_L2_SIZE ?? '(unset)'}; ${source}`;
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'uvu-bench-kmeans-'));
  try {
    const npy = join(dir, 'points.npy');
    exportSample(store, n, SEED, npy);
    const { patches } = store.readIndices(sampleExportIndices(store.count, n, SEED));
    const points = new PatchPoints(patches, n, PATCH_DIM, null, NO_POSENC);
    // The initial centres kmeans() will pick (random init, no subsampling), handed to Faiss too.
    const seeds = initialCentreIndices(points, k, 'random', new Rng(SEED), 4096);
    const init = new Float32Array(k * PATCH_DIM);
    for (let j = 0; j < k; j++) points.readAssign(seeds[j]!, 1, init.subarray(j * PATCH_DIM, (j + 1) * PATCH_DIM));
    const initNpy = join(dir, 'init.npy');
    writeNpyF32(initNpy, init, [k, PATCH_DIM]);

    const oursTimes: number[] = [];
    const faissTimes: number[] = [];
    let ours: KmeansResult | null = null;
    let faiss: FaissRun | null = null;
    let faissError: string | null = null;
    for (let rep = 0; rep < repeats; rep++) {
      ours = kmeans(points, { k, iters, seed: SEED });
      oursTimes.push(ours.stats.reduce((s, x) => s + x.seconds, 0) / iters);
      if (faissError) continue;
      try {
        const out = execFileSync(FAISS_PYTHON, [FAISS_SCRIPT, npy, String(k), String(iters), String(SEED), initNpy], { encoding: 'utf8', maxBuffer: 1 << 24 });
        faiss = JSON.parse(out.trim().split('\n').at(-1)!) as FaissRun;
        faissTimes.push(faiss.per_iter_s);
      } catch (err) {
        faissError = (err as Error).message.split('\n')[0]!;
      }
    }
    const best = Math.min(...oursTimes);
    const med = median(oursTimes);
    const flop = 2 * n * k * PATCH_DIM;
    rows.push({ bench: 'kmeans', config, metric: 'uvu time per iteration (best)', value: best, unit: 's', note: `median ${med.toFixed(3)} s over ${repeats} runs; BLAS ${blasInfo().backend}; ${env}` });
    rows.push({ bench: 'kmeans', config, metric: 'uvu GFLOP/s-eq (2nKD/t, best)', value: flop / best / 1e9, unit: 'GFLOP/s' });
    rows.push({ bench: 'kmeans', config, metric: 'uvu final MSE per element', value: ours!.stats.at(-1)!.mse, unit: '' });
    const skipped = ours!.stats.map((s) => s.skipped);
    rows.push({
      bench: 'kmeans',
      config,
      metric: 'uvu distances skipped (mean over iterations 1..)',
      value: skipped.slice(1).reduce((s, x) => s + x, 0) / Math.max(1, skipped.length - 1),
      unit: 'fraction',
      note: `per iteration: ${fmt(skipped)}; per-iteration s (last run): ${fmt(ours!.stats.map((s) => s.seconds))}`,
    });
    if (faissError || !faiss) {
      rows.push({ bench: 'kmeans', config, metric: 'faiss.Kmeans', value: NaN, unit: '', note: `skipped: ${faissError ?? 'no run'}` });
      return rows;
    }
    const fBest = Math.min(...faissTimes);
    const fMed = median(faissTimes);
    rows.push({ bench: 'kmeans', config, metric: 'faiss.Kmeans time per iteration (best)', value: fBest, unit: 's', note: `median ${fMed.toFixed(3)} s; faiss ${faiss.faiss}, ${faiss.omp_threads} OpenMP threads; per-iteration s (last run): ${fmt(faiss.iter_s)}` });
    rows.push({ bench: 'kmeans', config, metric: 'faiss final MSE per element', value: faiss.obj.at(-1)! / (n * PATCH_DIM), unit: '' });
    rows.push({ bench: 'kmeans', config, metric: 'uvu / faiss time per iteration (best)', value: best / fBest, unit: '×', note: `median/median ${(med / fMed).toFixed(3)}; target ≤ 1.0, moonshot ≤ 0.7` });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** k-means++ seeding: the bound-pruned update against the plain one, alternating, best-of and median. */
function runSeeding(store: PatchStore, source: string, n: number, k: number, repeats: number): BenchRow[] {
  n = Math.min(n, store.count);
  const { patches } = store.readIndices(sampleExportIndices(store.count, n, SEED));
  const points = new PatchPoints(patches, n, PATCH_DIM, null, NO_POSENC);
  const config = `k-means++ seeding, n=${n} K=${k} D=${PATCH_DIM}`;
  const pruned: number[] = [];
  const plain: number[] = [];
  let same = true;
  for (let rep = 0; rep < repeats; rep++) {
    let t0 = performance.now();
    const a = initialCentreIndices(points, k, 'kmeans++', new Rng(SEED), 4096);
    pruned.push((performance.now() - t0) / 1e3);
    t0 = performance.now();
    const b = plainKmeansPlusPlus(points, k, new Rng(SEED));
    plain.push((performance.now() - t0) / 1e3);
    same &&= Array.from(a).every((x, i) => x === b[i]);
  }
  const note = `median ${median(pruned).toFixed(3)} s; ${source}`;
  return [
    { bench: 'kmeans', config, metric: 'bound-pruned D² update (best)', value: Math.min(...pruned), unit: 's', note },
    { bench: 'kmeans', config, metric: 'plain D² update (best)', value: Math.min(...plain), unit: 's', note: `median ${median(plain).toFixed(3)} s` },
    { bench: 'kmeans', config, metric: 'speed-up (best/best)', value: Math.min(...plain) / Math.min(...pruned), unit: '×', note: `median/median ${(median(plain) / median(pruned)).toFixed(2)}; same seeds: ${same ? 'yes' : 'NO'}` },
  ];
}

export async function run(opts: { size: BenchSize }): Promise<BenchRow[]> {
  let setups: Setup[] =
    opts.size === 'full'
      ? [
          { n: 65_536, k: 256, iters: 6, repeats: 2 },
          { n: 65_536, k: 4096, iters: 4, repeats: 2 },
        ]
      : [{ n: 20_000, k: 256, iters: 4, repeats: 2 }];
  const custom = process.env.UVU_BENCH_KMEANS?.split(',').map(Number);
  if (custom && (custom.length === 3 || custom.length === 4) && custom.every((x) => Number.isInteger(x) && x > 0)) {
    setups = [{ n: custom[0]!, k: custom[1]!, iters: custom[2]!, repeats: custom[3] ?? 2 }];
  }
  const { store, source } = await benchStore();
  const rows: BenchRow[] = [];
  try {
    for (const s of setups) rows.push(...(await runSetup(store, source, s)));
    if (!custom) rows.push(...(opts.size === 'full' ? runSeeding(store, source, 8192, 256, 2) : runSeeding(store, source, 4096, 64, 2)));
  } finally {
    store.close();
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const size: BenchSize = process.argv.includes('full') || process.argv.includes('--size=full') ? 'full' : 'small';
  console.log(formatRows(await run({ size })));
}
