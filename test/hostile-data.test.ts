/**
 * Hostile inputs for the dataset files (manifest.json, row shards, pixels, image tables, code
 * counts, tokenizer.json), the sample JSONL and the perception benchmark's files (README "Files
 * we read and how we check them"). Seeded mutations of one small valid dataset; each must either
 * open and give exactly the reference batches, or be refused with a UvuError that names the file.
 * Most cases call the library; a handful run the CLI for the one-line / exit-code contract.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { loadImage } from '../src/image/io.js';
import { patchify, patchesToFloat, PATCH_DIM } from '../src/patches/patchify.js';
import { saveCodebook, type Codebook } from '../src/codebook/file.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { buildDataset } from '../src/data/build.js';
import { SeqDataset, SPLITS, MANIFEST_FILE, type DatasetManifest } from '../src/data/dataset.js';
import { ByteBpeTokenizer } from '../src/text/bpe.js';
import { buildBench, readBenchManifest } from '../src/perception/build.js';
import { evaluateBench, readBenchItems } from '../src/perception/eval.js';
import { loadPhotoStampList, PHOTO_STAMPS_LIST } from '../src/perception/stamps.js';
import { assertCleanFailure, assertUvuErrorNaming, byteMutations, jsonMutations, runUvu, tryReader, withFileReplaced } from './hostile.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-hostile-data-'));
after(() => rmSync(work, { recursive: true, force: true }));

const MAX_PIXELS = 96 * 96;
const photos = [bundledPhotoPath('nagasaki-boats'), bundledPhotoPath('black-canyon')];

/** Tally over all tests: hostile cases tried, refused cleanly, accepted with identical content. */
const tally = { tried: 0, refused: 0, identical: 0, accepted: 0 };

/** A test whose hostile cases are counted; its own tally is printed as a diagnostic. */
function hostileTest(name: string, fn: () => void | Promise<void>): void {
  test(name, async (t) => {
    const before = { ...tally };
    await fn();
    const d = (k: keyof typeof tally) => tally[k] - before[k];
    t.diagnostic(`${d('tried')} cases: ${d('refused')} refused cleanly, ${d('identical')} identical, ${d('accepted')} accepted otherwise`);
  });
}

// ---- One small valid dataset: a K=16 codebook cut from two bundled photos, a few samples.
async function makeCodebook(): Promise<Codebook> {
  const pixel: number[] = [];
  let K = 0;
  for (const p of photos) {
    const { patches, rows, cols } = patchify(await loadImage(p, { maxPixels: 128 * 128 }));
    for (let i = 0; i < rows * cols && K < 16; i += 2, K++) pixel.push(...patchesToFloat(patches.subarray(i * PATCH_DIM, (i + 1) * PATCH_DIM)));
  }
  const centers = Float32Array.from(pixel);
  return { K, D: PATCH_DIM, patchSize: 32, centersPixel: centers, centersAssign: null, counts: new Float32Array(K).fill(1), pe: NO_POSENC, build: { method: 'test' }, data: '', metrics: {} };
}
const codebookPath = join(work, 'cb.safetensors');
saveCodebook(codebookPath, await makeCodebook());

const samplesPath = join(work, 'samples.jsonl');
writeFileSync(
  samplesPath,
  [
    { image: photos[0], text: 'boats in a harbour' },
    { image: photos[1], text: 'a deep canyon' },
    { image: photos[0], prompt: 'How many boats?', answer: '3' },
    { text: 'Call me Ishmael. Some years ago, never mind how long precisely.' },
    { text: 'The quick brown fox jumps over the lazy dog.' },
  ]
    .map((l) => JSON.stringify(l))
    .join('\n') + '\n',
);

const dsDir = join(work, 'ds');
await buildDataset({ out: dsDir, imageTokenizer: codebookPath, samples: [samplesPath], trainTokenizer: 300, context: 48, maxPixels: MAX_PIXELS, valFraction: 0.3, seed: 1, shardBytes: 24 << 10 });
const manifest = JSON.parse(readFileSync(join(dsDir, MANIFEST_FILE), 'utf8')) as DatasetManifest;

