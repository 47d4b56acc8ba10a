import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine } from '../src/engine/tf.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel, vitPatches, type ModelInputs } from '../src/model/model.js';
import { generate } from '../src/infer/generate.js';
import { Vocab } from '../src/tokens/vocab.js';
import { buildSequence } from '../src/data/sequence.js';
import { buildTargets } from '../src/data/targets.js';
import { loadImage } from '../src/image/io.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { lossGrads, gradientAngle, combineGrads } from '../src/train/grads.js';
import { unifiedLoss, crossEntropy } from '../src/train/loss.js';
import { AdamW, clipGradients, learningRate, type GradMap } from '../src/optim/adamw.js';
import { Rng } from '../src/util/rng.js';
import { cropRgb, TEST_MODEL, twoRows } from './fixtures.js';

await initEngine();

const TINY_MODEL = ModelConfigSchema.parse(TEST_MODEL);

const vocab = new Vocab({ textSize: 256, K: 16 });

/** One caption row and one QA row (2×2-patch crops of a real photo), padded to T = 32. */
async function fixedBatch(): Promise<ModelInputs & { flags: Uint8Array }> {
  const photo = await loadImage(bundledPhotoPath('nagasaki-boats'), { maxPixels: 256 * 256 });
  const crop = (x0: number): Uint8Array => cropRgb(photo, x0, 64, 64);
  const bytes = (s: string): number[] => [...Buffer.from(s)];
  const caption = buildSequence({ kind: 'caption', image: { codes: Int32Array.from([3, 7, 7, 1]), rows: 2, cols: 2 }, text: bytes('boats on water') }, vocab);
  const qa = buildSequence({ kind: 'qa', image: { codes: Int32Array.from([0, 5, 9, 12]), rows: 2, cols: 2 }, prompt: bytes('how many?'), answer: bytes('2') }, vocab);
  const T = 32;
  const { ids, flags } = twoRows(caption, qa, T, vocab.pad);
  return {
    B: 2,
    T,
    ids,
    flags,
    images: [
      { row: 0, start: caption.image!.start, rows: 2, cols: 2, pixels: crop(0) },
      { row: 1, start: qa.image!.start, rows: 2, cols: 2, pixels: crop(64) },
    ],
  };
}

test('vitPatches lays out each 32-px patch as four adjacent 16-px tokens (merge order)', () => {
  // Pixel value encodes its 16-px block: block (by, bx) of a 64×64 image has value 10·by + bx.
  const pixels = new Uint8Array(64 * 64 * 3);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) pixels.fill(10 * (y >> 4) + (x >> 4), (y * 64 + x) * 3, (y * 64 + x) * 3 + 3);
  const out = vitPatches([{ row: 0, start: 0, rows: 2, cols: 2, pixels }], 2, 2);
  const blockOfToken = Array.from({ length: 16 }, (_, t) => Math.round((out[t * 768]! + 1) * 127.5));
  // 32-px patch 0 = blocks (0,0) (0,1) (1,0) (1,1); patch 1 = (0,2) (0,3) (1,2) (1,3); …
  assert.deepEqual(blockOfToken, [0, 1, 10, 11, 2, 3, 12, 13, 20, 21, 30, 31, 22, 23, 32, 33]);
});

test('a tiny model overfits a fixed batch (loss falls from ~ln V to below 0.3)', async () => {
  const batch = await fixedBatch();
  const t = buildTargets(batch, vocab, 'pretrain');
  const model = UvuModel.init(TINY_MODEL, vocab, 1);
  const opt = new AdamW(model.params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0 });
  const w = { image: 0.5, text: 1 };
  let first = NaN;
  let last = NaN;
  for (let step = 0; step < 150; step++) {
    const g = lossGrads(model, () => unifiedLoss(model, batch, t, w).total);
    if (step === 0) first = g.value;
    last = g.value;
    clipGradients(g.grads, 1);
    opt.step(g.grads, 1e-2);
  }
  model.dispose();
  // At initialisation both losses are near ln V, so L = L_text + 0.5·L_image ≈ 1.5·ln V.
  assert.ok(first > 0.8 * 1.5 * Math.log(vocab.size), `initial loss ${first} should be near chance`);
  assert.ok(last < 0.3, `loss after 150 steps ${last} should fall below 0.3 (started at ${first})`);
});

