/**
 * The on-disk sequence dataset written by `uvu data build`, streamed during training.
 *
 *   DIR/manifest.json              format "uvu-seqdata": context length T, vocabulary layout,
 *                                  tokenizer, image coder, image size policy, splits with their
 *                                  shards (file, rows, bytes, sha256), counts
 *   DIR/tokenizer.json             the text tokenizer (Hugging Face format), copied in
 *   DIR/code-counts.safetensors    "counts" F64 [K]: f_k, how often code k is an image target in
 *                                  the train split (DESIGN §7)
 *   DIR/<split>-<iiiii>.*          row shards (see shards.ts)
 *
 * Opening checks, in this order and before any work: the manifest against its schema (names
 * must be plain file names in DIR), the sizes it implies against the allocation limit, the
 * sha256 of tokenizer.json and code-counts.safetensors (always: they are small, and training
 * copies the tokenizer into its checkpoint), each shard's sizes, then (`verify`, the default)
 * each shard's sha256, once per open, before any of it is parsed; then the tokenizer and code
 * counts are loaded and cross-checked with the manifest's vocabulary.
 *
 * Batches are a pure function of (split, seed, step, batch size): position g = step·B + j of the
 * stream is row perm_e[g mod N] of epoch e = ⌊g / N⌋, perm_e a seeded shuffle per epoch. So a run
 * resumed at step s reads exactly the batches it would have read.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { readSafetensors } from '../io/safetensors.js';
import { Vocab } from '../tokens/vocab.js';
import { ByteBpeTokenizer } from '../text/bpe.js';
import { parseOrFail, readJsonFile } from '../util/fsio.js';
import { checkAlloc } from '../util/limits.js';
import { PATCH } from '../patches/patchify.js';
import { Rng } from '../util/rng.js';
import { UsageError, UvuError } from '../util/errors.js';
import { checkSha256, rowBytes, ShardEntrySchema, ShardReader, type Row, type RowImage } from './shards.js';
import { FLAG_LOSS_PRETRAIN, FLAG_LOSS_SFT, FLAG_VISUAL } from './sequence.js';

export const DATASET_FORMAT = 'uvu-seqdata';
export const DATASET_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const TOKENIZER_FILE = 'tokenizer.json';
export const CODE_COUNTS_FILE = 'code-counts.safetensors';
export const CODE_COUNTS_FORMAT = 'uvu-code-counts';

export type Split = 'train' | 'val';
export const SPLITS: readonly Split[] = ['train', 'val'];

const count = z.number().int().nonnegative();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
/** Ids are stored as int32. */
const MAX_VOCAB_SIZE = 2 ** 31 - 1;

export const SplitCountsSchema = z.object({
  samples: z.object({ caption: count, qa: count, text: count }),
  /** Packed pieces: samples, with a long text counted once per piece it was cut into. */
  sequences: count,
  rows: count,
  /** Non-pad positions. */
  tokens: count,
  images: count,
  /** Supervised targets in pretraining that are image codes / anything else. */
  imageTargets: count,
  textTargets: count,
  /** Supervised targets in SFT. */
  sftTargets: count,
  /** tokens / (rows·T). */
  fillRatio: z.number().min(0).max(1),
});
export type SplitCounts = z.infer<typeof SplitCountsSchema>;

export const ManifestSchema = z.object({
  format: z.literal(DATASET_FORMAT),
  version: z.literal(DATASET_VERSION),
  contextLength: z.number().int().min(8),
  vocab: z.object({ textSize: z.number().int().min(256), K: z.number().int().positive() }),
  /** Fixed names (train copies DIR/tokenizer.json into its checkpoint by that name). */
  tokenizer: z.object({ file: z.literal(TOKENIZER_FILE), sha256 }),
  imageCoder: z.object({ kind: z.enum(['codebook', 'vq']), path: z.string(), sha256, K: z.number().int().positive() }),
  /** Resize policy the images went through (DESIGN §1) and the patch side. */
  images: z.object({ maxPixels: z.number().int().positive(), patch: z.literal(PATCH) }),
  /** Meaning of the flag bits (fixed; written for readers of the files). */
  flags: z.object({ visual: z.literal(FLAG_VISUAL), lossPretrain: z.literal(FLAG_LOSS_PRETRAIN), lossSft: z.literal(FLAG_LOSS_SFT) }),
  splits: z.object({
    train: z.object({ rows: count, shards: z.array(ShardEntrySchema) }),
    val: z.object({ rows: count, shards: z.array(ShardEntrySchema) }),
  }),
  codeCounts: z.object({ file: z.literal(CODE_COUNTS_FILE), sha256 }),
  counts: z.object({ train: SplitCountsSchema, val: SplitCountsSchema }),
  /** How it was built (seed, val fraction, sources); informational. */
  build: z.record(z.string(), z.unknown()),
});
export type DatasetManifest = z.infer<typeof ManifestSchema>;

