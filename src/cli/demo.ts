/**
 * `uvu demo` (= `npm run demo`): both halves of UVU on the bundled public-domain photos, offline,
 * in about 2–3 minutes on 2 cores:
 *   1–3  8 photos → patch store → K = 256 k-means codebook → round trip of a 9th photo never clustered;
 *   4–6  captioned crops of the 8 photos + Moby Dick → packed dataset → a short joint training run
 *        of the unified model (loss and gradient angle printed as it goes) → the model completes the
 *        held-out photo's lower rows, reconstructed by the codebook.
 */
import { Command } from 'commander';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPatchStore } from '../patches/build.js';
import { buildKmeansCodebook } from '../codebook/build.js';
import { saveCodebook } from '../codebook/file.js';
import { BUNDLED_PHOTOS, bundledPhotoPath, type BundledPhoto } from '../data/bundled.js';
import { blasInfo } from '../linalg/blas.js';
import { info, progress } from '../util/progress.js';
import { writeCaptionedCrops } from '../data/photo-captions.js';
import { subjectFromName } from '../data/captions.js';
import { buildDataset } from '../data/build.js';
import { loadTrainConfig } from '../train/config.js';
import { train as trainModel, type StepLog } from '../train/train.js';
import { ModelSession } from '../infer/session.js';
import { roundtripImage, sideBySide } from '../tokens/roundtrip.js';
import { loadImage, writePng } from '../image/io.js';
import { applyOutputOptions, emit, fmt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';
import { DEFAULT_CODEBOOK_SEED, DEFAULT_MAX_PIXELS } from '../util/defaults.js';
import { initEngine } from '../engine/tf.js';
import { UvuError } from '../util/errors.js';
import { fsErrorReason } from '../util/fserror.js';

/** The photo left out of training and reconstructed at the end. */
const HELD_OUT: BundledPhoto = 'nagasaki-boats';
/** Random square crops per training photo for the captioned dataset. */
const CROPS_PER_PHOTO = 24;
/** The demo's training run: a small model (~0.2 M parameters) that trains at a few thousand tokens/s on 2 cores. */
const DEMO_CONFIG = fileURLToPath(new URL('../../../configs/demo.json', import.meta.url));

export function demoCommand(): Command {
  return withOutputOptions(
    new Command('demo')
      .option('--out <dir>', 'output folder', 'out/demo')
      .option('--size <K>', 'codebook size', parsePositiveInt, 256)
      .option('--iters <n>', 'k-means iterations', parsePositiveInt, 25)
      .option('--train-steps <n>', 'optimizer steps of the model training run', parsePositiveInt, 480),
  ).action(async (o: OutputOptions & { out: string; size: number; iters: number; trainSteps: number }) => {
    applyOutputOptions(o);
    const t0 = performance.now();
    const storeDir = join(o.out, 'patches');
    const codebookPath = join(o.out, `codebook-k${o.size}.safetensors`);
    const pngPath = join(o.out, 'roundtrip.png');
    try {
      mkdirSync(o.out, { recursive: true });
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'EEXIST' ? 'it exists and is not a folder' : fsErrorReason(o.out, err);
      throw new UvuError(`${o.out}: cannot create the output folder: ${why}`);
    }
    rmSync(storeDir, { recursive: true, force: true });

    const train = BUNDLED_PHOTOS.filter((p) => p !== HELD_OUT).map(bundledPhotoPath);
    const blas = blasInfo();
    info(`uvu demo: BLAS backend ${blas.backend}${blas.library ? ` (${blas.library})` : ''}`);
    info(`1/6 patch store from ${train.length} bundled photos (native size, random grid offsets) → ${storeDir}`);
    // Native resolution (≤ 1 MP) gives ~6,600 training patches: ~26 per centre at K = 256.
    const { manifest } = await buildPatchStore(train, { out: storeDir, maxPixels: 1024 * 1024, offsets: true, seed: 1 });
    const tStore = performance.now();

    info(`2/6 k-means codebook, K = ${o.size}, ${o.iters} iterations → ${codebookPath}`);
    const bar = progress('k-means', o.iters, 'iters');
    const cb = buildKmeansCodebook(storeDir, { method: 'kmeans', size: o.size, iters: o.iters, seed: DEFAULT_CODEBOOK_SEED }, () => bar.tick());
    bar.stop();
    saveCodebook(codebookPath, cb);
    const tCodebook = performance.now();

    info(`3/6 round trip of the held-out photo "${HELD_OUT}" → ${pngPath}`);
    const rt = await roundtripImage(bundledPhotoPath(HELD_OUT), cb, pngPath, DEFAULT_MAX_PIXELS);
    const tRoundtrip = performance.now();

    // The model half: 96×96 crops (3×3 patches) keep sequences short enough to train in ~1 minute.
    const cropSide = 96;
    const dataDir = join(o.out, 'data');
    info(`4/6 dataset: ${CROPS_PER_PHOTO} captioned crops of each training photo + Moby Dick → ${dataDir}`);
    const crops = await writeCaptionedCrops(
      BUNDLED_PHOTOS.filter((p) => p !== HELD_OUT).map((p) => ({ path: bundledPhotoPath(p), subject: subjectFromName(p) })),
      { out: join(o.out, 'captions'), cropsPerPhoto: CROPS_PER_PHOTO, size: cropSide, seed: 1 },
    );
    const dataset = await buildDataset({
      out: dataDir, imageTokenizer: codebookPath, samples: [crops.jsonl], text: ['moby-dick'], textDocs: 3,
      trainTokenizer: 512, context: 128, maxPixels: cropSide * cropSide, valFraction: 0.05, seed: 1, overwrite: true,
    });
    const tData = performance.now();

    info(`5/6 joint training (pretrain, L = 0.5·L_image + L_text, balanced image targets), ${o.trainSteps} steps`);
    const runDir = join(o.out, 'run');
    rmSync(runDir, { recursive: true, force: true });
    const config = loadTrainConfig(DEMO_CONFIG, [`data=${dataDir}`, `out=${runDir}`, `steps=${o.trainSteps}`, `checkpoint_every=${o.trainSteps}`]);
    const every = Math.max(1, Math.round(o.trainSteps / 8));
    let lastAngle: number | null = null;
    await initEngine(config.engine);
    const summary = await trainModel(config, {
      onStep: (l: StepLog) => {
        if (l.angle_deg !== null) lastAngle = l.angle_deg;
        if (l.step % every === 0 || l.step === o.trainSteps - 1) {
          info(`  step ${String(l.step).padStart(4)}  loss ${fmt(l.loss, 3)}  text ${fmt(l.loss_text, 3)}  image ${l.loss_image === null ? '—' : fmt(l.loss_image, 3)}  θ(L_image, L_text) ${lastAngle === null ? '—' : `${fmt(lastAngle, 1)}°`}  ${Math.round(l.tokens_per_s)} tok/s`);
        }
      },
    });
    const tTrain = performance.now();

    const completionPath = join(o.out, 'completion.png');
    info(`6/6 the model completes the held-out photo from its top row → ${completionPath}`);
    const session = ModelSession.load(summary.checkpoint);
    const heldOut = join(o.out, 'held-out.png');
    const photo = await loadImage(bundledPhotoPath(HELD_OUT), { maxPixels: cropSide * cropSide });
    await writePng(heldOut, photo);
    const completion = await session.completeImage(heldOut, 1);
    session.dispose();
    await writePng(completionPath, sideBySide([completion.original, completion.completed, completion.coderReconstruction]));
    const tEnd = performance.now();

    // The explorer on these outputs; --images is the held-out photo's folder (the photo at full size).
    const rel = (p: string): string => (relative(process.cwd(), p).startsWith('..') ? p : relative(process.cwd(), p) || '.');
    const explore = `uvu serve --codebook ${rel(codebookPath)} --patches ${rel(storeDir)} --runs ${rel(runDir)} --images ${rel(dirname(bundledPhotoPath(HELD_OUT)))}`;
    const result = {
      blas: blas.backend,
      store: { dir: storeDir, images: manifest!.totals.images, patches: manifest!.totals.patches, seconds: (tStore - t0) / 1000 },
      codebook: { file: codebookPath, k: cb.K, iters: o.iters, train_mse: cb.metrics.train_mse, seconds: (tCodebook - tStore) / 1000 },
      heldOut: { photo: HELD_OUT, png: pngPath, prp: rt.prp, psnr: rt.psnr, mse: rt.mse, rows: rt.rows, cols: rt.cols, codes_used: rt.k_active, seconds: (tRoundtrip - tCodebook) / 1000 },
      dataset: { dir: dataDir, rows: dataset.counts.train.rows, captions: crops.samples, seconds: (tData - tRoundtrip) / 1000 },
      training: {
        steps: summary.steps, parameters: summary.parameters, tokensPerSecond: summary.tokensPerSecond, finalLoss: summary.finalLoss, val: summary.val,
        angle: summary.angle, balance: summary.balance, curves: summary.plot, seconds: (tTrain - tData) / 1000,
      },
      completion: { png: completionPath, keepRows: 1, codeAccuracy: completion.codeAccuracy, psnrCompleted: completion.psnrCompleted, psnrCodebook: completion.psnrCoder, seconds: (tEnd - tTrain) / 1000 },
      seconds: (tEnd - t0) / 1000,
      explore,
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
        `  dataset       ${crops.samples} captioned crops + Moby Dick → ${result.dataset.rows} rows of 128 tokens (${result.dataset.seconds.toFixed(1)} s)`,
        `  training      ${summary.steps} steps, ${summary.parameters.toLocaleString('en-US')} parameters, ${Math.round(summary.tokensPerSecond)} tokens/s (${result.training.seconds.toFixed(1)} s)`,
        `                final loss ${fmt(summary.finalLoss.total, 3)} = text ${fmt(summary.finalLoss.text, 3)} + 0.5 × image ${summary.finalLoss.image === null ? '—' : fmt(summary.finalLoss.image, 3)}${summary.val ? `; validation ${fmt(summary.val.total, 3)}` : ''}`,
        `                gradient angle θ(L_image, L_text) ${summary.angle ? `mean ${fmt(summary.angle.meanDeg, 1)}° over ${summary.angle.n} checks (first ${fmt(summary.angle.firstDeg, 1)}°, last ${fmt(summary.angle.lastDeg, 1)}°)` : 'not measured'}`,
        `                curves ${summary.plot}`,
        `  completion    ${completionPath} (original | model's completion of rows 2–3 | codebook reconstruction of the true codes)`,
        `                ${fmt(100 * completion.codeAccuracy, 1)}% of predicted codes exact; PSNR of the predicted rows ${fmt(completion.psnrCompleted, 2)} dB (codebook's own: ${fmt(completion.psnrCoder, 2)} dB)`,
        `  total         ${result.seconds.toFixed(1)} s`,
        '',
        `Explore the codebook, the round trip of the held-out photo and the training curves in a browser:`,
        `  ${explore}`,
      ].join('\n'),
    );
  });
}
