/**
 * The allocation limit: every size that comes from a file or a flag (a tokens grid, a tensor
 * shape, a batch) is checked here before anything that large is allocated, so a hostile or
 * mistaken input is refused with a message instead of growing until V8 dies.
 *
 * The limit is per request, 4 GiB by default (a sixth of the 24 GiB machines uvu targets). Raise
 * it with `uvu --max-alloc SIZE <command>` (or UVU_MAX_ALLOC=SIZE) when a real job needs more.
 */
import { UsageError, UvuError } from './errors.js';

/** Default limit of one allocation that a file or a flag asks for: 4 GiB. */
export const DEFAULT_MAX_ALLOC_BYTES = 4 * 2 ** 30;

let maxAllocBytes: number | null = null;

/** "8G", "512M", "1.5GiB", "4096" (bytes) → bytes; a usage error otherwise. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(value.trim());
  const unit = m?.[2]?.toLowerCase() ?? '';
  const bytes = m ? Number(m[1]) * ({ '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 } as Record<string, number>)[unit]! : NaN;
  if (!(bytes >= 1) || !Number.isFinite(bytes)) throw new UsageError(`expected a size such as 8G, 512M or a number of bytes, got "${value}"`);
  return Math.floor(bytes);
}

/** Sets the limit for this process (the CLI's --max-alloc). */
export function setMaxAllocBytes(bytes: number): void {
  if (!(Number.isSafeInteger(bytes) && bytes >= 1)) throw new UsageError(`--max-alloc must be a positive size, got ${bytes}`);
  maxAllocBytes = bytes;
}

/** The limit in force: --max-alloc, else UVU_MAX_ALLOC, else DEFAULT_MAX_ALLOC_BYTES. */
export function maxAllocBytesInForce(): number {
  if (maxAllocBytes !== null) return maxAllocBytes;
  const env = process.env['UVU_MAX_ALLOC'];
  if (!env) return DEFAULT_MAX_ALLOC_BYTES;
  try {
    return parseSize(env);
  } catch (err) {
    throw new UsageError(`UVU_MAX_ALLOC: ${(err as Error).message}`);
  }
}

/** Human size: 12.0 GiB, 512.0 MiB, 900 B. */
export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/**
 * Refuse a request for `bytes` (e.g. numel·4 of a tensor a file declares) above the limit:
 * `WHERE: WHAT needs 12.0 GiB, above the 4.0 GiB allocation limit (raise it with --max-alloc)`.
 * Non-finite or unsafe sizes are refused too. `where` names the file or flag the size came from.
 */
export function checkAlloc(where: string, what: string, bytes: number): void {
  const limit = maxAllocBytesInForce();
  if (Number.isSafeInteger(bytes) && bytes >= 0 && bytes <= limit) return;
  const need = Number.isFinite(bytes) ? formatBytes(bytes) : String(bytes);
  throw new UvuError(`${where}: ${what} needs ${need}, above the ${formatBytes(limit)} allocation limit (raise it with --max-alloc SIZE if this is intended)`);
}