/** Everything a training run reads: every row of both splits as one batch, code counts, tokenizer ids. */
function contents(ds: SeqDataset): unknown[] {
  const out: unknown[] = [];
  for (const split of SPLITS) {
    const n = ds.rows(split);
    if (n > 0) out.push(ds.rowsBatch(split, Array.from({ length: n }, (_, i) => i)));
  }
  out.push(Array.from(ds.codeCounts()));
  out.push(ds.tokenizer().encode('a quick test of the tokenizer, <|user|>'));
  return out;
}
const reference = (() => {
  const ds = SeqDataset.open(dsDir, { verify: true });
  try {
    return contents(ds);
  } finally {
    ds.close();
  }
})();

/** A scratch copy of the dataset whose files are mutated in place and restored after each case. */
const scratch = join(work, 'scratch');
cpSync(dsDir, scratch, { recursive: true });

/**
 * Open `dir` and read everything. With `exact`, a dataset that opens must give the reference
 * contents; every failure must be a one-line UvuError starting with `names`.
 */
function tryDataset(dir: string, label: string, names: string, opts: { verify: boolean; exact: boolean }): void {
  tryReader(tally, {
    label,
    names,
    exact: opts.exact,
    reference,
    // The default (what `uvu train` does) must verify.
    open: () => (opts.verify ? SeqDataset.open(dir) : SeqDataset.open(dir, { verify: false })),
    read: contents,
    close: (ds) => ds.close(),
  });
}

/** Write `bytes` to `file` in the scratch copy, run `fn`, restore the file. */
const withFile = (file: string, bytes: Uint8Array | string, fn: () => void): void => withFileReplaced(scratch, file, bytes, fn);

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
const shard0 = manifest.splits.train.shards[0]!;

hostileTest('manifest.json mutations: refused naming a dataset file, or identical batches', () => {
  const text = readFileSync(join(dsDir, MANIFEST_FILE), 'utf8');
  for (const m of jsonMutations(JSON.parse(text), 11, 80)) {
    withFile(MANIFEST_FILE, m.text, () => tryDataset(scratch, `manifest ${m.name}`, scratch, { verify: true, exact: true }));
  }
});

hostileTest('names in the manifest must be plain file names in the folder; the target is never described', () => {
  // A file outside the dataset with the size the manifest expects: the old reader would use it.
  const outside = join(work, 'outside.rows');
  writeFileSync(outside, readFileSync(join(dsDir, shard0.file)));
  const outsideSize = String(statSync(outside).size);
  const bad = ['../outside.rows', `${work}/outside.rows`, 'sub/train-00000.rows', '.', '..', 'a\0b', 'a\\..\\b', ''];
  const fields: [string, (m: any, v: string) => void][] = [
    ['shard file', (m, v) => (m.splits.train.shards[0].file = v)],
    ['images file', (m, v) => (m.splits.train.shards[0].images.file = v)],
    ['pixels file', (m, v) => (m.splits.train.shards[0].pixels.file = v)],
    ['tokenizer file', (m, v) => (m.tokenizer.file = v)],
    ['code counts file', (m, v) => (m.codeCounts.file = v)],
  ];
  for (const [field, set] of fields) {
    for (const v of bad) {
      const m = structuredClone(manifest);
      set(m, v);
      for (const verify of [true, false]) {
        const label = `${field} = ${JSON.stringify(v)} (verify ${verify})`;
        withFile(MANIFEST_FILE, JSON.stringify(m), () => {
          tally.tried++;
          assert.throws(
            () => SeqDataset.open(scratch, { verify }).close(),
            (e: unknown) => {
              assertUvuErrorNaming(e, join(scratch, MANIFEST_FILE), label);
              assert.ok(!e.message.includes(outsideSize) && !/\bbytes\b/.test(e.message), `${label}: describes the target: ${e.message}`);
              return true;
            },
            label,
          );
          tally.refused++;
        });
      }
    }
  }
});

