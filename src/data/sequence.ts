/**
 * Hybrid token sequences (DESIGN §6). A sequence is token ids x[0..L) plus per-position flags:
 *
 *   FLAG_VISUAL        x[t] is image code c_i; the model's INPUT there is the continuous feature
 *                      v_i of patch i (vision encoder + projector), not c_i's embedding row.
 *   FLAG_LOSS_PRETRAIN the target y[t] = x[t+1] is supervised in pretraining.
 *   FLAG_LOSS_SFT      the target y[t] = x[t+1] is supervised in SFT (answer tokens and their <eos>).
 *   FLAG_SAMPLE_START  x[t] is the first token of a sample (or of a piece of a cut text) in a packed
 *                      row (set by pack.ts assembleRow): attention and RoPE positions restart there.
 *
 * An image is `<img>` c_1 … c_N `</img>` with c_i = imageOffset + code_i (raster order), so plain
 * next-token targets give exactly §6: `<img>` → c_1, v_i → c_{i+1}, v_N → `</img>`.
 *
 *   caption  <bos><img>c_1…c_N</img>text<eos>
 *   qa       <bos><|user|><img>c_1…c_N</img>prompt<|assistant|>answer<eos>
 *   text     <bos>text<eos>          (texts longer than the context are cut when packed, pack.ts)
 *   dialog   <bos><|user|><img>c_1…c_N</img>prompt_1<|assistant|>answer_1<eos><|user|>prompt_2<|assistant|>answer_2<eos>…
 *            several questions about one image in one sequence (buildDialogSequence): the image
 *            is paid for once; its first turn is exactly a qa sequence.
 *
 * Pretraining supervises every target inside a sample (positions 0 … L−2); SFT supervises the
 * targets answer_1 … answer_m, <eos>, i.e. positions from `<|assistant|>` to L−2.
 */
import type { Vocab } from '../tokens/vocab.js';
import { UvuError } from '../util/errors.js';

export const FLAG_VISUAL = 1;
export const FLAG_LOSS_PRETRAIN = 2;
export const FLAG_LOSS_SFT = 4;
export const FLAG_SAMPLE_START = 8;
/** Every flag bit; a stored flag byte outside this mask is corruption. */
export const FLAG_MASK = FLAG_VISUAL | FLAG_LOSS_PRETRAIN | FLAG_LOSS_SFT | FLAG_SAMPLE_START;

/** Where an image sits in a sequence: position of c_1 and its patch grid (N = rows·cols codes). */
export interface ImagePlacement {
  start: number;
  rows: number;
  cols: number;
}

export interface Sequence {
  /** [L] token ids. */
  ids: Int32Array;
  /** [L] FLAG_* bits. */
  flags: Uint8Array;
  /** The sample's image, if any. */
  image: ImagePlacement | null;
}

/** Code ids of an image with its grid (codes [rows·cols] in 0..K−1, raster order). */
export interface ImageCodes {
  codes: Int32Array;
  rows: number;
  cols: number;
}

export type SequenceParts =
  | { kind: 'caption'; image: ImageCodes; text: ArrayLike<number> }
  | { kind: 'qa'; image: ImageCodes; prompt: ArrayLike<number>; answer: ArrayLike<number> }
  | { kind: 'text'; text: ArrayLike<number> };

/** Appends ids with input flags; loss flags are set once the sequence is complete. */
class SequenceBuilder {
  private ids: number[] = [];
  private flags: number[] = [];
  image: ImagePlacement | null = null;

  constructor(private readonly vocab: Vocab) {}

  get length(): number {
    return this.ids.length;
  }

  push(ids: ArrayLike<number>): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!(Number.isInteger(id) && id >= 0 && id < this.vocab.imageOffset)) {
        throw new UvuError(`sequence: text id ${id} is outside the text and special ids (0 … ${this.vocab.imageOffset - 1})`);
      }
      this.ids.push(id);
      this.flags.push(0);
    }
  }

  /** `<img>` c_1 … c_N `</img>`, the codes flagged visual. */
  pushImage(img: ImageCodes): void {
    const n = img.rows * img.cols;
    if (img.codes.length !== n) throw new UvuError(`sequence: ${img.codes.length} image codes for a ${img.rows}×${img.cols} grid`);
    this.push([this.vocab.imgStart]);
    this.image = { start: this.ids.length, rows: img.rows, cols: img.cols };
    for (let i = 0; i < n; i++) {
      const k = img.codes[i]!;
      if (!(k >= 0 && k < this.vocab.K)) throw new UvuError(`sequence: image code ${k} is outside 0 … ${this.vocab.K - 1}`);
      this.ids.push(this.vocab.imageId(k));
      this.flags.push(FLAG_VISUAL);
    }
    this.push([this.vocab.imgEnd]);
  }

  /** Set `flag` on positions [from, to). */
  mark(flag: number, from: number, to: number): void {
    for (let t = from; t < to; t++) this.flags[t]! |= flag;
  }

  /** The sequence as built so far, flags as they are. */
  snapshot(): Sequence {
    return { ids: Int32Array.from(this.ids), flags: Uint8Array.from(this.flags), image: this.image };
  }

  /** The complete sample: pretraining supervises every target inside it. */
  finish(): Sequence {
    this.mark(FLAG_LOSS_PRETRAIN, 0, this.ids.length - 1);
    return this.snapshot();
  }
}

