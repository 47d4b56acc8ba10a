/**
 * `uvu data build`: samples (JSONL, photos with generated captions, public-domain text) →
 * tokenized hybrid sequences (DESIGN §6) → rows of T tokens → the on-disk dataset (dataset.ts).
 *
 * Order of work, so that bad input fails before anything expensive:
 *   1. load the image coder; read every sample source; probe every image's size (header only)
 *      → its patch grid; an image whose codes alone cannot fit the context is refused here,
 *      naming the sample
 *   2. load or train the text tokenizer; exact sample lengths, refusing any image sample
 *      longer than T
 *   3. split samples into train/val with the seed, shuffle, and plan rows on lengths alone
 *      (pack.ts: first fit of whole samples, then long texts cut to fill the gaps)
 *   4. tokenize images while writing rows into DIR.tmp-<pid>/, then rename it to DIR. A crash
 *      leaves no folder at DIR (or the previous dataset), never a half-written one.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { writeSafetensors } from '../io/safetensors.js';
import { loadImage, readImageSize, targetSize } from '../image/io.js';
import { patchify, PATCH } from '../patches/patchify.js';
import { resolveInputs } from '../patches/inputs.js';
import { sha256File } from '../util/fsio.js';
import { SPECIAL_TOKENS, Vocab } from '../tokens/vocab.js';
import { ByteBpeTokenizer } from '../text/bpe.js';
import { publicDomainTexts, type TextSource } from '../text/corpus.js';
import { loadImageCoder, type ImageCoder } from '../tokens/coder.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from './bundled.js';
import { readSamples, photoSamples, textSamples, where, type Sample } from './samples.js';
import { buildDialogSequence, buildSequence, dialogLength, sequenceLength, FLAG_LOSS_PRETRAIN, FLAG_LOSS_SFT, FLAG_VISUAL, type ImageCodes, type Sequence } from './sequence.js';
import { assembleRow, packSequences, slicePiece, type Piece } from './pack.js';
import { rowBytes, shardBaseName, ShardWriter, type RowImage, type ShardEntry } from './shards.js';
import { checkAlloc } from '../util/limits.js';
import {
  CODE_COUNTS_FILE,
  CODE_COUNTS_FORMAT,
  DATASET_FORMAT,
  DATASET_VERSION,
  MANIFEST_FILE,
  SPLITS,
  TOKENIZER_FILE,
  type DatasetManifest,
  type Split,
  type SplitCounts,
} from './dataset.js';
import { Rng } from '../util/rng.js';
import { info, progress } from '../util/progress.js';
import { UsageError, UvuError } from '../util/errors.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';

export interface DataBuildOptions {
  /** Dataset folder to create. */
  out: string;
  /** Codebook or VQ-VAE file (safetensors). */
  imageTokenizer: string;
  /** Sample JSONL files. */
  samples?: string[];
  /** Photos with generated captions: "bundled" (the npm photos) and/or image files, folders, globs. */
  photos?: string[];
  /** Public-domain text sources for text-only samples. */
  text?: TextSource[];
  /** Use at most this many text documents (a seeded sample, kept in corpus order). */
  textDocs?: number;
  /** An existing tokenizer.json … */
  tokenizer?: string;
  /** … or train one with this many BPE ids on the corpus and the sample texts. */
  trainTokenizer?: number;
  /** Context length T (default 512). */
  context?: number;
  /** Image resize policy: w·h ≤ maxPixels (default 512·512). */
  maxPixels?: number;
  valFraction?: number;
  seed?: number;
  /** Start a new shard once rows + pixels reach this many bytes (default 256 MiB). */
  shardBytes?: number;
  /** Replace an existing dataset at `out`. */
  overwrite?: boolean;
}

export interface DataBuildSummary {
  out: string;
  contextLength: number;
  textSize: number;
  K: number;
  vocabSize: number;
  coder: { kind: string; path: string };
  counts: Record<Split, SplitCounts>;
  /** Most frequent train image targets: code, count, share of all image targets. */
  topCodes: { code: number; count: number; share: number }[];
  /** Codes that occur as train targets at least once. */
  codesUsed: number;
  seconds: number;
}

/** One sample, planned: its exact length and, for texts, the finished sequence. */
interface Unit {
  sample: number;
  length: number;
  /** The finished sequence of a text sample (may be cut when packed); image samples are built while writing. */
  seq: Sequence | null;
  /** Text ids of an image sample: [caption] or [prompt, answer]. */
  texts: number[][];
}

