/**
 * The one vocabulary of the unified model (DESIGN §6):
 *
 *   [ text tokens 0 … textSize-1 ][ special tokens ][ K image codes ]
 *
 * Text ids come from the byte-level BPE tokenizer; special ids follow in SPECIAL_TOKENS order;
 * image code k has id imageOffset + k. One input embedding table and one output head span all
 * of them.
 */
import { z } from 'zod';
import { UvuError } from '../util/errors.js';
import { parseOrFail } from '../util/fsio.js';

/** Quantization bins of a box coordinate in grounding answers (`<loc_0>` … `<loc_31>`). */
export const LOC_BINS = 32;

/** Special tokens in id order. Stable across runs: changing it changes every checkpoint. */
export const SPECIAL_TOKENS: readonly string[] = [
  '<bos>',
  '<eos>',
  '<pad>',
  '<img>',
  '</img>',
  '<|user|>',
  '<|assistant|>',
  ...Array.from({ length: LOC_BINS }, (_, i) => `<loc_${i}>`),
];

/** Largest text vocabulary and largest K a vocabulary may have (2²⁴ each: ids stay exact in f32). */
export const MAX_VOCAB_PART = 2 ** 24;

/** The vocabulary layout as stored in files (checkpoint metadata, dataset manifests). */
export const VocabLayoutSchema = z
  .object({
    /** Number of BPE text ids (bytes + merges). */
    textSize: z.number().int().min(256).max(MAX_VOCAB_PART),
    /** Number of image codes (the codebook's or the VQ-VAE's K). */
    K: z.number().int().nonnegative().max(MAX_VOCAB_PART),
  })
  .strict();
export type VocabLayout = z.infer<typeof VocabLayoutSchema>;

/** A vocabulary from a layout read from a file: `WHERE: field: what is wrong` otherwise. */
export function parseVocab(raw: unknown, where: string): Vocab {
  return new Vocab(parseOrFail(VocabLayoutSchema, raw, where));
}

export class Vocab {
  readonly textSize: number;
  readonly K: number;
  /** Id of the first special token. */
  readonly specialOffset: number;
  /** Id of image code 0. */
  readonly imageOffset: number;
  /** Total vocabulary size: textSize + specials + K. */
  readonly size: number;
  readonly bos: number;
  readonly eos: number;
  readonly pad: number;
  readonly imgStart: number;
  readonly imgEnd: number;
  readonly user: number;
  readonly assistant: number;

  constructor(layout: VocabLayout) {
    if (!Number.isInteger(layout.textSize) || layout.textSize < 256) throw new UvuError(`vocab: textSize must be an integer ≥ 256 (byte-level BPE), got ${layout.textSize}`);
    if (!Number.isInteger(layout.K) || layout.K < 0) throw new UvuError(`vocab: K must be a non-negative integer, got ${layout.K}`);
    this.textSize = layout.textSize;
    this.K = layout.K;
    this.specialOffset = layout.textSize;
    this.imageOffset = layout.textSize + SPECIAL_TOKENS.length;
    this.size = this.imageOffset + layout.K;
    this.bos = this.special('<bos>');
    this.eos = this.special('<eos>');
    this.pad = this.special('<pad>');
    this.imgStart = this.special('<img>');
    this.imgEnd = this.special('</img>');
    this.user = this.special('<|user|>');
    this.assistant = this.special('<|assistant|>');
  }

  /** Id of a special token by its text. */
  special(token: string): number {
    const i = SPECIAL_TOKENS.indexOf(token);
    if (i < 0) throw new UvuError(`vocab: unknown special token ${token}`);
    return this.specialOffset + i;
  }

  /** Id of image code k. */
  imageId(code: number): number {
    return this.imageOffset + code;
  }

  isImageId(id: number): boolean {
    return id >= this.imageOffset && id < this.size;
  }

  isSpecialId(id: number): boolean {
    return id >= this.specialOffset && id < this.imageOffset;
  }

  /** Id of grounding coordinate bin b (0 … LOC_BINS-1). */
  locId(bin: number): number {
    return this.special(`<loc_${bin}>`);
  }

  toJSON(): VocabLayout {
    return { textSize: this.textSize, K: this.K };
  }
}
