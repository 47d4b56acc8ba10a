/** The patch VQ-VAE (DESIGN §9): fused ops, straight-through gradients, training, restarts, file, coder, CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf, initEngine } from '../src/engine/tf.js';
import { buildPatchStore } from '../src/patches/build.js';
import { PatchStore } from '../src/patches/store.js';
import { sha256File } from '../src/util/fsio.js';
import { PATCH_DIM, U8_TO_UNIT } from '../src/patches/patchify.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { MetricsAccumulator } from '../src/codebook/metrics.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { loadImageCoder } from '../src/tokens/coder.js';
import { Rng } from '../src/util/rng.js';
import { UsageError, UvuError } from '../src/util/errors.js';
import { parseVqConfig } from '../src/vq/config.js';
import { gelu, outputReconLoss, PARAM_NAMES, randomWeights, VqModel } from '../src/vq/model.js';
import { kmeansPlusPlus, restartDeadCodes, trainStep, trainVq, vqOptimizer } from '../src/vq/train.js';
import { loadVq, saveVq } from '../src/vq/file.js';
import { loadVqCoder, VqCoder } from '../src/vq/coder.js';
import { VqEvalAccumulator } from '../src/vq/eval.js';
import { vqCommand } from '../src/cli/vq.js';

await initEngine();

const work = mkdtempSync(join(tmpdir(), 'uvu-vq-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

// Two bundled photos at 256² px: 135 patches, enough for a K = 16 model and fast to train on.
const storeDir = join(work, 'store');
await buildPatchStore([bundledPhotoPath('french-alpine-landscape'), bundledPhotoPath('nagasaki-boats')], { out: storeDir, maxPixels: 256 * 256, progress: false });
const store = PatchStore.open(storeDir);
const { patches: allPatches } = store.readRange(0, store.count);
store.close();

const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

/** A small model whose codebook is seeded (k-means++) from the encodings of the first n patches. */
function smallModel(overrides: Record<string, unknown> = {}, n = 64): { model: VqModel; coder: VqCoder; patches: Uint8Array; n: number } {
  const cfg = parseVqConfig({ K: 8, codeDim: 4, hidden: 16, ...overrides });
  const rng = new Rng(7);
  const model = new VqModel(cfg, randomWeights(cfg, rng));
  const coder = new VqCoder(model);
  const patches = allPatches.subarray(0, n * PATCH_DIM);
  model.setCodebook(kmeansPlusPlus(coder.embed(patches, n), n, cfg.codeDim, cfg.K, rng));
  return { model, coder, patches, n };
}

test('fused GELU and output-layer reconstruction loss match tfjs autodiff of the composed ops', () => {
  tf.tidy(() => {
    const x = tf.randomNormal([5, 7], 0, 2, 'float32', 1);
    const w = tf.randomNormal([5, 7], 0, 1, 'float32', 2);
    const geluRef = (v: tf.Tensor) => tf.mul(tf.mul(0.5, v), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(v, tf.mul(0.044715, tf.pow(v, 3)))))));
    assert.ok(maxAbsDiff(gelu(x), geluRef(x)) < 1e-6);
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(gelu(v), w)))(x);
    const gRef = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(geluRef(v), w)))(x);
    assert.ok(maxAbsDiff(g, gRef) < 1e-5, 'GELU gradient');

    const a = tf.randomNormal([4, 6], 0, 1, 'float32', 3) as tf.Tensor2D;
    const b = tf.randomNormal([6], 0, 1, 'float32', 4) as tf.Tensor1D;
    const target = tf.randomUniform([4, 6], 0, 1, 'float32', 5) as tf.Tensor2D;
    for (const sigmoid of [true, false]) {
      // Scaled by 3 so the incoming gradient dy is not 1.
      const fused = (aa: tf.Tensor, bb: tf.Tensor) => tf.mul(3, outputReconLoss(aa as tf.Tensor2D, bb as tf.Tensor1D, target, sigmoid));
      const composed = (aa: tf.Tensor, bb: tf.Tensor) => {
        const y = tf.add(aa, bb);
        return tf.mul(3, tf.mean(tf.squaredDifference(sigmoid ? tf.sigmoid(y) : y, target)));
      };
      assert.ok(Math.abs(fused(a, b).dataSync()[0]! - composed(a, b).dataSync()[0]!) < 1e-6);
      const [ga, gb] = tf.grads(fused)([a, b]);
      const [ra, rb] = tf.grads(composed)([a, b]);
      assert.ok(maxAbsDiff(ga!, ra!) < 1e-6, `dL/da (sigmoid ${sigmoid})`);
      assert.ok(maxAbsDiff(gb!, rb!) < 1e-6, `dL/db (sigmoid ${sigmoid})`);
      assert.ok(tf.max(tf.abs(rb!)).dataSync()[0]! > 1e-3, 'the reference gradient is not trivially zero');
    }
  });
});

