/**
 * Hostile inputs for the model-side files (README "Files we read and how we check them"): the
 * safetensors container, codebook and VQ-VAE files, training checkpoints (model.safetensors,
 * optimizer.safetensors, state.json), training configs with --set overrides, and the uvu
 * clustering checkpoints. Seeded mutations of valid files go through the library readers, which
 * must either accept the file or throw a one-line UvuError that starts with the file's path; a
 * few CLI runs check the exit code / one-line / no-stack-trace contract end to end.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/tf.js';
import { readSafetensors, readSafetensorsMetadata, writeSafetensors } from '../src/io/safetensors.js';
import { loadCodebook, saveCodebook, type Codebook } from '../src/codebook/file.js';
import { readCheckpoint, saveCheckpoint as saveClusterCheckpoint } from '../src/codebook/uvu/checkpoint.js';
import { newState } from '../src/codebook/uvu/state.js';
import { loadVq, saveVq } from '../src/vq/file.js';
import { parseVqConfig } from '../src/vq/config.js';
import { randomWeights, VqModel } from '../src/vq/model.js';
import { UvuModel } from '../src/model/model.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { Vocab } from '../src/tokens/vocab.js';
import { AdamW } from '../src/optim/adamw.js';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { loadTrainConfig } from '../src/train/config.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { PATCH_DIM } from '../src/patches/patchify.js';
import { UsageError, UvuError } from '../src/util/errors.js';
import { sha256File } from '../src/util/fsio.js';
import { DEFAULT_MAX_ALLOC_BYTES, setMaxAllocBytes } from '../src/util/limits.js';
import { Rng } from '../src/util/rng.js';
import { assertCleanFailure, byteMutations, jsonMutations, runUvu } from './hostile.js';
import { TEST_MODEL } from './fixtures.js';

await initEngine();

const work = mkdtempSync(join(tmpdir(), 'uvu-hostile-models-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Helpers: the safetensors layout, and the property every reader must keep.

/** A safetensors file split into its parsed header and its data section. */
function splitSafetensors(bytes: Uint8Array): { header: Record<string, unknown>; body: Uint8Array } {
  const n = Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
  return { header: JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')), body: bytes.subarray(8 + n) };
}

/** A safetensors file from header JSON text (or object) and a data section. */
function joinSafetensors(header: unknown, body: Uint8Array): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, body]);
}

interface FileMutation {
  name: string;
  bytes: Uint8Array;
  /** The mutation replaced a whole JSON document by null/[]/42 or cut it: every reader must refuse it. */
  mustRefuse?: boolean;
}

/** jsonMutations' first four replace the whole document (null, [], 42) or cut it in half: refused unless `valid` is itself an array. */
const wholeDocument = (name: string, valid: unknown): boolean => /^(null document|number document|cut in half)$/.test(name) || (name === 'array document' && !Array.isArray(valid));

/** Seeded mutations of a safetensors file's JSON header (fields null/huge/wrong type/deleted, cut). */
function headerMutations(valid: Uint8Array, seed: number, count: number): FileMutation[] {
  const { header, body } = splitSafetensors(valid);
  return jsonMutations(header, seed, count).map((m) => ({ name: `header ${m.name}`, bytes: joinSafetensors(m.text, body), mustRefuse: wholeDocument(m.name, header) }));
}

/** Seeded mutations of the JSON held in metadata field `key` (the file stays a valid container); `required`: dropping the field must be refused. */
function metadataMutations(valid: Uint8Array, key: string, seed: number, count: number, required = true): FileMutation[] {
  const { header, body } = splitSafetensors(valid);
  const meta = header.__metadata__ as Record<string, string>;
  const value: unknown = JSON.parse(meta[key]!);
  const out: FileMutation[] = jsonMutations(value, seed, count).map((m) => ({
    name: `metadata ${key}: ${m.name}`,
    bytes: joinSafetensors({ ...header, __metadata__: { ...meta, [key]: m.text } }, body),
    mustRefuse: wholeDocument(m.name, value),
  }));
  const { [key]: _dropped, ...without } = meta;
  out.push({ name: `metadata ${key} missing`, bytes: joinSafetensors({ ...header, __metadata__: without }, body), mustRefuse: required });
  return out;
}

const tally = { tried: 0, refused: 0 };

/**
 * The reader property: `read()` succeeds, or throws a UvuError whose one-line message starts with
 * `path`. Never a TypeError, RangeError, SyntaxError or ZodError. Returns whether it refused.
 */
