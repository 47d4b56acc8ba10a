/**
 * `uvu demo` (= `npm run demo`): the whole pixel-codebook pipeline on the bundled public-domain
 * photos, offline, in well under 3 minutes on 2 cores:
 *   8 photos → patch store → K = 256 k-means codebook → round trip of a 9th photo never clustered.
 */
import { Command } from 'commander';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildPatchStore } from '../patches/build.js';
import { buildKmeansCodebook } from '../codebook/build.js';
import { saveCodebook } from '../codebook/file.js';
import { BUNDLED_PHOTOS, bundledPhotoPath, type BundledPhoto } from '../data/bundled.js';
import { blasInfo } from '../linalg/blas.js';
import { info, progress } from '../util/progress.js';
import { roundtrip } from './tokens.js';
import { applyOutputOptions, emit, fmt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';

/** The photo left out of training and reconstructed at the end. */
const HELD_OUT: BundledPhoto = 'nagasaki-boats';

export function demoCommand(): Command {
  return withOutputOptions(
    new Command('demo')
      .description('build a patch store and a codebook from the bundled photos, then round-trip a held-out photo')
      .option('--out <dir>', 'output folder', 'out/demo')
      .option('--size <K>', 'codebook size', parsePositiveInt, 256)
      .option('--iters <n>', 'k-means iterations', parsePositiveInt, 25),
  ).action(async (o: OutputOptions & { out: string; size: number; iters: number }) => {
    applyOutputOptions(o);
    const t0 = performance.now();
    const storeDir = join(o.out, 'patches');
    const codebookPath = join(o.out, `codebook-k${o.size}.safetensors`);
    const pngPath = join(o.out, 'roundtrip.png');
    mkdirSync(o.out, { recursive: true });
    rmSync(storeDir, { recursive: true, force: true });

    const train = BUNDLED_PHOTOS.filter((p) => p !== HELD_OUT).map(bundledPhotoPath);
    const blas = blasInfo();
    info(`uvu demo: BLAS backend ${blas.backend}${blas.library ? ` (${blas.library})` : ''}`);
    info(`1/3 patch store from ${train.length} bundled photos (native size, random grid offsets) → ${storeDir}`);
    // Native resolution (≤ 1 MP) gives ~6,600 training patches: ~26 per centre at K = 256.
    const { manifest } = await buildPatchStore(train, { out: storeDir, maxPixels: 1024 * 1024, offsets: true, seed: 1 });
    const tStore = performance.now();

    info(`2/3 k-means codebook, K = ${o.size}, ${o.iters} iterations → ${codebookPath}`);
    const bar = progress('k-means', o.iters, 'iters');
    const cb = buildKmeansCodebook(storeDir, { method: 'kmeans', size: o.size, iters: o.iters, seed: 1234 }, () => bar.tick());
    bar.stop();
    saveCodebook(codebookPath, cb);
    const tCodebook = performance.now();

    info(`3/3 round trip of the held-out photo "${HELD_OUT}" → ${pngPath}`);
    const rt = await roundtrip(bundledPhotoPath(HELD_OUT), cb, pngPath, 512 * 512);
    const tEnd = performance.now();

    const result = {
      blas: blas.backend,
      store: { dir: storeDir, images: manifest!.totals.images, patches: manifest!.totals.patches, seconds: (tStore - t0) / 1000 },
      codebook: { file: codebookPath, k: cb.K, iters: o.iters, train_mse: cb.metrics.train_mse, seconds: (tCodebook - tStore) / 1000 },
      heldOut: { photo: HELD_OUT, png: pngPath, prp: rt.prp, psnr: rt.psnr, mse: rt.mse, rows: rt.rows, cols: rt.cols, codes_used: rt.k_active },
      seconds: (tEnd - t0) / 1000,
    };
    emit(o, result, () =>
      [
        '',
        'uvu demo report',
        `  patch store   ${result.store.patches} patches from ${result.store.images} photos (${result.store.seconds.toFixed(1)} s)`,
        `  codebook      K = ${cb.K}, k-means ${o.iters} iters, train MSE ${fmt(cb.metrics.train_mse as number, 5)} (${result.codebook.seconds.toFixed(1)} s, BLAS: ${blas.backend})`,
        `  held-out      "${HELD_OUT}", ${rt.rows}×${rt.cols} patches → ${rt.k_active} distinct codes`,
        `                PRP ${fmt(rt.prp)}   PSNR ${fmt(rt.psnr, 2)} dB   MSE ${rt.mse.toExponential(3)}`,
        `  picture       ${pngPath} (original | reconstruction | error heat-map)`,
        `  total         ${result.seconds.toFixed(1)} s`,
      ].join('\n'),
    );
  });
}
