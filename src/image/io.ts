/**
 * Image decoding, resizing and PNG writing (DESIGN §1). Every image is turned into 8-bit
 * sRGB, 3 channels, [h, w, 3] row-major: EXIF orientation applied, alpha composited onto a
 * background (mid-grey 128 by default), grayscale / CMYK / 16-bit converted.
 */
import { readFileSync } from 'node:fs';
import sharp, { type Metadata, type OutputInfo, type Sharp } from 'sharp';
import { UvuError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';
import { fsErrorReason } from '../util/fserror.js';
import { checkAlloc } from '../util/limits.js';

// One image at a time, no decoded-image cache: keeps memory flat while streaming millions of files.
sharp.cache(false);
sharp.concurrency(1);

/** Patch side in pixels; the resize policy rounds sides to multiples of it. */
const GRID = 32;

/**
 * Decompression-bomb guard: the most pixels (width·height of the encoded image) we let the
 * decoder open, 2^30 (e.g. 32768×32768). A small file that declares more is refused from its
 * header, before any pixel is decoded; sharp's limitInputPixels enforces it in the decoder too.
 */
export const MAX_INPUT_PIXELS = 2 ** 30;

export interface DecodeOptions {
  /** Pixel budget w·h after resizing (default 512·512). */
  maxPixels?: number;
  /** RGB that transparent pixels are composited onto (default [128, 128, 128]). */
  background?: [number, number, number];
}

export interface RgbImage {
  /** 8-bit sRGB, [height, width, 3] row-major. */
  data: Uint8Array;
  width: number;
  height: number;
}

/** An RGBA image, [height, width, 4] row-major, 8 bits per channel (object cut-outs). */
export interface RgbaImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface LoadedImage extends RgbImage {
  /** Size after EXIF orientation, before resizing. */
  originalWidth: number;
  originalHeight: number;
  /** Source path, or "<buffer>". */
  path: string;
}

export const DEFAULT_BACKGROUND: [number, number, number] = [128, 128, 128];

/**
 * DESIGN §1 resize policy: keep the aspect ratio, scale down so that w·h ≤ maxPixels (never
 * up), then round each side to the nearest multiple of 32, at least 32 — so a side < 32 is
 * the only case that grows. For extreme aspect ratios where that floor of 32 pushes w·h over
 * the budget, the long side is cut back to the largest multiple of 32 that fits.
 */
export function targetSize(width: number, height: number, maxPixels: number): { width: number; height: number } {
  if (!(width >= 1 && height >= 1)) throw new UvuError(`image has no pixels (${width}×${height})`);
  if (!(maxPixels >= GRID * GRID)) {
    throw new UvuError(`maxPixels must be at least ${GRID * GRID} (one 32×32 patch), got ${maxPixels}`, 2);
  }
  const scale = Math.min(1, Math.sqrt(maxPixels / (width * height)));
  const round32 = (v: number) => Math.max(GRID, Math.round(v / GRID) * GRID);
  let w = round32(width * scale);
  let h = round32(height * scale);
  const maxLongSide = Math.floor(maxPixels / GRID / GRID) * GRID;
  if (w * h > maxPixels && (w === GRID || h === GRID)) {
    if (w === GRID) h = Math.min(h, maxLongSide);
    else w = Math.min(w, maxLongSide);
  }
  return { width: w, height: h };
}

function sourceName(input: string | Buffer): string {
  return typeof input === 'string' ? input : '<buffer>';
}

/** Turn sharp/libvips' multi-line messages (and fs errors) into one short phrase. */
function shortReason(err: unknown, input: string | Buffer = '<buffer>'): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof input === 'string') return fsErrorReason(input, e);
  const msg = String(e?.message ?? err).split('\n')[0]!.trim();
  if (/buffer is empty|file is empty/i.test(msg)) return 'empty file (0 bytes)';
  if (/exceeds pixel limit/i.test(msg)) return 'more pixels than the decoder allows (a decompression bomb?)';
  if (/missing|not exist/i.test(msg) && typeof input === 'string') return fsErrorReason(input, Object.assign(new Error(msg), { code: 'ENOENT' }));
  if (/unsupported image format/i.test(msg)) return 'not a supported image (JPEG, PNG, WebP, GIF, TIFF, ...)';
  if (/premature end|truncated|unexpected end|read error|not enough data/i.test(msg)) return 'truncated image data';
  if (/corrupt|invalid|bad |error/i.test(msg)) {
    const detail = msg.replace(/^Input (file|buffer) (has|is) /i, '').replace(/Vips\w*:\s*/gi, '');
    return `corrupt image (${detail.length > 80 ? detail.slice(0, 77) + '...' : detail})`;
  }
  return msg.length > 100 ? msg.slice(0, 97) + '...' : msg;
}

