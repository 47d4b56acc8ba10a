/**
 * Atomic file writes: write to a temp file beside the target, fsync, then rename.
 * A crash leaves either the old file or the new one, never a half-written file.
 * A failure is a UvuError that names the target (never the internal temp file) and leaves
 * nothing behind: `OUT: cannot write: is a directory`, `OUT: cannot write: folder X does not exist`.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, basename, join, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UvuError } from './errors.js';
import { nonUtf8Note } from './fserror.js';

/** Longest target-name prefix kept in a temp name (bytes), so the temp name fits where the target's does (255). */
const TEMP_NAME_PREFIX_BYTES = 200;

/** Temp path in the same directory (same filesystem, so rename is atomic). */
export function tempPathFor(path: string): string {
  let name = basename(path);
  while (Buffer.byteLength(name, 'utf8') > TEMP_NAME_PREFIX_BYTES) name = name.slice(0, -1);
  return join(dirname(path), `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Why `path` cannot be written, found before any byte is written: it is a directory, or its
 * folder is missing or not a folder. Null when it looks writable (the write itself may still fail).
 */
export function unwritableReason(path: string): string | null {
  try {
    if (statSync(path).isDirectory()) return 'is a directory';
  } catch {
    // Not there yet: the usual case.
  }
  if (path.endsWith('/') || path.endsWith(sep)) return `ends with "${path.slice(-1)}": a folder name, not a file name`;
  const folder = dirname(path);
  try {
    if (!statSync(folder).isDirectory()) return `${folder} is not a folder`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const note = nonUtf8Note(folder);
      return `folder ${folder} does not exist${note ? `: ${note}` : ''}`;
    }
    if (code === 'ENOTDIR') return `a part of ${folder} is not a folder`;
  }
  return null;
}

/** The one-line error for a failed write of `path` (err came from the temp file or the rename). */
export function writeError(path: string, err: unknown): UvuError {
  if (err instanceof UvuError) return err;
  const pre = unwritableReason(path);
  if (pre) return new UvuError(`${path}: cannot write: ${pre}`);
  const code = (err as NodeJS.ErrnoException)?.code;
  const reason: Record<string, string> = {
    EISDIR: 'is a directory',
    ENOENT: `folder ${dirname(path)} does not exist`,
    ENOTDIR: `a part of ${dirname(path)} is not a folder`,
    EACCES: `permission denied (in folder ${dirname(path)})`,
    EPERM: `permission denied (in folder ${dirname(path)})`,
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    ENAMETOOLONG: 'file name too long',
    EFBIG: 'file too large for the file system',
    EIO: 'input/output error',
  };
  const why = (code && reason[code]) ?? code ?? String((err as Error)?.message ?? err).split('\n')[0];
  return new UvuError(`${path}: cannot write: ${why}`);
}

/** Write `chunks` to `path` atomically; see the module comment for failures. */
export function writeFileAtomic(path: string, chunks: Uint8Array | string | (Uint8Array | string)[]): void {
  const pre = unwritableReason(path);
  if (pre) throw new UvuError(`${path}: cannot write: ${pre}`);
  const tmp = tempPathFor(path);
  const list = Array.isArray(chunks) ? chunks : [chunks];
  let fd = -1;
  try {
    fd = openSync(tmp, 'w');
    for (const c of list) {
      const buf = typeof c === 'string' ? Buffer.from(c, 'utf8') : c;
      let off = 0;
      // writeSync takes at most 2 GiB per call.
      while (off < buf.byteLength) off += writeSync(fd, buf, off, Math.min(buf.byteLength - off, 1 << 30));
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw writeError(path, err);
  }
}
