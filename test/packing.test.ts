/**
 * Document masking for packed rows (issue 14, item 2): a row that packs several samples attends
 * only within each sample and restarts RoPE positions at each sample's first token, so every
 * sample gets the outputs it would get alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel, type ImageInput, type ModelInputs } from '../src/model/model.js';
import { Vocab } from '../src/tokens/vocab.js';
import { buildSequence, FLAG_SAMPLE_START, type Sequence } from '../src/data/sequence.js';
import { assembleRow, sampleStarts } from '../src/data/pack.js';
import { loadImage } from '../src/image/io.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { cropRgb, TEST_MODEL } from './fixtures.js';

await initEngine();

const CONFIG = ModelConfigSchema.parse({ ...TEST_MODEL, text_config: { ...TEST_MODEL.text_config, num_hidden_layers: 2, initializer_range: 0.2 } });
const vocab = new Vocab({ textSize: 256, K: 16 });
const bytes = (s: string): number[] => [...Buffer.from(s)];

test('assembleRow marks the first token of every sample; sampleStarts maps each position to its sample start', () => {
  const a = buildSequence({ kind: 'text', text: bytes('abc') }, vocab); // <bos>abc<eos>: 5 tokens
  const b = buildSequence({ kind: 'text', text: bytes('de') }, vocab); // 4 tokens
  const row = assembleRow([a, b], 12, vocab.pad);
  const starts = [...row.flags].map((f, t) => ((f & FLAG_SAMPLE_START) !== 0 ? t : -1)).filter((t) => t >= 0);
  assert.deepEqual(starts, [0, 5]);
  const flags = new Uint8Array(24);
  flags.set(row.flags, 0);
  flags.set(assembleRow([b, a], 12, vocab.pad).flags, 12);
  assert.deepEqual([...sampleStarts(flags, 2, 12)], [0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4]);
  // Rows without marks (stores written before them) are one sample each.
  assert.deepEqual([...sampleStarts(new Uint8Array(6), 2, 3)], [0, 0, 0, 0, 0, 0]);
  assert.throws(() => sampleStarts(flags, 2, 11), /24 flags for a batch of 2×11/);
});

/** Hidden states (T, C) of one row. */
function hidden(model: UvuModel, inputs: ModelInputs): Float32Array {
  return tf.tidy(() => model.forwardHidden(inputs).dataSync().slice() as Float32Array);
}

test('a packed row gives every sample the hidden states it gets alone; without the mask it does not', async () => {
  const photo = await loadImage(bundledPhotoPath('nagasaki-boats'), { maxPixels: 256 * 256 });
  const crop = (x0: number): Uint8Array => cropRgb(photo, x0, 64, 64);
  const pixels = [crop(0), crop(80)];
  const seqs: Sequence[] = [
    buildSequence({ kind: 'caption', image: { codes: Int32Array.from([3, 7, 7, 1]), rows: 2, cols: 2 }, text: bytes('boats') }, vocab),
    buildSequence({ kind: 'text', text: bytes('call me ishmael') }, vocab),
    buildSequence({ kind: 'qa', image: { codes: Int32Array.from([0, 5, 9, 12]), rows: 2, cols: 2 }, prompt: bytes('how many?'), answer: bytes('2') }, vocab),
  ];
  const T = 64;
  const row = assembleRow(seqs, T, vocab.pad);
  const images: ImageInput[] = row.images.map((im, j) => ({ row: 0, start: im.start, rows: im.rows, cols: im.cols, pixels: pixels[j]! }));
  const model = UvuModel.init(CONFIG, vocab, 4);
  const C = CONFIG.text_config.hidden_size;
  const packed = hidden(model, { B: 1, T, ids: row.ids, images, sampleStart: sampleStarts(row.flags, 1, T) });
  const unmasked = hidden(model, { B: 1, T, ids: row.ids, images });
  let at = 0;
  let imageIndex = 0;
  let leaked = 0;
  for (const s of seqs) {
    const L = s.ids.length;
    const alone = hidden(model, {
      B: 1,
      T: L,
      ids: s.ids,
      images: s.image ? [{ row: 0, start: s.image.start, rows: s.image.rows, cols: s.image.cols, pixels: pixels[imageIndex++]! }] : [],
    });
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < L * C; i++) {
      scale = Math.max(scale, Math.abs(alone[i]!));
      diff = Math.max(diff, Math.abs(packed[at * C + i]! - alone[i]!));
      leaked = Math.max(leaked, Math.abs(unmasked[at * C + i]! - alone[i]!));
    }
    // Not bit-identical: the products run with other shapes (rows, keys) and round differently.
    assert.ok(diff <= 1e-5 * scale, `sample at ${at}: packed differs from alone by ${diff} (scale ${scale})`);
    at += L;
  }
  assert.ok(leaked > 1e-2, `without the mask the later samples should see the earlier ones (max change ${leaked})`);
  model.dispose();
});

test('sample starts that are not starts at or before their position are refused', () => {
  const model = UvuModel.init(CONFIG, vocab, 4);
  const ids = new Int32Array(4).fill(vocab.bos);
  assert.throws(() => tf.tidy(() => model.forwardHidden({ B: 1, T: 4, ids, images: [], sampleStart: Int32Array.from([0, 2, 2, 2]) })), /sample start 2 at position 1/);
  assert.throws(() => tf.tidy(() => model.forwardHidden({ B: 1, T: 4, ids, images: [], sampleStart: Int32Array.from([0, 1, 0, 0]) })), /sample start 0 at position 2/);
  model.dispose();
});
