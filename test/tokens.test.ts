import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadImage } from '../src/image/io.js';
import { patchify, patchesToFloat } from '../src/patches/patchify.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { readTokenFile, reconstructImage, tokenizeImage } from '../src/tokens/tokenize.js';
import { errorHeatmap, sideBySide } from '../src/tokens/roundtrip.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import type { Codebook } from '../src/codebook/file.js';
import { UvuError } from '../src/util/errors.js';
import { jsonMutations } from './hostile.js';

const D = 3072;
const photo = bundledPhotoPath('black-canyon');

async function exactCodebook(maxPixels: number): Promise<Codebook> {
  // A codebook holding exactly the image's own patches: tokenization must be lossless.
  const img = await loadImage(photo, { maxPixels });
  const { patches, rows, cols } = patchify(img);
  const K = rows * cols;
  return { K, D, patchSize: 32, centersPixel: patchesToFloat(patches), centersAssign: null, counts: new Float32Array(K).fill(1), pe: NO_POSENC, build: {}, data: '', metrics: {} };
}

test('tokenize → reconstruct is lossless when the codebook holds the image patches', async () => {
  const maxPixels = 256 * 256;
  const cb = await exactCodebook(maxPixels);
  const { tokens, image, metrics } = await tokenizeImage(photo, cb, { maxPixels });
  assert.equal(tokens.width, tokens.cols * 32);
  assert.equal(tokens.height, tokens.rows * 32);
  assert.equal(tokens.ids.length, tokens.rows * tokens.cols);
  const recon = reconstructImage(tokens, cb);
  assert.deepEqual(recon.data, image.data);
  assert.equal(metrics.mse, 0);
  assert.equal(metrics.prp, 1);
});

test('a lossy codebook gives a reconstruction of the right size with PRP < 1', async () => {
  const cb = await exactCodebook(256 * 256);
  // Keep every 4th patch only.
  const K = Math.floor(cb.K / 4);
  const small: Codebook = { ...cb, K, centersPixel: Float32Array.from({ length: K * D }, (_, i) => cb.centersPixel[(Math.floor(i / D) * 4) * D + (i % D)]!), counts: new Float32Array(K) };
  const { tokens, image, metrics } = await tokenizeImage(photo, small, { maxPixels: 256 * 256 });
  assert.ok(tokens.ids.every((id) => id < K));
  assert.ok(metrics.prp < 1 && metrics.prp > 0);
  const recon = reconstructImage(tokens, small);
  const heat = errorHeatmap(image, recon);
  const sheet = sideBySide([image, recon, heat]);
  assert.equal(sheet.width, 3 * image.width + 16);
  assert.equal(sheet.height, image.height);
});

test('token files are validated: wrong K, bad ids, grid mismatch, not JSON', async () => {
  const cb = await exactCodebook(128 * 128);
  const dir = mkdtempSync(join(tmpdir(), 'uvu-tok-'));
  const { tokens } = await tokenizeImage(photo, cb, { maxPixels: 128 * 128 });
  assert.throws(() => reconstructImage({ ...tokens, k: cb.K + 1 }, cb), /K = /);
  assert.throws(() => reconstructImage({ ...tokens, ids: tokens.ids.map(() => cb.K) }, cb), /outside the codebook/);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...tokens, width: tokens.width + 1 }));
  assert.throws(() => readTokenFile(bad), (e: unknown) => e instanceof UvuError && e.message.startsWith(bad));
  writeFileSync(bad, '{not json');
  assert.throws(() => readTokenFile(bad), /not valid JSON/);
  writeFileSync(bad, JSON.stringify({ format: 'uvu-tokens' }));
  assert.throws(() => readTokenFile(bad), /not a uvu tokens file/);
});

test('every tokens-file error names the file: wrong count, id ≥ k, k ≠ the codebook K', async () => {
  const cb = await exactCodebook(128 * 128);
  const dir = mkdtempSync(join(tmpdir(), 'uvu-tok-'));
  const { tokens } = await tokenizeImage(photo, cb, { maxPixels: 128 * 128 });
  const write = (name: string, t: object): string => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify(t));
    return p;
  };
  const named = (path: string, re: RegExp) => (e: unknown) => e instanceof UvuError && e.message.startsWith(`${path}: `) && re.test(e.message);
  const short = write('short.json', { ...tokens, ids: tokens.ids.slice(1) });
  assert.throws(() => readTokenFile(short), named(short, /ids for a \d+×\d+ grid/));
  const high = write('high.json', { ...tokens, ids: tokens.ids.map((id, i) => (i === 2 ? tokens.k : id)) });
  assert.throws(() => readTokenFile(high), named(high, /token 2 has id \d+, outside/));
  // A file consistent in itself whose k is not the codebook's: reconstruct names the file.
  const otherK = write('other-k.json', { ...tokens, k: tokens.k + 5 });
  const t = readTokenFile(otherK);
  assert.throws(() => reconstructImage(t, cb, otherK), named(otherK, /K = /));
  // Library callers that give no source still get one line.
  assert.throws(() => reconstructImage({ ...tokens, ids: tokens.ids.map(() => cb.K) }, cb), (e: unknown) => e instanceof UvuError && /^tokens: token 0 has id/.test(e.message));
});

test('a 1000×1000 grid is refused by the allocation limit before any buffer is allocated', () => {
  const cb = { K: 4, D, patchSize: 32, centersPixel: new Float32Array(4 * D), centersAssign: null, counts: new Float32Array(4), pe: NO_POSENC, build: {}, data: '', metrics: {} } as Codebook;
  const tokens = { format: 'uvu-tokens' as const, version: 1 as const, width: 32000, height: 32000, rows: 1000, cols: 1000, k: 4, ids: new Array<number>(1_000_000).fill(0) };
  const rss0 = process.memoryUsage().rss;
  assert.throws(() => reconstructImage(tokens, cb, 'big.json'), (e: unknown) => e instanceof UvuError && /^big\.json: .*1000×1000.* needs 11\.4 GiB, above the 4\.0 GiB allocation limit/.test(e.message));
  assert.ok(process.memoryUsage().rss - rss0 < 512 * 2 ** 20, 'the refusal allocated a large buffer');
});

test('seeded mutations of a tokens file: valid, or one UvuError that starts with the path', async () => {
  const cb = await exactCodebook(128 * 128);
  const dir = mkdtempSync(join(tmpdir(), 'uvu-tok-fuzz-'));
  const { tokens } = await tokenizeImage(photo, cb, { maxPixels: 128 * 128 });
  const path = join(dir, 'mutant.json');
  let refused = 0;
  let accepted = 0;
  const cases = jsonMutations(tokens, 10, 150);
  for (const m of cases) {
    writeFileSync(path, m.text);
    try {
      const t = readTokenFile(path);
      const img = reconstructImage(t, cb, path);
      assert.equal(img.width, t.width, m.name);
      accepted++;
    } catch (e) {
      assert.ok(e instanceof UvuError, `${m.name}: ${String((e as Error)?.stack ?? e)}`);
      assert.ok(e.message.startsWith(`${path}: `), `${m.name}: ${e.message}`);
      assert.ok(!e.message.includes('\n'), `${m.name}: one line: ${e.message}`);
      refused++;
    }
  }
  assert.equal(refused + accepted, cases.length);
  process.stderr.write(`tokens fuzz: ${cases.length} mutations tried, ${refused} refused cleanly, ${accepted} accepted as valid\n`);
  assert.ok(refused > cases.length / 2, `only ${refused} of ${cases.length} mutations refused`);
});
