/**
 * CLI plumbing shared by every command: option parsers that fail as usage errors (exit 2),
 * the --json / --quiet contract, and the one place that turns errors into exit codes.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { UvuError } from '../util/errors.js';
import { unwritableReason } from '../util/atomic.js';
import { fsErrorReason } from '../util/fserror.js';
import { setQuiet } from '../util/progress.js';

/** Largest integer a flag may hold: 2^53 − 1 (beyond it a JavaScript number is no longer exact). */
const MAX_FLAG_INT = Number.MAX_SAFE_INTEGER;
const SAFE_RANGE = `at most 2^53 − 1 = ${MAX_FLAG_INT}`;

/** Parse a positive integer option value ("200000", "200_000" and "200k" accepted), at most 2^53 − 1. */
export function parsePositiveInt(value: string): number {
  const m = /^(\d[\d_]*)([kKmM]?)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  const base = Number(m[1]!.replaceAll('_', ''));
  const mult = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[m[2]!]!;
  const v = base * mult;
  if (v < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  if (!Number.isSafeInteger(v)) throw new InvalidArgumentError(`expected a positive integer ${SAFE_RANGE}, got "${value}"`);
  return v;
}

/** Parse a non-negative integer (seeds, δ), at most 2^53 − 1. */
export function parseNonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  const v = Number(value);
  if (!Number.isSafeInteger(v)) throw new InvalidArgumentError(`expected a non-negative integer ${SAFE_RANGE}, got "${value}"`);
  return v;
}

/** Parse a finite non-negative decimal number ("0.7", "1e-3", ".5"); no hex, no empty string, no Infinity. */
export function parseNonNegative(value: string): number {
  const v = /^\+?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`expected a finite non-negative number, got "${value}"`);
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

/**
 * Refuse an output path that cannot be written (a directory, a missing folder) before the
 * command does any work: `OUT: cannot write: is a directory`.
 */
export function checkOutputPath(path: string): void {
  const why = unwritableReason(path);
  if (why) throw new UvuError(`${path}: cannot write: ${why}`);
}

/** One line for the user: no newline inside (a message quoting a file's bytes could hold one). */
function oneLine(message: string): string {
  return message.replace(/[\r\n]+/g, ' ');
}

/** Turn any error into a one-line message on stderr and an exit code (1 input, 2 usage). */
export function reportError(err: unknown): number {
  if (err instanceof UvuError) {
    process.stderr.write(`uvu: error: ${oneLine(err.message)}\n`);
    return err.exitCode;
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.path === 'string') {
    process.stderr.write(`uvu: error: ${oneLine(`${e.path}: ${fsErrorReason(e.path, e)}`)}\n`);
    return 1;
  }
  process.stderr.write(`uvu: internal error: ${e?.stack ?? String(err)}\n`);
  return 1;
}

/** Exit status of a job stopped by Ctrl-C (128 + SIGINT), as shells report it. */
export const EXIT_INTERRUPTED = 130;

/**
 * Runs a long, resumable job with Ctrl-C as a clean stop: the first SIGINT aborts the job's
 * signal, so it stops at its next safe point (after the current image or step) with its resume
 * state written; a second Ctrl-C ends the process at once, as usual.
 */
export async function withInterrupt<T>(job: (signal: AbortSignal) => Promise<T>): Promise<{ result: T; interrupted: boolean }> {
  const controller = new AbortController();
  const onSigint = (): void => {
    process.off('SIGINT', onSigint);
    process.stderr.write('uvu: interrupted: stopping at the next safe point (Ctrl-C again to quit at once)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const result = await job(controller.signal);
    return { result, interrupted: controller.signal.aborted };
  } finally {
    process.off('SIGINT', onSigint);
  }
}
