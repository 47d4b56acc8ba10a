/**
 * The paper's construction at scale: peak memory against the bound printed at start as the
 * store and N_round grow, and a round's patch throughput next to the bare search at the same K.
 * Each build runs as its own `uvu codebook build --method uvu` process, so its peak RSS is its own.
 * full: K = 1024 on stores of ~278k and ~1.1M real patches; small: K = 64 on the bundled photos.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PatchStore } from '../src/patches/store.js';
import { FlatIndex } from '../src/codebook/search.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';
import { benchStore, openOrBuildStore } from './data.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Folder of a benchmark store (built if needed); the store itself is closed again. */
async function storeDir(open: Promise<PatchStore>): Promise<string> {
  const store = await open;
  store.close();
  return store.dir;
}

/** Patches per second of the bare exact search at K centres (store patches as queries). */
function searchRate(storeDir: string, k: number): number {
  const store = PatchStore.open(storeDir);
  const n = Math.min(16_384, store.count - k);
  const centres = new Float32Array(k * PATCH_DIM);
  const c = store.readRange(0, k).patches;
  for (let i = 0; i < c.length; i++) centres[i] = c[i]! / 255;
  const q = store.readRange(k, n).patches;
  const index = new FlatIndex(centres, k, PATCH_DIM);
  index.searchU8(q.subarray(0, Math.min(1024, n) * PATCH_DIM), Math.min(1024, n)); // warm-up
  const t0 = performance.now();
  index.searchU8(q, n);
  store.close();
  return n / ((performance.now() - t0) / 1000);
}

export async function run(opts: { size: BenchSize }): Promise<BenchRow[]> {
  const full = opts.size === 'full';
  if (full && !existsSync('data/photos/train')) throw new Error('the full uvu bench needs `npm run data:photos` first');
  const k = full ? 1024 : 64;
  const stores = full
    ? [
        { name: '1 pass', dir: await storeDir(benchStore().then((b) => b.store)) },
        { name: '4 offset passes', dir: await storeDir(openOrBuildStore('data/bench/ablation-full-train', ['data/photos/train'], 4)) },
      ]
    : [
        { name: '1 pass', dir: await storeDir(openOrBuildStore('data/bench/uvu-small-1', BUNDLED_PHOTOS.map(bundledPhotoPath), 1)) },
        { name: '3 offset passes', dir: await storeDir(openOrBuildStore('data/bench/uvu-small-3', BUNDLED_PHOTOS.map(bundledPhotoPath), 3)) },
      ];
  const roundSizes = full ? [32_768, 131_072] : [1024, 4096];
  const rows: BenchRow[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'uvu-bench-uvu-'));
  try {
    const runs = [
      ...stores.map((s) => ({ store: s, roundSize: roundSizes[0]! })),
      { store: stores[stores.length - 1]!, roundSize: roundSizes[1]! },
    ];
    for (const [i, r] of runs.entries()) {
      const probe = PatchStore.open(r.store.dir);
      const storePatches = probe.count;
      probe.close();
      const args = [CLI, 'codebook', 'build', '--method', 'uvu', '--patches', r.store.dir, '--size', String(k), '--round-size', String(r.roundSize), '--max-rounds', '2', '--epsilon', '0', '--val-size', '4096', '--out', join(tmp, `cb-${i}.safetensors`), '--json', '--quiet'];
      const res = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (res.status !== 0) throw new Error(`uvu build failed: ${res.stderr}`);
      const j = JSON.parse(res.stdout) as { peak_rss_mib: number; estimated_peak_mib: number; patches_per_s: number; seconds: number };
      const config = `K=${k}, store ${storePatches} patches (${r.store.name}), N_round=${r.roundSize}, 2 rounds`;
      rows.push({ bench: 'uvu', config, metric: 'peak RSS', value: j.peak_rss_mib, unit: 'MiB', note: 'process.resourceUsage().maxRSS of the build process' });
      rows.push({ bench: 'uvu', config, metric: 'estimated peak (printed at start)', value: j.estimated_peak_mib, unit: 'MiB' });
      rows.push({ bench: 'uvu', config, metric: 'round throughput', value: j.patches_per_s, unit: 'patch/s', note: 'pool patches assigned per second of round wall time (sampling, dedup, updates, validation included)' });
    }
    const rate = searchRate(stores[0]!.dir, k);
    const last = rows.filter((r) => r.metric === 'round throughput').at(-1)!;
    rows.push({ bench: 'uvu', config: `K=${k}, store patches as queries`, metric: 'bare FlatIndex.searchU8 throughput', value: rate, unit: 'patch/s', note: `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}` });
    rows.push({ bench: 'uvu', config: last.config, metric: 'round throughput / bare search', value: last.value / rate, unit: '×', note: 'target ≥ 0.9' });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const size: BenchSize = process.argv.includes('full') || process.argv.includes('--size=full') ? 'full' : 'small';
  console.log(formatRows(await run({ size })));
}