hostileTest('row shard, pixels, image table, code counts and tokenizer mutations: refused by name, never silently used', () => {
  const files = [shard0.file, shard0.pixels.file, shard0.images.file, manifest.codeCounts.file, manifest.tokenizer.file];
  for (const [k, file] of files.entries()) {
    const valid = readFileSync(join(dsDir, file));
    for (const m of byteMutations(valid, 100 + k, 16)) {
      withFile(file, m.bytes, () => {
        // Verified (the default): the exact file is named, nothing changed gets through.
        tryDataset(scratch, `${file} ${m.name}`, join(scratch, file), { verify: true, exact: true });
        // --no-verify: no crash; a refusal names a file of the dataset.
        tryDataset(scratch, `${file} ${m.name} (no verify)`, scratch, { verify: false, exact: false });
      });
    }
  }
});

hostileTest('crafted files that match their sha256 in the manifest: schema checks still refuse them cleanly', () => {
  const craft = (file: string, bytes: Uint8Array | string, label: string) => {
    const m = structuredClone(manifest) as any;
    const len = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
    if (file === manifest.tokenizer.file) m.tokenizer.sha256 = sha(bytes);
    else if (file === manifest.codeCounts.file) m.codeCounts.sha256 = sha(bytes);
    else {
      m.splits.train.shards[0].images.sha256 = sha(bytes);
      m.splits.train.shards[0].images.bytes = len;
    }
    withFile(file, bytes, () => withFile(MANIFEST_FILE, JSON.stringify(m), () => tryDataset(scratch, label, scratch, { verify: true, exact: false })));
  };
  const tj = JSON.parse(readFileSync(join(dsDir, manifest.tokenizer.file), 'utf8'));
  for (const m of jsonMutations(tj, 21, 24)) craft(manifest.tokenizer.file, m.text, `tokenizer ${m.name}`);
  for (const m of byteMutations(readFileSync(join(dsDir, shard0.images.file)), 22, 30)) craft(shard0.images.file, m.bytes, `image table ${m.name}`);
  for (const m of byteMutations(readFileSync(join(dsDir, manifest.codeCounts.file)), 23, 12)) craft(manifest.codeCounts.file, m.bytes, `code counts ${m.name}`);
});

hostileTest('tokenizer.json mutations through ByteBpeTokenizer.load: loads or names the file', () => {
  const path = join(work, 'tok.json');
  const tj = JSON.parse(readFileSync(join(dsDir, manifest.tokenizer.file), 'utf8'));
  const cases = [...jsonMutations(tj, 31, 60).map((m) => ({ name: m.name, bytes: m.text as Uint8Array | string })), ...byteMutations(readFileSync(join(dsDir, manifest.tokenizer.file)), 32, 30)];
  for (const c of cases) {
    writeFileSync(path, c.bytes);
    tally.tried++;
    try {
      ByteBpeTokenizer.load(path).encode('hello world');
      tally.accepted++;
    } catch (e) {
      assertUvuErrorNaming(e, path, `tokenizer ${c.name}`);
      tally.refused++;
    }
  }
});

hostileTest('sizes from the manifest are checked before allocation', () => {
  // A context length whose row buffer alone is above the allocation limit.
  const m = structuredClone(manifest) as any;
  m.contextLength = 2 ** 40;
  for (const s of SPLITS) {
    m.splits[s] = { rows: 0, shards: [] };
  }
  withFile(MANIFEST_FILE, JSON.stringify(m), () => {
    tally.tried++;
    assert.throws(() => SeqDataset.open(scratch, { verify: false }), (e: unknown) => {
      assertUvuErrorNaming(e, join(scratch, MANIFEST_FILE), 'huge context');
      assert.match(e.message, /allocation limit/);
      return true;
    });
    tally.refused++;
  });
});

