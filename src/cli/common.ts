/**
 * CLI plumbing shared by every command: option parsers that fail as usage errors (exit 2),
 * the --json / --quiet contract, and the one place that turns errors into exit codes.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { UvuError } from '../util/errors.js';
import { setQuiet } from '../util/progress.js';

/** Parse a positive integer option value ("200000", "200_000" and "200k" accepted). */
export function parsePositiveInt(value: string): number {
  const m = /^(\d[\d_]*)([kKmM]?)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  const base = Number(m[1]!.replaceAll('_', ''));
  const mult = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[m[2]!]!;
  const v = base * mult;
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return v;
}

/** Parse a non-negative integer (seeds, δ). */
export function parseNonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  return Number(value);
}

/** Parse a finite non-negative number. */
export function parseNonNegative(value: string): number {
  const v = Number(value);
  if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`expected a non-negative number, got "${value}"`);
  return v;
}

/** Option parser for repeatable options: each occurrence is appended (`--samples a --samples b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
}

/** Adds --json and --quiet to a command. */
export function withOutputOptions(cmd: Command): Command {
  return cmd.option('--json', 'print exactly one JSON object on stdout').option('-q, --quiet', 'no progress bars or log lines on stderr');
}

/** Apply --quiet before work starts. --json keeps stdout clean; logs and bars go to stderr anyway. */
export function applyOutputOptions(opts: OutputOptions): void {
  setQuiet(Boolean(opts.quiet));
}

/** Print the command's result: one JSON object with --json, else human-readable lines. */
export function emit(opts: OutputOptions, result: object, human: () => string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(result, jsonNumbers)}\n`);
  else process.stdout.write(`${human()}\n`);
}

/** JSON has no Infinity/NaN: write them as strings so the object stays parseable and honest. */
function jsonNumbers(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}

/** Format a number with a fixed number of significant decimals for humans. */
export const fmt = (x: number, digits = 4): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** Turn any error into a one-line message on stderr and an exit code (1 input, 2 usage). */
export function reportError(err: unknown): number {
  if (err instanceof UvuError) {
    process.stderr.write(`uvu: error: ${err.message}\n`);
    return err.exitCode;
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.path === 'string') {
    process.stderr.write(`uvu: error: ${e.path}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.code}\n`);
    return 1;
  }
  process.stderr.write(`uvu: internal error: ${e?.stack ?? String(err)}\n`);
  return 1;
}