/** A batch of B rows of T positions. `images[].row` is the row within the batch (0 … B−1). */
export interface Batch {
  B: number;
  T: number;
  /** [B·T] token ids. */
  ids: Int32Array;
  /** [B·T] FLAG_* bits. */
  flags: Uint8Array;
  images: ({ row: number } & RowImage)[];
}

/** murmur3's 32-bit finalizer: a bijective mix, so nearby (seed, epoch) give unrelated streams. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Permutation of 0 … n−1 used in epoch `epoch` of a stream seeded `seed`. */
export function epochPermutation(n: number, seed: number, epoch: number): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  return new Rng(fmix32((seed >>> 0) ^ fmix32(epoch + 0x632be5ab))).shuffle(perm);
}

/** Row indices of batch `step` (B rows) of the seeded epoch stream over n rows. */
export function batchRowIndices(n: number, step: number, B: number, seed: number, permFor: (epoch: number) => Uint32Array = (e) => epochPermutation(n, seed, e)): number[] {
  if (n < 1) throw new UvuError('dataset split has no rows');
  if (!(Number.isInteger(step) && step >= 0)) throw new RangeError(`batch step must be a non-negative integer, got ${step}`);
  if (!(Number.isInteger(B) && B >= 1)) throw new UsageError(`batch size must be a positive integer, got ${B}`);
  const out: number[] = [];
  for (let j = 0; j < B; j++) {
    const g = step * B + j;
    out.push(permFor(Math.floor(g / n))[g % n]!);
  }
  return out;
}

export class SeqDataset {
  /** Context length: positions per row. */
  readonly T: number;
  private readonly readers: Record<Split, ShardReader[]>;
  /** Per split: first global row index of each shard, plus the total at the end. */
  private readonly shardStart: Record<Split, number[]>;
  private readonly vocabulary: Vocab;
  private tok: ByteBpeTokenizer | null = null;
  private counts: Float64Array | null = null;
  /** Last permutation per split (epochs advance one at a time in training). */
  private readonly permCache: Partial<Record<Split, { seed: number; epoch: number; perm: Uint32Array }>> = {};