function readerKeepsContract(label: string, path: string, read: () => unknown): boolean {
  tally.tried++;
  try {
    const r = read();
    disposeResult(r);
    return false;
  } catch (err) {
    assert.ok(err instanceof UvuError, `${label}: ${err instanceof Error ? err.stack : String(err)}`);
    assert.ok(err.message.startsWith(path), `${label}: the message does not start with ${path}: ${err.message}`);
    assert.ok(!err.message.includes('\n'), `${label}: the message has several lines: ${err.message}`);
    tally.refused++;
    return true;
  }
}

/** The reader must refuse: a UvuError naming `path`, matching `pattern`. */
function refuses(label: string, path: string, read: () => unknown, pattern: RegExp): void {
  tally.tried++;
  assert.throws(read, (err: unknown) => {
    assert.ok(err instanceof UvuError, `${label}: ${err instanceof Error ? err.stack : String(err)}`);
    assert.ok(err.message.startsWith(path), `${label}: ${err.message}`);
    assert.match(err.message, pattern, label);
    return true;
  }, label);
  tally.refused++;
}

function disposeResult(r: unknown): void {
  if (r instanceof VqModel) r.dispose();
  else if (r && typeof r === 'object' && 'model' in r && (r as { model: unknown }).model instanceof UvuModel) (r as { model: UvuModel }).model.dispose();
}

after(() => {
  // The closing note of issue 10 counts these.
  process.stdout.write(`# hostile-models: ${tally.tried} hostile cases tried, ${tally.refused} refused cleanly, ${tally.tried - tally.refused} accepted as valid\n`);
});

// ---------------------------------------------------------------------------------------------
// Fixtures: a small valid file of each format.

const K = 4;
const codebook: Codebook = {
  K,
  D: PATCH_DIM,
  patchSize: 32,
  centersPixel: Float32Array.from({ length: K * PATCH_DIM }, (_, i) => (i % 251) / 251),
  centersAssign: Float32Array.from({ length: K * PATCH_DIM }, (_, i) => (i % 13) / 13),
  counts: Float32Array.from({ length: K }, (_, k) => k + 1),
  pe: { type: '2d-sincos', scale: 0.1 },
  build: { method: 'kmeans', size: K, iters: 3 },
  data: 'fingerprint',
  metrics: { prp: 0.9 },
};
const codebookPath = join(work, 'cb.safetensors');
saveCodebook(codebookPath, codebook);
const codebookBytes = readFileSync(codebookPath);

const vqConfig = parseVqConfig({ K: 4, codeDim: 2, hidden: 4 });
const vqModel = new VqModel(vqConfig, randomWeights(vqConfig, new Rng(3)));
const vqPath = join(work, 'vq.safetensors');
saveVq(vqPath, vqModel);
vqModel.dispose();
const vqBytes = readFileSync(vqPath);

/** A training checkpoint of the smallest test model, written by saveCheckpoint (no dataset needed). */
const ckptDir = join(work, 'run', 'checkpoint');
{
  const model = UvuModel.init(ModelConfigSchema.parse(TEST_MODEL), new Vocab({ textSize: 256, K: 4 }), 1);
  const optimizer = new AdamW(model.params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0 });
  saveCheckpoint(ckptDir, {
    model,
    optimizer,
    tokenizerJson: '{}',
    step: 3,
    trainConfig: { data: 'data', out: 'run', seed: 1 },
    data: { imageCoder: { kind: 'codebook', path: 'cb.safetensors', sha256: 'a'.repeat(64), K: 4 }, maxPixels: 4096, contextLength: 64 },
  });
  model.dispose();
}
const ckptFiles = Object.fromEntries(['model.safetensors', 'optimizer.safetensors', 'tokenizer.json', 'state.json'].map((f) => [f, readFileSync(join(ckptDir, f))]));

/** A copy of the checkpoint with `file` replaced by `bytes`, its sha256 in state.json updated (a crafted file). */
function craftedCheckpoint(name: string, file: string, bytes: Uint8Array, resign = true): string {
  const dir = join(work, 'crafted', name);
  rmSync(dir, { recursive: true, force: true });
  cpSync(ckptDir, dir, { recursive: true });
  writeFileSync(join(dir, file), bytes);
  if (resign && file !== 'state.json') {
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
    state.files[file] = sha256File(join(dir, file));
    writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
  }
  return dir;
}

