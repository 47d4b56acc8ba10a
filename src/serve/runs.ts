/**
 * Training runs under the `--runs` folders: a run is a folder holding log.jsonl (src/train/train.ts
 * writes one line per optimizer step). A `--runs` folder may be a run itself or hold runs up to
 * two levels down (out/experiment-tiny/runs/uvu-pretrain). Logs are read by byte offset, so a page
 * that follows a run still training receives only the complete lines appended since its last read.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { StepLogSchema, type StepLog } from '../train/train.js';
import { parseJsonLine, parseOrFail } from '../util/fsio.js';

export const LOG_FILE = 'log.jsonl';
/** Folder levels below a `--runs` folder searched for runs. */
const MAX_DEPTH = 2;

export interface RunFolder {
  /** Name shown in the page: the path below its `--runs` folder (its own name when it is the run). */
  name: string;
  dir: string;
}

/** Every run folder under `roots`, in name order within each root. */
export function findRuns(roots: readonly string[]): RunFolder[] {
  const runs: RunFolder[] = [];
  for (const root of roots) {
    const found: string[] = [];
    const walk = (dir: string, depth: number): void => {
      if (existsSync(join(dir, LOG_FILE))) found.push(dir);
      if (depth === MAX_DEPTH) return;
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) if (e.isDirectory()) walk(join(dir, e.name), depth + 1);
    };
    walk(root, 0);
    for (const dir of found) runs.push({ name: relative(root, dir) || basename(dir), dir });
  }
  return runs;
}

/**
 * The complete lines of a run's log from byte `from` on, and the offset after the last of them
 * (a line still being written, with no newline yet, is left for the next read). A log that shrank
 * below `from` (the run was restarted) is read again from the start: `reset` says so.
 */
export function readLog(dir: string, from: number): { lines: StepLog[]; next: number; reset: boolean } {
  const path = join(dir, LOG_FILE);
  const size = statSync(path).size;
  const reset = size < from;
  const start = reset ? 0 : from;
  if (size === start) return { lines: [], next: start, reset };
  const buf = Buffer.alloc(size - start);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, buf.length, start);
  } finally {
    closeSync(fd);
  }
  const end = buf.lastIndexOf(0x0a) + 1;
  const lines = buf
    .subarray(0, end)
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => parseOrFail(StepLogSchema, parseJsonLine(l, `${path}: line ${i + 1} after byte ${start}`), `${path}: line ${i + 1} after byte ${start}`) as StepLog);
  return { lines, next: start + end, reset };
}
