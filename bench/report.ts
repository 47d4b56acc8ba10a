/** Writing measured results into BENCHMARKS.md: the machine line, row tables, marker sections. */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { blasInfo } from '../src/linalg/blas.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import type { BenchRow } from './rows.js';

const FILE = 'BENCHMARKS.md';

/** One line naming the CPU, memory, Node, BLAS and the OpenBLAS settings in force. */
export function machine(): string {
  const blas = blasInfo();
  return [
    `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `Node ${process.version}`,
    `BLAS ${blas.backend}${blas.library ? ` (${blas.library}, ${blas.threads ?? '?'} threads)` : ''}`,
    `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'} OPENBLAS_L2_SIZE=${process.env.OPENBLAS_L2_SIZE ?? '(unset)'}`,
  ].join('; ');
}

export function markdownTable(rows: BenchRow[]): string {
  const cell = (s: string) => s.replaceAll('|', '\\|');
  const value = (v: number) => (!Number.isFinite(v) ? '—' : Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));
  return ['| config | metric | value | unit | note |', '|---|---|---:|---|---|', ...rows.map((r) => `| ${cell(r.config)} | ${cell(r.metric)} | ${value(r.value)} | ${r.unit} | ${cell(r.note ?? '')} |`)].join('\n');
}

/** Replace (or append) the section between <!-- bench:NAME --> markers. */
export function writeSection(name: string, body: string): void {
  const begin = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const text = existsSync(FILE) ? readFileSync(FILE, 'utf8') : '# Benchmarks\n';
  const section = `${begin}\n${body}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  const next = i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : `${text.trimEnd()}\n\n${section}\n`;
  writeFileAtomic(FILE, next);
}