/** A planned row: pieces of units (Piece.seq is a unit index). */
type RowPlan = Piece[];

interface Grid {
  rows: number;
  cols: number;
  width: number;
  height: number;
}

type ResolvedOptions = DataBuildOptions & Required<Pick<DataBuildOptions, 'context' | 'maxPixels' | 'valFraction' | 'seed' | 'shardBytes'>>;

function withDefaults(o: DataBuildOptions): ResolvedOptions {
  return { ...o, context: o.context ?? 512, maxPixels: o.maxPixels ?? DEFAULT_MAX_PIXELS, valFraction: o.valFraction ?? 0.05, seed: o.seed ?? 0, shardBytes: o.shardBytes ?? 256 << 20 };
}

/** Tokenized images kept for samples that share an image (e.g. several questions on one scene). */
const IMAGE_CACHE_SIZE = 32;

/** Overhead tokens around the image in the shortest image sample (`<bos><img>…</img><eos>`). */
const MIN_IMAGE_OVERHEAD = 4;

export async function buildDataset(options: DataBuildOptions): Promise<DataBuildSummary> {
  const t0 = performance.now();
  const o = withDefaults(options);
  const out = resolve(o.out);
  checkOptions(o, out);

  // 1. Image coder (validated on load), samples and image grids.
  const coder = loadImageCoder(o.imageTokenizer);
  const samples = await collectSamples(o);
  const grids = await probeImages(samples, o.maxPixels, o.context);

  // 2. Tokenizer and exact lengths.
  const tok = prepareTokenizer(o, samples);
  const vocab = new Vocab({ textSize: tok.textSize, K: coder.K });
  const units = planUnits(samples, grids, tok, vocab, o.context);

  // 3. Split and pack.
  const bySplit = splitUnits(units, o.valFraction, o.seed);
  const plans = { train: planRows(units, bySplit.train, o.context), val: planRows(units, bySplit.val, o.context) };

  // 4. Write.
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const writer = new DatasetWriter(tmp, o, samples, units, grids, coder, vocab);
    const bar = progress('data build', plans.train.length + plans.val.length, 'rows');
    const splits = {} as Record<Split, { rows: number; shards: ShardEntry[] }>;
    const counts = {} as Record<Split, SplitCounts>;
    try {
      for (const split of SPLITS) {
        const r = await writer.writeSplit(split, plans[split], () => bar.tick());
        splits[split] = { rows: plans[split].length, shards: r.shards };
        counts[split] = r.counts;
      }
    } finally {
      bar.stop();
    }

    tok.save(`${tmp}/${TOKENIZER_FILE}`);
    writeSafetensors(`${tmp}/${CODE_COUNTS_FILE}`, { counts: { dtype: 'F64', shape: [coder.K], data: writer.codeCounts } }, { format: CODE_COUNTS_FORMAT, version: '1', split: 'train' });
    const manifest: DatasetManifest = {
      format: DATASET_FORMAT,
      version: DATASET_VERSION,
      contextLength: o.context,
      vocab: vocab.toJSON(),
      tokenizer: { file: TOKENIZER_FILE, sha256: sha256File(`${tmp}/${TOKENIZER_FILE}`) },
      imageCoder: { kind: coder.kind, path: resolve(coder.path), sha256: coder.sha256, K: coder.K },
      images: { maxPixels: o.maxPixels, patch: PATCH },
      flags: { visual: FLAG_VISUAL, lossPretrain: FLAG_LOSS_PRETRAIN, lossSft: FLAG_LOSS_SFT },
      splits,
      codeCounts: { file: CODE_COUNTS_FILE, sha256: sha256File(`${tmp}/${CODE_COUNTS_FILE}`) },
      counts,
      build: {
        seed: o.seed,
        valFraction: o.valFraction,
        samples: (o.samples ?? []).map((p) => resolve(p)),
        photos: o.photos ?? [],
        text: o.text ?? [],
        textDocs: o.textDocs ?? null,
        tokenizer: o.tokenizer ? { from: resolve(o.tokenizer) } : { trained: o.trainTokenizer },
      },
    };
    // The manifest is written last: a folder without it never opens as a dataset.
    writeFileAtomic(`${tmp}/${MANIFEST_FILE}`, JSON.stringify(manifest, null, 1) + '\n');
    publish(tmp, out, Boolean(o.overwrite));

    const top = [...writer.codeCounts.entries()].filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    const totalImage = counts.train.imageTargets;
    return {
      out,
      contextLength: o.context,
      textSize: vocab.textSize,
      K: vocab.K,
      vocabSize: vocab.size,
      coder: { kind: coder.kind, path: resolve(coder.path) },
      counts,
      topCodes: top.slice(0, 10).map(([code, count]) => ({ code, count, share: totalImage > 0 ? count / totalImage : 0 })),
      codesUsed: top.length,
      seconds: (performance.now() - t0) / 1000,
    };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

function checkOptions(o: ResolvedOptions, out: string): void {
  if (!Number.isInteger(o.context) || o.context < 8) throw new UsageError(`data build: --context must be an integer ≥ 8, got ${o.context}`);
  checkAlloc('data build: --context', `a row of ${o.context} tokens`, rowBytes(o.context));
  if (!(o.valFraction >= 0 && o.valFraction < 1)) throw new UsageError(`data build: --val-fraction must be in [0, 1), got ${o.valFraction}`);
  if (!(o.maxPixels >= PATCH * PATCH)) throw new UsageError(`data build: --max-pixels must be at least ${PATCH * PATCH} (one patch), got ${o.maxPixels}`);
  if ((o.tokenizer === undefined) === (o.trainTokenizer === undefined)) throw new UsageError('data build: give exactly one of --tokenizer FILE or --train-tokenizer VOCAB_SIZE');
  if (!o.samples?.length && !o.photos?.length && !o.text?.length) throw new UsageError('data build: no samples: give --samples FILE, --photos or --text');
  for (const f of [o.imageTokenizer, ...(o.samples ?? []), ...(o.tokenizer ? [o.tokenizer] : [])]) {
    if (!existsSync(f)) throw new UsageError(`${f}: no such file`);
  }
  if (existsSync(out)) {
    const empty = statSync(out).isDirectory() && readdirSync(out).length === 0;
    if (!empty && !o.overwrite) throw new UsageError(`${out} already exists; remove it, choose another --out, or pass --overwrite`);
  }
}

async function collectSamples(o: ResolvedOptions): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const f of o.samples ?? []) samples.push(...readSamples(f));
  const photos = o.photos ?? [];
  const named = photos.filter((p) => p !== 'bundled');
  if (photos.includes('bundled')) samples.push(...(await photoSamples(BUNDLED_PHOTOS.map(bundledPhotoPath), { maxPixels: o.maxPixels, subjects: BUNDLED_PHOTOS.map((n) => n.replaceAll('-', ' ')) })));
  if (named.length > 0) samples.push(...(await photoSamples(resolveInputs(named), { maxPixels: o.maxPixels })));
  if (o.text?.length) {
    let docs = publicDomainTexts({ sources: o.text });
    if (o.textDocs !== undefined && o.textDocs < docs.length) {
      const keep = [...new Rng(o.seed).sampleIndices(docs.length, o.textDocs)].sort((a, b) => a - b);
      docs = keep.map((i) => docs[i]!);
    }
    samples.push(...textSamples(docs.map((d) => ({ name: `${d.source}: ${d.title}`, text: d.text }))));
  }
  return samples;
}

