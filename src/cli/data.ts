/** `uvu data build|info`: the packed sequence dataset the model trains on (DESIGN §6–§7). */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { DataBuildOptions, DataBuildSummary } from '../data/build.js';
import { SeqDataset, SPLITS, type Split } from '../data/dataset.js';
import { FLAG_VISUAL } from '../data/sequence.js';
import { TEXT_SOURCES, type TextSource } from '../text/corpus.js';
import { UsageError } from '../util/errors.js';
import { collect, applyOutputOptions, emit, fmt, parseNonNegative, parseNonNegativeInt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';

function parseTextSources(value: string): TextSource[] {
  const names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) if (!TEXT_SOURCES.includes(n as TextSource)) throw new InvalidArgumentError(`unknown text source "${n}" (known: ${TEXT_SOURCES.join(', ')})`);
  return names as TextSource[];
}

/** A decimal number in [0, 1) (the validation fraction). */
function parseFraction(value: string): number {
  const v = parseNonNegative(value);
  if (!(v < 1)) throw new InvalidArgumentError(`expected a number in [0, 1), got "${value}"`);
  return v;
}

/** A finite decimal number > 0 (the shard size in MiB). */
function parsePositiveNumber(value: string): number {
  const v = parseNonNegative(value);
  if (!(v > 0)) throw new InvalidArgumentError(`expected a positive number, got "${value}"`);
  return v;
}


/** The build options as commander parses them: defaults filled in, shard size in MiB. */
type BuildFlags = OutputOptions &
  Omit<DataBuildOptions, 'shardBytes'> &
  Required<Pick<DataBuildOptions, 'context' | 'maxPixels' | 'valFraction' | 'seed'>> & { shardMb: number };

export function dataCommand(): Command {
  const cmd = new Command('data');

  withOutputOptions(
    cmd
      .command('build')
      .description('tokenize images (codebook or VQ) and text into hybrid sequences packed to a fixed context, written as binary shards')
      .requiredOption('--out <dir>', 'dataset folder to create')
      .requiredOption('--image-tokenizer <file>', 'codebook (uvu codebook build) or VQ-VAE (uvu vq train) file')
      .option('--samples <file.jsonl>', 'sample JSONL (caption / question-answer / text lines); repeatable', collect)
      .option('--photos <spec>', '"bundled" (the npm photos) or image files/folders/globs, captioned automatically; repeatable', collect)
      .option('--text <sources>', `public-domain text for text-only samples, comma-separated (${TEXT_SOURCES.join(', ')})`, parseTextSources)
      .option('--text-docs <n>', 'use at most n text documents (a seeded sample)', parsePositiveInt)
      .option('--tokenizer <file>', 'existing tokenizer.json (Hugging Face format)')
      .option('--train-tokenizer <vocab-size>', 'train a byte-level BPE with this many text ids on the text and the samples', parsePositiveInt)
      .option('--context <T>', 'context length: tokens per row', parsePositiveInt, 512)
      .option('--max-pixels <n>', 'image resize policy: w·h ≤ n (DESIGN §1)', parsePositiveInt, DEFAULT_MAX_PIXELS)
      .option('--val-fraction <f>', 'share of sequences held out for validation', parseFraction, 0.05)
      .option('--seed <s>', 'seed for the split, the shuffle and the text-document sample', parseNonNegativeInt, 0)
      .addOption(new Option('--shard-mb <n>', 'start a new shard after this many MiB of rows + pixels').argParser(parsePositiveNumber).default(256))
      .option('--overwrite', 'replace an existing dataset at --out'),
  ).action(async (o: BuildFlags) => {
    applyOutputOptions(o);
    if (o.tokenizer && o.trainTokenizer) throw new UsageError('data build: give either --tokenizer or --train-tokenizer, not both');
    // Loaded here, so that `data info` starts without the image and model stack.
    const [{ buildDataset }, { initEngine }] = await Promise.all([import('../data/build.js'), import('../engine/tf.js')]);
    await initEngine(); // a VQ-VAE image tokenizer runs on it
    const summary = await buildDataset({
      out: o.out,
      imageTokenizer: o.imageTokenizer,
      samples: o.samples,
      photos: o.photos,
      text: o.text,
      textDocs: o.textDocs,
      tokenizer: o.tokenizer,
      trainTokenizer: o.trainTokenizer,
      context: o.context,
      maxPixels: o.maxPixels,
      valFraction: o.valFraction,
      seed: o.seed,
      shardBytes: Math.ceil(o.shardMb * 2 ** 20),
      overwrite: o.overwrite,
    });
    emit(o, summary, () => formatSummary(summary));
  });

  withOutputOptions(
    cmd
      .command('info')
      .description('summarise a dataset; --verify checks every file hash; --row shows one row')
      .argument('<dir>', 'dataset folder')
      .option('--verify', 'check the sha256 of every file against the manifest')
      .option('--row <split:index>', 'print one row: its tokens as text, images as [img RxC]'),
  ).action(async (dir: string, o: OutputOptions & { verify?: boolean; row?: string }) => {
    applyOutputOptions(o);
    // Shard hashes only with --verify (info stays quick); sizes, tables and small files always.
    const ds = SeqDataset.open(dir, { verify: Boolean(o.verify) });
    try {
      const m = ds.manifest;
      const result: Record<string, unknown> = { dir, contextLength: m.contextLength, vocab: m.vocab, imageCoder: m.imageCoder, splits: Object.fromEntries(SPLITS.map((s) => [s, { rows: m.splits[s].rows, shards: m.splits[s].shards.length }])), counts: m.counts, verified: Boolean(o.verify) };
      if (o.row) result.row = showRow(ds, o.row);
      emit(o, result, () =>
        [
          `${dir}: T = ${m.contextLength}, vocabulary ${ds.vocab().size} (text ${m.vocab.textSize}, specials, K = ${m.vocab.K} from ${m.imageCoder.kind} ${m.imageCoder.path})`,
          ...SPLITS.map((s) => `${s.padEnd(5)}  ${splitLine(m.counts[s])} in ${m.splits[s].shards.length} shard(s)`),
          ...(o.verify ? ['every file matches its sha256'] : []),
          ...(o.row ? [String(result.row)] : []),
        ].join('\n'),
      );
    } finally {
      ds.close();
    }
  });

  return cmd;
}

