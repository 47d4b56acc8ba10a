/** `uvu ask` and `uvu complete-image`: run a trained checkpoint. */
import { Command } from 'commander';
import { writePng } from '../image/io.js';
import { ModelSession } from '../infer/session.js';
import { sideBySide } from '../tokens/roundtrip.js';
import { applyOutputOptions, checkOutputPath, emit, fmt, parseNonNegative, parseNonNegativeInt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';
import { initEngine } from '../engine/tf.js';

const temperatureOption = ['--temperature <t>', 'sampling temperature; 0 = greedy', parseNonNegative, 0] as const;
const seedOption = ['--seed <n>', 'seed of temperature sampling', parseNonNegativeInt, 0] as const;

export function askCommand(): Command {
  return withOutputOptions(
    new Command('ask')
      .argument('<question>', 'the question, e.g. "How many apples are there?"')
      .requiredOption('--checkpoint <dir>', 'checkpoint directory (<run>/checkpoint)')
      .requiredOption('--image <file>', 'image file')
      .option('--max-tokens <n>', 'longest answer in tokens', parsePositiveInt, 32)
      .option(...temperatureOption)
      .option(...seedOption),
  ).action(async (question: string, o: OutputOptions & { checkpoint: string; image: string; maxTokens: number; temperature: number; seed: number }) => {
    applyOutputOptions(o);
    await initEngine();
    const session = ModelSession.load(o.checkpoint);
    const stream = !o.json;
    const answer = await session.ask(o.image, question, {
      maxNewTokens: o.maxTokens,
      temperature: o.temperature,
      seed: o.seed,
      onText: stream ? (delta) => process.stdout.write(delta) : undefined,
    });
    session.dispose();
    if (o.json) emit(o, { question, answer, image: o.image, checkpoint: o.checkpoint }, () => answer);
    else process.stdout.write('\n');
  });
}

export function completeImageCommand(): Command {
  return withOutputOptions(
    new Command('complete-image')
      .requiredOption('--checkpoint <dir>', 'checkpoint directory (<run>/checkpoint)')
      .requiredOption('--image <file>', 'image file')
      .requiredOption('--keep-rows <r>', 'patch rows (32 px each) given to the model', parseNonNegativeInt)
      .requiredOption('--out <png>', 'PNG: original | completion | image coder reconstruction of the true codes')
      .option('--coder <file>', 'image coder (codebook or VQ) to use instead of the one recorded in the checkpoint')
      .option(...temperatureOption)
      .option(...seedOption),
  ).action(async (o: OutputOptions & { checkpoint: string; image: string; keepRows: number; out: string; coder?: string; temperature: number; seed: number }) => {
    applyOutputOptions(o);
    checkOutputPath(o.out);
    await initEngine();
    const session = ModelSession.load(o.checkpoint);
    const r = await session.completeImage(o.image, o.keepRows, { coder: o.coder, temperature: o.temperature, seed: o.seed });
    session.dispose();
    await writePng(o.out, sideBySide([r.original, r.completed, r.coderReconstruction]));
    const result = { out: o.out, rows: r.rows, cols: r.cols, keepRows: r.keepRows, predicted: (r.rows - r.keepRows) * r.cols, codeAccuracy: r.codeAccuracy, psnrCompleted: r.psnrCompleted, psnrCoder: r.psnrCoder };
    emit(o, result, () =>
      [
        `wrote ${o.out}: original | completion | coder reconstruction`,
        `predicted ${result.predicted} patches (rows ${r.keepRows}…${r.rows - 1}): ${fmt(100 * r.codeAccuracy, 1)}% codes exact`,
        `PSNR of the predicted rows: completion ${fmt(r.psnrCompleted, 2)} dB, coder's own reconstruction ${fmt(r.psnrCoder, 2)} dB`,
      ].join('\n'),
    );
  });
}