test('gradients reach the encoder through the straight-through estimator; the codebook learns only used codes', () => {
  // β = 0: the commitment term is off, so encoder gradients can only come through the STE.
  const { model, coder, patches, n } = smallModel({ beta: 0 });
  // k-means++ put codes exactly on encoder outputs of these patches (a zero codebook gradient): nudge them.
  model.setCodebook(model.codebook().map((v, i) => v + 1e-3 * Math.sin(i + 1)));
  const x = tf.tensor2d(Float32Array.from(patches, (v) => U8_TO_UNIT[v]!), [n, PATCH_DIM]);
  const { value, grads } = tf.variableGrads(() => model.forward(x).total, model.variables());
  const gradOf = (name: (typeof PARAM_NAMES)[number]) => grads[model.vars[name].name]!.dataSync() as Float32Array;
  const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.ok(Number.isFinite(value.dataSync()[0]!));
  for (const name of ['enc1.w', 'enc1.b', 'enc2.w', 'enc2.b'] as const) assert.ok(maxAbs(gradOf(name)) > 0, `${name} gets a gradient`);
  const used = new Set(coder.encode(patches, n));
  const gCode = gradOf('codebook');
  for (let k = 0; k < model.K; k++) {
    const row = gCode.subarray(k * model.codeDim, (k + 1) * model.codeDim);
    if (used.has(k)) assert.ok(maxAbs(row) > 0, `used code ${k} moves`);
    else assert.equal(maxAbs(row), 0, `unused code ${k} has no gradient`);
  }
  tf.dispose([x, value, ...Object.values(grads)]);
  model.dispose();
});

test('a training step updates every parameter and leaves no tensors behind', () => {
  const { model, patches, n } = smallModel();
  const opt = vqOptimizer(model);
  const x = tf.tensor2d(Float32Array.from(patches, (v) => U8_TO_UNIT[v]!), [n, PATCH_DIM]);
  const before = model.weights();
  const tensors = tf.memory().numTensors;
  trainStep(model, opt, x, 1e-3);
  const s = trainStep(model, opt, x, 1e-3);
  assert.equal(tf.memory().numTensors, tensors);
  assert.equal(s.ids.length, n);
  assert.equal(s.ze.length, n * model.codeDim);
  assert.ok(Math.abs(s.loss - (s.recon + (1 + model.config.beta) * s.commit)) < 1e-6, 'loss = recon + codebook + β·commit');
  const after = model.weights();
  for (const name of PARAM_NAMES) assert.notDeepEqual(after[name], before[name], `${name} changed`);
  x.dispose();
  model.dispose();
});

