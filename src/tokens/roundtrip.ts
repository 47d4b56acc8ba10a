/**
 * A picture of a round trip: original | reconstruction | error heat-map, side by side.
 * The heat-map shows the per-pixel mean absolute error over RGB on a fixed scale
 * (0 → black, HEAT_MAX_ERROR u8 levels or more → white, through red and yellow), so pictures
 * of different codebooks can be compared by eye.
 */
import { writePng, type RgbImage } from '../image/io.js';
import type { Codebook } from '../codebook/file.js';
import { reconstructImage, tokenizeImage } from './tokenize.js';
import { checkAlloc } from '../util/limits.js';

/** Mean |error| (in u8 levels) that maps to white. */
export const HEAT_MAX_ERROR = 64;
const GAP_PX = 8;
const GAP_GREY = 255;

/** Black → red → yellow → white ramp for t in [0, 1]. */
function heat(t: number): [number, number, number] {
  const v = Math.min(1, Math.max(0, t)) * 3;
  return [Math.min(1, v), Math.min(1, Math.max(0, v - 1)), Math.min(1, Math.max(0, v - 2))].map((c) => Math.round(c * 255)) as [number, number, number];
}

/** Per-pixel error heat-map of `b` against `a` (same size). */
export function errorHeatmap(a: RgbImage, b: RgbImage): RgbImage {
  if (a.width !== b.width || a.height !== b.height) throw new RangeError('errorHeatmap: images differ in size');
  const out = new Uint8Array(a.width * a.height * 3);
  for (let p = 0; p < a.width * a.height; p++) {
    const e = (Math.abs(a.data[3 * p]! - b.data[3 * p]!) + Math.abs(a.data[3 * p + 1]! - b.data[3 * p + 1]!) + Math.abs(a.data[3 * p + 2]! - b.data[3 * p + 2]!)) / 3;
    out.set(heat(e / HEAT_MAX_ERROR), 3 * p);
  }
  return { data: out, width: a.width, height: a.height };
}

/** Images of equal height placed left to right with white gaps. */
export function sideBySide(images: RgbImage[]): RgbImage {
  const height = Math.max(...images.map((i) => i.height));
  const width = images.reduce((w, i) => w + i.width, 0) + GAP_PX * (images.length - 1);
  const out = new Uint8Array(width * height * 3).fill(GAP_GREY);
  let x0 = 0;
  for (const img of images) {
    for (let y = 0; y < img.height; y++) {
      out.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), (y * width + x0) * 3);
    }
    x0 += img.width + GAP_PX;
  }
  return { data: out, width, height };
}

/**
 * Tokenize and reconstruct one image (a file, or the bytes of one: `source` names it in errors):
 * the tokens, the original at the size the patches cover, its reconstruction, the error
 * heat-map and the image's metrics. `uvu roundtrip` and `uvu serve` both call this.
 */
export async function roundtrip(input: string | Buffer, cb: Codebook, maxPixels: number, source = typeof input === 'string' ? input : 'image') {
  const { tokens, image: original, metrics } = await tokenizeImage(input, cb, { maxPixels });
  const recon = reconstructImage(tokens, cb, source);
  return { tokens, original, recon, heat: errorHeatmap(original, recon), metrics };
}

/** Tokenize, reconstruct and write original | reconstruction | error heat-map. */
export async function roundtripImage(image: string, cb: Codebook, out: string, maxPixels: number) {
  const { tokens, original, recon, heat, metrics } = await roundtrip(image, cb, maxPixels);
  checkAlloc(image, `the ${3 * original.width + 2 * GAP_PX}×${original.height} round-trip picture`, (3 * original.width + 2 * GAP_PX) * original.height * 3);
  await writePng(out, sideBySide([original, recon, heat]));
  return { out, prp: metrics.prp, psnr: metrics.psnr, mse: metrics.mse, rows: tokens.rows, cols: tokens.cols, k_active: metrics.k_active };
}