/** Patch grid of an image after the resize policy, from its header only (as loadImage computes it). */
export async function probeImageGrid(path: string, maxPixels: number): Promise<Grid> {
  const { width: w, height: h } = await readImageSize(path);
  const size = targetSize(w, h, maxPixels);
  return { rows: size.height / PATCH, cols: size.width / PATCH, width: size.width, height: size.height };
}

async function probeImages(samples: Sample[], maxPixels: number, T: number): Promise<Map<string, Grid>> {
  const grids = new Map<string, Grid>();
  for (const s of samples) {
    if (s.kind === 'text') continue;
    let g = grids.get(s.image);
    if (!g) {
      if (!existsSync(s.image)) throw new UvuError(`${where(s)}: image ${s.image}: no such file`);
      try {
        g = await probeImageGrid(s.image, maxPixels);
      } catch (err) {
        throw new UvuError(`${where(s)}: ${(err as Error).message}`);
      }
      grids.set(s.image, g);
    }
    const n = g.rows * g.cols;
    if (n + MIN_IMAGE_OVERHEAD > T) throw new UvuError(tooLong(s, g, n + MIN_IMAGE_OVERHEAD, T));
  }
  return grids;
}

function tooLong(s: Sample & { image: string }, g: Grid, length: number, T: number): string {
  return `${where(s)}: image ${s.image} (${g.width}×${g.height} px after resizing = ${g.rows * g.cols} codes) does not fit the context: the sample needs ${length} tokens, the context holds ${T}; lower --max-pixels or raise --context`;
}

