/**
 * File helpers every layer uses: content hashes, exact positional reads, and the one way a
 * parsed file (JSON, a manifest, a metadata field) is checked against its zod schema. Each
 * failure is a UvuError whose message starts with the file's name.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import type { z } from 'zod';
import { UsageError, UvuError } from './errors.js';
import { fsErrorReason } from './fserror.js';
import { checkAlloc } from './limits.js';

/** Bytes per read of sha256File: 8 MiB. */
const HASH_BLOCK_BYTES = 8 << 20;
/** Largest single readSync request (Node rejects lengths ≥ 2 GiB). */
const MAX_READ_BYTES = 1 << 30;

/** Read buffer of sha256Fd: grown to the largest file hashed so far, at most 8 MiB, and kept. */
let hashBuffer = new Uint8Array(0);

/** sha256 (hex) of everything in an open file, read from byte 0 in blocks of up to 8 MiB. */
export function sha256Fd(fd: number): string {
  const h = createHash('sha256');
  const want = Math.max(1, Math.min(HASH_BLOCK_BYTES, fstatSync(fd).size));
  if (hashBuffer.length < want) hashBuffer = new Uint8Array(want);
  const buf = hashBuffer;
  for (let pos = 0; ; ) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) break;
    h.update(buf.subarray(0, n));
    pos += n;
  }
  return h.digest('hex');
}

/** sha256 (hex) of a file. */
export function sha256File(path: string): string {
  const fd = openSync(path, 'r');
  try {
    return sha256Fd(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Fill `buf` with the bytes of `fd` from byte `position` on, or fail with
 * `FILE: unexpected end of file at byte N (HINT)` when the file ends first.
 */
export function readExact(fd: number, buf: Uint8Array, position: number, file: string, hint = 'truncated?'): void {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, Math.min(buf.length - got, MAX_READ_BYTES), position + got);
    if (n === 0) throw new UvuError(`${file}: unexpected end of file at byte ${position + got} (${hint})`);
    got += n;
  }
}

/** One line for a zod error: `field.path: message` for the first issue, or for every issue with `all`. */
export function describeZodError(error: z.ZodError, all = false): string {
  const issues = all ? error.issues : error.issues.slice(0, 1);
  return issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

export interface ParseOrFailOptions {
  /** List every issue, not just the first (configs a person wrote). */
  all?: boolean;
  /** A usage error (exit 2: a config or flag the user wrote) instead of an input error (exit 1). */
  usage?: boolean;
}

/**
 * Validate `raw` with `schema`; on failure throw `WHERE: field.path: what is wrong` as one
 * line. `where` names the file (and what it should have been, e.g. "m.json: not a dataset manifest").
 */
export function parseOrFail<S extends z.ZodType>(schema: S, raw: unknown, where: string, opts: ParseOrFailOptions = {}): z.output<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const message = `${where}: ${describeZodError(r.error, opts.all)}`;
  throw opts.usage ? new UsageError(message) : new UvuError(message);
}

/**
 * Read and parse a JSON file; `FILE: cannot read WHAT (no such file or directory)` or `FILE: WHAT
 * is not valid JSON` otherwise. `what` names the kind of file ("dataset manifest"). The file's
 * size is checked against the allocation limit before it is read.
 */
export function readJsonFile(path: string, what = 'file'): unknown {
  let text: string;
  try {
    const size = statSync(path).size;
    checkAlloc(path, `reading the ${what}`, size);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof UvuError) throw err;
    throw new UvuError(`${path}: cannot read ${what} (${fsErrorReason(path, err)})`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new UvuError(`${path}: ${what} is not valid JSON`);
  }
}

/** One line of a JSONL file, parsed; `WHERE: not valid JSON` (plus `hint`) otherwise. `where` names file and line. */
export function parseJsonLine(line: string, where: string, hint?: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new UvuError(`${where}: not valid JSON${hint ? `; ${hint}` : ''}`);
  }
}