hostileTest('CLI: data info --verify and data build with bad inputs exit 1 with one line naming the file', () => {
  const cases: { label: string; file: string; bytes: Uint8Array | string; names: string }[] = [
    { label: 'flipped pixel byte', file: shard0.pixels.file, bytes: (() => { const b = readFileSync(join(dsDir, shard0.pixels.file)); b[100] ^= 4; return b; })(), names: shard0.pixels.file },
    { label: 'manifest traversal', file: MANIFEST_FILE, bytes: JSON.stringify({ ...manifest, tokenizer: { ...manifest.tokenizer, file: '../../etc/passwd' } }), names: MANIFEST_FILE },
    { label: 'image table truncated', file: shard0.images.file, bytes: readFileSync(join(dsDir, shard0.images.file)).subarray(0, 20), names: shard0.images.file },
  ];
  for (const c of cases) {
    withFile(c.file, c.bytes, () => {
      tally.tried++;
      assertCleanFailure(runUvu(['data', 'info', scratch, '--verify']), { names: join(scratch, c.names) }, `data info: ${c.label}`);
      tally.refused++;
    });
  }
  const out = join(work, 'cli-out');
  const build = (samples: string) => ['data', 'build', '--out', out, '--image-tokenizer', codebookPath, '--samples', samples, '--train-tokenizer', '300', '--context', '48', '--max-pixels', String(MAX_PIXELS)];
  const bad: [string, string][] = [
    ['not JSON', '{"image": '],
    ['wrong type', JSON.stringify({ image: 5, text: 'x' })],
  ];
  for (const [label, line] of bad) {
    const samples = join(work, `bad-${label.replace(/ /g, '-')}.jsonl`);
    writeFileSync(samples, `${JSON.stringify({ text: 'fine' })}\n${line}\n`);
    tally.tried++;
    assertCleanFailure(runUvu(build(samples)), { names: `${samples}:2`, noOutputs: [out] }, `data build: ${label}`);
    assert.ok(!readdirSync(work).some((f) => f.startsWith('cli-out.tmp')), `${label}: temporary folder left behind`);
    tally.refused++;
  }
  // A context whose row buffer is above the allocation limit: refused before anything is written.
  tally.tried++;
  assertCleanFailure(runUvu([...build(samplesPath).slice(0, -4), '--context', String(2 ** 31), '--max-pixels', String(MAX_PIXELS)]), { names: '--context', noOutputs: [out] }, 'data build: huge --context');
  tally.refused++;
});

// ---- The perception benchmark: a tiny build from two drawn object classes.
async function writeCutout(path: string, shape: string, w: number, h: number): Promise<void> {
  await sharp(Buffer.from(`<svg width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg">${shape}</svg>`)).png().toFile(path);
}

