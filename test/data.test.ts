import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { loadImage } from '../src/image/io.js';
import { patchify, patchesToFloat, unpatchify, PATCH_DIM } from '../src/patches/patchify.js';
import { encodingVector } from '../src/codebook/posenc.js';
import { loadCodebook, saveCodebook, type Codebook } from '../src/codebook/file.js';
import { reconstructImage, tokenizeImage } from '../src/tokens/tokenize.js';
import { CodebookCoder, loadImageCoder } from '../src/tokens/coder.js';
import { Vocab } from '../src/tokens/vocab.js';
import { buildDialogSequence, buildSequence, dialogLength, questionPrompt, sequenceLength, FLAG_LOSS_PRETRAIN, FLAG_LOSS_SFT, FLAG_SAMPLE_START, FLAG_VISUAL, type Sequence } from '../src/data/sequence.js';
import { assembleRow, packSequences, slicePiece } from '../src/data/pack.js';
import { buildTargets } from '../src/data/targets.js';
import { SeqDataset, epochPermutation, type Batch } from '../src/data/dataset.js';
import { buildDataset } from '../src/data/build.js';
import { describePhoto } from '../src/data/captions.js';
import { UsageError, UvuError } from '../src/util/errors.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-data-'));
const MAX_PIXELS = 128 * 128;
const T = 96;
const photos = BUNDLED_PHOTOS.slice(0, 3).map(bundledPhotoPath);

// ---- A small codebook with positional encoding: 16 patches of the photos, centred where they were cut.
const pe = { type: '2d-sincos' as const, scale: 0.1 };
async function makeCodebook(): Promise<Codebook> {
  const pixel: number[] = [];
  const assign: number[] = [];
  let K = 0;
  for (const p of photos) {
    const img = await loadImage(p, { maxPixels: MAX_PIXELS });
    const { patches, rows, cols } = patchify(img);
    for (let i = 0; i < rows * cols && K < 16; i += 3, K++) {
      const f = patchesToFloat(patches.subarray(i * PATCH_DIM, (i + 1) * PATCH_DIM));
      const v = encodingVector(pe, PATCH_DIM, Math.floor(i / cols), i % cols, cols);
      f.forEach((x, d) => {
        pixel.push(x);
        assign.push(x + v[d]!);
      });
    }
  }
  return { K, D: PATCH_DIM, patchSize: 32, centersPixel: Float32Array.from(pixel), centersAssign: Float32Array.from(assign), counts: new Float32Array(K).fill(1), pe, build: { method: 'test' }, data: '', metrics: {} };
}
const codebookPath = join(work, 'cb.safetensors');
saveCodebook(codebookPath, await makeCodebook());
const cb = loadCodebook(codebookPath);