function prepareTokenizer(o: DataBuildOptions, samples: Sample[]): ByteBpeTokenizer {
  let tok: ByteBpeTokenizer;
  if (o.tokenizer) {
    tok = ByteBpeTokenizer.load(o.tokenizer);
  } else {
    info(`training a byte-level BPE tokenizer (${o.trainTokenizer} ids) on ${samples.length} samples`);
    tok = ByteBpeTokenizer.train(sampleTexts(samples), { vocabSize: o.trainTokenizer!, specialTokens: SPECIAL_TOKENS });
  }
  const src = o.tokenizer ?? 'trained tokenizer';
  if (tok.specialTokens.length !== SPECIAL_TOKENS.length || tok.specialTokens.some((t, i) => t !== SPECIAL_TOKENS[i])) {
    throw new UvuError(`${src}: special tokens [${tok.specialTokens.slice(0, 8).join(' ')} …] differ from uvu's vocabulary [${SPECIAL_TOKENS.slice(0, 8).join(' ')} …] (${SPECIAL_TOKENS.length} in all); ids would not match`);
  }
  return tok;
}

function* sampleTexts(samples: Sample[]): Iterable<string> {
  for (const s of samples) {
    if (s.kind === 'qa') {
      for (const t of [s, ...(s.turns ?? [])]) {
        yield t.prompt;
        yield t.answer;
      }
    } else yield s.text;
  }
}

/** Text ids and exact length of every sample; an image sample longer than T is refused. */
function planUnits(samples: Sample[], grids: Map<string, Grid>, tok: ByteBpeTokenizer, vocab: Vocab, T: number): Unit[] {
  return samples.map((s, i) => {
    if (s.kind === 'text') {
      const seq = buildSequence({ kind: 'text', text: tok.encode(s.text) }, vocab);
      return { sample: i, length: seq.ids.length, seq, texts: [] };
    }
    const g = grids.get(s.image)!;
    const texts = s.kind === 'caption' ? [tok.encode(s.text)] : [s, ...(s.turns ?? [])].flatMap((t) => [tok.encode(t.prompt), tok.encode(t.answer)]);
    const lens = texts.map((t) => t.length);
    const length = s.kind === 'qa' && s.turns ? dialogLength(g.rows * g.cols, lens) : sequenceLength(s.kind, g.rows * g.cols, lens);
    if (length > T) throw new UvuError(tooLong(s, g, length, T));
    return { sample: i, length, seq: null, texts };
  });
}

/** Rows of one split (unit indices `ids`, in their shuffled order); only texts may be cut. */
function planRows(units: Unit[], ids: number[], T: number): RowPlan[] {
  const rows = packSequences(ids.map((u) => units[u]!.length), T, { splittable: (j) => units[ids[j]!]!.seq !== null });
  return rows.map((r) => r.map((p) => ({ ...p, seq: ids[p.seq]! })));
}

/** Seeded train/val assignment per sample, then a seeded shuffle within each split (rows mix sources). */
function splitUnits(units: Unit[], valFraction: number, seed: number): Record<Split, number[]> {
  const rng = new Rng(seed);
  const out: Record<Split, number[]> = { train: [], val: [] };
  units.forEach((_, i) => (rng.next() < valFraction ? out.val : out.train).push(i));
  // Keep both splits non-empty when there is anything to split.
  if (valFraction > 0 && out.val.length === 0 && out.train.length > 1) out.val.push(out.train.pop()!);
  if (out.train.length === 0 && out.val.length > 0) out.train.push(out.val.pop()!);
  rng.shuffle(out.train);
  rng.shuffle(out.val);
  return out;
}

/** Move the finished folder into place; with overwrite, the old dataset is removed only after. */
function publish(tmp: string, out: string, overwrite: boolean): void {
  if (existsSync(out)) {
    const empty = statSync(out).isDirectory() && readdirSync(out).length === 0;
    if (!empty && !overwrite) throw new UsageError(`${out} already exists; remove it, choose another --out, or pass --overwrite`);
    const old = `${out}.old-${process.pid}`;
    renameSync(out, old);
    renameSync(tmp, out);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, out);
  }
}

interface TokenizedImage extends ImageCodes {
  width: number;
  height: number;
  pixels: Uint8Array;
}

class DatasetWriter {
  /** f_k over the train split's image targets. */
  readonly codeCounts: Float64Array;
  private readonly cache = new Map<string, TokenizedImage>();