test('causal: changing a later token never changes earlier hidden states; images only affect positions at or after <img>', async () => {
  const batch = await fixedBatch();
  const model = UvuModel.init(TINY_MODEL, vocab, 2);
  const base = tf.tidy(() => model.forwardHidden(batch).arraySync() as number[][]);
  const ids = Int32Array.from(batch.ids);
  ids[20] = 65; // a later text token of row 0
  const changed = tf.tidy(() => model.forwardHidden({ ...batch, ids }).arraySync() as number[][]);
  for (let p = 0; p < 20; p++) assert.deepEqual(changed[p], base[p], `position ${p} must not see position 20`);
  assert.notDeepEqual(changed[20], base[20]);
  const pixels = Uint8Array.from(batch.images[0]!.pixels).fill(0);
  const images = [{ ...batch.images[0]!, pixels }, batch.images[1]!];
  const dark = tf.tidy(() => model.forwardHidden({ ...batch, images }).arraySync() as number[][]);
  assert.deepEqual(dark[0], base[0]); // <bos> precedes the image
  assert.deepEqual(dark[1], base[1]); // <img> precedes the visual tokens
  assert.notDeepEqual(dark[2], base[2]); // v_1
  assert.deepEqual(dark[32], base[32]); // row 1 is another sequence
  model.dispose();
});

test('cross-entropy equals −log softmax at the target', () => {
  const logits = [
    [1, 2, 3],
    [0, 0, 5],
  ];
  const ce = tf.tidy(() => crossEntropy(tf.tensor2d(logits), Int32Array.from([0, 2])).arraySync() as number[]);
  const ref = logits.map((row, i) => {
    const lse = Math.log(row.reduce((a, b) => a + Math.exp(b), 0));
    return lse - row[[0, 2][i]!]!;
  });
  ce.forEach((v, i) => assert.ok(Math.abs(v - ref[i]!) < 1e-5));
});

test('gradient angle: toy gradients with known angles, shared parameters only', () => {
  const g = (entries: Record<string, number[]>): GradMap => new Map(Object.entries(entries).map(([k, v]) => [k, Float32Array.from(v)]));
  // Over "shared": (1, 0) vs (1, 1) → 45°. The embedding entries (excluded) would change the answer.
  const a = g({ shared: [1, 0], 'model.embed_tokens.weight': [5, 5] });
  const b = g({ shared: [1, 1], 'model.embed_tokens.weight': [-5, 5] });
  assert.ok(Math.abs(gradientAngle(a, b, ['shared']).degrees - 45) < 1e-9);
  assert.ok(Math.abs(gradientAngle(a, g({ shared: [-2, 0] }), ['shared']).degrees - 180) < 1e-9);
  assert.ok(Math.abs(gradientAngle(a, g({ shared: [0, 3] }), ['shared']).degrees - 90) < 1e-9);
  assert.ok(Number.isNaN(gradientAngle(a, g({ shared: [0, 0] }), ['shared']).cos));
  const c = combineGrads(a, 0.5, b, 1);
  assert.deepEqual(Array.from(c.get('shared')!), [1.5, 1]);
});

test('gradient angle on the model: ∇L_text vs itself is 0°, and the two losses split the total gradient exactly', async () => {
  const batch = await fixedBatch();
  const t = buildTargets(batch, vocab, 'pretrain');
  const model = UvuModel.init(TINY_MODEL, vocab, 3);
  const shared = model.sharedParamNames();
  assert.ok(!shared.includes('model.embed_tokens.weight') && shared.includes('visual.patch_embed.weight') && shared.includes('model.norm.weight'));
  const gi = lossGrads(model, () => unifiedLoss(model, batch, t, { image: 1, text: 0 }).image);
  const gt = lossGrads(model, () => unifiedLoss(model, batch, t, { image: 0, text: 1 }).text);
  const gAll = lossGrads(model, () => unifiedLoss(model, batch, t, { image: 0.5, text: 1 }).total);
  assert.ok(Math.abs(gradientAngle(gt.grads, gt.grads, shared).degrees) < 1e-3);
  const sum = combineGrads(gi.grads, 0.5, gt.grads, 1);
  for (const [name, g] of gAll.grads) {
    const s = sum.get(name)!;
    for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i]! - s[i]!) < 1e-5 + 1e-3 * Math.abs(g[i]!), `${name}[${i}]`);
  }
  const angle = gradientAngle(gi.grads, gt.grads, shared).degrees;
  assert.ok(angle > 0 && angle < 180);
  model.dispose();
});

