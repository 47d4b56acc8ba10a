/**
 * Images ↔ codebook token ids, with no learned decoder:
 *   tokenize:    image → resize policy (DESIGN §1) → 32×32 patches (raster order) → nearest codeword
 *                in assignment space (each patch encoded at its own grid position when PE is on)
 *   reconstruct: ids → pixel-space centres → patches → image
 */
import { z } from 'zod';
import { loadImage, type RgbImage } from '../image/io.js';
import { patchify, unpatchify, floatToPatchesU8, PATCH_DIM } from '../patches/patchify.js';
import type { Codebook } from '../codebook/file.js';
import { MetricsAccumulator, type CodebookMetrics } from '../codebook/metrics.js';
import { gridPositions } from '../codebook/points.js';
import { UvuError } from '../util/errors.js';
import { parseOrFail, readJsonFile } from '../util/fsio.js';
import { checkAlloc } from '../util/limits.js';

/** The tokens of one image, as written by `uvu tokenize`. */
export const TokenFileSchema = z.object({
  format: z.literal('uvu-tokens'),
  version: z.literal(1),
  /** Size of the image the patches cover (after the resize policy), px. */
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  rows: z.number().int().positive(),
  cols: z.number().int().positive(),
  /** Codebook size the ids refer to. */
  k: z.number().int().positive(),
  /** rows·cols token ids in raster order. */
  ids: z.array(z.number().int().nonnegative()),
});
export type TokenFile = z.infer<typeof TokenFileSchema>;

export interface TokenizedImage {
  tokens: TokenFile;
  /** The image at the size the patches cover. */
  image: RgbImage;
  /** Metrics of this image's patches against the codebook (σ²_max of this image). */
  metrics: CodebookMetrics;
}

/** Tokenize one image file (or buffer) with a codebook. */
export async function tokenizeImage(input: string | Buffer, cb: Codebook, opts: { maxPixels?: number } = {}): Promise<TokenizedImage> {
  const image = await loadImage(input, { maxPixels: opts.maxPixels });
  const { patches, rows, cols } = patchify(image);
  const acc = new MetricsAccumulator(cb);
  const ids = acc.add(patches, rows * cols, gridPositions(rows, cols));
  return {
    tokens: { format: 'uvu-tokens', version: 1, width: image.width, height: image.height, rows, cols, k: cb.K, ids: Array.from(ids) },
    image,
    metrics: acc.result(),
  };
}

/**
 * Rebuild an image from token ids: each patch is its token's pixel-space centre. `source` names
 * where the tokens came from (the tokens file, or the image they were made from) in every error.
 * The grid's patch buffer (rows·cols·3072 floats) and the image are checked against the
 * allocation limit before anything is allocated.
 */
export function reconstructImage(tokens: TokenFile, cb: Codebook, source = 'tokens'): RgbImage {
  if (tokens.k !== cb.K) throw new UvuError(`${source}: tokens refer to a codebook of K = ${tokens.k}, but the codebook has K = ${cb.K}`);
  const n = tokens.rows * tokens.cols;
  if (tokens.ids.length !== n) throw new UvuError(`${source}: tokens list ${tokens.ids.length} ids for a ${tokens.rows}×${tokens.cols} grid (${n} expected)`);
  const grid = `a ${tokens.rows}×${tokens.cols} grid of tokens`;
  checkAlloc(source, `reconstructing ${grid} (${n} patches of ${PATCH_DIM} floats)`, n * PATCH_DIM * 4);
  checkAlloc(source, `the ${tokens.cols * 32}×${tokens.rows * 32} image of ${grid}`, n * PATCH_DIM);
  const centres = new Float32Array(n * PATCH_DIM);
  tokens.ids.forEach((id, i) => {
    if (!(Number.isInteger(id) && id >= 0 && id < cb.K)) throw new UvuError(`${source}: token ${i} has id ${id}, outside the codebook (K = ${cb.K})`);
    centres.set(cb.centersPixel.subarray(id * PATCH_DIM, (id + 1) * PATCH_DIM), i * PATCH_DIM);
  });
  return unpatchify(floatToPatchesU8(centres), tokens.rows, tokens.cols);
}

/**
 * Read and validate a tokens JSON file: the schema, the pixel size against the grid, one id per
 * grid cell, and every id below the file's own k. Each error starts with the file's path.
 */
export function readTokenFile(path: string): TokenFile {
  const t = parseOrFail(TokenFileSchema, readJsonFile(path, 'tokens file'), `${path}: not a uvu tokens file`);
  if (t.width !== t.cols * 32 || t.height !== t.rows * 32) throw new UvuError(`${path}: ${t.width}×${t.height} px does not match a ${t.rows}×${t.cols} grid of 32-px patches`);
  const n = t.rows * t.cols;
  if (t.ids.length !== n) throw new UvuError(`${path}: ${t.ids.length} ids for a ${t.rows}×${t.cols} grid (${n} expected)`);
  const bad = t.ids.findIndex((id) => id >= t.k);
  if (bad >= 0) throw new UvuError(`${path}: token ${bad} has id ${t.ids[bad]}, outside the file's codebook size k = ${t.k}`);
  return t;
}