const clusterDir = join(work, 'cluster');
const clusterPath = saveClusterCheckpoint(
  clusterDir,
  newState(2, Float32Array.from({ length: 2 * PATCH_DIM }, (_, i) => (i % 7) / 7), Float32Array.from({ length: 2 * PATCH_DIM }, (_, i) => (i % 5) / 5), Float64Array.from([3, 4])),
  'identity',
);
const clusterBytes = readFileSync(clusterPath);

const trainConfigValid = {
  variant: 'uvu',
  data: join(work, 'data'),
  out: join(work, 'out'),
  model: TEST_MODEL,
  steps: 6,
  batch_size: 2,
  loss: { w_img: 0.5, w_text: 1.0 },
  balance: { enabled: true, q_lo: 0.2, q_hi: 0.6, budget_fraction: 0.5 },
  optim: { lr: 0.001, warmup_frac: 0.01 },
  checkpoint_every: 3,
};
const trainConfigPath = join(work, 'train.json');
writeFileSync(trainConfigPath, JSON.stringify(trainConfigValid));

// ---------------------------------------------------------------------------------------------
// The safetensors container (class 1: null entries; class 2: sizes; class 3: overlaps and holes).

test('safetensors: null metadata or tensor entries, overlapping or untiled byte ranges are refused with one line naming the file', () => {
  const { header, body } = splitSafetensors(codebookBytes);
  const file = (name: string, h: unknown, b: Uint8Array = body): string => {
    const p = join(work, `st-${name}.safetensors`);
    writeFileSync(p, joinSafetensors(h, b));
    return p;
  };
  const cases: [string, string, RegExp][] = [
    ['__metadata__ null', file('meta-null', { ...header, __metadata__: null }), /"__metadata__" must map names to strings/],
    ['__metadata__ value a number', file('meta-num', { ...header, __metadata__: { format: 7 } }), /"__metadata__" must map names to strings: format/],
    ['tensor entry null', file('tensor-null', { ...header, counts: null }), /tensor "counts": .*expected object/],
    ['shape null', file('shape-null', { ...header, counts: { ...(header.counts as object), shape: null } }), /tensor "counts": shape/],
    ['data_offsets of three numbers', file('offs3', { ...header, counts: { ...(header.counts as object), data_offsets: [0, 16, 32] } }), /tensor "counts": data_offsets/],
    ['tensor named __proto__', file('proto', JSON.stringify(header).replace('"counts"', '"__proto__"')), /"__proto__" is not allowed/],
  ];
  // Two tensors over the same bytes: counts re-pointed into centers_pixel; the freed tail is then a hole.
  const counts = header.counts as { data_offsets: [number, number] };
  cases.push(['overlapping tensors', file('overlap', { ...header, counts: { ...counts, data_offsets: [0, counts.data_offsets[1] - counts.data_offsets[0]] } }, body.subarray(0, counts.data_offsets[0])), /overlap/]);
  // Trailing bytes after the last tensor, and a hole between two tensors.
  cases.push(['bytes after the last tensor', file('trailing', header, Buffer.concat([body, Buffer.alloc(8)])), /after the last tensor/]);
  const pixel = header.centers_pixel as { data_offsets: [number, number] };
  const withHole = Object.fromEntries(Object.entries(header).map(([k, v]) => (k === '__metadata__' || (v as { data_offsets: number[] }).data_offsets[0] < pixel.data_offsets[1] ? [k, v] : [k, { ...(v as object), data_offsets: (v as { data_offsets: number[] }).data_offsets.map((o) => o + 8) }])));
  const holeBody = Buffer.concat([body.subarray(0, pixel.data_offsets[1]), Buffer.alloc(8), body.subarray(pixel.data_offsets[1])]);
  cases.push(['a hole between tensors', file('hole', withHole, holeBody), /belong to no tensor/]);
  cases.push(['header not UTF-8', (() => {
    const p = join(work, 'st-utf8.safetensors');
    const bytes = Buffer.from(joinSafetensors(header, body));
    bytes[8 + JSON.stringify(header).indexOf('centers_pixel') + 2] = 0xff;
    writeFileSync(p, bytes);
    return p;
  })(), /header is not JSON/]);
  for (const [label, p, pattern] of cases) {
    refuses(label, p, () => readSafetensors(p), pattern);
    refuses(`${label} (loadCodebook)`, p, () => loadCodebook(p), pattern);
  }
  // The header-only reader checks the metadata too.
  refuses('__metadata__ null (metadata only)', cases[0]![1], () => readSafetensorsMetadata(cases[0]![1]), /"__metadata__"/);
});