test('learning rate: linear warmup then cosine to min_lr_ratio', () => {
  const c = { lr: 1, warmup_frac: 0.1, min_lr_ratio: 0.1 };
  assert.equal(learningRate(0, 100, c), 0.1);
  assert.equal(learningRate(9, 100, c), 1);
  assert.ok(Math.abs(learningRate(99, 100, c) - 0.1) < 1e-3);
  assert.ok(learningRate(50, 100, c) < learningRate(20, 100, c));
});

test('AdamW: an optimizer restored with loadState(state()) steps exactly like the original; a mismatched state is refused', () => {
  const cfg = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
  const params = (w: number[], b: number[]): Map<string, tf.Variable> =>
    new Map<string, tf.Variable>([
      ['w', tf.variable(tf.tensor2d(w, [2, 2]))],
      ['norm.b', tf.variable(tf.tensor1d(b))],
    ]);
  const grads = (k: number): GradMap => new Map([['w', Float32Array.from([k, -k, 0.5, 1])], ['norm.b', Float32Array.from([1, -k])]]);
  const pa = params([1, -2, 3, 0.5], [0.1, 0.2]);
  const a = new AdamW(pa, cfg);
  for (let k = 1; k <= 3; k++) a.step(grads(k), 0.01);
  const pb = params(Array.from(pa.get('w')!.dataSync()), Array.from(pa.get('norm.b')!.dataSync()));
  const b = new AdamW(pb, cfg);
  b.loadState(a.state());
  assert.equal(b.t, 3);
  a.step(grads(4), 0.01);
  b.step(grads(4), 0.01);
  for (const name of pa.keys()) {
    assert.deepEqual(pb.get(name)!.dataSync(), pa.get(name)!.dataSync(), name);
    assert.deepEqual(b.state().m.get(name), a.state().m.get(name));
    assert.deepEqual(b.state().v.get(name), a.state().v.get(name));
  }
  const fresh = new AdamW(pb, cfg);
  assert.throws(() => fresh.loadState({ t: 1, m: new Map(), v: new Map() }), /AdamW: state lacks m of w/);
  assert.throws(() => fresh.loadState({ ...a.state(), m: new Map([...a.state().m, ['extra', new Float32Array(1)]]) }), /m of extra, which is not a parameter/);
  assert.throws(() => fresh.loadState({ ...a.state(), v: new Map([...a.state().v, ['w', new Float32Array(3)]]) }), /v of w has 3 values, parameter has 4/);
  assert.equal(fresh.t, 0);
  for (const v of [...pa.values(), ...pb.values()]) v.dispose();
});

test('generate: greedy decoding is deterministic and stays in the allowed id range', async () => {
  const batch = await fixedBatch();
  const model = UvuModel.init(TINY_MODEL, vocab, 4);
  const prefix = Array.from(batch.ids.subarray(0, 8));
  const images = [batch.images[0]!];
  const a = generate(model, prefix, images, { maxNewTokens: 5, allowFrom: vocab.imageOffset, allowTo: vocab.size });
  const b = generate(model, prefix, images, { maxNewTokens: 5, allowFrom: vocab.imageOffset, allowTo: vocab.size });
  assert.deepEqual(a, b);
  assert.equal(a.length, 5);
  assert.ok(a.every((id) => vocab.isImageId(id)));
  const sampled = generate(model, prefix, images, { maxNewTokens: 5, allowFrom: 0, allowTo: 256, temperature: 1, rng: new Rng(1) });
  assert.ok(sampled.every((id) => id >= 0 && id < 256));
  // Banning the greedy choice changes it, and the banned id never appears.
  const banned = generate(model, prefix, images, { maxNewTokens: 5, allowFrom: vocab.imageOffset, allowTo: vocab.size, bannedIds: [a[0]!] });
  assert.notEqual(banned[0], a[0]);
  assert.ok(!banned.includes(a[0]!));
  model.dispose();
});