  constructor(
    private readonly dir: string,
    private readonly o: ResolvedOptions,
    private readonly samples: Sample[],
    private readonly units: Unit[],
    private readonly grids: Map<string, Grid>,
    private readonly coder: ImageCoder,
    private readonly vocab: Vocab,
  ) {
    this.codeCounts = new Float64Array(coder.K);
  }

  /** Tokenize an image exactly as `tokenizeImage` does (resize policy, patchify, coder). */
  private async image(s: Sample & { image: string }): Promise<TokenizedImage> {
    const hit = this.cache.get(s.image);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(s.image);
      this.cache.set(s.image, hit);
      return hit;
    }
    const img = await loadImage(s.image, { maxPixels: this.o.maxPixels });
    const { patches, rows, cols } = patchify(img);
    const g = this.grids.get(s.image)!;
    if (rows !== g.rows || cols !== g.cols) throw new UvuError(`${where(s)}: image ${s.image} decoded to a ${rows}×${cols} grid, its header promised ${g.rows}×${g.cols}`);
    const codes = this.coder.encode(patches, rows * cols, { rows, cols });
    const t: TokenizedImage = { codes, rows, cols, width: img.width, height: img.height, pixels: img.data };
    this.cache.set(s.image, t);
    if (this.cache.size > IMAGE_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    return t;
  }

  private async sequence(piece: Piece): Promise<{ seq: Sequence; image: TokenizedImage | null }> {
    const u = this.units[piece.seq]!;
    if (u.seq) return { seq: slicePiece(u.seq, piece.from, piece.to), image: null };
    const s = this.samples[u.sample]!;
    if (s.kind === 'text') throw new Error('text units carry their sequence');
    const image = await this.image(s);
    const seq = s.kind === 'caption'
      ? buildSequence({ kind: 'caption', image, text: u.texts[0]! }, this.vocab)
      : s.turns
        ? buildDialogSequence(image, Array.from({ length: u.texts.length / 2 }, (_, k) => ({ prompt: u.texts[2 * k]!, answer: u.texts[2 * k + 1]! })), this.vocab)
        : buildSequence({ kind: 'qa', image, prompt: u.texts[0]!, answer: u.texts[1]! }, this.vocab);
    if (seq.ids.length !== u.length) throw new Error(`internal: sample ${where(s)} has ${seq.ids.length} tokens, planned ${u.length}`);
    return { seq, image };
  }

  async writeSplit(split: Split, plan: RowPlan[], tick: () => void): Promise<{ shards: ShardEntry[]; counts: SplitCounts }> {
    const T = this.o.context;
    const { vocab } = this;
    const counts: SplitCounts = { samples: { caption: 0, qa: 0, text: 0 }, sequences: 0, rows: plan.length, tokens: 0, images: 0, imageTargets: 0, textTargets: 0, sftTargets: 0, fillRatio: 0 };
    const shards: ShardEntry[] = [];
    let shard: ShardWriter | null = null;
    for (const pieces of plan) {
      if (!shard) shard = new ShardWriter(this.dir, shardBaseName(split, shards.length), T);
      const seqs: Sequence[] = [];
      const imgs: (TokenizedImage | null)[] = [];
      for (const piece of pieces) {
        const { seq, image } = await this.sequence(piece);
        seqs.push(seq);
        imgs.push(image);
        counts.sequences++;
        counts.tokens += seq.ids.length;
        if (piece.from === 0) counts.samples[this.samples[this.units[piece.seq]!.sample]!.kind]++;
      }
      const row = assembleRow(seqs, T, vocab.pad);
      const images: RowImage[] = row.images.map((p) => {
        const img = imgs[p.seq]!;
        return { start: p.start, rows: p.rows, cols: p.cols, width: img.width, height: img.height, pixels: img.pixels };
      });
      counts.images += images.length;
      for (let t = 0; t < T - 1; t++) {
        const f = row.flags[t]!;
        const y = row.ids[t + 1]!;
        if (f & FLAG_LOSS_SFT) counts.sftTargets++;
        if ((f & FLAG_LOSS_PRETRAIN) === 0) continue;
        if (vocab.isImageId(y)) {
          counts.imageTargets++;
          if (split === 'train') this.codeCounts[y - vocab.imageOffset]!++;
        } else counts.textTargets++;
      }
      shard.add({ ids: row.ids, flags: row.flags, images });
      tick();
      if (shard.bytes >= this.o.shardBytes) {
        shards.push(shard.finish());
        shard = null;
      }
    }
    if (shard) shards.push(shard.finish());
    counts.fillRatio = plan.length > 0 ? counts.tokens / (plan.length * T) : 0;
    return { shards, counts };
  }
}
