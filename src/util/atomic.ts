/**
 * Atomic file writes: write to a temp file beside the target, fsync, then rename.
 * A crash leaves either the old file or the new one, never a half-written file.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Temp path in the same directory (same filesystem, so rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Write `chunks` to `path` atomically. */
export function writeFileAtomic(path: string, chunks: Uint8Array | string | (Uint8Array | string)[]): void {
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
    throw err;
  }
}
