/**
 * `npm run bench -- [--only search,kmeans,store,ablation,uvu] [--size small|full] [--no-write]`
 *
 * Runs the selected benchmark modules one after another (never in parallel: the machine is
 * small and shared) and replaces each one's section of BENCHMARKS.md with the rows it measured,
 * the exact command, the date and the machine.
 */
import { readFileSync, existsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { Command, Option } from 'commander';
import { writeFileAtomic } from '../src/util/atomic.js';
import { blasInfo } from '../src/linalg/blas.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

type BenchModule = { run: (o: { size: BenchSize }) => Promise<BenchRow[]> };
const BENCHES: Record<string, () => Promise<BenchModule>> = {
  search: () => import('./search.js'),
  kmeans: () => import('./kmeans.js'),
  store: () => import('./store.js'),
  ablation: () => import('./ablation.js'),
  // K = 4096: an hour-scale run, so not part of the default set.
  'ablation-large': async () => ({ run: (await import('./ablation.js')).runLarge }),
  uvu: () => import('./uvu.js'),
};
const DEFAULT_SET = ['search', 'kmeans', 'store', 'ablation', 'uvu'];
const FILE = 'BENCHMARKS.md';

function machine(): string {
  const blas = blasInfo();
  return [
    `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `Node ${process.version}`,
    `BLAS ${blas.backend}${blas.library ? ` (${blas.library}, ${blas.threads ?? '?'} threads)` : ''}`,
    `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} OPENBLAS_L2_SIZE=${process.env.OPENBLAS_L2_SIZE ?? '(unset)'}`,
  ].join('; ');
}

function markdownTable(rows: BenchRow[]): string {
  const cell = (s: string) => s.replaceAll('|', '\\|');
  const value = (v: number) => (!Number.isFinite(v) ? '—' : Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));
  return ['| config | metric | value | unit | note |', '|---|---|---:|---|---|', ...rows.map((r) => `| ${cell(r.config)} | ${cell(r.metric)} | ${value(r.value)} | ${r.unit} | ${cell(r.note ?? '')} |`)].join('\n');
}

/** Replace (or append) the section between <!-- bench:NAME --> markers. */
function writeSection(name: string, body: string): void {
  const begin = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const text = existsSync(FILE) ? readFileSync(FILE, 'utf8') : '# Benchmarks\n';
  const section = `${begin}\n${body}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  const next = i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : `${text.trimEnd()}\n\n${section}\n`;
  writeFileAtomic(FILE, next);
}

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
