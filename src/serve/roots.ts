/**
 * The folders `uvu serve` was given, and the only way a request reaches a file: a "/"-separated
 * path relative to one root. A path is refused (the server answers 404, saying nothing about
 * what exists) when it is not a plain relative path (absolute, "..", "\", NUL, empty part), when
 * its real location (symlinks resolved) lies outside the root's real location, or when it is not
 * a regular file. Percent-decoding happens once, in the router, before this check: a request for
 * "%2e%2e/x" arrives here as "../x" and is refused like it.
 */
import { realpathSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { relativePathProblem } from '../util/filenames.js';

export class Root {
  /** The root's real path (symlinks resolved), fixed at start. */
  readonly real: string;

  constructor(readonly dir: string) {
    this.real = realpathSync(dir);
  }

  /** Absolute real path of the regular file `rel` inside this root, or null when refused. */
  resolve(rel: string): string | null {
    if (relativePathProblem(rel) !== null) return null;
    let real: string;
    try {
      real = realpathSync(join(this.real, rel));
      if (!statSync(real).isFile()) return null;
    } catch {
      return null;
    }
    return real.startsWith(this.real + sep) ? real : null;
  }
}
