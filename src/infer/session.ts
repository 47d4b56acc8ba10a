/**
 * Running a trained checkpoint on new images:
 *   - ask: `<bos><|user|><img>v…</img>question<|assistant|>` → the answer, token by token;
 *   - completeImage: `<bos><img>` v_1 … v_{R·cols} (the kept top rows, through the vision
 *     encoder) → the model predicts the codes of the remaining patches, fed back through their
 *     embedding rows, and the image coder reconstructs them: the paper's internalized
 *     reconstruction, with no decoder network for the pixel codebook.
 */
import { join } from 'node:path';
import { loadImageCoder, type ImageCoder } from '../tokens/coder.js';
import { questionPrompt } from '../data/sequence.js';
import { loadImage, type RgbImage } from '../image/io.js';
import { patchify, unpatchify, PATCH, PATCH_DIM } from '../patches/patchify.js';
import { ByteBpeTokenizer } from '../text/bpe.js';
import { loadCheckpoint, type CheckpointState } from '../train/checkpoint.js';
import { UvuError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { generate } from './generate.js';
import type { ImageInput, UvuModel } from '../model/model.js';

export interface AskOptions {
  maxNewTokens?: number;
  temperature?: number;
  seed?: number;
  /** Streams the decoded answer text as it grows. */
  onText?: (delta: string) => void;
}

export interface CompletionResult {
  rows: number;
  cols: number;
  keepRows: number;
  /** Codes the image coder gives the true image, [rows·cols]. */
  trueCodes: Int32Array;
  /** Kept codes followed by the model's predictions, [rows·cols]. */
  predictedCodes: Int32Array;
  /** Share of predicted patches whose code equals the true code. */
  codeAccuracy: number;
  original: RgbImage;
  /** Kept rows as in the original, the rest rebuilt from predicted codes. */
  completed: RgbImage;
  /** The whole image rebuilt from its true codes (the coder's own reconstruction: the upper bound). */
  coderReconstruction: RgbImage;
  /** PSNR (dB) over the predicted rows: completion vs original, and coder reconstruction vs original. */
  psnrCompleted: number;
  psnrCoder: number;
}

export class ModelSession {
  private coder: ImageCoder | null = null;

  private constructor(
    readonly dir: string,
    readonly model: UvuModel,
    readonly tokenizer: ByteBpeTokenizer,
    readonly state: CheckpointState,
  ) {}

  static load(dir: string): ModelSession {
    const ck = loadCheckpoint(dir);
    const tokenizerPath = join(dir, 'tokenizer.json');
    let tokenizerObject: unknown;
    try {
      tokenizerObject = JSON.parse(ck.tokenizerJson);
    } catch {
      throw new UvuError(`${tokenizerPath}: tokenizer is not valid JSON`);
    }
    const tokenizer = ByteBpeTokenizer.fromJSON(tokenizerObject, tokenizerPath);
    if (tokenizer.textSize !== ck.model.vocab.textSize) throw new UvuError(`${dir}: tokenizer has ${tokenizer.textSize} text ids, the model ${ck.model.vocab.textSize}`);
    return new ModelSession(dir, ck.model, tokenizer, ck.state);
  }

  dispose(): void {
    this.model.dispose();
  }

  /** The image at the training resize policy, as patch grid + model input at `start`. */
  async loadImage(path: string): Promise<{ image: RgbImage; rows: number; cols: number }> {
    const image = await loadImage(path, { maxPixels: this.state.data.maxPixels });
    return { image, rows: image.height / PATCH, cols: image.width / PATCH };
  }

  /** The image coder the checkpoint was trained with (or `override`), checked against its K. */
  async imageCoder(override?: string): Promise<ImageCoder> {
    if (this.coder) return this.coder;
    const ref = this.state.data.imageCoder;
    const coder = loadImageCoder(override ?? ref.path);
    if (coder.K !== this.model.vocab.K) throw new UvuError(`${coder.path}: image coder has K = ${coder.K}, the checkpoint's vocabulary K = ${this.model.vocab.K}`);
    if (!override && coder.sha256 !== ref.sha256) throw new UvuError(`${coder.path}: changed since training (sha256 differs); pass the original with --coder`);
    this.coder = coder;
    return coder;
  }

  /** Answer a question about an image; returns the decoded answer (specials such as <loc_3> kept). */
  async ask(imagePath: string, question: string, o: AskOptions = {}): Promise<string> {
    const vocab = this.model.vocab;
    const { image, rows, cols } = await this.loadImage(imagePath);
    const n = rows * cols;
    // Visual positions take image features; the ids there are placeholders (code 0), never embedded.
    const prompt = questionPrompt({ codes: new Int32Array(n), rows, cols }, this.tokenizer.encode(question), vocab);
    if (prompt.ids.length + 1 > this.model.config.text_config.max_position_embeddings) {
      throw new UvuError(`${imagePath}: image of ${n} patches plus the question does not fit the model's context ${this.model.config.text_config.max_position_embeddings}`);
    }
    const images: ImageInput[] = [{ row: 0, start: prompt.image!.start, rows, cols, pixels: image.data }];
    let text = '';
    const ids: number[] = [];
    const out = generate(this.model, Array.from(prompt.ids), images, {
      maxNewTokens: o.maxNewTokens ?? 32,
      allowFrom: 0,
      allowTo: vocab.imageOffset,
      stopIds: [vocab.eos],
      // An answer is text, <loc_i> coordinates and <eos>: never sequence structure.
      bannedIds: [vocab.bos, vocab.pad, vocab.imgStart, vocab.imgEnd, vocab.user, vocab.assistant],
      temperature: o.temperature ?? 0,
      rng: new Rng(o.seed ?? 0),
      onToken: (id) => {
        if (id === vocab.eos) return;
        ids.push(id);
        const next = this.tokenizer.decode(ids);
        o.onText?.(next.slice(text.length));
        text = next;
      },
    });
    return this.tokenizer.decode(out.filter((id) => id !== vocab.eos));
  }

  /** Keep the top `keepRows` patch rows, predict the rest, reconstruct with the image coder. */
  async completeImage(imagePath: string, keepRows: number, o: { coder?: string; temperature?: number; seed?: number } = {}): Promise<CompletionResult> {
    const vocab = this.model.vocab;
    const coder = await this.imageCoder(o.coder);
    const { image, rows, cols } = await this.loadImage(imagePath);
    if (!Number.isInteger(keepRows) || keepRows < 0 || keepRows >= rows) throw new UvuError(`${imagePath}: --keep-rows must be in 0 … ${rows - 1} for an image of ${rows} patch rows`);
    const n = rows * cols;
    const kept = keepRows * cols;
    if (2 + n + 1 > this.model.config.text_config.max_position_embeddings) throw new UvuError(`${imagePath}: ${n} patches do not fit the model's context`);
    const { patches } = patchify(image);
    const trueCodes = coder.encode(patches, n, { rows, cols });
    const prefix = [vocab.bos, vocab.imgStart, ...Array.from(trueCodes.subarray(0, kept), (k) => vocab.imageId(k))];
    const keptPixels = image.data.subarray(0, keepRows * PATCH * image.width * 3);
    const images: ImageInput[] = kept > 0 ? [{ row: 0, start: 2, rows: keepRows, cols, pixels: keptPixels }] : [];
    const predicted = generate(this.model, prefix, images, {
      maxNewTokens: n - kept,
      allowFrom: vocab.imageOffset,
      allowTo: vocab.size,
      temperature: o.temperature ?? 0,
      rng: new Rng(o.seed ?? 0),
    });
    const predictedCodes = Int32Array.from(trueCodes);
    let correct = 0;
    predicted.forEach((id, i) => {
      predictedCodes[kept + i] = id - vocab.imageOffset;
      if (predictedCodes[kept + i] === trueCodes[kept + i]) correct++;
    });
    const coderReconstruction = unpatchify(coder.decode(trueCodes), rows, cols);
    const completedPatches = coder.decode(predictedCodes);
    completedPatches.set(patches.subarray(0, kept * PATCH_DIM), 0);
    const completed = unpatchify(completedPatches, rows, cols);
    const from = keepRows * PATCH * image.width * 3;
    return {
      rows,
      cols,
      keepRows,
      trueCodes,
      predictedCodes,
      codeAccuracy: correct / Math.max(1, n - kept),
      original: image,
      completed,
      coderReconstruction,
      psnrCompleted: psnr(image.data.subarray(from), completed.data.subarray(from)),
      psnrCoder: psnr(image.data.subarray(from), coderReconstruction.data.subarray(from)),
    };
  }
}

/** PSNR in dB between two u8 buffers of equal length (peak 255). */
function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    se += d * d;
  }
  const mse = se / Math.max(1, a.length);
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}