// ---- Samples: captions (generated), questions, text lines; plus two Moby Dick chapters.
const samplesPath = join(work, 'samples.jsonl');
const lines: object[] = [];
for (const p of photos) lines.push({ image: p, text: describePhoto(await loadImage(p, { maxPixels: MAX_PIXELS })) });
lines.push({ image: photos[0]!, prompt: 'What is in the picture?', answer: 'a landscape', task: 'caption', id: 'q1' });
lines.push({ image: photos[1]!, prompt: 'Where is the boat?', answer: '<loc_3><loc_10><loc_20><loc_31>', task: 'grounding', id: 'q2' });
lines.push({ image: photos[2]!, prompt: 'How many canyons?', answer: '1', task: 'counting', id: 'q3' });
lines.push({ text: 'The quick brown fox jumps over the lazy dog.' });
lines.push({ text: 'Call me Ishmael. Some years ago, never mind how long precisely.' });
writeFileSync(samplesPath, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');

/**
 * Run `uvu data …` (the command object, as main.ts wires it) in a child process — the test
 * runner owns this process's stdout — and return the --json object it printed.
 */
const CLI_MODULE = new URL('../src/cli/data.js', import.meta.url).href;
const COMMON_MODULE = new URL('../src/cli/common.js', import.meta.url).href;
function runData(args: string[]): { status: number; json: Record<string, unknown> | null; stderr: string } {
  const script = `const { dataCommand } = await import(${JSON.stringify(CLI_MODULE)}); const { reportError } = await import(${JSON.stringify(COMMON_MODULE)});
    try { await dataCommand().parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { process.exitCode = reportError(e); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, '--', ...args, '--json', '--quiet'], { encoding: 'utf8' });
  const out = r.stdout.trim();
  return { status: r.status ?? -1, json: out ? (JSON.parse(out) as Record<string, unknown>) : null, stderr: r.stderr };
}

const dsDir = join(work, 'ds');
const buildArgs = ['build', '--out', dsDir, '--image-tokenizer', codebookPath, '--samples', samplesPath, '--text', 'moby-dick', '--text-docs', '2', '--train-tokenizer', '320', '--context', String(T), '--max-pixels', String(MAX_PIXELS), '--val-fraction', '0.2', '--seed', '3', '--shard-mb', '0.05'];
const built = runData(buildArgs);
assert.equal(built.status, 0, built.stderr);
const summary = built.json!;
const ds = SeqDataset.open(dsDir, { verify: true });
const vocab = ds.vocab();
const tok = ds.tokenizer();
after(() => {
  ds.close();
  rmSync(work, { recursive: true, force: true });
});

/** Every sequence the dataset must contain, built here from the inputs. */
async function expectedSequences(): Promise<{ seq: Sequence; pixels: Uint8Array | null; codes: number[] | null }[]> {
  const out: { seq: Sequence; pixels: Uint8Array | null; codes: number[] | null }[] = [];
  for (const l of lines as Record<string, string>[]) {
    if (!l.image) {
      out.push({ seq: buildSequence({ kind: 'text', text: tok.encode(l.text!) }, vocab), pixels: null, codes: null });
      continue;
    }
    const { tokens, image } = await tokenizeImage(l.image, cb, { maxPixels: MAX_PIXELS });
    const img = { codes: Int32Array.from(tokens.ids), rows: tokens.rows, cols: tokens.cols };
    const seq = l.prompt
      ? buildSequence({ kind: 'qa', image: img, prompt: tok.encode(l.prompt), answer: tok.encode(l.answer!) }, vocab)
      : buildSequence({ kind: 'caption', image: img, text: tok.encode(l.text!) }, vocab);
    out.push({ seq, pixels: image.data, codes: tokens.ids });
  }
  const build = ds.manifest.build as { text: string[] };
  assert.deepEqual(build.text, ['moby-dick']);
  return out;
}

test('sample → sequence: targets and loss masks of a hand-built caption and QA row are exactly DESIGN §6', () => {
  const v = new Vocab({ textSize: 256, K: 8 });
  const img = { codes: Int32Array.from([5, 0, 7, 5]), rows: 2, cols: 2 };
  const c = (k: number) => v.imageOffset + k;
  const cap = buildSequence({ kind: 'caption', image: img, text: [104, 105] }, v); // "hi"
  const qa = buildSequence({ kind: 'qa', image: img, prompt: [63], answer: [50] }, v); // "?" → "2"
  assert.deepEqual(Array.from(cap.ids), [v.bos, v.imgStart, c(5), c(0), c(7), c(5), v.imgEnd, 104, 105, v.eos]);
  assert.deepEqual(Array.from(qa.ids), [v.bos, v.user, v.imgStart, c(5), c(0), c(7), c(5), v.imgEnd, 63, v.assistant, 50, v.eos]);
  assert.equal(sequenceLength('caption', 4, [2]), cap.ids.length);
  assert.equal(sequenceLength('qa', 4, [1, 1]), qa.ids.length);
  const row = assembleRow([cap, qa], 24, v.pad);
  assert.deepEqual(row.images.map(({ start, rows, cols }) => [start, rows, cols]), [[2, 2, 2], [13, 2, 2]]);
  const batch = { B: 1, T: 24, ids: row.ids, flags: row.flags };
  const pad = v.pad;
  const P = -1; // unsupervised: target <pad>, both masks 0
  // Expected pretrain target at every position (hand-written from §6):
  //   caption  <bos>→<img>, <img>→c1, v1→c2, v2→c3, v3→c4, v4→</img>, </img>→h, h→i, i→<eos>, <eos>: none (next sample)
  //   qa       <bos>→<|user|>, <|user|>→<img>, <img>→c1, v1..v3→c2..c4, v4→</img>, </img>→?, ?→<|assistant|>, <|assistant|>→2, 2→<eos>, <eos>: none
  //   padding: none
  const pre = [v.imgStart, c(5), c(0), c(7), c(5), v.imgEnd, 104, 105, v.eos, P, v.user, v.imgStart, c(5), c(0), c(7), c(5), v.imgEnd, 63, v.assistant, 50, v.eos, P, P, P];
  const isImage = (y: number) => y >= v.imageOffset;
  const pt = buildTargets(batch, v, 'pretrain');
  assert.deepEqual(Array.from(pt.targets), pre.map((y) => (y === P ? pad : y)));
  assert.deepEqual(Array.from(pt.imageMask), pre.map((y) => (y !== P && isImage(y) ? 1 : 0)));
  assert.deepEqual(Array.from(pt.textMask), pre.map((y) => (y !== P && !isImage(y) ? 1 : 0)));
  // 4 + 4 image targets (<img>→c1 and v_i→c_{i+1}); v4→</img> is a text target.
  assert.equal(pt.imageMask.reduce((a, b) => a + b, 0), 8);
  assert.equal(pt.targets[5], v.imgEnd);
  // SFT: only <|assistant|>→answer and answer→<eos> of the QA sample.
  const sft = buildTargets(batch, v, 'sft');
  const sftExpected = pre.map((y, t) => (t === 19 || t === 20 ? y : P));
  assert.deepEqual(Array.from(sft.targets), sftExpected.map((y) => (y === P ? pad : y)));
  assert.deepEqual(Array.from(sft.textMask), sftExpected.map((y) => (y === P ? 0 : 1)));
  assert.ok(sft.imageMask.every((x) => x === 0));
  // Visual inputs are exactly the code positions.
  assert.deepEqual([...row.flags].flatMap((f, t) => (f & FLAG_VISUAL ? [t] : [])), [2, 3, 4, 5, 13, 14, 15, 16]);
  // The ask prompt is the QA sequence up to <|assistant|>, without loss flags.
  const prompt = questionPrompt(img, [63], v);
  assert.deepEqual(Array.from(prompt.ids), Array.from(qa.ids.subarray(0, 10)));
  assert.ok(prompt.flags.every((f) => (f & (FLAG_LOSS_PRETRAIN | FLAG_LOSS_SFT)) === 0));
});

test('dialog: several questions about one image in one sequence; turn 1 is the QA sequence, SFT supervises every answer and its <eos>', () => {
  const v = new Vocab({ textSize: 256, K: 8 });
  const img = { codes: Int32Array.from([5, 0, 7, 5]), rows: 2, cols: 2 };
  const c = (k: number) => v.imageOffset + k;
  const d = buildDialogSequence(img, [{ prompt: [63], answer: [50] }, { prompt: [64, 65], answer: [51, 52] }], v);
  assert.deepEqual(Array.from(d.ids), [v.bos, v.user, v.imgStart, c(5), c(0), c(7), c(5), v.imgEnd, 63, v.assistant, 50, v.eos, v.user, 64, 65, v.assistant, 51, 52, v.eos]);
  assert.equal(dialogLength(4, [1, 1, 2, 2]), d.ids.length);
  const qa = buildSequence({ kind: 'qa', image: img, prompt: [63], answer: [50] }, v);
  assert.deepEqual(buildDialogSequence(img, [{ prompt: [63], answer: [50] }], v), qa, 'one turn is exactly a QA sample');
  assert.equal(dialogLength(4, [1, 1]), qa.ids.length);
  const row = assembleRow([d], 24, v.pad);
  // SFT targets (hand-written): <|assistant|>→50, 50→<eos>; <|assistant|>→51, 51→52, 52→<eos>. Nothing else, not the <eos>→<|user|> between turns.
  const sft = buildTargets({ B: 1, T: 24, ids: row.ids, flags: row.flags }, v, 'sft');
  const supervised = [...sft.textMask].flatMap((m, t) => (m ? [[t, sft.targets[t]]] : []));
  assert.deepEqual(supervised, [[9, 50], [10, v.eos], [15, 51], [16, 52], [17, v.eos]]);
  assert.throws(() => buildDialogSequence(img, [], v), /at least one turn/);
});

test('packing: whole samples first fit, long texts cut to fill the gaps; no row overfilled, no target crosses a piece', () => {
  const T = 16;
  // First fit of whole sequences (at most 3 candidate rows), then the two long texts (40 and 20 tokens).
  const lengths = [9, 40, 3, 16, 7, 8, 1, 20, 12, 4, 5];
  const rows = packSequences(lengths, T, { splittable: (i) => i === 1 || i === 7, maxOpen: 3, minPiece: 3 });
  const used = rows.map((r) => r.reduce((a, p) => a + p.to - p.from, 0));
  assert.ok(used.every((u) => u <= T));
  // Whole: 9+3+1 → row 0 (13), 16 → row 1, 7+8 → row 2 (15), 12+4 → row 3 (16), 5 → row 4 (the 3-row cap retired row 1).
  assert.deepEqual(rows.slice(0, 5).map((r) => r.filter((p) => p.seq !== 1 && p.seq !== 7).map((p) => p.seq)), [[0, 2, 6], [3], [4, 5], [8, 9], [10]]);
  // Text 1 fills row 0's gap of 3 (≥ minPiece), skips row 2's gap of 1, takes 11 in row 4, then new rows.
  const pieces = (i: number) => rows.flatMap((r, ri) => r.filter((p) => p.seq === i).map((p) => [ri, p.from, p.to]));
  assert.deepEqual(pieces(1), [[0, 0, 3], [4, 3, 14], [5, 14, 30], [6, 30, 40]]);
  assert.deepEqual(pieces(7), [[6, 0, 6], [7, 6, 20]]);
  // Every token of every sequence is placed exactly once.
  lengths.forEach((len, i) => {
    const ps = pieces(i);
    assert.equal(ps.reduce((a, [, f, t]) => a + t! - f!, 0), len);
  });
  assert.throws(() => packSequences([17], T), /holds 16/);

  const v = new Vocab({ textSize: 256, K: 4 });
  const seq = buildSequence({ kind: 'text', text: Array.from({ length: 38 }, (_, i) => 97 + (i % 26)) }, v);
  const cut = [slicePiece(seq, 0, 3), slicePiece(seq, 3, 14), slicePiece(seq, 14, 40)];
  assert.deepEqual(cut.flatMap((c) => [...c.ids]), [...seq.ids]);
  for (const c of cut) {
    assert.equal(c.flags[c.flags.length - 1], 0, 'the target after a piece lies outside it');
    assert.ok(c.flags.subarray(0, -1).every((f) => f === FLAG_LOSS_PRETRAIN));
  }
  assert.equal(slicePiece(seq, 0, 40), seq);
});

test('CodebookCoder assigns exactly like tokenizeImage (PE on) and decodes to the pixel centres', async () => {
  const coder = loadImageCoder(codebookPath);
  assert.ok(coder instanceof CodebookCoder);
  assert.equal(coder.K, cb.K);
  assert.match(coder.sha256, /^[0-9a-f]{64}$/);
  for (const p of photos) {
    const { tokens } = await tokenizeImage(p, cb, { maxPixels: 256 * 256 });
    const img = await loadImage(p, { maxPixels: 256 * 256 });
    const { patches, rows, cols } = patchify(img);
    const codes = coder.encode(patches, rows * cols, { rows, cols });
    assert.deepEqual(Array.from(codes), tokens.ids);
    assert.deepEqual(unpatchify(coder.decode(codes), rows, cols).data, reconstructImage(tokens, cb).data);
  }
  // A safetensors file that is neither a codebook nor a VQ-VAE is refused by its format tag.
  assert.throws(() => loadImageCoder(join(dsDir, 'code-counts.safetensors')), /not an image tokenizer.*uvu-code-counts/);
});

test('manifest and shards round trip: every row is the in-memory sequences plus padding', async () => {
  const m = ds.manifest;
  assert.equal(m.contextLength, T);
  assert.deepEqual(m.vocab, { textSize: tok.textSize, K: cb.K });
  assert.equal(tok.textSize, 320);
  assert.ok(m.splits.train.shards.length >= 2, 'small --shard-mb gives several shards');
  assert.ok(m.splits.val.rows >= 1);
  const s = summary as { counts: { train: { rows: number; images: number }; val: { rows: number; images: number } }; K: number };
  assert.equal(s.counts.train.rows, ds.rows('train'));
  assert.equal(s.K, cb.K);

  // Expected: the JSONL sequences and every chunk of the two chapters (Moby Dick text is long: chunked).
  const expected = await expectedSequences();
  const pool: { seq: Sequence; pixels: Uint8Array | null; codes: number[] | null; used: boolean }[] = expected.map((e) => ({ ...e, used: false }));
  assert.ok(expected.every((e) => e.seq.ids.length <= T), 'JSONL samples fit one row');

  const same = (row: { ids: Int32Array; flags: Uint8Array }, t: number, seq: Sequence) =>
    t + seq.ids.length <= T && seq.ids.every((id, i) => row.ids[t + i] === id) && seq.flags.every((f, i) => row.flags[t + i] === (i === 0 ? f | FLAG_SAMPLE_START : f));
  let fromCorpus = 0;
  let tokens = 0;
  let imagesSeen = 0;
  for (const split of ['train', 'val'] as const) {
    for (let r = 0; r < ds.rows(split); r++) {
      const row = ds.row(split, r);
      let t = 0;
      while (t < T && row.ids[t] !== vocab.pad) {
        const hit = pool.filter((e) => !e.used && same(row, t, e.seq)).sort((a, b) => b.seq.ids.length - a.seq.ids.length)[0];
        if (hit) {
          hit.used = true;
          if (hit.pixels) {
            const img = row.images.find((i) => i.start === t + hit.seq.image!.start);
            assert.ok(img, `${split} row ${r}: image at ${t} is in the image table`);
            assert.deepEqual(img.pixels, hit.pixels, 'stored pixels are the image as tokenized');
            assert.deepEqual(Array.from(row.ids.subarray(img.start, img.start + img.rows * img.cols), (id) => id - vocab.imageOffset), hit.codes);
            imagesSeen++;
          }
          t += hit.seq.ids.length;
        } else {
          // A corpus chunk: text ids with pretraining flags on every position but its last.
          let e = t;
          while (e < T && row.ids[e] !== vocab.pad && (row.flags[e]! & FLAG_LOSS_PRETRAIN)) e++;
          assert.ok(e < T && row.ids[e] !== vocab.pad, `${split} row ${r} position ${t}: unknown content`);
          assert.ok(row.ids.subarray(t, e + 1).every((id) => id < vocab.imageOffset) && row.flags.subarray(t, e + 1).every((f) => (f & (FLAG_VISUAL | FLAG_LOSS_SFT)) === 0));
          fromCorpus++;
          t = e + 1;
        }
      }
      tokens += t;
      assert.ok(row.ids.subarray(t).every((id) => id === vocab.pad) && row.flags.subarray(t).every((f) => f === 0), 'padding has no flags');
      assert.equal(row.flags[T - 1]! & (FLAG_LOSS_PRETRAIN | FLAG_LOSS_SFT), 0, 'no target at the last position');
    }
  }
  assert.ok(pool.every((e) => e.used), 'every JSONL sample is in the dataset exactly once');
  assert.equal(imagesSeen, 6);
  assert.ok(fromCorpus >= 2);
  assert.equal(tokens, m.counts.train.tokens + m.counts.val.tokens);
  assert.equal(m.counts.train.images + m.counts.val.images, 6);
  assert.equal(m.counts.train.samples.caption + m.counts.val.samples.caption, 3);
  assert.equal(m.counts.train.samples.qa + m.counts.val.samples.qa, 3);
  assert.equal(m.counts.train.samples.text + m.counts.val.samples.text, 4);
});

test('batches are a deterministic function of (seed, step) over per-epoch permutations', () => {
  const N = ds.rows('train');
  const B = 3;
  const again = SeqDataset.open(dsDir);
  const a = ds.batch('train', 5, B, 11);
  const b = again.batch('train', 5, B, 11);
  again.close();
  assert.deepEqual(a, b);
  assert.equal(a.ids.length, B * T);
  assert.notDeepEqual(ds.batchIndices('train', 0, N, 11), ds.batchIndices('train', 0, N, 12));
  // Steps of one epoch visit every row exactly once, in the epoch's permutation.
  const seen: number[] = [];
  for (let step = 0; step * B < 2 * N; step++) seen.push(...ds.batchIndices('train', step, B, 11));
  assert.deepEqual(seen.slice(0, N), Array.from(epochPermutation(N, 11, 0)));
  assert.deepEqual([...seen.slice(0, N)].sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(seen.slice(N, 2 * N), Array.from(epochPermutation(N, 11, 1)));
  assert.notDeepEqual(epochPermutation(N, 11, 0), epochPermutation(N, 11, 1));
  // Batch contents are the rows at those indices; images carry their batch row.
  const idx = ds.batchIndices('train', 2, B, 11);
  const batch: Batch = ds.batch('train', 2, B, 11);
  idx.forEach((r, j) => {
    const row = ds.row('train', r);
    assert.deepEqual(batch.ids.subarray(j * T, (j + 1) * T), row.ids);
    assert.deepEqual(batch.flags.subarray(j * T, (j + 1) * T), row.flags);
    assert.equal(batch.images.filter((i) => i.row === j).length, row.images.length);
  });
});

test('code counts equal a recount of the train split image targets', () => {
  const N = ds.rows('train');
  const all = ds.rowsBatch('train', Array.from({ length: N }, (_, i) => i));
  const { targets, imageMask } = buildTargets(all, vocab, 'pretrain');
  const recount = new Float64Array(cb.K);
  imageMask.forEach((m, i) => {
    if (m) recount[targets[i]! - vocab.imageOffset]!++;
  });
  assert.deepEqual(ds.codeCounts(), recount);
  assert.equal(recount.reduce((x, y) => x + y, 0), ds.manifest.counts.train.imageTargets);
  assert.ok(ds.manifest.counts.train.imageTargets > 0);
});

test('a truncated or corrupted shard is refused with its file name', () => {
  const copy = (name: string) => {
    const dir = join(work, name);
    cpSync(dsDir, dir, { recursive: true });
    return dir;
  };
  const rowsFile = (dir: string) => join(dir, readdirSync(dir).find((f) => f.startsWith('train-') && f.endsWith('.rows'))!);
  const truncated = copy('truncated');
  truncateSync(rowsFile(truncated), 5 * T * 2 - 7);
  assert.throws(() => SeqDataset.open(truncated), (e: unknown) => e instanceof UvuError && e.message.startsWith(rowsFile(truncated)) && /truncated/.test(e.message));
  const noPixels = copy('pixels');
  const px = join(noPixels, 'train-00000.pixels');
  truncateSync(px, 100);
  assert.throws(() => SeqDataset.open(noPixels), (e: unknown) => e instanceof UvuError && e.message.startsWith(px));
  // Same size, one id overwritten with garbage: hashes catch it (by default), and so does reading that row.
  const flipped = copy('flipped');
  const f = rowsFile(flipped);
  const bytes = readFileSync(f);
  bytes.writeInt32LE(-5, 0);
  writeFileSync(f, bytes);
  assert.throws(() => SeqDataset.open(flipped), (e: unknown) => e instanceof UvuError && e.message.startsWith(f) && /sha256/.test(e.message));
  const lazy = SeqDataset.open(flipped, { verify: false });
  assert.throws(() => lazy.row('train', 0), (e: unknown) => e instanceof UvuError && e.message.startsWith(f) && /corrupt/.test(e.message));
  lazy.close();
  const badManifest = copy('manifest');
  writeFileSync(join(badManifest, 'manifest.json'), JSON.stringify({ ...ds.manifest, contextLength: 'long' }));
  assert.throws(() => SeqDataset.open(badManifest), /manifest\.json: not a uvu dataset manifest: contextLength/);
});

test('bad input is refused before any work: oversize image, missing image, existing output', async () => {
  const out = join(work, 'refused');
  // 128×128 px → at least 16 codes: cannot fit a context of 16.
  await assert.rejects(
    buildDataset({ out, imageTokenizer: codebookPath, samples: [samplesPath], trainTokenizer: 300, context: 16, maxPixels: MAX_PIXELS }),
    (e: unknown) => e instanceof UvuError && e.message.startsWith(`${samplesPath}:1: image ${photos[0]}`) && /does not fit the context/.test(e.message),
  );
  // Fits alone but not with its question: the exact check after tokenization names line 4.
  const g = await loadImage(photos[0]!, { maxPixels: MAX_PIXELS });
  const n = (g.width / 32) * (g.height / 32);
  const one = join(work, 'one.jsonl');
  writeFileSync(one, JSON.stringify({ image: photos[0], text: 'x' }) + '\n' + JSON.stringify({ image: photos[0], prompt: 'What is shown in this picture, in detail?', answer: 'a landscape' }) + '\n');
  await assert.rejects(
    buildDataset({ out, imageTokenizer: codebookPath, samples: [one], trainTokenizer: 300, context: n + 8, maxPixels: MAX_PIXELS }),
    (e: unknown) => e instanceof UvuError && e.message.startsWith(`${one}:2: image`),
  );
  const missing = join(work, 'missing.jsonl');
  writeFileSync(missing, JSON.stringify({ image: 'nope.png', text: 'x' }) + '\n');
  await assert.rejects(buildDataset({ out, imageTokenizer: codebookPath, samples: [missing], trainTokenizer: 300 }), (e: unknown) => e instanceof UvuError && e.message.startsWith(`${missing}:1: image ${join(work, 'nope.png')}`));
  writeFileSync(missing, '{"image": "a.png"}\n');
  await assert.rejects(buildDataset({ out, imageTokenizer: codebookPath, samples: [missing], trainTokenizer: 300 }), new RegExp(`${missing}:1: not a caption sample`));
  assert.equal(existsSync(out), false);
  assert.ok(!readdirSync(work).some((f) => f.startsWith('refused.tmp')), 'no temporary folder left behind');
  const exists = runData(buildArgs);
  assert.equal(exists.status, 2);
  assert.match(exists.stderr, /already exists/);
  await assert.rejects(buildDataset({ out, imageTokenizer: join(work, 'none.safetensors'), samples: [samplesPath], trainTokenizer: 300 }), (e: unknown) => e instanceof UsageError && /none\.safetensors: no such file/.test(e.message));
  // A given tokenizer whose special tokens differ from the vocabulary's is refused.
  const tj = JSON.parse(readFileSync(join(dsDir, 'tokenizer.json'), 'utf8')) as { added_tokens: { content: string }[] };
  tj.added_tokens[0]!.content = '<s>';
  const badTok = join(work, 'bad-tokenizer.json');
  writeFileSync(badTok, JSON.stringify(tj));
  await assert.rejects(buildDataset({ out, imageTokenizer: codebookPath, samples: [samplesPath], tokenizer: badTok }), /special tokens|<s>/);
});

test('a QA line with "turns" is built into one dialog sequence with every answer supervised', async () => {
  const path = join(work, 'dialog.jsonl');
  const turns = [{ prompt: 'How many boats?', answer: '2' }, { prompt: 'Is there a boat?', answer: 'yes' }];
  writeFileSync(path, JSON.stringify({ image: photos[0], prompt: 'What is in the picture?', answer: 'a landscape', turns }) + '\n');
  const out = join(work, 'ds-dialog');
  await buildDataset({ out, imageTokenizer: codebookPath, samples: [path], tokenizer: join(dsDir, 'tokenizer.json'), context: T, maxPixels: MAX_PIXELS, valFraction: 0, seed: 1 });
  const d = SeqDataset.open(out, { verify: true });
  try {
    const { tokens } = await tokenizeImage(photos[0]!, cb, { maxPixels: MAX_PIXELS });
    const want = buildDialogSequence({ codes: Int32Array.from(tokens.ids), rows: tokens.rows, cols: tokens.cols }, [{ prompt: 'What is in the picture?', answer: 'a landscape' }, ...turns].map((t) => ({ prompt: tok.encode(t.prompt), answer: tok.encode(t.answer) })), vocab);
    assert.equal(d.rows('train'), 1);
    const row = d.row('train', 0);
    assert.deepEqual(Array.from(row.ids.subarray(0, want.ids.length)), Array.from(want.ids));
    // Packing marks the sample's first token (document masking); every other flag is the sequence's own.
    assert.deepEqual(Array.from(row.flags.subarray(0, want.flags.length)), Array.from(want.flags, (f, i) => (i === 0 ? f | FLAG_SAMPLE_START : f)));
    const answerTokens = ['a landscape', '2', 'yes'].reduce((n, a) => n + tok.encode(a).length + 1, 0);
    assert.equal(d.manifest.counts.train.sftTargets, answerTokens);
    assert.equal(d.manifest.counts.train.samples.qa, 1);
  } finally {
    d.close();
  }
});

test('rebuilding with the same seed and --overwrite gives byte-identical shards', async () => {
  const again = runData([...buildArgs, '--overwrite']);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual(again.json!.counts, summary.counts);
  const reopened = SeqDataset.open(dsDir, { verify: true });
  assert.deepEqual(reopened.manifest.splits, ds.manifest.splits);
  reopened.close();
});
