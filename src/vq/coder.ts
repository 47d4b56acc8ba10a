/**
 * The VQ-VAE as an image coder (it has the shape of tokens/coder.ts's ImageCoder, which lists it
 * in its registry): encode = encoder + nearest code, decode = decoder → u8 patches.
 * Work is done in batches of CODER_BATCH patches inside tf.tidy, so memory stays bounded
 * for images of any size. Unlike the pixel codebook it ignores the patch grid: each patch is
 * coded on its own.
 */
import { tf } from '../engine/tf.js';
import { PATCH_DIM, floatToPatchesU8, patchesToFloat } from '../patches/patchify.js';
import { sha256File } from '../util/fsio.js';
import { UvuError } from '../util/errors.js';
import { loadVq } from './file.js';
import type { VqModel } from './model.js';

/** Patches per tf call: [4096, 3072] f32 is 48 MiB of input. */
const CODER_BATCH = 4096;

export class VqCoder {
  readonly kind = 'vq' as const;
  readonly K: number;

  /**
   * @param path file the model came from ('' for an in-memory model)
   * @param sha256 sha256 of that file ('' for an in-memory model)
   */
  constructor(
    readonly model: VqModel,
    readonly path = '',
    readonly sha256 = '',
  ) {
    this.K = model.K;
  }

  /** patches u8 [n,3072] → code ids [n] in 0..K−1. The grid is not used. */
  encode(patches: Uint8Array, n: number, _grid?: { rows: number; cols: number }): Int32Array {
    if (patches.length < n * PATCH_DIM) throw new UvuError(`VqCoder.encode: got ${patches.length} bytes for ${n} patches of ${PATCH_DIM}`);
    const ids = new Int32Array(n);
    for (let start = 0; start < n; start += CODER_BATCH) {
      const b = Math.min(CODER_BATCH, n - start);
      const x = patchesToFloat(patches.subarray(start * PATCH_DIM, (start + b) * PATCH_DIM));
      const out = tf.tidy(() => this.model.nearest(this.model.encode(tf.tensor2d(x, [b, PATCH_DIM]))));
      ids.set(out.dataSync() as Int32Array, start);
      out.dispose();
    }
    return ids;
  }

  /** Encoder outputs z_e of n patches → f32 [n, codeDim] (for diagnostics and restarts). */
  embed(patches: Uint8Array, n: number): Float32Array {
    const C = this.model.codeDim;
    const z = new Float32Array(n * C);
    for (let start = 0; start < n; start += CODER_BATCH) {
      const b = Math.min(CODER_BATCH, n - start);
      const x = patchesToFloat(patches.subarray(start * PATCH_DIM, (start + b) * PATCH_DIM));
      const out = tf.tidy(() => this.model.encode(tf.tensor2d(x, [b, PATCH_DIM])));
      z.set(out.dataSync() as Float32Array, start * C);
      out.dispose();
    }
    return z;
  }

  /** code ids [n] → u8 patches [n,3072]: decoder output clamped to [0,1] and rounded to /255. */
  decode(codes: Int32Array): Uint8Array {
    const n = codes.length;
    for (let i = 0; i < n; i++) {
      const k = codes[i]!;
      if (!(k >= 0 && k < this.K)) throw new UvuError(`VqCoder.decode: code ${k} at position ${i} is outside 0..${this.K - 1}${this.path ? ` (${this.path})` : ''}`);
    }
    const patches = new Uint8Array(n * PATCH_DIM);
    for (let start = 0; start < n; start += CODER_BATCH) {
      const b = Math.min(CODER_BATCH, n - start);
      const idx = codes.subarray(start, start + b);
      const out = tf.tidy(() => this.model.decode(this.model.codes(tf.tensor1d(idx, 'int32'))));
      floatToPatchesU8(out.dataSync() as Float32Array, patches.subarray(start * PATCH_DIM, (start + b) * PATCH_DIM));
      out.dispose();
    }
    return patches;
  }

  /** Free the model's tensors. */
  dispose(): void {
    this.model.dispose();
  }
}

/** Load a VQ-VAE file (validated by loadVq) as an ImageCoder. */
export function loadVqCoder(path: string): VqCoder {
  const model = loadVq(path);
  return new VqCoder(model, path, sha256File(path));
}
