import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPatchStore } from '../src/patches/build.js';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { saveCodebook } from '../src/codebook/file.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { buildDataset } from '../src/data/build.js';
import { SeqDataset } from '../src/data/dataset.js';
import { parseTrainConfig, loadTrainConfig, type TrainConfig } from '../src/train/config.js';
import { train } from '../src/train/train.js';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { AdamW } from '../src/optim/adamw.js';
import { UvuModel } from '../src/model/model.js';
import { Vocab } from '../src/tokens/vocab.js';
import { ModelSession } from '../src/infer/session.js';
import { loadImage } from '../src/image/io.js';
import { UvuError } from '../src/util/errors.js';
import { setQuiet } from '../src/util/progress.js';
import { initEngine } from '../src/engine/tf.js';
import { TEST_MODEL } from './fixtures.js';
import { assertCleanFailure, runUvu } from './hostile.js';

await initEngine();

setQuiet(true);
const work = mkdtempSync(join(tmpdir(), 'uvu-train-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

// A K = 16 codebook from two bundled photos, and a dataset of 64×64 captioned photos + a little text.
const store = join(work, 'patches');
await buildPatchStore([bundledPhotoPath('black-canyon'), bundledPhotoPath('march-pastoral')], { out: store, maxPixels: 128 * 128 });
const codebookPath = join(work, 'cb.safetensors');
saveCodebook(codebookPath, buildKmeansCodebook(store, { method: 'kmeans', size: 16, iters: 3, seed: 1 }));
const dataDir = join(work, 'data');
await buildDataset({ out: dataDir, imageTokenizer: codebookPath, photos: ['bundled'], text: ['moby-dick'], textDocs: 2, trainTokenizer: 300, context: 64, maxPixels: 64 * 64, valFraction: 0.2, seed: 1 });

const config = (out: string, extra: Record<string, unknown> = {}): TrainConfig =>
  parseTrainConfig({ data: dataDir, out: join(work, out), model: TEST_MODEL, steps: 6, batch_size: 2, checkpoint_every: 3, angle_every: 2, eval_batches: 1, ...extra }, 'test');

test('training logs losses, angle and balancing, writes a checkpoint, curves and summary', async () => {
  const s = await train(config('run-a'));
  assert.equal(s.steps, 6);
  for (const f of ['checkpoint/state.json', 'log.jsonl', 'curves.png', 'summary.json']) assert.ok(existsSync(join(s.out, f)), f);
  const logs = readFileSync(s.log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(logs.map((l) => l.step), [0, 1, 2, 3, 4, 5]);
  assert.ok(logs.every((l) => Number.isFinite(l.loss) && l.lr > 0));
  assert.ok(s.val !== null && Number.isFinite(s.val.total));
});

test('an interrupted run resumed from its checkpoint ends with exactly the weights and log of an uninterrupted one', async () => {
  // Interrupt after 3 steps: aborting from onStep stops the run once that step is done.
  const interrupt = new AbortController();
  let done = 0;
  const onStep = (): void => {
    if (++done === 3) interrupt.abort();
  };
  const stopped = await train(config('run-b'), { signal: interrupt.signal, onStep });
  assert.equal(stopped.steps, 3);
  assert.equal(stopped.val, null);
  assert.equal(loadCheckpoint(join(work, 'run-b', 'checkpoint')).state.step, 3);
  const resumed = await train(config('run-b'), { resume: true });
  assert.equal(resumed.resumedFrom, 3);
  const a = readFileSync(join(work, 'run-a', 'checkpoint', 'model.safetensors'));
  const b = readFileSync(join(work, 'run-b', 'checkpoint', 'model.safetensors'));
  assert.ok(a.equals(b), 'weights after resume differ from the uninterrupted run');
  const losses = (run: string) => readFileSync(join(work, run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
  assert.deepEqual(losses('run-b'), losses('run-a'));
  assert.ok(readFileSync(join(work, 'run-a', 'checkpoint', 'optimizer.safetensors')).equals(readFileSync(join(work, 'run-b', 'checkpoint', 'optimizer.safetensors'))));
});

test('the tape-free step (step: buffers) trains as the tfjs tape does, to float32 rounding', async () => {
  const weights = (run: string): Map<string, Float32Array> => {
    const m = loadCheckpoint(join(work, run, 'checkpoint')).model;
    const out = new Map([...m.params].map(([n, v]) => [n, Float32Array.from(v.dataSync() as Float32Array)]));
    m.dispose();
    return out;
  };
  const log = (run: string): { loss: number; angle_deg: number | null }[] => readFileSync(join(work, run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  // run-a (the default, step: buffers) against the same run on the tape, gradient-angle steps included.
  await train(config('run-tape', { step: 'tape' }));
  const tape = weights('run-tape');
  const buffers = weights('run-a');
  let worst = 0;
  for (const [name, w] of tape) for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(buffers.get(name)![i]! - w[i]!));
  assert.ok(worst < 1e-5, `weights after 6 steps differ by up to ${worst.toExponential(2)}`);
  const [a, b] = [log('run-a'), log('run-tape')];
  for (let s = 0; s < a.length; s++) {
    assert.ok(Math.abs(a[s]!.loss - b[s]!.loss) < 1e-5 * b[s]!.loss, `step ${s}: loss ${a[s]!.loss} vs tape ${b[s]!.loss}`);
    assert.equal(a[s]!.angle_deg === null, b[s]!.angle_deg === null);
    if (b[s]!.angle_deg !== null) assert.ok(Math.abs(a[s]!.angle_deg! - b[s]!.angle_deg!) < 1e-3, `step ${s}: angle ${a[s]!.angle_deg} vs tape ${b[s]!.angle_deg}`);
  }
  console.log(`# tape vs buffers: weights within ${worst.toExponential(2)} after 6 steps`);
});

test('a corrupt, truncated or incomplete checkpoint is refused before any weight is used', () => {
  const src = join(work, 'run-a', 'checkpoint');
  const copy = (name: string): string => {
    const dir = join(work, name);
    cpSync(src, dir, { recursive: true });
    return dir;
  };
  const flipped = copy('ck-flipped');
  const bytes = readFileSync(join(flipped, 'model.safetensors'));
  bytes[bytes.length - 5]! ^= 0xff;
  writeFileSync(join(flipped, 'model.safetensors'), bytes);
  assert.throws(() => loadCheckpoint(flipped), (e: unknown) => e instanceof UvuError && /model\.safetensors: corrupt checkpoint/.test(e.message));

  const truncated = copy('ck-truncated');
  writeFileSync(join(truncated, 'optimizer.safetensors'), readFileSync(join(truncated, 'optimizer.safetensors')).subarray(0, 100));
  assert.throws(() => loadCheckpoint(truncated, { withOptimizer: true }), /optimizer\.safetensors: corrupt checkpoint/);

  const missing = copy('ck-missing');
  rmSync(join(missing, 'tokenizer.json'));
  assert.throws(() => loadCheckpoint(missing), /tokenizer\.json: missing from checkpoint/);
  assert.throws(() => loadCheckpoint(join(work, 'nowhere')), /not a checkpoint/);
});

test('config errors are one clear message before any work: unknown field, wrong type, K or coder mismatch', async () => {
  assert.throws(() => parseTrainConfig({ data: 'd', out: 'o', stepz: 3 }, 'cfg.json'), /cfg\.json: invalid training config: .*Unrecognized key.*stepz/);
  assert.throws(() => parseTrainConfig({ data: 'd', out: 'o', steps: 'many' }, 'cfg.json'), /steps: Invalid input: expected number/);
  assert.throws(() => parseTrainConfig({ data: 'd', out: 'o', model: { text_config: { hidden_size: 30, num_attention_heads: 4 } } }, 'cfg.json'), /num_attention_heads: must divide hidden_size 30/);
  const file = join(work, 'cfg.json');
  writeFileSync(file, JSON.stringify({ data: dataDir, out: join(work, 'x'), steps: 2 }));
  assert.equal(loadTrainConfig(file, ['steps=5', 'optim.lr=0.01']).optim.lr, 0.01);
  assert.throws(() => loadTrainConfig(file, ['steps']), /--set expects path=value/);

  // A checkpoint whose vocabulary has another K than the dataset's image coder.
  const ds = SeqDataset.open(dataDir);
  const other = UvuModel.init(config('x').model, new Vocab({ textSize: ds.vocab().textSize, K: 8 }), 0);
  const otherDir = join(work, 'k8', 'checkpoint');
  saveCheckpoint(otherDir, { model: other, optimizer: new AdamW(other.params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0 }), tokenizerJson: readFileSync(join(dataDir, 'tokenizer.json'), 'utf8'), step: 0, trainConfig: {}, data: { imageCoder: ds.manifest.imageCoder, maxPixels: 4096, contextLength: 64 } });
  other.dispose();
  await assert.rejects(train(config('run-k', { init: otherDir, stage: 'sft' })), /vocabulary \(text \d+, K 8\) does not match dataset .* K 16/);
  await assert.rejects(train(config('run-vq', { variant: 'ar-vq' })), /variant ar-vq needs a dataset built with a VQ-VAE/);
  assert.ok(!existsSync(join(work, 'run-k')) && !existsSync(join(work, 'run-vq')), 'no output before the checks pass');
});

test('--resume refuses a config that changes the data order or the optimization, naming the fields; steps may change', async () => {
  const ckpt = join(work, 'run-b', 'checkpoint');
  const before = readFileSync(join(ckpt, 'model.safetensors'));
  const stateBefore = readFileSync(join(ckpt, 'state.json'));
  await assert.rejects(train(config('run-b', { seed: 5, batch_size: 3 }), { resume: true }), (e: unknown) => {
    assert.ok(e instanceof UvuError);
    assert.match(e.message, /^.*run-b\/checkpoint\/state\.json: --resume with a config or dataset that differs from the checkpoint's: batch_size \(2 → 3\), seed \(0 → 5\)/);
    return true;
  });
  await assert.rejects(train(config('run-b', { optim: { lr: 0.01 }, balance: { enabled: false } }), { resume: true }), /balance\.enabled \(true → false\), optim\.lr \(0\.001 → 0\.01\)/);
  assert.ok(readFileSync(join(ckpt, 'model.safetensors')).equals(before) && readFileSync(join(ckpt, 'state.json')).equals(stateBefore), 'a refused resume changed the checkpoint');
  // steps, checkpoint_every, eval_* and angle_every may change: the run goes on from step 6.
  const more = await train(config('run-b', { steps: 7, checkpoint_every: 5, eval_batches: 0, angle_every: 0 }), { resume: true });
  assert.equal(more.resumedFrom, 6);
  assert.equal(more.steps, 7);
});

test('a crash between the two renames of the checkpoint swap loses at most checkpoint_every steps', async () => {
  // run-c: stopped at step 3 (snapshot kept), then resumed to 6.
  const interrupt = new AbortController();
  let done = 0;
  await train(config('run-c'), { signal: interrupt.signal, onStep: () => void (++done === 3 && interrupt.abort()) });
  const ckpt = join(work, 'run-c', 'checkpoint');
  const step3 = join(work, 'run-c-step3');
  cpSync(ckpt, step3, { recursive: true });
  await train(config('run-c'), { resume: true });
  const runA = readFileSync(join(work, 'run-a', 'checkpoint', 'model.safetensors'));

  // Crashed after "checkpoint → checkpoint.old-PID" and before "checkpoint.tmp-PID → checkpoint": both are complete.
  renameSync(ckpt, `${ckpt}.tmp-4242`);
  cpSync(step3, `${ckpt}.old-4242`, { recursive: true });
  assert.equal(loadCheckpoint(ckpt).state.step, 6, 'the newer intact copy is used');
  const resumedA = await train(config('run-c'), { resume: true });
  assert.equal(resumedA.resumedFrom, 6);
  assert.ok(readFileSync(join(ckpt, 'model.safetensors')).equals(runA));
  assert.deepEqual(readdirSync(join(work, 'run-c')).filter((n) => n.startsWith('checkpoint.')), [], 'the leftovers of the interrupted swap are removed');

  // Crashed while the new checkpoint was being written (tmp incomplete) after the old one was renamed away.
  rmSync(ckpt, { recursive: true });
  cpSync(step3, `${ckpt}.old-4243`, { recursive: true });
  mkdirSync(`${ckpt}.tmp-4243`);
  writeFileSync(join(`${ckpt}.tmp-4243`, 'model.safetensors'), readFileSync(join(step3, 'model.safetensors')).subarray(0, 1000));
  const resumedB = await train(config('run-c'), { resume: true });
  assert.equal(resumedB.resumedFrom, 3, 'the intact older copy is used, not a fresh start');
  assert.ok(readFileSync(join(ckpt, 'model.safetensors')).equals(runA), 'weights after recovery differ from the uninterrupted run');
  const losses = (run: string) => readFileSync(join(work, run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
  assert.deepEqual(losses('run-c'), losses('run-a'));
});

test('a batch or model too large for the allocation limit is refused before anything is allocated, with the memory it needs', async () => {
  await assert.rejects(train(config('run-big', { batch_size: 1e9 })), (e: unknown) => e instanceof UvuError && /^test: batch_size 1000000000 × context 64 × vocabulary \d+ logits.* needs [\d.]+ GiB, above the 4\.0 GiB allocation limit/.test(e.message));
  await assert.rejects(train(config('run-big', { model: { ...TEST_MODEL, text_config: { ...TEST_MODEL.text_config, hidden_size: 65536, intermediate_size: 262144 } } })), /parameters with gradients and AdamW moments, needs [\d.]+ GiB/);
  assert.ok(!existsSync(join(work, 'run-big')));
  const file = join(work, 'big.json');
  writeFileSync(file, JSON.stringify({ data: dataDir, out: join(work, 'run-big'), model: TEST_MODEL }));
  assertCleanFailure(runUvu(['train', '--config', file, '--set', 'batch_size=1e9', '--set', 'engine=cpu']), { names: file, noOutputs: [join(work, 'run-big')] }, 'train --set batch_size=1e9');
});

test('ask answers in text ids only; complete-image predicts the missing rows and reconstructs them with the codebook', async () => {
  const session = ModelSession.load(join(work, 'run-a', 'checkpoint'));
  let streamed = '';
  const answer = await session.ask(bundledPhotoPath('nagasaki-boats'), 'what is this?', { maxNewTokens: 4, onText: (d) => (streamed += d) });
  assert.equal(streamed, answer);
  const r = await session.completeImage(bundledPhotoPath('nagasaki-boats'), 1);
  assert.equal(r.rows, 2);
  assert.equal(r.predictedCodes.length, r.rows * r.cols);
  assert.deepEqual(Array.from(r.predictedCodes.subarray(0, r.cols)), Array.from(r.trueCodes.subarray(0, r.cols)));
  assert.ok(r.predictedCodes.every((k) => k >= 0 && k < 16));
  const original = await loadImage(bundledPhotoPath('nagasaki-boats'), { maxPixels: 64 * 64 });
  // Kept rows are the original pixels; the coder's reconstruction is the upper bound of the completion.
  const rowBytes = 32 * original.width * 3;
  assert.ok(Buffer.from(r.completed.data.subarray(0, rowBytes)).equals(Buffer.from(original.data.subarray(0, rowBytes))));
  assert.ok(Number.isFinite(r.psnrCoder) && r.psnrCoder > 10);
  await assert.rejects(session.completeImage(bundledPhotoPath('nagasaki-boats'), 2), /--keep-rows must be in 0 … 1/);
  session.dispose();
});
