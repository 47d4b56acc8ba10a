/**
 * Benchmark data: a patch store of real photographs. With `npm run data:photos` done, the
 * training photos of data/photos/train at native resolution (up to 16 MP); otherwise the bundled
 * @stdlib photos (far fewer patches; the rows say which).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildPatchStore } from '../src/patches/build.js';
import { PatchStore } from '../src/patches/store.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';

export const PHOTOS_TRAIN = 'data/photos/train';
const STORE_DIR = 'data/bench';

export interface BenchStore {
  store: PatchStore;
  /** Where the photos came from, for the rows' notes. */
  source: string;
}

/** Max pixels that keeps every photo we have at its native size. */
const NATIVE = 16 * 2 ** 20;

/**
 * Open the store in `dir`, first building it (or resuming an interrupted build) from `inputs`
 * at native size, cut `passes` times with random grid offsets when passes > 1.
 */
export async function openOrBuildStore(dir: string, inputs: string[], passes = 1): Promise<PatchStore> {
  if (!existsSync(join(dir, 'manifest.json'))) {
    await buildPatchStore(inputs, { out: dir, maxPixels: NATIVE, offsets: passes > 1, passes, seed: 7, resume: existsSync(dir) });
  }
  return PatchStore.open(dir);
}

/** Open (building or resuming it when needed) the benchmark patch store. */
export async function benchStore(): Promise<BenchStore> {
  const fromDebian = existsSync(PHOTOS_TRAIN);
  const dir = join(STORE_DIR, fromDebian ? 'photos-native' : 'bundled-native');
  const store = await openOrBuildStore(dir, fromDebian ? [PHOTOS_TRAIN] : BUNDLED_PHOTOS.map(bundledPhotoPath));
  return { store, source: fromDebian ? `${store.imageCount} photos of data/photos/train (npm run data:photos), native size` : `${store.imageCount} bundled @stdlib photos, native size` };
}
