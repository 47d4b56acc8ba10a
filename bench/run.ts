/**
 * `npm run bench -- [--only search,kmeans,store,dataset,ablation,uvu,engine,train,train-vs-torch,generate,startup,distributed,serve] [--size small|full] [--no-write]`
 *
 * Runs the selected benchmark modules one after another (never in parallel: the machine is
 * small and shared) and replaces each one's section of BENCHMARKS.md with the rows it measured,
 * the exact command, the date and the machine.
 */
import { Command, Option } from 'commander';
import { machine, markdownTable, writeSection } from './report.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

type BenchModule = { run: (o: { size: BenchSize }) => Promise<BenchRow[]> };
const BENCHES: Record<string, () => Promise<BenchModule>> = {
  search: () => import('./search.js'),
  kmeans: () => import('./kmeans.js'),
  store: () => import('./store.js'),
  dataset: () => import('./dataset.js'),
  ablation: () => import('./ablation.js'),
  // K = 4096: an hour-scale run, so not part of the default set.
  'ablation-large': async () => ({ run: (await import('./ablation.js')).runLarge }),
  uvu: () => import('./uvu.js'),
  engine: () => import('./engine.js'),
  train: () => import('./train.js'),
  'train-vs-torch': () => import('./train-vs-torch.js'),
  'vision-step': () => import('./vision-step.js'),
  startup: () => import('./startup.js'),
  generate: () => import('./generate.js'),
  distributed: () => import('./distributed.js'),
  // Needs Debian's chromium; not part of the default set.
  serve: () => import('./serve.js'),
};
const DEFAULT_SET = ['search', 'kmeans', 'store', 'dataset', 'ablation', 'uvu', 'engine', 'train', 'generate', 'startup'];

const program = new Command('bench')
  .description('run uvu benchmarks and record them in BENCHMARKS.md')
  .option('--only <names>', `comma-separated subset of ${Object.keys(BENCHES).join(',')}`, DEFAULT_SET.join(','))
  .addOption(new Option('--size <size>', 'problem sizes').choices(['small', 'full']).default('full'))
  .option('--no-write', 'print the rows only, leave BENCHMARKS.md alone');
program.parse();
const opts = program.opts<{ only: string; size: BenchSize; write: boolean }>();

for (const name of opts.only.split(',').map((s) => s.trim())) {
  const load = BENCHES[name];
  if (!load) {
    console.error(`uvu bench: unknown benchmark "${name}" (have ${Object.keys(BENCHES).join(', ')})`);
    process.exit(2);
  }
  console.error(`running ${name} (${opts.size}) ...`);
  const rows = await (await load()).run({ size: opts.size });
  console.log(formatRows(rows));
  if (opts.write) {
    const command = `npm run bench -- --only ${name} --size ${opts.size}`;
    writeSection(name, `### ${name}\n\nCommand: \`${command}\` — measured ${new Date().toISOString().slice(0, 10)} on: ${machine()}.\n\n${markdownTable(rows)}`);
  }
}