test('safetensors: a tensor larger than the allocation limit is refused before it is allocated, with the size it needs', () => {
  setMaxAllocBytes(16 * 1024);
  try {
    refuses('tensor above --max-alloc', codebookPath, () => readSafetensors(codebookPath), /tensor "centers_pixel" \(F32 \[4,3072\]\) needs 48\.0 KiB, above the 16\.0 KiB allocation limit/);
  } finally {
    setMaxAllocBytes(DEFAULT_MAX_ALLOC_BYTES);
  }
  assert.equal(loadCodebook(codebookPath).K, K);
});

// ---------------------------------------------------------------------------------------------
// Seeded fuzzing of each format through its library reader.

function fuzz(label: string, path: string, mutations: FileMutation[], read: () => unknown): number {
  let refused = 0;
  for (const m of mutations) {
    writeFileSync(path, m.bytes);
    const r = readerKeepsContract(`${label}: ${m.name}`, path, read);
    if (m.mustRefuse) assert.ok(r, `${label}: ${m.name} was accepted`);
    if (r) refused++;
  }
  return refused;
}

test('codebook files: byte, header and metadata mutations are accepted or refused with one line naming the file', () => {
  const p = join(work, 'fuzz-cb.safetensors');
  const mutations = [
    ...byteMutations(new Uint8Array(codebookBytes), 1, 30),
    ...headerMutations(codebookBytes, 2, 40),
    ...['pe', 'build', 'metrics'].flatMap((key, i) => metadataMutations(codebookBytes, key, 10 + i, 14)),
  ];
  const refused = fuzz('codebook', p, mutations, () => loadCodebook(p));
  assert.ok(refused >= mutations.length / 2, `only ${refused} of ${mutations.length} refused`);
});

test('VQ files: byte, header and metadata mutations are accepted or refused with one line naming the file', () => {
  const p = join(work, 'fuzz-vq.safetensors');
  const mutations = [...byteMutations(new Uint8Array(vqBytes), 3, 20), ...headerMutations(vqBytes, 4, 30), ...metadataMutations(vqBytes, 'config', 20, 16), ...metadataMutations(vqBytes, 'metrics', 21, 16, false)];
  const refused = fuzz('vq', p, mutations, () => loadVq(p));
  assert.ok(refused >= mutations.length / 2, `only ${refused} of ${mutations.length} refused`);
});

test('training checkpoints: crafted model files (sha256 re-signed), optimizer files and state.json are accepted or refused with one line naming the file', () => {
  const model = ckptFiles['model.safetensors']!;
  const inFile = (file: string) => (m: FileMutation): [string, FileMutation] => [file, m];
  const mutations: [string, FileMutation][] = [
    ...byteMutations(new Uint8Array(model), 5, 10).map(inFile('model.safetensors')),
    ...headerMutations(model, 6, 20).map(inFile('model.safetensors')),
    ...metadataMutations(model, 'model_config', 7, 20).map(inFile('model.safetensors')),
    ...metadataMutations(model, 'vocab', 8, 10).map(inFile('model.safetensors')),
    ...headerMutations(ckptFiles['optimizer.safetensors']!, 9, 12).map(inFile('optimizer.safetensors')),
    ...jsonMutations(JSON.parse(ckptFiles['state.json']!.toString('utf8')), 10, 24).map((m) => inFile('state.json')({ name: m.name, bytes: Buffer.from(m.text), mustRefuse: wholeDocument(m.name, {}) })),
  ];
  let refused = 0;
  for (const [file, m] of mutations) {
    const dir = craftedCheckpoint('fuzz', file, m.bytes);
    const r = readerKeepsContract(`checkpoint ${file}: ${m.name}`, dir, () => loadCheckpoint(dir, { withOptimizer: true }));
    if (m.mustRefuse) assert.ok(r, `checkpoint ${file}: ${m.name} was accepted`);
    if (r) refused++;
  }
  assert.ok(refused >= mutations.length / 2, `only ${refused} of ${mutations.length} refused`);
});

