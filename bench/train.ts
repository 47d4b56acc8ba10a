/**
 * Training throughput of the unified model: tokens/s of one forward + backward pass (the
 * gradient of the joint loss over every parameter) for the reference config, on uvu-blas
 * (tfjs-backend-cpu kernels with BLAS matrix products and our gather/elementwise kernels)
 * against the stock tfjs 'cpu' and 'wasm' backends, in the same run, on the same batch. The
 * model code is identical on all three, including its fused JS ops (attention softmax, SwiGLU,
 * GELU, RMSNorm, cross-entropy), so the ratios measure the backends' kernels.
 * Also: the share of a uvu-blas step spent in matrix-product kernels (tf.profile).
 *
 * Batch: B rows of T tokens, each row a caption-style sequence per 192×192 bundled photo
 * (36 visual tokens) followed by text ids — the shape of the experiment's pretraining rows.
 * full: configs/reference.json, B = 2, T = 256; small: configs/tiny.json, B = 2, T = 128 (B = 2: the
 * stock cpu backend already needs about a minute per step).
 *
 * Standalone: node dist/bench/train.js [--size small|full]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tf, initEngine, profileKernels, type EngineName } from '../src/engine/tf.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel, type ImageInput, type ModelInputs } from '../src/model/model.js';
import { Vocab } from '../src/tokens/vocab.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { loadImage } from '../src/image/io.js';
import { lossGrads } from '../src/train/grads.js';
import { unifiedLoss, type LossTargets } from '../src/train/loss.js';
import { Rng } from '../src/util/rng.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';
import { segmentSum } from '../src/engine/segment-kernels.js';

const ENGINES: EngineName[] = ['blas', 'cpu', 'wasm'];

/**
 * Stock tfjs-backend-wasm 4.22 has no UnsortedSegmentSum kernel, the gradient of tf.gather, so
 * it cannot run this model's backward pass at all. To still put a number on it, the benchmark
 * adds that one kernel to wasm (our JS scatter-add on the heap copy) and labels the row so.
 */
function addWasmSegmentSum(): void {
  if (tf.getKernel('UnsortedSegmentSum', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'UnsortedSegmentSum',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
      const wasm = backend as unknown as { readSync(id: object): ArrayLike<number>; makeOutput(shape: number[], dtype: string, offset?: number, values?: Float32Array): tf.TensorInfo };
      const D = x.shape.slice(1).reduce((a, b) => a * b, 1);
      const values = segmentSum(Float32Array.from(wasm.readSync(x.dataId)), Int32Array.from(wasm.readSync(segmentIds.dataId)), x.shape[0]!, D, numSegments);
      return wasm.makeOutput([numSegments, ...x.shape.slice(1)], 'float32', undefined, values);
    },
  });
}

export async function makeBatch(vocab: Vocab, B: number, T: number): Promise<{ inputs: ModelInputs; targets: LossTargets }> {
  const rng = new Rng(7);
  const ids = new Int32Array(B * T);
  const images: ImageInput[] = [];
  for (let b = 0; b < B; b++) {
    const photo = await loadImage(bundledPhotoPath(BUNDLED_PHOTOS[b % BUNDLED_PHOTOS.length]!), { maxPixels: 192 * 192 });
    const rows = photo.height / 32;
    const cols = photo.width / 32;
    const row = ids.subarray(b * T, (b + 1) * T);
    row[0] = vocab.bos;
    row[1] = vocab.imgStart;
    for (let i = 0; i < rows * cols; i++) row[2 + i] = vocab.imageId(rng.int(vocab.K));
    row[2 + rows * cols] = vocab.imgEnd;
    for (let t = 3 + rows * cols; t < T; t++) row[t] = rng.int(vocab.textSize);
    images.push({ row: b, start: 2, rows, cols, pixels: photo.data });
  }
  const targets = new Int32Array(B * T);
  const textMask = new Float32Array(B * T);
  const imageMask = new Float32Array(B * T);
  for (let i = 0; i < B * T; i++) {
    if ((i + 1) % T === 0) continue; // the last position of a row has no target
    targets[i] = ids[i + 1]!;
    if (vocab.isImageId(targets[i]!)) imageMask[i] = 1;
    else textMask[i] = 1;
  }
  return { inputs: { B, T, ids, images }, targets: { targets, textMask, imageMask } };
}

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  const full = o.size === 'full';
  const configFile = full ? 'configs/reference.json' : 'configs/tiny.json';
  const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { model: unknown };
  const modelConfig = ModelConfigSchema.parse(raw.model);
  const B = 2; // the stock cpu backend needs minutes per step beyond this
  const T = full ? 256 : 128;
  const vocab = new Vocab({ textSize: 1024, K: 1024 });
  const { inputs, targets } = await makeBatch(vocab, B, T);
  const weights = { image: 0.5, text: 1 };
  const config = `${configFile}, B=${B}, T=${T}, vocab ${vocab.size}`;
  const rows: BenchRow[] = [];
  const perEngine: Partial<Record<EngineName, number>> = {};
  for (const engine of ENGINES) {
    await initEngine(engine);
    if (engine === 'wasm') addWasmSegmentSum();
    const model = UvuModel.init(modelConfig, vocab, 0);
    const step = (): void => {
      lossGrads(model, () => unifiedLoss(model, inputs, targets, weights).total);
    };
    step(); // warm-up: kernel set-up, constant tables
    const repeats = engine === 'blas' ? 3 : 1;
    let best = Infinity;
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      step();
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    perEngine[engine] = (B * T) / best;
    rows.push({ bench: 'train', config, metric: `tokens/s fwd+bwd (${engine})`, value: perEngine[engine]!, unit: 'tokens/s', note: `best of ${repeats}: ${best.toFixed(2)} s/step, ${model.parameterCount().toLocaleString('en-US')} parameters${engine === 'wasm' ? '; stock wasm lacks UnsortedSegmentSum (gather gradient): added for this row' : ''}` });
    if (engine === 'blas') {
      const p = await profileKernels(() => {
        const g = tf.variableGrads(() => unifiedLoss(model, inputs, targets, weights).total, [...model.params.values()]);
        return [g.value, ...Object.values(g.grads)];
      });
      const matmulMs = p.byKernel.filter((k) => k.name === 'BatchMatMul' || k.name === '_FusedMatMul').reduce((a, k) => a + k.ms, 0);
      rows.push({ bench: 'train', config, metric: 'matrix-product share of step (blas)', value: matmulMs / p.wallMs, unit: 'fraction', note: `${matmulMs.toFixed(0)} of ${p.wallMs.toFixed(0)} ms; other kernels ${(p.totalMs - matmulMs).toFixed(0)} ms; the rest is JS (fused ops, tape)` });
    }
    model.dispose();
  }
  await initEngine('blas');
  const faster = Math.max(perEngine.cpu!, perEngine.wasm!);
  rows.push({ bench: 'train', config, metric: 'speed-up vs faster stock backend', value: perEngine.blas! / faster, unit: '×', note: `target ≥ 10×; vs cpu ${(perEngine.blas! / perEngine.cpu!).toFixed(1)}×, vs wasm ${(perEngine.blas! / perEngine.wasm!).toFixed(1)}×` });
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size = process.argv.includes('small') ? 'small' : 'full';
  console.log(formatRows(await run({ size })));
}