test('dead-code restart moves unused codes onto encoder outputs, revives them and resets their Adam moments', () => {
  const { model, coder, patches, n } = smallModel();
  const C = model.codeDim;
  const ze = coder.embed(patches, n);
  const dead = [0, 3, 5];
  const cb = model.codebook();
  for (const k of dead) cb.fill(1e3, k * C, (k + 1) * C); // far from every encoder output
  model.setCodebook(cb);
  const histogram = (ids: Int32Array) => ids.reduce((h, k) => (h[k]!++, h), new Float64Array(model.K));
  const before = histogram(coder.encode(patches, n));
  for (const k of dead) assert.equal(before[k], 0, `code ${k} is dead`);

  const opt = vqOptimizer(model);
  opt.m.get('codebook')!.fill(1);
  opt.v.get('codebook')!.fill(1);
  const restarted = restartDeadCodes(model, before, ze, n, new Rng(3), opt);
  for (const k of dead) assert.ok(restarted.includes(k), `code ${k} restarted`);
  const after = histogram(coder.encode(patches, n));
  const moved = model.codebook();
  for (const k of restarted) {
    let best = Infinity; // the code now sits exactly on some patch's encoding
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let c = 0; c < C; c++) d += (moved[k * C + c]! - ze[i * C + c]!) ** 2;
      best = Math.min(best, d);
    }
    assert.equal(best, 0, `code ${k} moved onto an encoder output`);
    assert.ok(after[k]! > 0, `code ${k} is chosen again`);
    assert.ok(opt.m.get('codebook')!.subarray(k * C, (k + 1) * C).every((v) => v === 0));
  }
  const live = [...Array(model.K).keys()].filter((k) => !restarted.includes(k));
  assert.ok(live.every((k) => opt.m.get('codebook')![k * C] === 1), 'moments of live codes are kept');
  assert.equal(restartDeadCodes(model, after, ze, n, new Rng(3)).length, after.filter((c) => c === 0).length);
  model.dispose();
});

test('VQ metrics: MSE, PSNR, PRP with the pixel codebook’s σ²_max, computed on the u8 round trip', () => {
  const { model, coder, patches, n } = smallModel();
  const acc = new VqEvalAccumulator(coder);
  acc.add(patches.subarray(0, 40 * PATCH_DIM), 40);
  acc.add(patches.subarray(40 * PATCH_DIM), n - 40); // streaming in two batches
  const m = acc.result();
  const recon = coder.decode(coder.encode(patches, n));
  let err = 0;
  for (let i = 0; i < n * PATCH_DIM; i++) err += (U8_TO_UNIT[recon[i]!]! - U8_TO_UNIT[patches[i]!]!) ** 2;
  const mse = err / (n * PATCH_DIM);
  assert.ok(Math.abs(m.mse - mse) < 1e-9 * Math.max(1, mse));
  assert.ok(Math.abs(m.psnr - 10 * Math.log10(1 / mse)) < 1e-9);
  // σ²_max as the pixel codebook's metrics define it (any codebook: it depends on the patches only).
  const ref = new MetricsAccumulator({ K: 1, D: PATCH_DIM, patchSize: 32, centersPixel: new Float32Array(PATCH_DIM), centersAssign: null, counts: new Float32Array(1), pe: NO_POSENC, build: {}, data: '', metrics: {} });
  ref.add(patches, n, null);
  assert.ok(Math.abs(m.sigma2_max - ref.result().sigma2_max) < 1e-9);
  assert.ok(Math.abs(m.prp - (1 - mse / m.sigma2_max)) < 1e-9);
  assert.equal(m.m, n);
  assert.ok(m.k_active >= 1 && m.k_active <= model.K && m.perplexity >= 1 && m.perplexity <= m.k_active + 1e-9);
  model.dispose();
});

test('trainVq lowers the reconstruction loss well below its start, reports held-out metrics and writes a file', async () => {
  const out = join(work, 'trained.safetensors');
  const config = { K: 16, codeDim: 8, hidden: 32, batch: 32, steps: 200, lr: 3e-3, logEvery: 50, restartEvery: 50, evalSize: 32, seed: 5 };
  const r = await trainVq({ patches: storeDir, config, out, progress: false });
  assert.equal(r.history.length, 4);
  const last = r.history[r.history.length - 1]!;
  assert.ok(last.recon_mse < 0.5 * r.first.recon_mse, `recon ${r.first.recon_mse} → ${last.recon_mse}`);
  assert.ok(last.active_codes >= 4 && last.perplexity >= 2, `codes in use: ${last.active_codes}, perplexity ${last.perplexity}`);
  assert.equal(r.metrics.m, 32);
  assert.ok(r.metrics.prp > 0.3 && r.metrics.prp < 1, `held-out PRP ${r.metrics.prp}`);
  assert.ok(Math.abs(r.metrics.psnr - 10 * Math.log10(1 / r.metrics.mse)) < 1e-9);

  // The written file reproduces the trained model exactly and carries its provenance.
  const coder = loadVqCoder(out);
  assert.equal(coder.model.meta.data, r.data);
  assert.deepEqual((coder.model.meta.metrics.heldout as { prp: number }).prp, r.metrics.prp);
  const mem = new VqCoder(r.model);
  const ids = mem.encode(allPatches, 135);
  assert.deepEqual(coder.encode(allPatches, 135), ids);
  assert.deepEqual(coder.decode(ids), mem.decode(ids));

  // Seeded: a second run with the same config gives the same weights.
  const short = { ...config, steps: 5 };
  const [a, b] = [await trainVq({ patches: storeDir, config: short, progress: false }), await trainVq({ patches: storeDir, config: short, progress: false })];
  assert.deepEqual(a.model.weights(), b.model.weights());
  for (const m of [r.model, a.model, b.model, coder.model]) m.dispose();
});