function decodeError(input: string | Buffer, err: unknown): UvuError {
  return new UvuError(`${sourceName(input)}: cannot decode image: ${shortReason(err, input)}`);
}

/**
 * Read the input once into memory (so an empty file is reported as such and sharp sees the
 * same bytes for metadata and pixels).
 */
function readInput(input: string | Buffer): Buffer {
  if (typeof input !== 'string') return input;
  try {
    return readFileSync(input);
  } catch (err) {
    throw decodeError(input, err);
  }
}

/**
 * The shared decode pipeline: first frame/page, orientation, alpha flatten, 8-bit sRGB.
 * `failOn: 'truncated'` makes a JPEG/PNG that ends early an error rather than grey rows.
 */
function pipeline(bytes: Buffer, background: [number, number, number]): Sharp {
  return sharp(bytes, { failOn: 'truncated', pages: 1, limitInputPixels: MAX_INPUT_PIXELS })
    .rotate()
    .flatten({ background: { r: background[0], g: background[1], b: background[2] } })
    .toColourspace('srgb')
    .removeAlpha();
}

/** The decompression-bomb guard on a header's size (see MAX_INPUT_PIXELS). */
function refuseBomb(input: string | Buffer, width: number, height: number): void {
  if (width * height > MAX_INPUT_PIXELS) {
    throw new UvuError(`${sourceName(input)}: cannot decode image: its header declares ${width}×${height} = ${width * height} pixels, more than the decoder's limit of ${MAX_INPUT_PIXELS} (a decompression bomb?)`);
  }
}

async function orientedSize(bytes: Buffer, input: string | Buffer): Promise<{ width: number; height: number }> {
  let meta: Metadata;
  try {
    // Header only: no limit here, so that refuseBomb can say how large the image claims to be.
    meta = await sharp(bytes, { failOn: 'truncated', pages: 1, limitInputPixels: false }).metadata();
  } catch (err) {
    throw decodeError(input, err);
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!width || !height) throw new UvuError(`${sourceName(input)}: cannot decode image: image has no pixels`);
  refuseBomb(input, width, height);
  return { width, height };
}

async function toRgb(p: Sharp, input: string | Buffer): Promise<RgbImage> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await p.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(input, err);
  }
  const { width, height, channels } = out.info;
  if (channels !== 3 || out.data.length !== width * height * 3) {
    throw new UvuError(`${sourceName(input)}: cannot decode image: decoder gave ${channels} channels, expected 3`);
  }
  return { data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length), width, height };
}

/** Decode to 8-bit sRGB at the DESIGN §1 size (see `targetSize`), lanczos3 resampling. */
export async function loadImage(pathOrBuffer: string | Buffer, opts: DecodeOptions = {}): Promise<LoadedImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const bytes = readInput(pathOrBuffer);
  const orig = await orientedSize(bytes, pathOrBuffer);
  const size = targetSize(orig.width, orig.height, maxPixels);
  checkAlloc(sourceName(pathOrBuffer), `the decoded ${size.width}×${size.height} image`, size.width * size.height * 3);
  let p = pipeline(bytes, opts.background ?? DEFAULT_BACKGROUND);
  if (size.width !== orig.width || size.height !== orig.height) {
    // fit 'fill': rounding to multiples of 32 changes the aspect ratio by < 32 px per side.
    p = p.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' });
  }
  const img = await toRgb(p, pathOrBuffer);
  return { ...img, originalWidth: orig.width, originalHeight: orig.height, path: sourceName(pathOrBuffer) };
}