/**
 * The prompt of a question: `<bos><|user|><img>c…</img>prompt<|assistant|>`, no loss flags. The
 * model's `ask` feeds exactly this and generates the answer after it.
 */
export function questionPrompt(image: ImageCodes, prompt: ArrayLike<number>, vocab: Vocab): Sequence {
  return questionBuilder(image, prompt, vocab).snapshot();
}

function questionBuilder(image: ImageCodes, prompt: ArrayLike<number>, vocab: Vocab): SequenceBuilder {
  const b = new SequenceBuilder(vocab);
  b.push([vocab.bos, vocab.user]);
  b.pushImage(image);
  b.push(prompt);
  b.push([vocab.assistant]);
  return b;
}

/** Build one sample's sequence with its flags. */
export function buildSequence(parts: SequenceParts, vocab: Vocab): Sequence {
  switch (parts.kind) {
    case 'caption': {
      const b = new SequenceBuilder(vocab);
      b.push([vocab.bos]);
      b.pushImage(parts.image);
      b.push(parts.text);
      b.push([vocab.eos]);
      return b.finish();
    }
    case 'qa': {
      const b = questionBuilder(parts.image, parts.prompt, vocab);
      const assistantPos = b.length - 1;
      b.push(parts.answer);
      b.push([vocab.eos]);
      // SFT: the targets answer_1 … answer_m and <eos> sit at positions assistantPos … L−2.
      b.mark(FLAG_LOSS_SFT, assistantPos, b.length - 1);
      return b.finish();
    }
    case 'text': {
      const b = new SequenceBuilder(vocab);
      b.push([vocab.bos]);
      b.push(parts.text);
      b.push([vocab.eos]);
      return b.finish();
    }
  }
}

/** A question and its answer, as text ids. */
export interface Turn {
  prompt: ArrayLike<number>;
  answer: ArrayLike<number>;
}

/**
 * A dialog about one image: turn 1 as a qa sequence, each later turn `<|user|>prompt<|assistant|>answer<eos>`.
 * SFT supervises every turn's answer and <eos>; pretraining every target inside the sample.
 */
export function buildDialogSequence(image: ImageCodes, turns: Turn[], vocab: Vocab): Sequence {
  if (turns.length === 0) throw new UvuError('sequence: a dialog needs at least one turn');
  const b = questionBuilder(image, turns[0]!.prompt, vocab);
  turns.forEach((turn, k) => {
    if (k > 0) {
      b.push([vocab.user]);
      b.push(turn.prompt);
      b.push([vocab.assistant]);
    }
    const assistantPos = b.length - 1;
    b.push(turn.answer);
    b.push([vocab.eos]);
    b.mark(FLAG_LOSS_SFT, assistantPos, b.length - 1);
  });
  return b.finish();
}

/** Length of a dialog's sequence without building it (text lengths: prompt_1, answer_1, prompt_2, …). */
export function dialogLength(imageCodes: number, turnLens: number[]): number {
  const turns = turnLens.length / 2;
  return sequenceLength('qa', imageCodes, turnLens.slice(0, 2)) + (turns - 1) * 3 + turnLens.slice(2).reduce((a, b) => a + b, 0);
}

/** Length of a sample's sequence without building it: image N = rows·cols codes. */
export function sequenceLength(kind: 'caption' | 'qa' | 'text', imageCodes: number, textLens: number[]): number {
  const text = textLens.reduce((a, b) => a + b, 0);
  switch (kind) {
    case 'caption': return 1 + (imageCodes + 2) + text + 1;
    case 'qa': return 2 + (imageCodes + 2) + text + 2;
    case 'text': return 1 + text + 1;
  }
}
