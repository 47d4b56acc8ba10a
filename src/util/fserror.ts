/**
 * File-system failures as short phrases for one-line messages ("FILE: cannot read X: PHRASE"),
 * instead of Node's "ENOENT: no such file or directory, open '…'" with an internal path.
 *
 * Names that are not valid UTF-8. On Linux a file name is any byte string, but Node turns each
 * command-line argument into a JavaScript string by decoding it as UTF-8, and every invalid byte
 * becomes U+FFFD (�). The bytes are lost before uvu runs: `caf\xe9.jpg` arrives as "caf�.jpg", and
 * no file has that name. `missingReason` recognises the case (a name holding U+FFFD whose folder
 * has an entry that is not valid UTF-8 and decodes to the same string) and says so, with the real
 * name's bytes, instead of a bare "no such file".
 */
import { existsSync, readdirSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { join, parse, resolve, sep } from 'node:path';

const REPLACEMENT = '\uFFFD';

/** Bytes of a file name for a message: printable ASCII as is, every other byte as \xHH. */
export function showNameBytes(name: Buffer): string {
  let s = '';
  for (const b of name) s += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return s;
}

/**
 * The real name of the first component of `path` that does not exist but whose folder holds a
 * name that is not valid UTF-8 and decodes to that component (U+FFFD for its invalid bytes);
 * null when there is none (the file is simply missing).
 */
export function nonUtf8RealName(path: string): Buffer | null {
  if (!path.includes(REPLACEMENT)) return null;
  const abs = resolve(path);
  let dir = parse(abs).root;
  for (const part of abs.slice(dir.length).split(sep).filter(Boolean)) {
    const next = join(dir, part);
    if (existsSync(next)) {
      dir = next;
      continue;
    }
    if (!part.includes(REPLACEMENT)) return null;
    let names: Buffer[];
    try {
      names = readdirSync(dir, { encoding: 'buffer' });
    } catch {
      return null;
    }
    return names.find((b) => !isUtf8(b) && b.toString('utf8') === part) ?? null;
  }
  return null;
}

/**
 * For a name that does not exist and holds U+FFFD: a sentence saying that Node changed it (with
 * the real name's bytes when its folder has a matching entry); null for any other name.
 */
export function nonUtf8Note(path: string): string | null {
  if (!path.includes(REPLACEMENT)) return null;
  const real = nonUtf8RealName(path);
  if (real) return `its real name "${showNameBytes(real)}" is not valid UTF-8, and Node replaced the invalid bytes by U+FFFD before uvu received it; rename it to a UTF-8 name`;
  return 'the name holds U+FFFD, which Node puts in place of bytes that are not valid UTF-8; if the real name has such bytes, rename it to a UTF-8 name';
}

/** Why `path` cannot be found, as a phrase; explains a name that Node changed because it was not valid UTF-8. */
export function missingReason(path: string): string {
  const note = nonUtf8Note(path);
  return note ? `no such file or directory: ${note}` : 'no such file or directory';
}

/** A phrase for an fs error on `path` (open, read, stat): "no such file or directory", "is a directory", … */
export function fsErrorReason(path: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  switch (e?.code) {
    case 'ENOENT':
      return missingReason(path);
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a part of the path is not a folder';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'too many levels of symbolic links (a loop?)';
    case 'ENAMETOOLONG':
      return 'file name too long';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many open files';
    case 'EIO':
      return 'input/output error';
    case 'ERR_FS_FILE_TOO_LARGE':
      return 'file too large to read at once (2 GiB or more)';
    case 'ERR_STRING_TOO_LONG':
      return 'file too large to read as text (over 512 MiB)';
    default: {
      if (typeof e?.code === 'string') return e.code;
      const msg = String(e?.message ?? err).split('\n')[0]!;
      return msg.length > 100 ? `${msg.slice(0, 97)}...` : msg;
    }
  }
}