/** Decode to 8-bit sRGB at the image's own (oriented) size; no resizing. */
export async function decodeRgb(
  pathOrBuffer: string | Buffer,
  opts: { background?: [number, number, number] } = {},
): Promise<LoadedImage> {
  const bytes = readInput(pathOrBuffer);
  const img = await toRgb(pipeline(bytes, opts.background ?? DEFAULT_BACKGROUND), pathOrBuffer);
  return { ...img, originalWidth: img.width, originalHeight: img.height, path: sourceName(pathOrBuffer) };
}

function rawInput(img: RgbImage): Sharp {
  if (img.data.length !== img.width * img.height * 3) {
    throw new UvuError(`RGB image data has ${img.data.length} bytes, expected ${img.width}×${img.height}×3`);
  }
  // The pixels are already in memory (their size was checked where it came from a file or a
  // flag): the decoder's bomb guard does not apply to them.
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
    raw: { width: img.width, height: img.height, channels: 3 },
    limitInputPixels: false,
  });
}

/** An RGB image encoded as PNG in memory; errors name `where` (the file it is for). */
export async function encodePng(img: RgbImage, where: string): Promise<Buffer> {
  try {
    return await rawInput(img).png().toBuffer();
  } catch (err) {
    if (err instanceof UvuError) throw err;
    throw new UvuError(`${where}: cannot encode the ${img.width}×${img.height} image as PNG (${String((err as Error)?.message ?? err).split('\n')[0]})`);
  }
}

/** Write an RGB image as PNG, atomically (temp file + rename); errors name `path`. */
export async function writePng(path: string, img: RgbImage): Promise<void> {
  writeFileAtomic(path, await encodePng(img, path));
}

/** Resample to exactly width×height (lanczos3; aspect ratio not preserved). */
export async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (width === img.width && height === img.height) return { data: img.data.slice(), width, height };
  const out = await rawInput(img)
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length), width, height };
}

/** An image's (file or bytes) width and height after its EXIF orientation, from its header only (no pixel decode). */
export async function readImageSize(input: string | Buffer): Promise<{ width: number; height: number }> {
  let w: number | undefined;
  let h: number | undefined;
  try {
    const meta = await sharp(input, { pages: 1, limitInputPixels: false }).metadata();
    w = meta.autoOrient?.width ?? meta.width;
    h = meta.autoOrient?.height ?? meta.height;
  } catch (err) {
    throw decodeError(input, err);
  }
  if (!w || !h) throw new UvuError(`${sourceName(input)}: cannot decode image: image has no pixels`);
  refuseBomb(input, w, h);
  return { width: w, height: h };
}

/** Decode an object cut-out to 8-bit sRGB RGBA (an image without alpha becomes fully opaque); no resizing. */
export async function loadRgba(path: string): Promise<RgbaImage> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await sharp(readFileSync(path), { failOn: 'truncated' }).toColourspace('srgb').ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new UvuError(`${path}: cannot read object cut-out (${shortReason(err, path)})`);
  }
  const { width, height, channels } = out.info;
  if (channels !== 4) throw new UvuError(`${path}: decoder gave ${channels} channels, expected RGBA`);
  return { data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length), width, height };
}

/**
 * Decode a photo to 8-bit sRGB scaled (lanczos3, aspect kept) so that it just covers a
 * side×side square: the shorter side becomes `side`. Alpha is composited onto mid-grey.
 */
export async function loadImageCovering(path: string, side: number): Promise<RgbImage> {
  let data: Buffer;
  let info: OutputInfo;
  try {
    ({ data, info } = await sharp(path, { failOn: 'truncated', pages: 1 })
      .rotate()
      .flatten({ background: '#808080' })
      .toColourspace('srgb')
      .resize(side, side, { fit: 'outside', kernel: 'lanczos3' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw decodeError(path, err);
  }
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}
