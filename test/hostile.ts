/**
 * Hostile-input testing (README "Files we read and how we check them"): seeded mutations of valid
 * files, and the one property every command must keep on any input:
 *   exit 0, or exit 1 with exactly one stderr line `uvu: error: …` that names the file (never a
 *   stack trace, a ZodError dump, a TypeError or "internal error"); no output left behind; peak
 *   memory under a cap.
 * Tests import this module; it holds no tests itself.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UvuError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Peak resident memory a command on a small hostile input may reach (MiB). */
export const DEFAULT_RSS_CAP_MIB = 1024;

export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
  /** Peak resident set size of the child (MiB), from process.resourceUsage() at exit. */
  maxRssMiB: number;
}

/** Runs `uvu ARGS` in `cwd` and records the child's peak memory (a preloaded exit hook writes it). */
export function runUvu(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): CliRun {
  const dir = mkdtempSync(join(tmpdir(), 'uvu-rss-'));
  const rssFile = join(dir, 'rss');
  const hook = `import { writeFileSync } from 'node:fs'; process.on('exit', () => writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS)));`;
  try {
    const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(hook)}`, CLI, ...args], {
      encoding: 'utf8',
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      timeout: 120_000,
    });
    const maxRssMiB = existsSync(rssFile) ? Number(readFileSync(rssFile, 'utf8')) / 1024 : NaN;
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, maxRssMiB };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface CleanFailureExpectation {
  /** A path (or part of one) the error line must name. */
  names: string;
  /** Paths that must not exist afterwards (outputs of the failed command). */
  noOutputs?: string[];
  /** Peak memory cap (MiB). */
  rssCapMiB?: number;
  /** Also accept exit 0 (a mutation that left the file valid). */
  allowSuccess?: boolean;
  /** Exit code expected on failure (1: the input; 2: usage). */
  exitCode?: 1 | 2;
}

/** Asserts the hostile-input property on one run; `label` says which mutation it was. */
export function assertCleanFailure(r: CliRun, e: CleanFailureExpectation, label: string): void {
  const ctx = `${label}\nexit ${r.status}\nstderr: ${r.stderr.slice(0, 2000)}`;
  assert.ok(!/internal error|\n\s+at |ZodError|TypeError|SyntaxError|RangeError|Maximum call stack/.test(r.stderr), `stack trace or internal error: ${ctx}`);
  assert.ok(r.maxRssMiB < (e.rssCapMiB ?? DEFAULT_RSS_CAP_MIB), `peak memory ${r.maxRssMiB.toFixed(0)} MiB: ${ctx}`);
  if (r.status === 0 && e.allowSuccess) return;
  assert.equal(r.status, e.exitCode ?? 1, `exit code: ${ctx}`);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('uvu: error: '));
  assert.equal(lines.length, 1, `expected one "uvu: error:" line: ${ctx}`);
  assert.ok(lines[0]!.includes(e.names), `the error does not name ${e.names}: ${ctx}`);
  for (const p of e.noOutputs ?? []) assert.ok(!existsSync(p), `${p} was left behind: ${ctx}`);
}

export interface Mutation {
  name: string;
  bytes: Uint8Array;
}

/**
 * `count` seeded mutations of a valid binary file: truncations (at 0, inside the header, at random
 * points, one byte short), random byte flips (1 and 8 bytes), and a run of 0xff bytes.
 */
export function byteMutations(valid: Uint8Array, seed: number, count: number): Mutation[] {
  const rng = new Rng(seed);
  const out: Mutation[] = [
    { name: 'empty', bytes: new Uint8Array(0) },
    { name: 'truncated by one byte', bytes: valid.slice(0, valid.length - 1) },
    { name: 'truncated to 7 bytes', bytes: valid.slice(0, 7) },
  ];
  while (out.length < count) {
    const kind = rng.int(4);
    const bytes = Uint8Array.prototype.slice.call(valid); // a copy even for a Buffer (whose slice() is a view)
    if (kind === 0) {
      const at = rng.int(valid.length);
      out.push({ name: `truncated at byte ${at}`, bytes: valid.slice(0, at) });
    } else if (kind === 3) {
      const at = rng.int(valid.length);
      bytes.fill(0xff, at, Math.min(valid.length, at + 16));
      out.push({ name: `0xff run at byte ${at}`, bytes });
    } else {
      const flips = kind === 1 ? 1 : 8;
      const where: number[] = [];
      for (let f = 0; f < flips; f++) {
        const at = rng.int(valid.length);
        bytes[at] = bytes[at]! ^ (1 << rng.int(8));
        where.push(at);
      }
      out.push({ name: `bit flips at bytes ${where.join(',')}`, bytes });
    }
  }
  return out;
}

/** Values a hostile JSON field takes: wrong types, null, huge and non-integer numbers, traversal strings. */
const HOSTILE_VALUES: unknown[] = [null, -1, 1e300, 2 ** 53 + 2, 0.5, '', '../../etc/passwd', [], {}, true, 'x'.repeat(10_000)];

/**
 * Seeded mutations of a JSON document: each of `count` replaces one randomly chosen field (at any
 * depth) by a hostile value, or deletes it; plus the whole document as null, [], a number, and cut
 * in half.
 */
export function jsonMutations(valid: unknown, seed: number, count: number): { name: string; text: string }[] {
  const rng = new Rng(seed);
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]): void => {
    if (path.length) paths.push(path);
    if (Array.isArray(v)) v.slice(0, 4).forEach((x, i) => walk(x, [...path, i]));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(valid, []);
  const text = JSON.stringify(valid);
  const out = [
    { name: 'null document', text: 'null' },
    { name: 'array document', text: '[]' },
    { name: 'number document', text: '42' },
    { name: 'cut in half', text: text.slice(0, text.length >> 1) },
  ];
  while (out.length < count && paths.length) {
    const path = paths[rng.int(paths.length)]!;
    const copy = JSON.parse(text) as Record<string | number, unknown>;
    let node = copy;
    for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
    const last = path[path.length - 1]!;
    const del = rng.int(HOSTILE_VALUES.length + 1) === HOSTILE_VALUES.length;
    const value = HOSTILE_VALUES[rng.int(HOSTILE_VALUES.length)];
    if (del && !Array.isArray(node)) delete node[last];
    else node[last] = value;
    out.push({ name: `${path.join('.')} ${del && !Array.isArray(node) ? 'deleted' : `= ${JSON.stringify(value)?.slice(0, 40)}`}`, text: JSON.stringify(copy) });
  }
  return out;
}

/** Counts of hostile cases: tried, refused cleanly, accepted with the valid file's content, accepted otherwise. */
export interface Tally {
  tried: number;
  refused: number;
  identical: number;
  accepted: number;
}

/** `e` must be a one-line UvuError whose message starts with `prefix` (the file it names). */
export function assertUvuErrorNaming(e: unknown, prefix: string, label: string): asserts e is UvuError {
  if (!(e instanceof UvuError)) assert.fail(`${label}: not a UvuError: ${(e as Error)?.stack ?? String(e)}`);
  assert.ok(!e.message.includes('\n'), `${label}: message is not one line: ${e.message}`);
  assert.ok(e.message.startsWith(prefix), `${label}: message does not start with ${prefix}: ${e.message}`);
}

export interface ReaderCase<H> {
  label: string;
  /** The path every error must start with. */
  names: string;
  /** A reader that opens must give `reference` (else any content is accepted, e.g. under --no-verify). */
  exact: boolean;
  reference: unknown;
  open: () => H;
  read: (handle: H) => unknown;
  close: (handle: H) => void;
}

/**
 * One hostile case against a library reader: open, then read everything. A failure in either
 * must be a one-line UvuError naming the file; a success must give the reference content when
 * `exact`. Counted in `tally`.
 */
export function tryReader<H>(tally: Tally, c: ReaderCase<H>): void {
  tally.tried++;
  let handle: H;
  try {
    handle = c.open();
  } catch (e) {
    assertUvuErrorNaming(e, c.names, c.label);
    tally.refused++;
    return;
  }
  try {
    let got: unknown;
    try {
      got = c.read(handle);
    } catch (e) {
      assertUvuErrorNaming(e, c.names, c.label);
      tally.refused++;
      return;
    }
    if (c.exact) {
      assert.deepEqual(got, c.reference, `${c.label}: opened but the content differs from the valid file`);
      tally.identical++;
    } else tally.accepted++;
  } finally {
    c.close(handle);
  }
}

/** Replace `dir/file` by `bytes`, run `fn`, then put the valid file back. */
export function withFileReplaced(dir: string, file: string, bytes: Uint8Array | string, fn: () => void): void {
  const path = join(dir, file);
  const valid = readFileSync(path);
  writeFileSync(path, bytes);
  try {
    fn();
  } finally {
    writeFileSync(path, valid);
  }
}
