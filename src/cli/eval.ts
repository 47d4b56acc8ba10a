/** `uvu eval --checkpoint DIR --bench DIR`: per-task accuracy with 95 % bootstrap intervals. */
import { Command, Option } from 'commander';
import { join } from 'node:path';
import { ModelSession } from '../infer/session.js';
import { evaluateBench, writeEvalReport } from '../perception/eval.js';
import { ANSWER_TOKENS } from '../perception/gates.js';
import { progress } from '../util/progress.js';
import { applyOutputOptions, checkOutputPath, emit, fmt, parseNonNegativeInt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';
import { initEngine } from '../engine/tf.js';

export function evalCommand(): Command {
  return withOutputOptions(
    new Command('eval')
      .requiredOption('--checkpoint <dir>', 'checkpoint directory (<run>/checkpoint)')
      .requiredOption('--bench <dir>', 'benchmark made by `uvu bench-data build`')
      .addOption(new Option('--split <name>', 'benchmark split').choices(['test', 'train']).default('test'))
      .option('--limit <n>', 'score only the first n items (scene by scene, tasks interleaved)', parsePositiveInt)
      .option('--max-tokens <n>', 'longest answer generated, in tokens', parsePositiveInt, ANSWER_TOKENS)
      .option('--sheet <png>', 'PNG sheet of example predictions (default <checkpoint>/../eval-<split>.png)')
      .option('--report <json>', 'the report with every item, for `uvu serve` (default <checkpoint>/../eval-<split>.json)')
      .option('--seed <n>', 'seed of the bootstrap resampling', parseNonNegativeInt, 0),
  ).action(async (o: OutputOptions & { checkpoint: string; bench: string; split: 'test' | 'train'; limit?: number; maxTokens: number; sheet?: string; report?: string; seed: number }) => {
    applyOutputOptions(o);
    await initEngine();
    const session = ModelSession.load(o.checkpoint);
    const sheetPath = o.sheet ?? join(o.checkpoint, '..', `eval-${o.split}.png`);
    const reportPath = o.report ?? join(o.checkpoint, '..', `eval-${o.split}.json`);
    checkOutputPath(reportPath);
    let bar: ReturnType<typeof progress> | null = null;
    const report = await evaluateBench(o.bench, {
      split: o.split,
      limit: o.limit,
      seed: o.seed,
      sheetPath,
      answer: (item) => session.ask(join(o.bench, item.image), item.prompt, { maxNewTokens: o.maxTokens }),
      onItem: (done, total) => {
        bar ??= progress('eval', total, 'items');
        bar.set(done);
      },
    });
    (bar as ReturnType<typeof progress> | null)?.stop();
    session.dispose();
    writeEvalReport(reportPath, { ...report, checkpoint: o.checkpoint });
    const { items, ...summary } = report;
    emit(o, { ...summary, checkpoint: o.checkpoint, items: o.json ? items : undefined }, () =>
      [
        `${report.n} ${report.split} items in ${fmt(report.seconds, 1)} s (bootstrap seed ${report.seed})`,
        ...Object.entries(report.tasks).map(([task, s]) => `  ${task.padEnd(10)} ${fmt(100 * s!.accuracy, 1)}%  [${fmt(100 * s!.ci95[0], 1)}, ${fmt(100 * s!.ci95[1], 1)}]  n=${s!.n}`),
        `  ${'overall'.padEnd(10)} ${fmt(100 * report.overall.accuracy, 1)}%  [${fmt(100 * report.overall.ci95[0], 1)}, ${fmt(100 * report.overall.ci95[1], 1)}]`,
        `sheet ${report.sheet ?? '(none)'}`,
        `report ${reportPath}`,
      ].join('\n'),
    );
  });
}