test('save/load gives identical encode/decode; corrupt, truncated and foreign files are refused', () => {
  const { model, coder, patches, n } = smallModel({ activation: 'relu', output: 'linear' });
  const path = join(work, 'small.safetensors');
  saveVq(path, model);
  const loaded = loadVq(path);
  assert.deepEqual(loaded.config, model.config);
  assert.deepEqual(loaded.weights(), model.weights());
  const ids = coder.encode(patches, n);
  const back = new VqCoder(loaded);
  assert.deepEqual(back.encode(patches, n), ids);
  assert.deepEqual(back.decode(ids), coder.decode(ids));

  const variant = (name: string, edit: (file: ReturnType<typeof readSafetensors>) => void): string => {
    const f = readSafetensors(path);
    edit(f);
    const p = join(work, name);
    writeSafetensors(p, f.tensors, f.metadata);
    return p;
  };
  const truncated = join(work, 'truncated.safetensors');
  copyFileSync(path, truncated);
  truncateSync(truncated, readFileSync(path).length - 100);
  const garbage = join(work, 'garbage.safetensors');
  writeFileSync(garbage, 'definitely not safetensors');
  const cases: [string, RegExp][] = [
    [truncated, /truncated/],
    [garbage, /not a valid safetensors file/],
    [variant('format.safetensors', (f) => (f.metadata.format = 'uvu-codebook')), /"format" is "uvu-codebook", expected "uvu-vq"/],
    [variant('version.safetensors', (f) => (f.metadata.version = '99')), /unsupported version/],
    [variant('nan.safetensors', (f) => ((f.tensors['dec1.w']!.data as Float32Array)[3] = NaN)), /dec1\.w has a non-finite value/],
    [variant('missing.safetensors', (f) => delete f.tensors['enc2.b']), /missing tensor "enc2\.b"/],
    [variant('config.safetensors', (f) => (f.metadata.config = JSON.stringify({ ...model.config, hidden: 17 }))), /enc1\.w has shape \[3072,16\], expected \[3072,17\]/],
    [variant('k.safetensors', (f) => (f.metadata.K = '9')), /K = "9" disagrees/],
    [variant('badconfig.safetensors', (f) => (f.metadata.config = '{"K": "many"}')), /metadata "config": K: /],
  ];
  for (const [p, message] of cases) {
    assert.throws(() => loadVq(p), (err: unknown) => err instanceof UvuError && message.test(err.message) && err.message.includes(p), p);
  }
  for (const m of [model, loaded]) m.dispose();
});

test('VqCoder is an ImageCoder: ids in [0,K), file sha256, decode checks ids, loadImageCoder picks it', async () => {
  const { model } = smallModel();
  const path = join(work, 'coder.safetensors');
  saveVq(path, model);
  const coder = loadVqCoder(path);
  assert.equal(coder.kind, 'vq');
  assert.equal(coder.K, 8);
  assert.equal(coder.path, path);
  assert.equal(coder.sha256, sha256File(path));
  const ids = coder.encode(allPatches, 135, { rows: 9, cols: 15 });
  assert.equal(ids.length, 135);
  assert.ok(ids.every((k) => k >= 0 && k < coder.K));
  const recon = coder.decode(ids);
  assert.equal(recon.length, 135 * PATCH_DIM);
  assert.throws(() => coder.decode(Int32Array.of(0, 8)), /code 8 at position 1 is outside 0\.\.7/);
  assert.throws(() => coder.decode(Int32Array.of(-1)), UvuError);
  const generic = loadImageCoder(path);
  assert.ok(generic instanceof VqCoder);
  assert.deepEqual(generic.encode(allPatches, 135, { rows: 9, cols: 15 }), ids);
  for (const c of [coder, generic as VqCoder]) c.dispose();
  model.dispose();
});

