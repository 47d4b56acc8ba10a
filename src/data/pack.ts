/**
 * Packing sequences into fixed-length rows of T tokens, in two greedy passes:
 *   1. whole sequences (every image sample, every text of ≤ T tokens), first fit: each goes into
 *      the first candidate row with room, else a new row; never split. At most `maxOpen` rows stay
 *      candidates (when a new row would exceed that, the fullest is retired), bounding the work.
 *   2. long texts (> T tokens) are cut into pieces that fill the rows' remaining space in order
 *      (gaps of at least `minPiece` tokens), then whole new rows.
 * Unused positions are <pad> with no flags, and a piece supervises only its own inner targets, so
 * no target crosses from one sample or piece into the next. The first token of every sample or
 * piece carries FLAG_SAMPLE_START, so that the model attends only within a sample and restarts
 * its positions there (document masking, as Hugging Face packing does with position ids).
 */
import { UvuError } from '../util/errors.js';
import { FLAG_LOSS_PRETRAIN, FLAG_LOSS_SFT, FLAG_SAMPLE_START, type ImagePlacement, type Sequence } from './sequence.js';

/** Default number of rows that stay candidates for first fit. */
export const DEFAULT_MAX_OPEN_ROWS = 64;
/** Smallest gap a long text is cut to fill (shorter pieces would carry too little context). */
export const DEFAULT_MIN_PIECE = 32;

/** Tokens [from, to) of sequence `seq`. */
export interface Piece {
  seq: number;
  from: number;
  to: number;
}

export interface PackOptions {
  /** Which sequences may be cut (texts); others longer than T are an error. */
  splittable?: (i: number) => boolean;
  maxOpen?: number;
  minPiece?: number;
}

/** Plan rows from sequence lengths: result[r] = the pieces of row r in order. Deterministic. */
export function packSequences(lengths: ArrayLike<number>, T: number, opts: PackOptions = {}): Piece[][] {
  const maxOpen = opts.maxOpen ?? DEFAULT_MAX_OPEN_ROWS;
  const minPiece = opts.minPiece ?? DEFAULT_MIN_PIECE;
  const rows: Piece[][] = [];
  const used: number[] = []; // tokens used per row
  const newRow = (): number => {
    rows.push([]);
    used.push(0);
    return rows.length - 1;
  };
  const long: number[] = [];
  let open: number[] = []; // first-fit candidates, oldest first
  for (let i = 0; i < lengths.length; i++) {
    const len = lengths[i]!;
    if (!(Number.isInteger(len) && len >= 1)) throw new UvuError(`pack: sequence ${i} has ${len} tokens`);
    if (len > T) {
      if (!opts.splittable?.(i)) throw new UvuError(`pack: sequence ${i} has ${len} tokens, the context holds ${T}`);
      long.push(i);
      continue;
    }
    let row = open.find((r) => used[r]! + len <= T);
    if (row === undefined) {
      if (open.length >= maxOpen) {
        let fullest = open[0]!;
        for (const r of open) if (used[r]! > used[fullest]!) fullest = r;
        open = open.filter((r) => r !== fullest);
      }
      row = newRow();
      open.push(row);
    }
    rows[row]!.push({ seq: i, from: 0, to: len });
    used[row]! += len;
    if (used[row] === T) open = open.filter((r) => r !== row);
  }
  let p = 0; // rows before p have no gap worth filling
  for (const i of long) {
    const len = lengths[i]!;
    for (let a = 0; a < len; ) {
      while (p < rows.length && T - used[p]! < Math.min(minPiece, len - a)) p++;
      if (p === rows.length) newRow();
      const take = Math.min(T - used[p]!, len - a);
      rows[p]!.push({ seq: i, from: a, to: a + take });
      used[p]! += take;
      a += take;
    }
  }
  return rows;
}

/** Tokens [from, to) of a text sequence; the last position's target lies outside, so it loses its loss flags. */
export function slicePiece(seq: Sequence, from: number, to: number): Sequence {
  if (from === 0 && to === seq.ids.length) return seq;
  if (seq.image) throw new UvuError('pack: only text sequences are cut; an image sample must fit in one row');
  const flags = seq.flags.slice(from, to);
  flags[flags.length - 1]! &= ~(FLAG_LOSS_PRETRAIN | FLAG_LOSS_SFT);
  return { ids: seq.ids.slice(from, to), flags, image: null };
}

/** One packed row: ids/flags [T] and where each image sits (with the index of its sequence in the row). */
export interface PackedRow {
  ids: Int32Array;
  flags: Uint8Array;
  images: (ImagePlacement & { seq: number })[];
}

/** Lay sequences out one after another in a row of T, mark where each starts, and pad the rest. */
export function assembleRow(seqs: Sequence[], T: number, pad: number): PackedRow {
  const ids = new Int32Array(T).fill(pad);
  const flags = new Uint8Array(T);
  const images: PackedRow['images'] = [];
  let at = 0;
  seqs.forEach((s, j) => {
    if (at + s.ids.length > T) throw new UvuError(`pack: sequences of ${seqs.map((q) => q.ids.length).join('+')} tokens overflow a row of ${T}`);
    ids.set(s.ids, at);
    flags.set(s.flags, at);
    flags[at]! |= FLAG_SAMPLE_START;
    if (s.image) images.push({ start: at + s.image.start, rows: s.image.rows, cols: s.image.cols, seq: j });
    at += s.ids.length;
  });
  return { ids, flags, images };
}

/**
 * For each of the B·T positions of a batch, the first position (within its row) of the packed
 * sample it belongs to: the last FLAG_SAMPLE_START at or before it, 0 when there is none (rows
 * written before samples were marked are one sample each, as they were trained).
 */
export function sampleStarts(flags: Uint8Array, B: number, T: number): Int32Array {
  if (flags.length !== B * T) throw new UvuError(`pack: ${flags.length} flags for a batch of ${B}×${T} positions`);
  const out = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let start = 0;
    for (let t = 0; t < T; t++) {
      if ((flags[b * T + t]! & FLAG_SAMPLE_START) !== 0) start = t;
      out[b * T + t] = start;
    }
  }
  return out;
}