test('training checkpoints: a crafted model_config or vocab that passes the sha256 is refused by its schema, naming the file and field', () => {
  const { header, body } = splitSafetensors(ckptFiles['model.safetensors']!);
  const meta = header.__metadata__ as Record<string, string>;
  const withMeta = (name: string, patch: Record<string, string>): string => craftedCheckpoint(name, 'model.safetensors', joinSafetensors({ ...header, __metadata__: { ...meta, ...patch } }, body));
  const config = JSON.parse(meta.model_config!);
  const cases: [string, string, RegExp][] = [
    ['model_config with a string width', withMeta('cfg-string', { model_config: JSON.stringify({ ...config, text_config: { ...config.text_config, hidden_size: 'wide' } }) }), /model\.safetensors: metadata "model_config": text_config\.hidden_size: /],
    ['model_config null', withMeta('cfg-null', { model_config: 'null' }), /metadata "model_config": \(root\)/],
    ['model_config not JSON', withMeta('cfg-json', { model_config: '{"vision' }), /metadata "model_config" is not valid JSON/],
    ['model_config with a huge width', withMeta('cfg-huge', { model_config: JSON.stringify({ ...config, text_config: { ...config.text_config, hidden_size: 1e12 } }) }), /text_config\.hidden_size: Too big/],
    ['vocab null', withMeta('vocab-null', { vocab: 'null' }), /metadata "vocab": \(root\)/],
    ['vocab with a string size', withMeta('vocab-string', { vocab: '{"textSize":"300","K":4}' }), /metadata "vocab": textSize/],
    ['vocab with another K', withMeta('vocab-k', { vocab: '{"textSize":256,"K":5}' }), /parameter model\.embed_tokens\.weight missing or not F32/],
  ];
  for (const [label, dir, pattern] of cases) refuses(label, dir, () => loadCheckpoint(dir), pattern);
  const stateText = ckptFiles['state.json']!.toString('utf8');
  const badState = craftedCheckpoint('state-null', 'state.json', Buffer.from(stateText.replace(/"step": 3/, '"step": null')));
  refuses('state.json step null', badState, () => loadCheckpoint(badState), /state\.json: not a valid checkpoint state: step/);
  const cut = craftedCheckpoint('state-cut', 'state.json', Buffer.from(stateText.slice(0, 40)));
  refuses('state.json cut', cut, () => loadCheckpoint(cut), /state\.json: checkpoint state is not valid JSON/);
});

