/** `uvu tokenize`, `uvu reconstruct`, `uvu roundtrip`. */
import { Command } from 'commander';
import { loadCodebook, type Codebook } from '../codebook/file.js';
import { readTokenFile, reconstructImage, tokenizeImage } from '../tokens/tokenize.js';
import { errorHeatmap, sideBySide, HEAT_MAX_ERROR } from '../tokens/roundtrip.js';
import { writePng } from '../image/io.js';
import { writeFileAtomic } from '../util/atomic.js';
import { applyOutputOptions, emit, fmt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';

const maxPixelsOption = ['--max-pixels <n>', 'resize policy: scale so that w·h ≤ n (DESIGN §1)'] as const;

export function tokenizeCommand(): Command {
  return withOutputOptions(
    new Command('tokenize')
      .description('turn an image into codebook token ids {width, height, rows, cols, ids}')
      .argument('<image>', 'image file (JPEG, PNG, WebP, GIF, TIFF)')
      .requiredOption('--codebook <file>', 'codebook file')
      .option('--out <file>', 'write the tokens JSON here instead of stdout')
      .option(...maxPixelsOption, parsePositiveInt, 512 * 512),
  ).action(async (image: string, o: OutputOptions & { codebook: string; out?: string; maxPixels: number }) => {
    applyOutputOptions(o);
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
      .description('rebuild an image from token ids with the codebook (no decoder network)')
      .argument('<tokens>', 'tokens JSON written by `uvu tokenize`')
      .requiredOption('--codebook <file>', 'codebook file')
      .requiredOption('--out <png>', 'PNG to write'),
  ).action(async (tokensPath: string, o: OutputOptions & { codebook: string; out: string }) => {
    applyOutputOptions(o);
    const tokens = readTokenFile(tokensPath);
    const cb = loadCodebook(o.codebook);
    const img = reconstructImage(tokens, cb);
    await writePng(o.out, img);
    emit(o, { out: o.out, width: img.width, height: img.height }, () => `wrote ${o.out} (${img.width}×${img.height})`);
  });
}

/** Tokenize, reconstruct and write original | reconstruction | error heat-map. */
export async function roundtrip(image: string, cb: Codebook, out: string, maxPixels: number) {
  const { tokens, image: original, metrics } = await tokenizeImage(image, cb, { maxPixels });
  const recon = reconstructImage(tokens, cb);
  await writePng(out, sideBySide([original, recon, errorHeatmap(original, recon)]));
  return { out, prp: metrics.prp, psnr: metrics.psnr, mse: metrics.mse, rows: tokens.rows, cols: tokens.cols, k_active: metrics.k_active };
}

export function roundtripCommand(): Command {
  return withOutputOptions(
    new Command('roundtrip')
      .description(`tokenize + reconstruct; write original | reconstruction | error heat-map (white = mean error ≥ ${HEAT_MAX_ERROR}/255) and print PRP/PSNR`)
      .argument('<image>', 'image file')
      .requiredOption('--codebook <file>', 'codebook file')
      .requiredOption('--out <png>', 'PNG to write')
      .option(...maxPixelsOption, parsePositiveInt, 512 * 512),
  ).action(async (image: string, o: OutputOptions & { codebook: string; out: string; maxPixels: number }) => {
    applyOutputOptions(o);
    const r = await roundtrip(image, loadCodebook(o.codebook), o.out, o.maxPixels);
    emit(o, r, () => `wrote ${r.out}: ${r.rows}×${r.cols} patches, PRP ${fmt(r.prp)}, PSNR ${fmt(r.psnr, 2)} dB, MSE ${r.mse.toExponential(3)}`);
  });
}
