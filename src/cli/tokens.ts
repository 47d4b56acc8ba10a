/** `uvu tokenize`, `uvu reconstruct`, `uvu roundtrip`. */
import { Command, InvalidArgumentError } from 'commander';
import { loadCodebook } from '../codebook/file.js';
import { readTokenFile, reconstructImage, tokenizeImage } from '../tokens/tokenize.js';
import { HEAT_MAX_ERROR, roundtripImage } from '../tokens/roundtrip.js';
import { writePng } from '../image/io.js';
import { writeFileAtomic } from '../util/atomic.js';
import { applyOutputOptions, checkOutputPath, emit, fmt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';

/** Smallest pixel budget: one 32×32 patch. */
const MIN_MAX_PIXELS = 32 * 32;

/** --max-pixels: a positive integer (2^53 − 1 at most) of at least one patch. */
function parseMaxPixels(value: string): number {
  const v = parsePositiveInt(value);
  if (v < MIN_MAX_PIXELS) throw new InvalidArgumentError(`expected at least ${MIN_MAX_PIXELS} (one 32×32 patch), got "${value}"`);
  return v;
}

const maxPixelsOption = ['--max-pixels <n>', 'resize policy: scale so that w·h ≤ n (DESIGN §1)', parseMaxPixels, DEFAULT_MAX_PIXELS] as const;

export function tokenizeCommand(): Command {
  return withOutputOptions(
    new Command('tokenize')
      .argument('<image>', 'image file (JPEG, PNG, WebP, GIF, TIFF)')
      .requiredOption('--codebook <file>', 'codebook file')
      .option('--out <file>', 'write the tokens JSON here instead of stdout')
      .option(...maxPixelsOption),
  ).action(async (image: string, o: OutputOptions & { codebook: string; out?: string; maxPixels: number }) => {
    applyOutputOptions(o);
    if (o.out) checkOutputPath(o.out);
    const cb = loadCodebook(o.codebook);
    const { tokens } = await tokenizeImage(image, cb, { maxPixels: o.maxPixels });
    const text = JSON.stringify(tokens);
    if (o.out) {
      writeFileAtomic(o.out, `${text}\n`);
      emit(o, { out: o.out, width: tokens.width, height: tokens.height, rows: tokens.rows, cols: tokens.cols, k: tokens.k }, () => `wrote ${o.out}: ${tokens.rows}×${tokens.cols} tokens`);
    } else {
      process.stdout.write(`${text}\n`);
    }
  });
}

export function reconstructCommand(): Command {
  return withOutputOptions(
    new Command('reconstruct')
      .argument('<tokens>', 'tokens JSON written by `uvu tokenize`')
      .requiredOption('--codebook <file>', 'codebook file')
      .requiredOption('--out <png>', 'PNG to write'),
  ).action(async (tokensPath: string, o: OutputOptions & { codebook: string; out: string }) => {
    applyOutputOptions(o);
    checkOutputPath(o.out);
    const tokens = readTokenFile(tokensPath);
    const cb = loadCodebook(o.codebook);
    const img = reconstructImage(tokens, cb, tokensPath);
    await writePng(o.out, img);
    emit(o, { out: o.out, width: img.width, height: img.height }, () => `wrote ${o.out} (${img.width}×${img.height})`);
  });
}

export function roundtripCommand(): Command {
  return withOutputOptions(
    new Command('roundtrip')
      .argument('<image>', 'image file')
      .requiredOption('--codebook <file>', 'codebook file')
      .requiredOption('--out <png>', `PNG to write: original | reconstruction | error heat-map (white = mean error ≥ ${HEAT_MAX_ERROR}/255)`)
      .option(...maxPixelsOption),
  ).action(async (image: string, o: OutputOptions & { codebook: string; out: string; maxPixels: number }) => {
    applyOutputOptions(o);
    checkOutputPath(o.out);
    const r = await roundtripImage(image, loadCodebook(o.codebook), o.out, o.maxPixels);
    emit(o, r, () => `wrote ${r.out}: ${r.rows}×${r.cols} patches, PRP ${fmt(r.prp)}, PSNR ${fmt(r.psnr, 2)} dB, MSE ${r.mse.toExponential(3)}`);
  });
}
