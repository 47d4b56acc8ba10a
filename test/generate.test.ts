/**
 * Generation with a KV cache (src/model/kv-cache.ts) against the full-prefix reference path
 * (generate with kvCache: false): identical greedy and seeded-sampling ids for an `ask`-style
 * text answer and for image-code completion, logits equal to float32 rounding at every step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel, type ImageInput } from '../src/model/model.js';
import { KvDecoder } from '../src/model/kv-cache.js';
import { generate, type GenerateOptions } from '../src/infer/generate.js';
import { Vocab } from '../src/tokens/vocab.js';
import { questionPrompt } from '../src/data/sequence.js';
import { Rng } from '../src/util/rng.js';
import { TEST_MODEL } from './fixtures.js';

await initEngine();

// Two decoder layers (the cache is per layer) and a larger init scale (0.3) than training's 0.02, so
// attention is far from uniform and RoPE positions matter.
const CONFIG = ModelConfigSchema.parse({
  ...TEST_MODEL,
  text_config: { ...TEST_MODEL.text_config, num_hidden_layers: 2, initializer_range: 0.3 },
});
const vocab = new Vocab({ textSize: 256, K: 64 });
const model = UvuModel.init(CONFIG, vocab, 11);

function randomImage(rows: number, cols: number, seed: number): Uint8Array {
  const rng = new Rng(seed);
  const px = new Uint8Array(rows * 32 * cols * 32 * 3);
  for (let i = 0; i < px.length; i++) px[i] = rng.int(256);
  return px;
}

/** `ask`: <bos><|user|><img> 2×2 visual tokens </img> question <|assistant|>. */
function askCase(): { prefix: number[]; images: ImageInput[]; o: GenerateOptions } {
  const prompt = questionPrompt({ codes: new Int32Array(4), rows: 2, cols: 2 }, [...Buffer.from('what is this?')], vocab);
  const images: ImageInput[] = [{ row: 0, start: prompt.image!.start, rows: 2, cols: 2, pixels: randomImage(2, 2, 1) }];
  return {
    prefix: Array.from(prompt.ids),
    images,
    o: {
      maxNewTokens: 20,
      allowFrom: 0,
      allowTo: vocab.imageOffset,
      bannedIds: [vocab.bos, vocab.pad, vocab.imgStart, vocab.imgEnd, vocab.user, vocab.assistant, vocab.eos],
    },
  };
}

/** `complete-image`: <bos><img> + the kept top row of a 4×5 grid (visual) → the other 15 codes. */
function completionCase(): { prefix: number[]; images: ImageInput[]; o: GenerateOptions } {
  const rows = 4;
  const cols = 5;
  const rng = new Rng(3);
  const kept = Array.from({ length: cols }, () => vocab.imageId(rng.int(vocab.K)));
  const pixels = randomImage(rows, cols, 2).subarray(0, 32 * cols * 32 * 3);
  return {
    prefix: [vocab.bos, vocab.imgStart, ...kept],
    images: [{ row: 0, start: 2, rows: 1, cols, pixels }],
    o: { maxNewTokens: rows * cols - cols, allowFrom: vocab.imageOffset, allowTo: vocab.size },
  };
}

function both(c: { prefix: number[]; images: ImageInput[]; o: GenerateOptions }, extra: Partial<GenerateOptions> = {}): { cached: number[]; reference: number[] } {
  const rngOf = () => (extra.temperature ? { rng: new Rng(99) } : {});
  const reference = generate(model, c.prefix, c.images, { ...c.o, ...extra, ...rngOf(), kvCache: false });
  const cached = generate(model, c.prefix, c.images, { ...c.o, ...extra, ...rngOf() });
  return { cached, reference };
}

/** Reference logits after `ids` (prompt + what followed it): the full-prefix pass. */
function referenceLogits(images: ImageInput[], ids: number[]): Float32Array {
  return tf.tidy(() => {
    const hidden = model.forwardHidden({ B: 1, T: ids.length, ids: Int32Array.from(ids), images });
    return model.logits(tf.slice(hidden, [ids.length - 1, 0], [1, hidden.shape[1]])).dataSync() as Float32Array;
  });
}

function assertClose(got: Float32Array, want: Float32Array, what: string): void {
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < want.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(want[i]!));
    maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
  }
  assert.ok(maxDiff <= 1e-4 * maxAbs, `${what}: logits differ by ${maxDiff} (largest |logit| ${maxAbs})`);
}

test('cached greedy text answer (ask) equals the full-prefix path', () => {
  const { cached, reference } = both(askCase());
  assert.equal(reference.length, 20);
  assert.deepEqual(cached, reference);
  assert.ok(new Set(reference).size >= 8, 'a repetitive answer would test little');
});

test('cached greedy image completion equals the full-prefix path (image-code range only)', () => {
  const { cached, reference } = both(completionCase());
  assert.equal(reference.length, 15);
  assert.ok(reference.every((id) => vocab.isImageId(id)));
  assert.deepEqual(cached, reference);
  assert.ok(new Set(reference).size >= 5, 'a repetitive completion would test little');
});

test('cached temperature sampling with a seeded Rng equals the full-prefix path', () => {
  for (const c of [askCase(), completionCase()]) {
    const { cached, reference } = both(c, { temperature: 1 });
    assert.deepEqual(cached, reference);
  }
});

test('KvDecoder logits: bit-identical after prefill, within 1e-4 relative at every later step', () => {
  for (const c of [askCase(), completionCase()]) {
    const ids = [...c.prefix];
    const continuation = generate(model, c.prefix, c.images, { ...c.o, kvCache: false });
    const dec = new KvDecoder(model);
    const first = dec.prefill(ids, c.images);
    assert.deepEqual(first, referenceLogits(c.images, ids), 'prefill runs the reference computation');
    for (const id of continuation) {
      ids.push(id);
      const got = dec.step(id);
      assertClose(got, referenceLogits(c.images, ids), `position ${ids.length - 1}`);
    }
    assert.equal(dec.length, ids.length);
  }
});

test('cached generation stops at the context limit as the full-prefix path does, and streams each id', () => {
  const c = askCase();
  const maxT = CONFIG.text_config.max_position_embeddings;
  const streamed: number[] = [];
  const o = { ...c.o, maxNewTokens: 1000 };
  const reference = generate(model, c.prefix, c.images, { ...o, kvCache: false });
  const cached = generate(model, c.prefix, c.images, { ...o, onToken: (id) => streamed.push(id) });
  assert.equal(reference.length, maxT - c.prefix.length);
  assert.deepEqual(cached, reference);
  assert.deepEqual(streamed, cached);
  const dec = new KvDecoder(model, c.prefix.length);
  dec.prefill(c.prefix, c.images);
  assert.throws(() => dec.step(0), /full/);
});

test('stop ids end cached generation as they end the reference', () => {
  const c = askCase();
  const reference = generate(model, c.prefix, c.images, { ...c.o, kvCache: false });
  // Stop at the id the reference emits third: both must return exactly its first three ids.
  const o = { ...c.o, stopIds: [reference[2]!] };
  const cut = generate(model, c.prefix, c.images, { ...o, kvCache: false });
  assert.deepEqual(generate(model, c.prefix, c.images, o), cut);
  assert.equal(cut.length, reference.indexOf(reference[2]!) + 1);
});
