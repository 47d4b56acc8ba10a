/**
 * Verifying a dataset when it is opened (issue "Hardening"): `SeqDataset.open` checks the sha256
 * of every shard against the manifest before any row is used (`uvu train --no-verify` skips it).
 * Measured: the cost per GiB of dataset files, its share of opening, and its size next to one epoch
 * of training batches read from the same dataset. Page cache warm (the files were just written or
 * read); best of REPEATS, opens interleaved.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { saveCodebook } from '../src/codebook/file.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { subjectFromName } from '../src/data/captions.js';
import { buildDataset } from '../src/data/build.js';
import { SeqDataset } from '../src/data/dataset.js';
import { writeCaptionedCrops } from '../src/data/photo-captions.js';
import { buildPatchStore } from '../src/patches/build.js';
import { bestOf, type BenchRow, type BenchSize } from './rows.js';

const REPEATS = 5;
/** Rows per batch of the epoch that verification is compared with. */
const BATCH = 8;

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'uvu-bench-dataset-'));
  try {
    // Captioned 256×256 crops of the bundled photos (8×8 patches each) and a K = 64 codebook.
    const cropsPerPhoto = o.size === 'full' ? 160 : 20;
    const store = join(dir, 'store');
    await buildPatchStore([bundledPhotoPath('black-canyon'), bundledPhotoPath('march-pastoral')], { out: store, progress: false });
    const codebook = join(dir, 'codebook.safetensors');
    saveCodebook(codebook, buildKmeansCodebook(store, { method: 'kmeans', size: 64, iters: 2, seed: 1 }));
    const crops = await writeCaptionedCrops(
      BUNDLED_PHOTOS.map((p) => ({ path: bundledPhotoPath(p), subject: subjectFromName(p) })),
      { out: join(dir, 'captions'), cropsPerPhoto, size: 256, seed: 1 },
    );
    const data = join(dir, 'data');
    await buildDataset({ out: data, imageTokenizer: codebook, samples: [crops.jsonl], trainTokenizer: 300, context: 128, maxPixels: 256 * 256, valFraction: 0.05, seed: 1 });
    const bytes = readdirSync(data).reduce((sum, f) => sum + statSync(join(data, f)).size, 0);
    const GiB = bytes / 2 ** 30;

    let verified = Infinity;
    let unverified = Infinity;
    for (let r = 0; r < REPEATS; r++) {
      verified = Math.min(verified, bestOf(REPEATS, () => SeqDataset.open(data).close()));
      unverified = Math.min(unverified, bestOf(REPEATS, () => SeqDataset.open(data, { verify: false }).close()));
    }
    const ds = SeqDataset.open(data, { verify: false });
    const rows = ds.manifest.counts.train.rows;
    const steps = Math.ceil(rows / BATCH);
    const epoch = bestOf(REPEATS, () => {
      for (let step = 0; step < steps; step++) ds.batch('train', step, BATCH, 0);
    });
    ds.close();
    const cost = verified - unverified;
    const config = `dataset of ${crops.samples} captioned 256² crops, ${rows} rows of 128 tokens, ${(bytes / 2 ** 20).toFixed(1)} MiB of files`;
    return [
      { bench: 'dataset', config, metric: 'open, sha256 of every file (default)', value: verified, unit: 's', note: `best of ${REPEATS}×${REPEATS}` },
      { bench: 'dataset', config, metric: 'open with --no-verify', value: unverified, unit: 's', note: `best of ${REPEATS}×${REPEATS}` },
      { bench: 'dataset', config, metric: 'verification cost per GiB', value: cost / GiB, unit: 's/GiB', note: 'page cache warm' },
      { bench: 'dataset', config, metric: 'verification / one epoch of batches', value: cost / epoch, unit: '×', note: `epoch: ${steps} batches of ${BATCH} rows, ${epoch.toFixed(3)} s; verification is once per run` },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