  private constructor(
    readonly dir: string,
    readonly manifest: DatasetManifest,
    verify: boolean,
  ) {
    this.T = manifest.contextLength;
    this.vocabulary = new Vocab(manifest.vocab);
    this.readers = { train: [], val: [] };
    this.shardStart = { train: [0], val: [0] };
    try {
      for (const split of SPLITS) {
        const s = manifest.splits[split];
        let total = 0;
        for (const entry of s.shards) {
          this.readers[split].push(new ShardReader(dir, entry, this.T, this.vocabulary.size, this.vocabulary.imageOffset, verify));
          total += entry.rows;
          this.shardStart[split].push(total);
        }
        if (total !== s.rows) throw new UvuError(`${join(dir, MANIFEST_FILE)}: split ${split} lists ${s.rows} rows but its shards hold ${total}`);
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /**
   * Open a dataset folder: validates the manifest, the sha256 of the tokenizer and code-count
   * files, every shard's sizes and image table, and loads the tokenizer and code counts (see the
   * file comment). `verify` (default true) also checks every shard's sha256 first (reads every
   * byte once); `verify: false` is `uvu train --no-verify`.
   */
  static open(dir: string, opts: { verify?: boolean } = {}): SeqDataset {
    const m = readManifest(dir);
    for (const f of [m.tokenizer, m.codeCounts]) {
      const path = join(dir, f.file);
      if (!existsSync(path)) throw new UvuError(`${path}: missing dataset file`);
      checkSha256(path, f.sha256, 'dataset file');
    }
    const ds = new SeqDataset(dir, m, opts.verify ?? true);
    try {
      ds.tokenizer();
      ds.codeCounts();
    } catch (err) {
      ds.close();
      throw err;
    }
    return ds;
  }

  /** Check the sha256 of every file against the manifest (reads everything again). */
  verify(): void {
    const m = this.manifest;
    for (const f of [m.tokenizer, m.codeCounts]) checkSha256(join(this.dir, f.file), f.sha256, 'dataset file');
    for (const split of SPLITS) for (const r of this.readers[split]) r.verify(this.dir);
  }

  rows(split: Split): number {
    return this.manifest.splits[split].rows;
  }

  /** Row `index` (0 … rows−1) of a split. */
  row(split: Split, index: number): Row {
    const starts = this.shardStart[split];
    if (!(Number.isInteger(index) && index >= 0 && index < starts[starts.length - 1]!)) throw new RangeError(`dataset ${this.dir}: ${split} row ${index} out of range (0 … ${this.rows(split) - 1})`);
    // Last shard whose first row is ≤ index.
    let lo = 0;
    let hi = starts.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.readers[split][lo]!.read(index - starts[lo]!);
  }

  /** The rows with these indices as one batch. */
  rowsBatch(split: Split, indices: readonly number[]): Batch {
    const B = indices.length;
    const { T } = this;
    checkAlloc(this.dir, `a batch of ${B} rows of ${T} tokens`, B * rowBytes(T));
    const ids = new Int32Array(B * T);
    const flags = new Uint8Array(B * T);
    const images: Batch['images'] = [];
    indices.forEach((index, b) => {
      const r = this.row(split, index);
      ids.set(r.ids, b * T);
      flags.set(r.flags, b * T);
      for (const img of r.images) images.push({ row: b, ...img });
    });
    return { B, T, ids, flags, images };
  }

  /** Row indices of batch `step`: see the file comment. */
  batchIndices(split: Split, step: number, batchSize: number, seed: number): number[] {
    const n = this.rows(split);
    if (n === 0) throw new UvuError(`${this.dir}: the ${split} split has no rows (rebuild with --val-fraction > 0 for validation)`);
    return batchRowIndices(n, step, batchSize, seed, (epoch) => {
      const c = this.permCache[split];
      if (c && c.seed === seed && c.epoch === epoch) return c.perm;
      const perm = epochPermutation(n, seed, epoch);
      this.permCache[split] = { seed, epoch, perm };
      return perm;
    });
  }

  /** Batch `step` of the seeded stream over a split: deterministic in (split, step, batchSize, seed). */
  batch(split: Split, step: number, batchSize: number, seed: number): Batch {
    return this.rowsBatch(split, this.batchIndices(split, step, batchSize, seed));
  }

  vocab(): Vocab {
    return this.vocabulary;
  }

  /** The text tokenizer stored with the dataset (loaded once). */
  tokenizer(): ByteBpeTokenizer {
    if (!this.tok) {
      const path = join(this.dir, this.manifest.tokenizer.file);
      const tok = ByteBpeTokenizer.load(path);
      if (tok.textSize !== this.manifest.vocab.textSize) throw new UvuError(`${path}: tokenizer has ${tok.textSize} text ids, the dataset manifest says ${this.manifest.vocab.textSize}`);
      this.tok = tok;
    }
    return this.tok;
  }

  /** f_k: image-target frequency of each code in the train split, F64 [K]. */
  codeCounts(): Float64Array {
    if (!this.counts) {
      const path = join(this.dir, this.manifest.codeCounts.file);
      checkAlloc(join(this.dir, MANIFEST_FILE), `code counts of K = ${this.manifest.vocab.K} codes`, 8 * this.manifest.vocab.K);
      const { tensors, metadata } = readSafetensors(path);
      const t = tensors.counts;
      if (metadata?.format !== CODE_COUNTS_FORMAT || !t || t.dtype !== 'F64' || t.shape.length !== 1 || t.shape[0] !== this.manifest.vocab.K) {
        throw new UvuError(`${path}: invalid code counts: expected format "${CODE_COUNTS_FORMAT}" with tensor "counts" F64 [${this.manifest.vocab.K}]`);
      }
      const counts = t.data as Float64Array;
      let sum = 0;
      for (const c of counts) {
        if (!(Number.isInteger(c) && c >= 0)) throw new UvuError(`${path}: invalid code counts: ${c} is not a count`);
        sum += c;
      }
      if (sum !== this.manifest.counts.train.imageTargets) throw new UvuError(`${path}: code counts sum to ${sum}, the manifest counts ${this.manifest.counts.train.imageTargets} train image targets`);
      this.counts = counts;
    }
    return this.counts;
  }

  close(): void {
    for (const split of SPLITS) for (const r of this.readers[split]) r.close();
  }
}

/**
 * Read DIR/manifest.json: one schema check (names are plain file names in DIR), then the
 * cross-field rules and the sizes it implies, against the allocation limit.
 */
export function readManifest(dir: string): DatasetManifest {
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw new UvuError(`${dir}: not a uvu dataset (no ${MANIFEST_FILE}; build one with "uvu data build")`);
  const m = parseOrFail(ManifestSchema, readJsonFile(manifestPath, 'dataset manifest'), `${manifestPath}: not a uvu dataset manifest`);
  if (m.imageCoder.K !== m.vocab.K) throw new UvuError(`${manifestPath}: image coder K = ${m.imageCoder.K} but the vocabulary has K = ${m.vocab.K}`);
  const vocabSize = new Vocab(m.vocab).size;
  if (vocabSize > MAX_VOCAB_SIZE) throw new UvuError(`${manifestPath}: vocabulary of ${vocabSize} ids does not fit the int32 ids of the row shards`);
  checkAlloc(manifestPath, `a row of ${m.contextLength} tokens`, rowBytes(m.contextLength));
  for (const split of SPLITS) checkAlloc(manifestPath, `the ${split} permutation (${m.splits[split].rows} rows)`, 4 * m.splits[split].rows);
  return m;
}
