/**
 * The tape-free training step (src/model/train-step.ts) against the tfjs tape (unifiedLoss under
 * tf.variableGrads), on packed rows with images, tied and untied heads, text-only batches and the
 * split image/text gradients. Losses and the joint gradients of the decoder, head and embedding
 * must be bit-identical; the vision tower's (vision-step.ts, sums in another order) and the split
 * gradients equal the tape's to float32 rounding (max |Δ| / max |g| per parameter under GRAD_REL;
 * measured ≤ 4.8e-7): the tape differentiates each part over that part's rows only, so its head
 * products sum over fewer rows (another sgemm blocking), where one forward serves both here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/tf.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel, type ModelInputs } from '../src/model/model.js';
import { TrainStep, type LossTargets } from '../src/model/train-step.js';
import { Vocab } from '../src/tokens/vocab.js';
import { buildSequence } from '../src/data/sequence.js';
import { assembleRow, sampleStarts } from '../src/data/pack.js';
import { buildTargets } from '../src/data/targets.js';
import { loadImage } from '../src/image/io.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { lossGrads } from '../src/train/grads.js';
import { unifiedLoss } from '../src/train/loss.js';
import type { GradMap } from '../src/optim/adamw.js';
import { cropRgb, TEST_MODEL } from './fixtures.js';

await initEngine();

/** Gradients agree to float32 rounding when max |Δ| / max |g| is below this (see worst cases logged). */
const GRAD_REL = 1e-5;

const vocab = new Vocab({ textSize: 256, K: 16 });

function config(tied: boolean): ReturnType<typeof ModelConfigSchema.parse> {
  return ModelConfigSchema.parse({
    ...TEST_MODEL,
    text_config: { ...TEST_MODEL.text_config, num_hidden_layers: 2, initializer_range: 0.2, tie_word_embeddings: tied },
  });
}

/** Row 0: a caption, a text sample and a second caption packed together; row 1: a QA sample. */
async function packedBatch(withImages: boolean): Promise<{ inputs: ModelInputs; t: LossTargets }> {
  const photo = await loadImage(bundledPhotoPath('nagasaki-boats'), { maxPixels: 256 * 256 });
  const crop = (x0: number, w: number): Uint8Array => cropRgb(photo, x0, w, 64);
  const bytes = (s: string): number[] => [...Buffer.from(s)];
  const T = 48;
  const seqs0 = withImages
    ? [
        buildSequence({ kind: 'caption', image: { codes: Int32Array.from([3, 7, 7, 1]), rows: 2, cols: 2 }, text: bytes('boats') }, vocab),
        buildSequence({ kind: 'text', text: bytes('call me ishmael') }, vocab),
        buildSequence({ kind: 'caption', image: { codes: Int32Array.from([0, 5, 9, 12, 2, 2]), rows: 2, cols: 3 }, text: bytes('sea') }, vocab),
      ]
    : [buildSequence({ kind: 'text', text: bytes('call me ishmael') }, vocab), buildSequence({ kind: 'text', text: bytes('some years ago, never mind') }, vocab)];
  const seqs1 = withImages
    ? [buildSequence({ kind: 'qa', image: { codes: Int32Array.from([0, 5, 9, 12]), rows: 2, cols: 2 }, prompt: bytes('how many?'), answer: bytes('2') }, vocab)]
    : [buildSequence({ kind: 'text', text: bytes('how long precisely') }, vocab)];
  const r0 = assembleRow(seqs0, T, vocab.pad);
  const r1 = assembleRow(seqs1, T, vocab.pad);
  const ids = new Int32Array(2 * T);
  const flags = new Uint8Array(2 * T);
  ids.set(r0.ids, 0);
  ids.set(r1.ids, T);
  flags.set(r0.flags, 0);
  flags.set(r1.flags, T);
  const pixels = [crop(0, 64), crop(70, 96), crop(100, 64)];
  let k = 0;
  const images = [...r0.images.map((im) => ({ row: 0, ...im })), ...r1.images.map((im) => ({ row: 1, ...im }))].map((im) => ({ row: im.row, start: im.start, rows: im.rows, cols: im.cols, pixels: pixels[k++]! }));
  const inputs: ModelInputs = { B: 2, T, ids, images, sampleStart: sampleStarts(flags, 2, T) };
  return { inputs, t: buildTargets({ B: 2, T, ids, flags }, vocab, 'pretrain') };
}

function zeroGrads(model: UvuModel): GradMap {
  return new Map([...model.params].map(([name, v]) => [name, new Float32Array(v.size)]));
}

