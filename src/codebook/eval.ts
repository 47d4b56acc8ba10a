/**
 * Measuring a codebook (DESIGN §4): its reconstruction metrics on a patch store or on image
 * files, and how many tokens change between two codebooks (what `refine` reports).
 */
import { loadImage } from '../image/io.js';
import { patchify } from '../patches/patchify.js';
import { PatchStore } from '../patches/store.js';
import { Rng } from '../util/rng.js';
import type { Codebook } from './file.js';
import { MetricsAccumulator, type CodebookMetrics } from './metrics.js';
import { gridPositions } from './points.js';

/** Patches per store read while measuring: bounds memory to EVAL_BATCH·3072 bytes plus metadata. */
const EVAL_BATCH = 4096;

/** Seed of the sample re-tokenized to count token changes (fixed so that reports compare). */
const TOKEN_CHANGE_SEED = 7;

/** Metrics of `cb` over every patch of an open store; `onPatches(n)` after each batch of n. */
export function evalCodebookOnStore(cb: Codebook, store: PatchStore, onPatches?: (n: number) => void): CodebookMetrics {
  const acc = new MetricsAccumulator(cb);
  for (const batch of store.scan(EVAL_BATCH)) {
    const n = batch.meta.row.length;
    acc.add(batch.patches, n, batch.meta);
    onPatches?.(n);
  }
  return acc.result();
}

/** Metrics of `cb` over the patches of image files (resized so that w·h ≤ maxPixels); `onImage` after each. */
export async function evalCodebookOnImages(cb: Codebook, paths: string[], maxPixels: number, onImage?: () => void): Promise<CodebookMetrics> {
  const acc = new MetricsAccumulator(cb);
  for (const p of paths) {
    const img = await loadImage(p, { maxPixels });
    const { patches, rows, cols } = patchify(img);
    acc.add(patches, rows * cols, gridPositions(rows, cols));
    onImage?.();
  }
  return acc.result();
}

/**
 * Fraction of a fixed random sample of the store's patches whose token differs between two
 * codebooks. `opts.verify` (default true): check the shards read; false when this run checked them already.
 */
export function tokenChanges(a: Codebook, b: Codebook, storeDir: string, sample: number, opts: { verify?: boolean } = {}): number {
  const store = PatchStore.open(storeDir, { verify: opts.verify ?? true });
  const n = Math.min(sample, store.count);
  const { patches, meta } = store.sample(n, new Rng(TOKEN_CHANGE_SEED));
  store.close();
  const ia = new MetricsAccumulator(a).add(patches, n, meta);
  const ib = new MetricsAccumulator(b).add(patches, n, meta);
  let changed = 0;
  for (let i = 0; i < n; i++) if (ia[i] !== ib[i]) changed++;
  return changed / n;
}
