/**
 * Errors a user can act on. The CLI prints `message` as one line and exits with `exitCode`:
 * 1 = the input cannot be processed (names the file and the problem), 2 = usage error.
 */
export class UvuError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 1) {
    super(message);
    this.name = 'UvuError';
  }
}

/** A usage error (bad flag value, impossible parameter combination): exit code 2. */
export class UsageError extends UvuError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** Warnings go to stderr once per distinct key (e.g. "no BLAS found"). */
const warned = new Set<string>();
export function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  process.stderr.write(`uvu: warning: ${message}\n`);
}