function showRow(ds: SeqDataset, spec: string): string {
  const m = /^(train|val):(\d+)$/.exec(spec);
  if (!m) throw new UsageError(`--row: expected split:index such as train:0, got "${spec}"`);
  const split = m[1] as Split;
  const index = Number(m[2]);
  if (index >= ds.rows(split)) throw new UsageError(`--row: ${split} has ${ds.rows(split)} rows`);
  const row = ds.row(split, index);
  const tok = ds.tokenizer();
  const vocab = ds.vocab();
  const parts: string[] = [];
  let text: number[] = [];
  const flush = () => {
    if (text.length) parts.push(tok.decode(text));
    text = [];
  };
  // Trailing padding is left out.
  let end = row.ids.length;
  while (end > 0 && row.ids[end - 1] === vocab.pad) end--;
  let t = 0;
  while (t < end) {
    const img = row.images.find((i) => i.start === t);
    if (img) {
      flush();
      parts.push(`[img ${img.rows}×${img.cols}]`);
      t += img.rows * img.cols;
      continue;
    }
    if ((row.flags[t]! & FLAG_VISUAL) === 0 && !vocab.isImageId(row.ids[t]!)) text.push(row.ids[t]!);
    t++;
  }
  flush();
  return parts.join('');
}

function splitLine(c: DataBuildSummary['counts'][Split]): string {
  return `${c.rows} rows, ${c.samples.caption} captions, ${c.samples.qa} QA, ${c.samples.text} texts (${c.sequences} sequences), ${c.tokens} tokens, fill ${fmt(c.fillRatio, 3)}, ${c.imageTargets} image / ${c.textTargets} text targets, ${c.sftTargets} SFT targets`;
}

export function formatSummary(s: DataBuildSummary): string {
  const top = s.topCodes.slice(0, 5).map((c) => `${c.code} (${(100 * c.share).toFixed(1)}%)`).join(', ');
  return [
    `wrote ${s.out}: T = ${s.contextLength}, vocabulary ${s.vocabSize} = ${s.textSize} text + specials + K = ${s.K} (${s.coder.kind}), ${s.seconds.toFixed(1)} s`,
    ...SPLITS.map((sp) => `${sp.padEnd(5)}  ${splitLine(s.counts[sp])}`),
    `codes used as train targets: ${s.codesUsed} of ${s.K}; most frequent: ${top || '(none)'}`,
  ].join('\n');
}