hostileTest('perception bench: item JSONL and manifest mutations are refused by file and line, image paths stay inside the folder', async () => {
  const objects = join(work, 'objects');
  for (const c of ['ball', 'box']) mkdirSync(join(objects, c), { recursive: true });
  await writeCutout(join(objects, 'ball', 'red.png'), '<circle cx="30" cy="30" r="25" fill="#e02020"/>', 60, 60);
  await writeCutout(join(objects, 'ball', 'blue.png'), '<circle cx="25" cy="25" r="20" fill="#2040e0"/>', 50, 50);
  await writeCutout(join(objects, 'box', 'green.png'), '<rect x="5" y="5" width="40" height="30" fill="#20c020"/>', 50, 40);
  await writeCutout(join(objects, 'box', 'yellow.png'), '<rect x="0" y="0" width="30" height="45" fill="#e0e020"/>', 30, 45);
  const bench = join(work, 'bench');
  await buildBench({ out: bench, objects, backgroundSources: photos.map((p, i) => ({ id: `bg${i}`, path: p })), trainScenes: 3, testScenes: 3, size: 64, seed: 2 });
  const itemsPath = join(bench, 'test.jsonl');
  const validItems = readFileSync(itemsPath, 'utf8');
  const validManifest = readFileSync(join(bench, 'manifest.json'), 'utf8');
  const lines = validItems.trim().split('\n');
  const score = async () => evaluateBench(bench, { split: 'test', answer: async (it) => it.answer });

  const tryItems = async (label: string, names: string) => {
    tally.tried++;
    try {
      readBenchItems(bench, 'test');
      await score();
      tally.accepted++;
    } catch (e) {
      assertUvuErrorNaming(e, names, label);
      tally.refused++;
    }
  };
  try {
    // One item line mutated (field by field), the whole file mutated byte-wise.
    for (const m of jsonMutations(JSON.parse(lines[0]!), 41, 60)) {
      writeFileSync(itemsPath, [m.text, ...lines.slice(1)].join('\n') + '\n');
      await tryItems(`item ${m.name}`, itemsPath);
    }
    for (const m of byteMutations(Buffer.from(validItems), 42, 30)) {
      writeFileSync(itemsPath, m.bytes);
      await tryItems(`items ${m.name}`, itemsPath);
    }
    // Image paths outside the bench folder are refused before anything is read, naming file:line.
    for (const image of ['../outside.png', '/etc/passwd', 'scenes/../../x.png', 'scenes\\..\\x.png', 'a\0b.png', '']) {
      writeFileSync(itemsPath, [JSON.stringify({ ...JSON.parse(lines[0]!), image }), ...lines.slice(1)].join('\n') + '\n');
      tally.tried++;
      assert.throws(() => readBenchItems(bench, 'test'), (e: unknown) => (assertUvuErrorNaming(e, `${itemsPath}:1`, `image ${JSON.stringify(image)}`), true));
      tally.refused++;
    }
    writeFileSync(itemsPath, validItems);
    for (const m of jsonMutations(JSON.parse(validManifest), 43, 40)) {
      writeFileSync(join(bench, 'manifest.json'), m.text);
      tally.tried++;
      try {
        readBenchManifest(bench);
        await score();
        tally.accepted++;
      } catch (e) {
        assertUvuErrorNaming(e, join(bench, 'manifest.json'), `bench manifest ${m.name}`);
        tally.refused++;
      }
    }
  } finally {
    writeFileSync(itemsPath, validItems);
    writeFileSync(join(bench, 'manifest.json'), validManifest);
  }
  assert.ok(existsSync(itemsPath));
});

hostileTest('photo-stamp list: mutations are refused naming the file; stamp paths stay inside the stamps folder', () => {
  const list = JSON.parse(readFileSync(PHOTO_STAMPS_LIST, 'utf8'));
  const path = join(work, 'stamps.json');
  const cases = jsonMutations(list, 51, 30);
  for (const bad of ['../../etc/passwd.png', '/usr/share/x.png', 'animals/../../x.png', 'a\\..\\x.png']) {
    const l = structuredClone(list);
    l.classes[0].instances[0] = bad;
    cases.push({ name: `instance ${JSON.stringify(bad)}`, text: JSON.stringify(l) });
  }
  for (const c of cases) {
    writeFileSync(path, c.text);
    tally.tried++;
    try {
      loadPhotoStampList(path);
      tally.accepted++;
      assert.ok(!c.name.startsWith('instance'), `${c.name}: accepted`);
    } catch (e) {
      assertUvuErrorNaming(e, path, `stamp list ${c.name}`);
      tally.refused++;
    }
  }
});

test('tally of the hostile cases above', (t) => {
  t.diagnostic(`hostile-data: ${tally.tried} hostile cases, ${tally.refused} refused cleanly, ${tally.identical} accepted with identical batches, ${tally.accepted} accepted otherwise (valid after the mutation, --no-verify, or crafted to match its sha256)`);
  assert.equal(tally.tried, tally.refused + tally.identical + tally.accepted);
});
