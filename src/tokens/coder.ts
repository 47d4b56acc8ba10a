/**
 * Image coders: the one interface the data pipeline and the model use to turn image patches
 * into discrete code ids and back, whatever produced the codes:
 *   - `CodebookCoder`: a pixel codebook (DESIGN §3); encode = nearest centre in assignment space
 *     (each patch at its own grid position when the codebook uses PE), decode = pixel centres.
 *   - `VqCoder` (src/vq/coder.ts): the patch-level VQ-VAE baseline of DESIGN §9.
 * `loadImageCoder` picks the kind from the safetensors metadata "format" tag (IMAGE_CODER_REGISTRY).
 * Loading a VQ-VAE needs the tensor engine: call initEngine() (src/engine/tf.ts) first.
 */
import { readSafetensorsMetadata } from '../io/safetensors.js';
import { assignmentCenters, loadCodebook, CODEBOOK_FORMAT, type Codebook } from '../codebook/file.js';
import { FlatIndex } from '../codebook/search.js';
import { floatToPatchesU8, PATCH_DIM } from '../patches/patchify.js';
import { sha256File } from '../util/fsio.js';
import { loadVqCoder } from '../vq/coder.js';
import { VQ_FORMAT } from '../vq/file.js';
import { gridPositions, PatchPoints } from '../codebook/points.js';
import { UvuError } from '../util/errors.js';

export interface ImageCoder {
  kind: 'codebook' | 'vq';
  K: number;
  path: string;
  sha256: string;
  /** patches: u8 [n,3072] in patchify layout, raster order; returns code ids [n] in 0..K-1. */
  encode(patches: Uint8Array, n: number, grid: { rows: number; cols: number }): Int32Array;
  /** code ids [n] → u8 patches [n,3072] (codebook centres, or the VQ decoder). */
  decode(codes: Int32Array): Uint8Array;
}

/** Patches per nearest-centre search call: bounds the float scratch to ENCODE_BLOCK·3072·4 bytes (12 MiB). */
const ENCODE_BLOCK = 1024;

/**
 * A pixel codebook as an image coder. Assignment is exactly `tokenizeImage`'s: the patches become
 * points in assignment space via `PatchPoints.readAssign` (u8/255 plus the positional encoding of
 * their grid position) and the exact `FlatIndex` picks the nearest centre (ties to the lowest id),
 * so the ids do not depend on how patches are blocked.
 */
export class CodebookCoder implements ImageCoder {
  readonly kind = 'codebook' as const;
  readonly K: number;
  private readonly index: FlatIndex;
  private scratch = new Float32Array(0);

  constructor(
    readonly codebook: Codebook,
    readonly path: string,
    readonly sha256: string,
  ) {
    this.K = codebook.K;
    this.index = new FlatIndex(assignmentCenters(codebook), codebook.K, codebook.D);
  }

  static load(path: string): CodebookCoder {
    return new CodebookCoder(loadCodebook(path), path, sha256File(path));
  }

  encode(patches: Uint8Array, n: number, grid: { rows: number; cols: number }): Int32Array {
    if (n !== grid.rows * grid.cols) throw new UvuError(`${this.path}: encode got ${n} patches for a ${grid.rows}×${grid.cols} grid`);
    if (patches.length < n * PATCH_DIM) throw new UvuError(`${this.path}: encode got ${patches.length} bytes for ${n} patches of ${PATCH_DIM}`);
    const D = this.codebook.D;
    const points = new PatchPoints(patches, n, D, gridPositions(grid.rows, grid.cols), this.codebook.pe);
    const block = Math.min(n, ENCODE_BLOCK);
    if (this.scratch.length < block * D) this.scratch = new Float32Array(block * D);
    const ids = new Int32Array(n);
    for (let i0 = 0; i0 < n; i0 += ENCODE_BLOCK) {
      const m = Math.min(ENCODE_BLOCK, n - i0);
      const x = this.scratch.subarray(0, m * D);
      points.readAssign(i0, m, x);
      ids.set(this.index.search(x, m).ids, i0);
    }
    return ids;
  }

  decode(codes: Int32Array): Uint8Array {
    const D = this.codebook.D;
    const centres = new Float32Array(codes.length * D);
    codes.forEach((k, i) => {
      if (!(k >= 0 && k < this.K)) throw new UvuError(`${this.path}: code ${i} is ${k}, outside the codebook (K = ${this.K})`);
      centres.set(this.codebook.centersPixel.subarray(k * D, (k + 1) * D), i * D);
    });
    return floatToPatchesU8(centres);
  }
}

/** The image-coder file formats, by safetensors metadata "format" tag: what each is and how it loads. */
export const IMAGE_CODER_REGISTRY: Readonly<Record<string, { name: string; load: (path: string) => ImageCoder }>> = {
  [CODEBOOK_FORMAT]: { name: 'codebook', load: (path) => CodebookCoder.load(path) },
  [VQ_FORMAT]: { name: 'VQ-VAE', load: (path) => loadVqCoder(path) },
};

/** Load a codebook or a VQ-VAE file as an image coder, by its metadata format tag. */
export function loadImageCoder(path: string): ImageCoder {
  const format = readSafetensorsMetadata(path).format;
  const entry = format === undefined ? undefined : IMAGE_CODER_REGISTRY[format];
  if (entry) return entry.load(path);
  const known = Object.entries(IMAGE_CODER_REGISTRY).map(([tag, e]) => `"${tag}" (${e.name})`).join(' or ');
  throw new UvuError(`${path}: not an image tokenizer: metadata "format" is ${JSON.stringify(format)}, expected ${known}`);
}
