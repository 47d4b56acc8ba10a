/**
 * Cutting an image into 32×32 patches and back (DESIGN §1). A patch is 3072 bytes in
 * (y, x, c) order: element index = (y·32 + x)·3 + c; patches are in raster order.
 */
import type { RgbImage } from '../image/io.js';
import { UvuError } from '../util/errors.js';

/** Patch side in pixels. */
export const PATCH = 32;
/** Elements per patch: 32·32·3. */
export const PATCH_DIM = PATCH * PATCH * 3;

const ROW_BYTES = PATCH * 3;

/** Split an image whose sides are multiples of 32 into patches [rows·cols, 3072]. */
export function patchify(img: RgbImage): { patches: Uint8Array; rows: number; cols: number } {
  const { width, height, data } = img;
  if (width % PATCH !== 0 || height % PATCH !== 0 || width === 0 || height === 0) {
    throw new UvuError(`patchify: image is ${width}×${height}; both sides must be positive multiples of ${PATCH}`);
  }
  if (data.length !== width * height * 3) {
    throw new UvuError(`patchify: image data has ${data.length} bytes, expected ${width}×${height}×3`);
  }
  const rows = height / PATCH;
  const cols = width / PATCH;
  const patches = new Uint8Array(rows * cols * PATCH_DIM);
  const stride = width * 3;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const dst = (r * cols + c) * PATCH_DIM;
      for (let y = 0; y < PATCH; y++) {
        const src = (r * PATCH + y) * stride + c * ROW_BYTES;
        patches.set(data.subarray(src, src + ROW_BYTES), dst + y * ROW_BYTES);
      }
    }
  }
  return { patches, rows, cols };
}

/** Inverse of `patchify`: patches [rows·cols, 3072] → image (cols·32)×(rows·32). */
export function unpatchify(patches: Uint8Array, rows: number, cols: number): RgbImage {
  if (patches.length !== rows * cols * PATCH_DIM) {
    throw new UvuError(`unpatchify: got ${patches.length} bytes, expected ${rows}×${cols}×${PATCH_DIM}`);
  }
  const width = cols * PATCH;
  const height = rows * PATCH;
  const data = new Uint8Array(width * height * 3);
  const stride = width * 3;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const src = (r * cols + c) * PATCH_DIM;
      for (let y = 0; y < PATCH; y++) {
        const dst = (r * PATCH + y) * stride + c * ROW_BYTES;
        data.set(patches.subarray(src + y * ROW_BYTES, src + (y + 1) * ROW_BYTES), dst);
      }
    }
  }
  return { data, width, height };
}

/**
 * value/255 as float32 for every u8 value. Every u8 → float conversion in uvu goes through this
 * table, so a patch and a centre copied from it compare equal bit for bit.
 */
export const U8_TO_UNIT: Float32Array = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/** u8 → f32 in [0, 1] (value / 255). */
export function patchesToFloat(u8: Uint8Array, out?: Float32Array): Float32Array {
  const dst = out ?? new Float32Array(u8.length);
  if (dst.length < u8.length) throw new RangeError(`patchesToFloat: out has ${dst.length} elements, need ${u8.length}`);
  for (let i = 0; i < u8.length; i++) dst[i] = U8_TO_UNIT[u8[i]!]!;
  return dst;
}

/** f32 → u8: clamp to [0, 1], then round(x·255). NaN becomes 0. */
export function floatToPatchesU8(f: Float32Array, out?: Uint8Array): Uint8Array {
  const dst = out ?? new Uint8Array(f.length);
  if (dst.length < f.length) throw new RangeError(`floatToPatchesU8: out has ${dst.length} elements, need ${f.length}`);
  for (let i = 0; i < f.length; i++) {
    const v = f[i]!;
    // Uint8Array assignment would wrap/truncate; clamp and round explicitly.
    dst[i] = v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0;
  }
  return dst;
}