test('training configs: mutated files and hostile --set overrides give one line naming the file or the override', () => {
  const p = join(work, 'fuzz-train.json');
  let refused = 0;
  const mutations = jsonMutations(trainConfigValid, 11, 60);
  for (const m of mutations) {
    writeFileSync(p, m.text);
    const r = readerKeepsContract(`train config: ${m.name}`, p, () => loadTrainConfig(p));
    if (wholeDocument(m.name, trainConfigValid)) assert.ok(r, `train config: ${m.name} was accepted`);
    if (r) refused++;
  }
  assert.ok(refused >= mutations.length / 2, `only ${refused} of ${mutations.length} refused`);

  const nulls = join(work, 'nulls.json');
  writeFileSync(nulls, JSON.stringify({ ...trainConfigValid, seed: null, optim: null }));
  refuses('config with null fields', nulls, () => loadTrainConfig(nulls), /invalid training config: seed: .*; optim: /);

  const overrides: [string, RegExp][] = [
    ['seed=1e300', /--set seed=1e300: seed: /],
    ['seed=9007199254740993', /--set seed=9007199254740993: seed: /],
    ['batch_size=-1', /--set batch_size=-1: batch_size: /],
    ['model.text_config.hidden_size=1e9', /--set model\.text_config\.hidden_size=1e9: model\.text_config\.hidden_size: Too big/],
    ['optim=null', /--set optim=null: optim: /],
    ['stepz=3', /--set stepz=3: stepz: /],
    ['__proto__.polluted=1', /--set __proto__\.polluted: not a config field path/],
    ['model.constructor.x=1', /--set model\.constructor\.x: not a config field path/],
    ['a..b=1', /--set a\.\.b: not a config field path/],
  ];
  for (const [o, pattern] of overrides) {
    tally.tried++;
    assert.throws(() => loadTrainConfig(trainConfigPath, [o]), (e: unknown) => e instanceof UsageError && pattern.test(e.message) && !e.message.includes('\n'), o);
    tally.refused++;
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype was polluted');
  // A problem in the file itself still names the file, even with overrides given.
  writeFileSync(p, JSON.stringify({ ...trainConfigValid, seed: 'x' }));
  refuses('file problem with an unrelated --set', p, () => loadTrainConfig(p, ['steps=3']), /invalid training config: seed/);
  assert.equal(loadTrainConfig(trainConfigPath, ['steps=9']).steps, 9);
});

test('uvu clustering checkpoints: mutated tensors and metadata are refused with one line naming the file', () => {
  const p = join(clusterDir, 'round-000099.safetensors');
  const mutations = [
    ...byteMutations(new Uint8Array(clusterBytes), 12, 12),
    ...headerMutations(clusterBytes, 13, 24),
    ...['totals', 'history'].flatMap((key, i) => metadataMutations(clusterBytes, key, 30 + i, 10)),
  ];
  fuzz('cluster checkpoint', p, mutations, () => readCheckpoint(p, 'identity', 2));
  // Crafted files whose checksum is recomputed: wrong dtype, wrong K, slots outside K, garbage totals.
  const { tensors, metadata } = readSafetensors(clusterPath);
  const crafted = (name: string, edit: (t: typeof tensors, m: typeof metadata) => void): string => {
    const t = { ...tensors };
    const m = { ...metadata };
    edit(t, m);
    const h = createHash('sha256');
    for (const n of Object.keys(t).sort()) {
      const d = t[n]!.data;
      h.update(n);
      h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    m.checksum = h.digest('hex');
    const out = join(work, `cluster-${name}.safetensors`);
    writeSafetensors(out, t, m);
    return out;
  };
  const cases: [string, string, RegExp][] = [
    ['weight as F32', crafted('dtype', (t) => (t.weight = { dtype: 'F32', shape: [2], data: new Float32Array(2) })), /tensor weight is F32 \[2\], expected F64 \[2\]/],
    ['three centres for K = 2', crafted('k', (t) => (t.centers_assign = { dtype: 'F32', shape: [3, PATCH_DIM], data: new Float32Array(3 * PATCH_DIM) })), /holds 3 centres, the run's config asks for K = 2/],
    ['a cached slot outside K', crafted('slots', (t) => (t.cache_slots = { dtype: 'I32', shape: [1], data: Int32Array.from([7]) })), /cache_slots holds a slot outside/],
    ['totals not JSON', crafted('totals', (_t, m) => (m.totals = '{"dup')), /metadata "totals" is not valid JSON/],
    ['history null', crafted('history', (_t, m) => (m.history = 'null')), /metadata "history": \(root\)/],
    ['round not a number', crafted('round', (_t, m) => (m.round = 'x')), /metadata "round"/],
  ];
  for (const [label, path, pattern] of cases) refuses(label, path, () => readCheckpoint(path, 'identity', 2), pattern);
  assert.equal(readCheckpoint(clusterPath, 'identity', 2).K, 2);
});

// ---------------------------------------------------------------------------------------------
// The CLI contract on a handful of cases: exit code, one `uvu: error:` line naming the file, no
// stack trace, memory under the cap.

test('CLI: hostile codebooks, checkpoints and training configs fail with one line naming the file', () => {
  const photo = bundledPhotoPath('black-canyon');
  const { header, body } = splitSafetensors(codebookBytes);
  const metaNull = join(work, 'cli-meta-null.safetensors');
  writeFileSync(metaNull, joinSafetensors({ ...header, __metadata__: null }, body));
  assertCleanFailure(runUvu(['codebook', 'eval', metaNull, '--images', photo]), { names: metaNull }, 'codebook eval: __metadata__ null');

  assertCleanFailure(runUvu(['--max-alloc', '16K', 'codebook', 'eval', codebookPath, '--images', photo]), { names: codebookPath }, 'codebook eval above --max-alloc');

  const modelMeta = splitSafetensors(ckptFiles['model.safetensors']!);
  const m = modelMeta.header.__metadata__ as Record<string, string>;
  const crafted = craftedCheckpoint('cli', 'model.safetensors', joinSafetensors({ ...modelMeta.header, __metadata__: { ...m, model_config: '{"text_config":{"hidden_size":null}}' } }, modelMeta.body));
  assertCleanFailure(runUvu(['ask', 'what?', '--checkpoint', crafted, '--image', photo]), { names: join(crafted, 'model.safetensors') }, 'ask: crafted model_config');

  const nulls = join(work, 'cli-nulls.json');
  writeFileSync(nulls, JSON.stringify({ ...trainConfigValid, seed: null }));
  const outDir = join(work, 'cli-train-out');
  assertCleanFailure(runUvu(['train', '--config', nulls, '--set', `out=${outDir}`]), { names: nulls, noOutputs: [outDir] }, 'train: null seed');
  assertCleanFailure(runUvu(['train', '--config', trainConfigPath, '--set', 'seed=1e300', '--set', `out=${outDir}`]), { names: '--set seed=1e300', exitCode: 2, noOutputs: [outDir] }, 'train: seed above 2^53');
  tally.tried += 5;
  tally.refused += 5;
});
