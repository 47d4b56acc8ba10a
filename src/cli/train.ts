/** `uvu train --config FILE [--set path=value]… [--resume]`. */
import { Command } from 'commander';
import { loadTrainConfig } from '../train/config.js';
import { train } from '../train/train.js';
import { collect, applyOutputOptions, emit, EXIT_INTERRUPTED, fmt, withInterrupt, withOutputOptions, type OutputOptions } from './common.js';
import { initEngine } from '../engine/tf.js';

export function trainCommand(): Command {
  return withOutputOptions(
    new Command('train')
      .requiredOption('--config <file>', 'run config (JSON; see configs/ and README "Training")')
      .option('--set <path=value>', 'override a config field, e.g. --set steps=50 --set optim.lr=3e-4 (repeatable)', collect, [])
      .option('--resume', 'continue from <out>/checkpoint if it exists (same data order and results as an uninterrupted run)')
      .option('--no-verify', "skip the sha256 check of the dataset's shards when it is opened (sizes, tables and the tokenizer are still checked)"),
  ).action(async (o: OutputOptions & { config: string; set: string[]; resume?: boolean; verify: boolean }) => {
    applyOutputOptions(o);
    const config = loadTrainConfig(o.config, o.set);
    await initEngine(config.engine);
    const { result: s, interrupted } = await withInterrupt((signal) => train(config, { resume: o.resume, verify: o.verify, signal }));
    if (interrupted && s.steps < config.steps) {
      process.stderr.write(`uvu: stopped after step ${s.steps} of ${config.steps}; checkpoint ${s.checkpoint}; continue with --resume\n`);
      process.exitCode = EXIT_INTERRUPTED;
    }
    emit(o, { ...s, interrupted }, () =>
      [
        `${s.variant}/${s.stage}: ${s.steps} steps (from ${s.resumedFrom}) in ${fmt(s.seconds, 1)} s, ${Math.round(s.tokensPerSecond)} tokens/s, ${s.parameters.toLocaleString('en-US')} parameters`,
        `final loss ${fmt(s.finalLoss.total, 3)} (text ${fmt(s.finalLoss.text, 3)}${s.finalLoss.image !== null ? `, image ${fmt(s.finalLoss.image, 3)}` : ''})`,
        s.val ? `validation loss ${fmt(s.val.total, 3)} (text ${fmt(s.val.text, 3)}${s.val.image !== null ? `, image ${fmt(s.val.image, 3)}` : ''})` : 'validation: none',
        s.angle ? `gradient angle θ(L_image, L_text): mean ${fmt(s.angle.meanDeg, 1)}° over ${s.angle.n} measurements (first ${fmt(s.angle.firstDeg, 1)}°, last ${fmt(s.angle.lastDeg, 1)}°)` : 'gradient angle: not measured',
        s.balance ? `balanced sampling: kept ${fmt(100 * s.balance.meanKeptFraction, 1)}% of image targets, id entropy ${fmt(s.balance.meanEntropyBefore, 2)} → ${fmt(s.balance.meanEntropyAfter, 2)} bits` : 'balanced sampling: off',
        `checkpoint ${s.checkpoint}`,
        `log ${s.log}, curves ${s.plot}`,
      ].join('\n'),
    );
  });
}
