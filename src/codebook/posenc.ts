/**
 * Positional encoding of patch vectors before clustering (DESIGN.md §2).
 *
 * The paper's formula adds a patch-independent vector (it would change no L2 distance), so we use
 * the standard transformer sin/cos encoding of the patch's grid position, scaled by λ (`scale`)
 * and added to the [0,1] pixel vector:
 *   2d-sincos: dims [0, D/2) encode the row, [D/2, D) the column; within a half of size H,
 *              dim 2j = sin(pos / 10000^{2j/H}), dim 2j+1 = cos(pos / 10000^{2j/H}).
 *   1d-sincos: pos = raster index (row·cols + col) over all D dims.
 *   none:      identity.
 */
import { z } from 'zod';

export const PosEncSchema = z.object({
  /** Encoding family. */
  type: z.enum(['none', '1d-sincos', '2d-sincos']),
  /** λ: multiplier of the encoding before it is added to pixel values in [0, 1]. */
  scale: z.number().finite().nonnegative(),
});
export type PosEnc = z.infer<typeof PosEncSchema>;

export const NO_POSENC: PosEnc = { type: 'none', scale: 0 };

export const isIdentity = (pe: PosEnc): boolean => pe.type === 'none' || pe.scale === 0;

/** Write the sin/cos encoding of scalar `pos` into out[offset .. offset+size) (size even). */
function sincos(pos: number, out: Float32Array, offset: number, size: number, scale: number): void {
  for (let j = 0; 2 * j < size; j++) {
    const angle = pos / Math.pow(10000, (2 * j) / size);
    out[offset + 2 * j] = scale * Math.sin(angle);
    if (2 * j + 1 < size) out[offset + 2 * j + 1] = scale * Math.cos(angle);
  }
}

/** The encoding vector [D] for a patch at grid (row, col) of a rows×cols grid (all zeros for 'none'). */
export function encodingVector(pe: PosEnc, D: number, row: number, col: number, cols: number): Float32Array {
  const out = new Float32Array(D);
  if (isIdentity(pe)) return out;
  if (pe.type === '2d-sincos') {
    const half = D / 2;
    sincos(row, out, 0, half, pe.scale);
    sincos(col, out, half, half, pe.scale);
  } else {
    sincos(row * cols + col, out, 0, D, pe.scale);
  }
  return out;
}

/**
 * Cache of encoding vectors keyed by grid position, so encoding a batch costs one add per element.
 * One encoder per (encoding, D) is shared process-wide (`PosEncoder.shared`), so batches, shards
 * and evaluations never recompute a vector. Memory: D floats per distinct position, e.g. a
 * 128×128 grid (a 16 MP photo) → 16,384 × 12 KiB = 192 MiB at most.
 */
export class PosEncoder {
  private static readonly instances = new Map<string, PosEncoder>();
  private readonly cache = new Map<number, Float32Array>();

  private constructor(readonly pe: PosEnc, readonly D: number) {}

  /** The process-wide encoder for this encoding and dimension. */
  static shared(pe: PosEnc, D: number): PosEncoder {
    const key = `${pe.type}:${pe.scale}:${D}`;
    let enc = PosEncoder.instances.get(key);
    if (!enc) PosEncoder.instances.set(key, (enc = new PosEncoder(pe, D)));
    return enc;
  }

  vector(row: number, col: number, cols: number): Float32Array {
    // 2d depends on (row, col) only (both < 2^16); 1d on the raster index, which depends on cols too.
    const key = this.pe.type === '1d-sincos' ? row * cols + col : row * 65536 + col;
    let v = this.cache.get(key);
    if (!v) {
      v = encodingVector(this.pe, this.D, row, col, cols);
      this.cache.set(key, v);
    }
    return v;
  }
}