test('config: defaults follow DESIGN §9, unknown or bad fields are usage errors', () => {
  const d = parseVqConfig({});
  assert.equal(d.codeDim, 8);
  assert.equal(d.beta, 0.25);
  assert.equal(d.K, 1024);
  assert.throws(() => parseVqConfig({ K: 1 }), UsageError);
  assert.throws(() => parseVqConfig({ lr: 0 }), /lr/);
  assert.throws(() => parseVqConfig({ codebookSize: 5 }), UsageError);
});

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
function vq(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'vq', ...args], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('uvu vq train/eval: --json prints one object; bad options are usage errors before any work', async () => {
  const out = join(work, 'cli.safetensors');
  const t = vq('train', '--patches', storeDir, '--out', out, '--k', '8', '--dim', '4', '--hidden', '16', '--steps', '20', '--batch', '16', '--log-every', '10', '--eval-size', '16', '--json');
  assert.equal(t.status, 0, t.stderr);
  const lines = t.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const trained = JSON.parse(lines[0]!) as { steps: number; heldout: { prp: number; k: number }; history: unknown[] };
  assert.equal(trained.steps, 20);
  assert.equal(trained.heldout.k, 8);
  assert.equal(trained.history.length, 2);
  assert.ok(existsSync(out));

  const e = vq('eval', '--vq', out, '--patches', storeDir, '--sample', '50', '--json');
  assert.equal(e.status, 0, e.stderr);
  const evaluated = JSON.parse(e.stdout) as { m: number; prp: number; psnr: number; k_active: number };
  assert.equal(evaluated.m, 50);
  assert.ok(Number.isFinite(evaluated.prp) && evaluated.psnr > 0 && evaluated.k_active >= 1);


  // Option problems surface as UsageError before any training or writing (in-process: no start-up cost).
  const bad = join(work, 'never.safetensors');
  const run = (...args: string[]) => vqCommand().parseAsync(args, { from: 'user' });
  await assert.rejects(run('train', '--patches', storeDir, '--out', bad, '--lr', '0'), (err) => err instanceof UsageError && /lr/.test(err.message));
  await assert.rejects(run('train', '--patches', storeDir, '--out', bad, '--k', '500'), (err) => err instanceof UsageError && /larger than the 135 patches/.test(err.message));
  await assert.rejects(run('eval', '--vq', out, '--patches', storeDir, '--sample', '1000'), UsageError);
  const viaCli = vq('train', '--patches', storeDir, '--out', bad, '--k', '500');
  assert.equal(viaCli.status, 2, viaCli.stderr);
  assert.match(viaCli.stderr, /--k 500 is larger than the 135 patches/);
  assert.ok(!existsSync(bad), 'nothing written on usage errors');
  await assert.rejects(run('eval', '--vq', join(work, 'nope.safetensors'), '--patches', storeDir), /nope\.safetensors: cannot open/);
});

test('uvu vq eval refuses a store whose shard changed (sha256) unless --no-verify', () => {
  const model = join(work, 'cli.safetensors');
  assert.ok(existsSync(model), 'needs the model of the CLI test above');
  const copy = join(work, 'flipped-store');
  cpSync(storeDir, copy, { recursive: true });
  const shard = join(copy, 'shard-000000.bin');
  const bytes = readFileSync(shard);
  bytes[100] = bytes[100]! ^ 0x01;
  writeFileSync(shard, bytes);
  const refused = vq('eval', '--vq', model, '--patches', copy, '--json');
  assert.equal(refused.status, 1, refused.stderr);
  assert.match(refused.stderr, /^uvu: error: .*shard-000000\.bin.*sha256/m);
  const unchecked = vq('eval', '--vq', model, '--patches', copy, '--no-verify', '--json');
  assert.equal(unchecked.status, 0, unchecked.stderr);
});