/** Worst max|Δ|/max|g| over the parameters, and how many are bit-identical. */
function compareGrads(ours: GradMap, ref: GradMap, what: string): { worst: number; worstName: string; identical: number } {
  assert.deepEqual([...ref.keys()].sort(), [...ours.keys()].filter((k) => ref.has(k)).sort(), `${what}: gradients of the same parameters`);
  let worst = 0;
  let worstName = '';
  let identical = 0;
  for (const [name, r] of ref) {
    const o = ours.get(name)!;
    let d = 0;
    let s = 0;
    for (let i = 0; i < r.length; i++) {
      d = Math.max(d, Math.abs(o[i]! - r[i]!));
      s = Math.max(s, Math.abs(r[i]!));
    }
    if (d === 0) identical++;
    const e = s > 0 ? d / s : d;
    if (e > worst) [worst, worstName] = [e, name];
  }
  assert.ok(worst < GRAD_REL, `${what}: gradient of ${worstName} differs by ${worst.toExponential(2)} relative`);
  console.log(`# ${what}: ${identical}/${ref.size} gradients bit-identical, worst ${worstName} ${worst.toExponential(2)} relative`);
  return { worst, worstName, identical };
}

async function jointCase(tied: boolean, withImages: boolean): Promise<void> {
  const what = `${tied ? 'tied' : 'untied'} head, ${withImages ? 'images' : 'text only'}`;
  const { inputs, t } = await packedBatch(withImages);
  const model = UvuModel.init(config(tied), vocab, 3);
  const w = { image: 0.5, text: 1 };
  let ref = { total: 0, image: 0, text: 0 };
  const { grads: refGrads } = lossGrads(model, () => {
    const parts = unifiedLoss(model, inputs, t, w);
    ref = { total: parts.total.dataSync()[0]!, image: parts.image.dataSync()[0]!, text: parts.text.dataSync()[0]!, };
    return parts.total;
  });
  const step = new TrainStep(model);
  const grads = zeroGrads(model);
  const losses = step.forward(inputs, t, w);
  step.backward(grads, w);
  assert.ok(ref.text > 0, `${what}: a text loss`);
  assert.equal(losses.total, ref.total, `${what}: total loss`);
  assert.equal(losses.image, ref.image, `${what}: image loss`);
  assert.equal(losses.text, ref.text, `${what}: text loss`);
  // The decoder, head and embedding: the same operations in the same order, so bit for bit. The
  // vision tower (vision-step.ts) sums its gradients in another order: float32 rounding there.
  compareGrads(grads, refGrads, what);
  for (const [name, r] of refGrads) if (!name.startsWith('visual.')) assert.deepEqual(grads.get(name), r, `${what}: ${name} bit for bit`);
  // Buffers are reused: a second step on the same batch gives the same result.
  const again = zeroGrads(model);
  assert.equal(step.forward(inputs, t, w).total, ref.total);
  step.backward(again, w);
  for (const [name, g] of grads) assert.deepEqual(again.get(name), g, `${what}: second step, ${name}`);
  model.dispose();
}

test('tape-free step = tfjs tape: tied head, packed rows with images', () => jointCase(true, true));
test('tape-free step = tfjs tape: untied head, packed rows with images', () => jointCase(false, true));
test('tape-free step = tfjs tape: a text-only batch (no images)', () => jointCase(true, false));

test('one forward, two backward passes: ∇L_image and ∇L_text equal the tape’s separate passes', async () => {
  const { inputs, t } = await packedBatch(true);
  const model = UvuModel.init(config(true), vocab, 4);
  const gi = lossGrads(model, () => unifiedLoss(model, inputs, t, { image: 1, text: 0 }).image);
  const gt = lossGrads(model, () => unifiedLoss(model, inputs, t, { image: 0, text: 1 }).text);
  const step = new TrainStep(model);
  const oursI = zeroGrads(model);
  const oursT = zeroGrads(model);
  const losses = step.forward(inputs, t, { image: 0.5, text: 1 });
  step.backward(oursI, { image: 1, text: 0 });
  step.backward(oursT, { image: 0, text: 1 });
  assert.equal(losses.image, gi.value);
  assert.equal(losses.text, gt.value);
  compareGrads(oursI, gi.grads, 'image part');
  compareGrads(oursT, gt.grads, 'text part');
  model.dispose();
});

test('the step refuses a backward before any forward and a batch that does not fit', async () => {
  const model = UvuModel.init(config(true), vocab, 1);
  const step = new TrainStep(model);
  assert.throws(() => step.backward(zeroGrads(model), { image: 1, text: 1 }), /backward before forward/);
  const { inputs, t } = await packedBatch(true);
  assert.throws(() => step.forward({ ...inputs, ids: inputs.ids.subarray(1) }, t, { image: 1, text: 1 }), /B·T = 96 values/);
  model.dispose();
});
