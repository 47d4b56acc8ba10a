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

/** Rebuild an image from token ids: each patch is its token's pixel-space centre. */
export function reconstructImage(tokens: TokenFile, cb: Codebook): RgbImage {
  if (tokens.k !== cb.K) throw new UvuError(`tokens refer to a codebook of K = ${tokens.k}, but the codebook has K = ${cb.K}`);
  const n = tokens.rows * tokens.cols;
  if (tokens.ids.length !== n) throw new UvuError(`tokens list ${tokens.ids.length} ids for a ${tokens.rows}×${tokens.cols} grid (${n} expected)`);
  const centres = new Float32Array(n * PATCH_DIM);
  tokens.ids.forEach((id, i) => {
    if (id >= cb.K) throw new UvuError(`token ${i} has id ${id}, outside the codebook (K = ${cb.K})`);
    centres.set(cb.centersPixel.subarray(id * PATCH_DIM, (id + 1) * PATCH_DIM), i * PATCH_DIM);
  });
  return unpatchify(floatToPatchesU8(centres), tokens.rows, tokens.cols);
}

/** Read and validate a tokens JSON file. */
export function readTokenFile(path: string): TokenFile {
  const t = parseOrFail(TokenFileSchema, readJsonFile(path, 'tokens file'), `${path}: not a uvu tokens file`);
  if (t.width !== t.cols * 32 || t.height !== t.rows * 32) throw new UvuError(`${path}: ${t.width}×${t.height} px does not match a ${t.rows}×${t.cols} grid of 32-px patches`);
  return t;
}
