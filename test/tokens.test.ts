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
