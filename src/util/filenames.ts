/**
 * Names read from a file (a manifest's shard list, a benchmark item's image) that must stay
 * inside the folder they are relative to. They are checked lexically, before anything touches
 * the file system, so a hostile name is refused without opening, sizing or describing its target.
 *
 *   plain file name   one component: not empty, not "." or "..", no "/" or "\", no NUL, no drive
 *                     prefix ("C:"), at most 255 bytes
 *   relative path     "/"-separated plain file names (so no "..", no absolute path, no "\")
 */
import { z } from 'zod';

/** Longest file name component most file systems accept (bytes). */
const MAX_NAME_BYTES = 255;

/** Why `name` is not a plain file name, or null when it is one. */
export function plainFileNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.includes('\0')) return 'contains a NUL byte';
  if (name === '.' || name === '..') return `is "${name}"`;
  if (/[/\\]/.test(name)) return 'contains a path separator';
  if (/^[A-Za-z]:/.test(name)) return 'starts with a drive prefix';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  return null;
}

/** Why `rel` is not a "/"-separated path of plain file names (inside its folder), or null. */
export function relativePathProblem(rel: string): string | null {
  if (rel.length === 0) return 'is empty';
  if (rel.startsWith('/')) return 'is an absolute path';
  for (const part of rel.split('/')) {
    const p = plainFileNameProblem(part);
    if (p) return part === '..' ? 'leaves its folder ("..")' : `has a component that ${p}`;
  }
  return null;
}

/** A name for messages: quoted, escaped (NUL, newlines) and cut to 60 characters. */
function show(name: string): string {
  const q = JSON.stringify(name);
  return q.length > 60 ? `${q.slice(0, 57)}…"` : q;
}

/** Zod schema of a plain file name inside `folder` ("the dataset folder"). */
export function plainFileName(folder: string) {
  return z.string().superRefine((name, ctx) => {
    const p = plainFileNameProblem(name);
    if (p) ctx.addIssue({ code: 'custom', message: `${show(name)} is not a plain file name inside ${folder} (it ${p})` });
  });
}

/** Zod schema of a "/"-separated relative path inside `folder` ("the benchmark folder"). */
export function relativePathInside(folder: string) {
  return z.string().superRefine((rel, ctx) => {
    const p = relativePathProblem(rel);
    if (p) ctx.addIssue({ code: 'custom', message: `${show(rel)} is not a relative path inside ${folder} (it ${p})` });
  });
}
