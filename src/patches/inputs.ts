/**
 * Input discovery for patch-store builds. An input is
 *  - a file (taken as is, whatever its extension),
 *  - a folder (searched recursively for image files; hidden entries skipped),
 *  - a glob with `*` (within one path segment), `**` (any number of segments) and `?`,
 *    matched against image files under the glob's fixed leading folder,
 *  - `@list.txt`: one input per line (blank lines and `#` comments ignored; relative
 *    paths are relative to the list file's folder; lines may be folders or globs too).
 * The result is absolute paths, de-duplicated and sorted (by code unit), so a build's
 * order does not depend on the file system's listing order.
 *
 * Symlinks are followed, but each real folder (device + inode) is entered once per input, so a
 * loop such as `self -> .` cannot repeat or hang the walk, and each real file is kept once
 * (under its first path in sorted order): two names for one file (a symlink, a hard link,
 * overlapping inputs) count as a duplicate input instead of being stored twice.
 */
import { readdirSync, readFileSync, statSync, type Dirent } from 'node:fs';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { UvuError } from '../util/errors.js';

/** Extensions picked up when searching folders and globs (case-insensitive). */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif'];

function isImageName(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

function hasMagic(s: string): boolean {
  return /[*?]/.test(s);
}

function listDir(dir: string): Dirent[] {
  try {
    // Sorted, so that which of two paths to one real folder is walked does not depend on the file system.
    return readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new UvuError(`cannot read folder ${dir}: ${code === 'EACCES' ? 'permission denied' : code}`);
  }
}

/** Device and inode of a path (symlinks followed), as one key; null when it cannot be stat'ed. */
function realId(path: string): string | null {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/**
 * Calls `onFile(absolutePath, pathRelativeToStart)` for every image file under `dir`,
 * recursively (symlinks followed; hidden names skipped). Each real folder is entered once:
 * `seen` holds the device:inode of the folders entered so far.
 */
function walk(dir: string, onFile: (abs: string, rel: string) => void, relPrefix = '', seen = new Set<string>()): void {
  const id = realId(dir);
  if (id !== null) {
    if (seen.has(id)) return;
    seen.add(id);
  }
  for (const ent of listDir(dir)) {
    if (ent.name.startsWith('.')) continue;
    const abs = join(dir, ent.name);
    const rel = relPrefix ? `${relPrefix}/${ent.name}` : ent.name;
    let isDir = ent.isDirectory();
    let isFile = ent.isFile();
    if (ent.isSymbolicLink()) {
      try {
        const st = statSync(abs);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        continue; // dangling link
      }
    }
    if (isDir) walk(abs, onFile, rel, seen);
    else if (isFile && isImageName(ent.name)) onFile(abs, rel);
  }
}

/** Glob pattern (relative part, `/`-separated) → anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*' && pattern[i + 1] === '*') {
      i++;
      if (pattern[i + 1] === '/') {
        i++;
        re += '(?:[^/]+/)*'; // `**/` = zero or more folders
      } else re += '.*';
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function expandGlob(pattern: string, cwd: string): string[] {
  const abs = (isAbsolute(pattern) ? pattern : resolve(cwd, pattern)).split(sep).join('/');
  const segments = abs.split('/');
  const firstMagic = segments.findIndex(hasMagic);
  const base = segments.slice(0, firstMagic).join('/') || '/';
  const regex = globToRegExp(segments.slice(firstMagic).join('/'));
  const out: string[] = [];
  try {
    if (!statSync(base).isDirectory()) return out;
  } catch {
    return out;
  }
  walk(base, (file, rel) => {
    if (regex.test(rel)) out.push(file);
  });
  return out;
}

function expandOne(input: string, cwd: string, out: string[], listDepth: number): void {
  if (input.startsWith('@')) {
    if (listDepth > 4) throw new UvuError(`list files nested too deeply at ${input}`);
    const listPath = resolve(cwd, input.slice(1));
    let text: string;
    try {
      text = readFileSync(listPath, 'utf8');
    } catch (err) {
      throw new UvuError(`cannot read list file ${listPath}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (line && !line.startsWith('#')) expandOne(line, dirname(listPath), out, listDepth + 1);
    }
    return;
  }
  if (hasMagic(input)) {
    out.push(...expandGlob(input, cwd));
    return;
  }
  const abs = resolve(cwd, input);
  let st;
  try {
    st = statSync(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UvuError(`input not found: ${abs}${code && code !== 'ENOENT' ? ` (${code})` : ''}`);
  }
  if (st.isDirectory()) walk(abs, (file) => out.push(file));
  else out.push(abs);
}

/**
 * Resolve inputs (files, folders, globs, @lists) to a sorted list of files, each real file once.
 * `duplicates` counts the paths left out because they named a file already in the list.
 */
export function discoverInputs(inputs: string[], cwd = process.cwd()): { files: string[]; duplicates: number } {
  if (inputs.length === 0) throw new UvuError('no inputs given (expected image files, folders, globs or @list.txt)');
  const out: string[] = [];
  for (const input of inputs) expandOne(input, cwd, out, 0);
  const paths = [...new Set(out)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const real = new Set<string>();
  const files: string[] = [];
  for (const p of paths) {
    const id = realId(p);
    if (id !== null && real.has(id)) continue;
    if (id !== null) real.add(id);
    files.push(p);
  }
  if (files.length === 0) throw new UvuError(`no image files found in inputs: ${inputs.join(' ')}`);
  return { files, duplicates: out.length - files.length };
}

/** Resolve inputs (files, folders, globs, @lists) to a sorted list of files, each real file once. */
export function resolveInputs(inputs: string[], cwd = process.cwd()): string[] {
  return discoverInputs(inputs, cwd).files;
}
