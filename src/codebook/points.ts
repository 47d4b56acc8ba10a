/**
 * A set of patch points for clustering and evaluation: uint8 patch rows [n, D] plus, when a
 * positional encoding is on, each patch's grid position. Points are materialised as float32 in
 * bounded chunks only (u8/255 + encoding), so n can be large: memory is n·D bytes, not 4·n·D.
 */
import { PosEncoder, isIdentity, type PosEnc } from './posenc.js';
import { U8_TO_UNIT } from '../patches/patchify.js';

/** Grid position of each patch (struct of arrays, length n). */
export interface PatchPositions {
  row: ArrayLike<number>;
  col: ArrayLike<number>;
  cols: ArrayLike<number>;
}

export class PatchPoints {
  private readonly encoder: PosEncoder | null;

  /**
   * @param u8  [n, D] patch rows, values 0..255
   * @param pos grid positions; required when `pe` is not the identity
   */
  constructor(
    readonly u8: Uint8Array,
    readonly n: number,
    readonly D: number,
    readonly pos: PatchPositions | null,
    readonly pe: PosEnc,
  ) {
    if (u8.length < n * D) throw new RangeError(`PatchPoints: ${u8.length} bytes cannot hold ${n} rows of ${D}`);
    if (!isIdentity(pe) && !pos) throw new RangeError('PatchPoints: positional encoding needs patch positions');
    this.encoder = isIdentity(pe) ? null : PosEncoder.shared(pe, D);
  }

  /** True when assignment space differs from pixel space. */
  get encoded(): boolean {
    return this.encoder !== null;
  }

  /**
   * When assignment space is a plain table lookup of the uint8 values (no encoding): that table
   * (256 float32 values, v/255), so that a row can be read as its codes. Null otherwise.
   */
  get codedValues(): Float32Array | null {
    return this.encoder ? null : U8_TO_UNIT;
  }

  /** out[0 .. count·D) = rows [start, start+count) in assignment space (pixels/255 + encoding). */
  readAssign(start: number, count: number, out: Float32Array): void {
    if (!this.encoder) {
      this.readPixel(start, count, out);
      return;
    }
    const { D, u8 } = this;
    const p = this.pos!;
    for (let i = 0; i < count; i++) {
      const v = this.encoder.vector(p.row[start + i]!, p.col[start + i]!, p.cols[start + i]!);
      const o = i * D;
      const s = (start + i) * D;
      for (let d = 0; d < D; d++) out[o + d] = U8_TO_UNIT[u8[s + d]!]! + v[d]!;
    }
  }

  /** out[0 .. count·D) = rows [start, start+count) in pixel space (u8/255). */
  readPixel(start: number, count: number, out: Float32Array): void {
    const src = this.u8;
    const D = this.D;
    for (let i = 0, s = start * D, e = count * D; i < e; i++, s++) out[i] = U8_TO_UNIT[src[s]!]!;
  }

  /**
   * Sums of rows `members` (indices) in both spaces: `pixelSum` gets Σ u8 values (integers, exact),
   * `encSum`, when the encoding is on, Σ encoding vectors. The pixel-space mean is
   * pixelSum/(255·m); the assignment-space mean adds encSum/m.
   */
  sumRows(members: ArrayLike<number>, from: number, to: number, pixelSum: Float64Array, encSum: Float64Array | null): void {
    const D = this.D;
    const src = this.u8;
    pixelSum.fill(0);
    // Four rows per pass over the accumulator (a quarter of its loads and stores). The sums are
    // of integers below 2^53, so any order gives the same exact values.
    let j = from;
    for (; j + 4 <= to; j += 4) {
      const s0 = members[j]! * D, s1 = members[j + 1]! * D, s2 = members[j + 2]! * D, s3 = members[j + 3]! * D;
      for (let d = 0; d < D; d++) pixelSum[d]! += src[s0 + d]! + src[s1 + d]! + src[s2 + d]! + src[s3 + d]!;
    }
    for (; j < to; j++) {
      for (let d = 0, s = members[j]! * D; d < D; d++, s++) pixelSum[d]! += src[s]!;
    }
    if (encSum) {
      encSum.fill(0);
      if (this.encoder) {
        // Σ encodings = Σ over distinct positions of count·vector: members share few positions.
        const p = this.pos!;
        const perVector = new Map<Float32Array, number>();
        for (let j = from; j < to; j++) {
          const i = members[j]!;
          const v = this.encoder.vector(p.row[i]!, p.col[i]!, p.cols[i]!);
          perVector.set(v, (perVector.get(v) ?? 0) + 1);
        }
        for (const [v, c] of perVector) for (let d = 0; d < D; d++) encSum[d]! += c * v[d]!;
      }
    }
  }

  /** A new point set holding copies of the given rows, in the given order. */
  subset(indices: ArrayLike<number>): PatchPoints {
    const m = indices.length;
    const D = this.D;
    const u8 = new Uint8Array(m * D);
    for (let j = 0; j < m; j++) u8.set(this.u8.subarray(indices[j]! * D, (indices[j]! + 1) * D), j * D);
    let pos: PatchPositions | null = null;
    if (this.pos) {
      const p = this.pos;
      const pick = (a: ArrayLike<number>): Uint16Array => Uint16Array.from({ length: m }, (_, j) => a[indices[j]!]!);
      pos = { row: pick(p.row), col: pick(p.col), cols: pick(p.cols) };
    }
    return new PatchPoints(u8, m, D, pos, this.pe);
  }
}

/** Grid positions of a rows×cols raster of patches. */
export function gridPositions(rows: number, cols: number): PatchPositions {
  const n = rows * cols;
  const row = new Uint16Array(n);
  const col = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    row[i] = Math.floor(i / cols);
    col[i] = i % cols;
  }
  return { row, col, cols: new Uint16Array(n).fill(cols) };
}
