/**
 * The on-disk patch store: a folder of fixed-size shards of raw uint8 patches, meant for
 * hundreds of millions of patches. Layout (all integers little-endian):
 *
 *   manifest.json             written last, atomically; its presence means "complete"
 *   shard-000000.bin          [n, 3072] uint8 patches, n ≤ shardSize
 *   shard-000000.meta.bin     [n] × 12 bytes: imageId u32, row u16, col u16, rows u16, cols u16
 *   images.jsonl              one ImageEntry per line, ordered by id (kept out of the manifest
 *                             so the manifest stays small for millions of images)
 *   build-state.json          only while a build is unfinished (see build.ts)
 *
 * The fingerprint is sha256 over the content-affecting build options and every shard's two
 * hashes, so two stores with the same fingerprint hold the same patches in the same order.
 * The reader never loads whole shards: it reads exactly the byte ranges asked for.
 *
 * Checks (README "Files we read and how we check them"): the manifest goes through one schema
 * (readManifest) with canonical file names only, so no name can leave the folder; shard sizes
 * are checked on open; each shard's data and meta sha256 is checked the first time the shard is
 * read in a process, before any of its bytes is returned (opt out: `verify: false`, the CLI's
 * --no-verify); images.jsonl is checked line by line and against its sha256 when read.
 */
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { UvuError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { parseJsonLine, parseOrFail, readExact, readJsonFile, sha256Fd, sha256File } from '../util/fsio.js';
import { checkAlloc } from '../util/limits.js';
import { plainFileName } from '../util/filenames.js';
import { fsErrorReason } from '../util/fserror.js';
import type { Rng } from '../util/rng.js';
import { PATCH, PATCH_DIM } from './patchify.js';

export const STORE_FORMAT = 'uvu-patches';
export const STORE_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const IMAGES_FILE = 'images.jsonl';
/** Bytes of per-patch metadata in a .meta.bin file. */
export const META_BYTES = 12;
/** Default patches per shard: 65,536 × 3072 B = 192 MiB. */
export const DEFAULT_SHARD_SIZE = 65536;
/** Largest shard the writer can buffer (one Uint8Array < 2 GiB). */
export const MAX_SHARD_SIZE = Math.floor((2 ** 31 - 1) / PATCH_DIM);

export function shardFileName(index: number): string {
  return `shard-${String(index).padStart(6, '0')}.bin`;
}
export function shardMetaFileName(index: number): string {
  return `shard-${String(index).padStart(6, '0')}.meta.bin`;
}

/** A file name inside the store folder: checked lexically before anything opens or sizes it. */
const PlainFileNameSchema = plainFileName('the store folder');

export const ShardEntrySchema = z.object({
  file: PlainFileNameSchema,
  metaFile: PlainFileNameSchema,
  patches: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  metaSha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type ShardEntry = z.infer<typeof ShardEntrySchema>;

/** Build options that change the store's content (and so its fingerprint). */
export const StoreOptionsSchema = z.object({
  maxPixels: z.number().int().positive(),
  offsets: z.boolean(),
  dedup: z.boolean(),
  seed: z.number().int(),
  shardSize: z.number().int().positive(),
  background: z.tuple([z.number().int(), z.number().int(), z.number().int()]),
  /** Times every input is cut (each pass with its own random grid offsets). */
  passes: z.number().int().positive().default(1),
});
export type StoreOptions = z.infer<typeof StoreOptionsSchema>;

export const SkippedSchema = z.object({ path: z.string(), reason: z.string() });
export type SkippedInput = z.infer<typeof SkippedSchema>;

export const ManifestSchema = z.object({
  format: z.literal(STORE_FORMAT),
  version: z.literal(STORE_VERSION),
  patchSize: z.literal(PATCH),
  dim: z.literal(PATCH_DIM),
  shards: z.array(ShardEntrySchema),
  imagesFile: PlainFileNameSchema,
  imagesSha256: z.string().regex(/^[0-9a-f]{64}$/),
  options: StoreOptionsSchema,
  totals: z.object({
    patches: z.number().int().nonnegative(),
    images: z.number().int().nonnegative(),
    skipped: z.number().int().nonnegative(),
    duplicatesRemoved: z.number().int().nonnegative(),
    /** Input paths that named a file already taken (symlinks, hard links, overlapping inputs); written only when > 0. */
    duplicateInputs: z.number().int().nonnegative().optional(),
  }),
  skipped: z.array(SkippedSchema),
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
});
export type PatchStoreManifest = z.infer<typeof ManifestSchema>;

const count = () => z.number().int().nonnegative();

/** One line of images.jsonl. */
export const ImageEntrySchema = z.object({
  id: count(),
  /** The input's path as given to the build (informational: never opened by the reader). */
  path: z.string(),
  /** Size after EXIF orientation, before resizing. */
  originalWidth: count(),
  originalHeight: count(),
  /** Size after resizing (multiples of 32). */
  width: count(),
  height: count(),
  /** Grid-offset augmentation: pixels cropped from the left/top before patchifying. */
  offsetX: count(),
  offsetY: count(),
  /** Patch grid of this image (after the offset crop). */
  rows: count(),
  cols: count(),
  /** Global index of this image's first stored patch (where it would be if it kept none). */
  firstPatch: count(),
  /** Patches stored (rows·cols minus exact duplicates when dedup is on). */
  patches: count(),
});
export type ImageEntry = z.infer<typeof ImageEntrySchema>;

/**
 * The lines of images.jsonl (without the final empty one) as entries: each checked against
 * ImageEntrySchema, ids counting up from 0. Errors name `path: line N` (plus `hint`).
 */
export function parseImageLines(lines: string[], path: string, hint?: string): ImageEntry[] {
  const tail = hint ? `; ${hint}` : '';
  return lines.map((line, i) => {
    const where = `${path}: line ${i + 1}`;
    const entry = parseOrFail(ImageEntrySchema, parseJsonLine(line, where, hint), where);
    if (entry.id !== i) throw new UvuError(`${where}: id is ${entry.id}, expected ${i}${tail}`);
    return entry;
  });
}

/** Per-patch metadata as struct-of-arrays, one entry per patch. */
export interface PatchMetaArrays {
  imageId: Uint32Array;
  row: Uint16Array;
  col: Uint16Array;
  rows: Uint16Array;
  cols: Uint16Array;
}

export function allocMeta(n: number): PatchMetaArrays {
  return {
    imageId: new Uint32Array(n),
    row: new Uint16Array(n),
    col: new Uint16Array(n),
    rows: new Uint16Array(n),
    cols: new Uint16Array(n),
  };
}

/** Decode `n` 12-byte meta records from `bytes` into `meta` starting at `at`. */
function decodeMeta(bytes: Uint8Array, n: number, meta: PatchMetaArrays, at: number): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, n * META_BYTES);
  for (let i = 0; i < n; i++) {
    const o = i * META_BYTES;
    meta.imageId[at + i] = dv.getUint32(o, true);
    meta.row[at + i] = dv.getUint16(o + 4, true);
    meta.col[at + i] = dv.getUint16(o + 6, true);
    meta.rows[at + i] = dv.getUint16(o + 8, true);
    meta.cols[at + i] = dv.getUint16(o + 10, true);
  }
}

export function sha256Hex(...parts: (Uint8Array | string)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Content fingerprint: the options (keys sorted) and each shard's data and meta hashes. */
export function storeFingerprint(options: StoreOptions, shards: ShardEntry[]): string {
  // passes = 1 is left out so that stores built before the option existed keep their fingerprint.
  const opts = Object.fromEntries(
    Object.entries(options)
      .filter(([k, v]) => !(k === 'passes' && v === 1))
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
  const h = createHash('sha256');
  h.update(`${STORE_FORMAT}/${STORE_VERSION}\n${JSON.stringify(opts)}\n`);
  for (const s of shards) h.update(`${s.patches} ${s.sha256} ${s.metaSha256}\n`);
  return h.digest('hex');
}

/**
 * Accumulates patches for one shard in memory and writes it (data, then meta) atomically.
 * The buffer grows by doubling up to `shardSize` patches, so small builds stay small.
 */
export class ShardWriter {
  private data: Uint8Array;
  private meta: Uint8Array;
  private metaView: DataView;
  /** Patches in the current (unsealed) shard. */
  pending = 0;

  constructor(
    private readonly dir: string,
    readonly shardSize: number,
  ) {
    const initial = Math.min(shardSize, 1024);
    this.data = new Uint8Array(initial * PATCH_DIM);
    this.meta = new Uint8Array(initial * META_BYTES);
    this.metaView = new DataView(this.meta.buffer);
  }

  /** Append one patch (3072 bytes at `src[srcOffset..]`); returns true when the shard is full. */
  add(src: Uint8Array, srcOffset: number, imageId: number, row: number, col: number, rows: number, cols: number): boolean {
    if (this.pending * PATCH_DIM === this.data.length) this.grow();
    this.data.set(src.subarray(srcOffset, srcOffset + PATCH_DIM), this.pending * PATCH_DIM);
    const o = this.pending * META_BYTES;
    this.metaView.setUint32(o, imageId, true);
    this.metaView.setUint16(o + 4, row, true);
    this.metaView.setUint16(o + 6, col, true);
    this.metaView.setUint16(o + 8, rows, true);
    this.metaView.setUint16(o + 10, cols, true);
    this.pending++;
    return this.pending === this.shardSize;
  }

  private grow(): void {
    const cap = Math.min(this.shardSize, (this.data.length / PATCH_DIM) * 2);
    const data = new Uint8Array(cap * PATCH_DIM);
    data.set(this.data);
    const meta = new Uint8Array(cap * META_BYTES);
    meta.set(this.meta);
    this.data = data;
    this.meta = meta;
    this.metaView = new DataView(meta.buffer);
  }

  /** Write the pending patches as shard number `index` and start a new, empty shard. */
  seal(index: number): ShardEntry {
    if (this.pending === 0) throw new Error('ShardWriter.seal: no pending patches');
    const data = this.data.subarray(0, this.pending * PATCH_DIM);
    const meta = this.meta.subarray(0, this.pending * META_BYTES);
    const entry: ShardEntry = {
      file: shardFileName(index),
      metaFile: shardMetaFileName(index),
      patches: this.pending,
      sha256: sha256Hex(data),
      metaSha256: sha256Hex(meta),
    };
    writeFileAtomic(join(this.dir, entry.file), data);
    writeFileAtomic(join(this.dir, entry.metaFile), meta);
    this.pending = 0;
    return entry;
  }
}

/** Keeps at most this many shards' file descriptors open (large stores have thousands). */
const MAX_OPEN_SHARDS = 32;

/** Read access to a finished patch store. Call `close()` when done (or let the process exit). */
export class PatchStore {
  /** Global index of each shard's first patch; shardStart[shards.length] = count. */
  private readonly shardStart: number[];
  private readonly fds = new Map<number, { data: number; meta: number }>();
  /** 1 for each shard whose data and meta hashes were checked in this process. */
  private readonly verified: Uint8Array;

  private constructor(
    readonly dir: string,
    readonly manifest: PatchStoreManifest,
    /** Check each shard's sha256 before its first use (false: --no-verify). */
    readonly verifies: boolean,
  ) {
    this.verified = new Uint8Array(manifest.shards.length);
    this.shardStart = [0];
    for (const s of manifest.shards) this.shardStart.push(this.shardStart[this.shardStart.length - 1]! + s.patches);
  }

  /**
   * Open and validate a store: the manifest (one schema check, see readManifest) and every shard
   * file's size. With `verify` (the default) each shard's sha256 is checked the first time the
   * shard is read, before any of its bytes is returned (and verifyShards checks them all at once).
   */
  static open(dir: string, opts: OpenOptions = {}): PatchStore {
    const m = readManifest(dir);
    for (const s of m.shards) {
      checkSize(join(dir, s.file), s.patches * PATCH_DIM);
      checkSize(join(dir, s.metaFile), s.patches * META_BYTES);
    }
    return new PatchStore(dir, m, opts.verify ?? true);
  }

  /** Total patches. */
  get count(): number {
    return this.manifest.totals.patches;
  }
  get imageCount(): number {
    return this.manifest.totals.images;
  }
  get fingerprint(): string {
    return this.manifest.fingerprint;
  }

  /**
   * All image entries (reads images.jsonl; for huge stores prefer to stream it yourself). Each
   * line is checked against ImageEntrySchema, ids must count up from 0, and the number of lines
   * must match the manifest; with `verify` the file's sha256 must match too.
   */
  images(): ImageEntry[] {
    const path = join(this.dir, this.manifest.imagesFile);
    let bytes: Buffer;
    try {
      checkAlloc(path, 'the image index', statSync(path).size);
      bytes = readFileSync(path);
    } catch (err) {
      if (err instanceof UvuError) throw err;
      throw new UvuError(`${path}: cannot read the image index (${fsErrorReason(path, err)})`);
    }
    if (this.verifies) checkHash(path, sha256Hex(bytes), this.manifest.imagesSha256);
    const lines = bytes.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (lines.length !== this.manifest.totals.images) {
      throw new UvuError(`${path}: holds ${lines.length} lines but the manifest lists ${this.manifest.totals.images} images`);
    }
    return parseImageLines(lines, path);
  }

  private shardOf(index: number): number {
    let lo = 0;
    let hi = this.manifest.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.shardStart[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private fdsFor(shard: number): { data: number; meta: number } {
    let f = this.fds.get(shard);
    if (f) {
      this.fds.delete(shard); // re-insert: Map order is our LRU order
      this.fds.set(shard, f);
      return f;
    }
    if (this.fds.size >= MAX_OPEN_SHARDS) {
      const [oldest, old] = this.fds.entries().next().value!;
      closeSync(old.data);
      closeSync(old.meta);
      this.fds.delete(oldest);
    }
    const s = this.manifest.shards[shard]!;
    f = { data: openSync(join(this.dir, s.file), 'r'), meta: openSync(join(this.dir, s.metaFile), 'r') };
    try {
      if (this.verifies && !this.verified[shard]) this.checkShard(shard, f);
    } catch (err) {
      closeSync(f.data);
      closeSync(f.meta);
      throw err;
    }
    this.fds.set(shard, f);
    return f;
  }

  /** Hash shard `shard` through its open files and compare with the manifest; marks it verified. */
  private checkShard(shard: number, f: { data: number; meta: number }): void {
    const s = this.manifest.shards[shard]!;
    checkHash(join(this.dir, s.file), sha256Fd(f.data), s.sha256);
    checkHash(join(this.dir, s.metaFile), sha256Fd(f.meta), s.metaSha256);
    this.verified[shard] = 1;
  }

  /**
   * Check every shard not yet checked in this process (no-op without `verify`). For a run that
   * hands the store to other readers (worker threads): check once here, open there without verify.
   */
  verifyShards(): void {
    if (!this.verifies) return;
    for (let i = 0; i < this.manifest.shards.length; i++) {
      if (this.verified[i]) continue;
      const s = this.manifest.shards[i]!;
      const f = { data: openSync(join(this.dir, s.file), 'r'), meta: openSync(join(this.dir, s.metaFile), 'r') };
      try {
        this.checkShard(i, f);
      } finally {
        closeSync(f.data);
        closeSync(f.meta);
      }
    }
  }

  /** Read `n` consecutive patches starting at global index `start` into the outputs at row `at`. */
  private readInto(start: number, n: number, patches: Uint8Array, meta: PatchMetaArrays, at: number): void {
    let done = 0;
    const metaBuf = new Uint8Array(Math.min(n, 65536) * META_BYTES);
    while (done < n) {
      const idx = start + done;
      const shard = this.shardOf(idx);
      const local = idx - this.shardStart[shard]!;
      const take = Math.min(n - done, this.shardStart[shard + 1]! - idx);
      const s = this.manifest.shards[shard]!;
      const fds = this.fdsFor(shard);
      readExact(fds.data, patches.subarray((at + done) * PATCH_DIM, (at + done + take) * PATCH_DIM), local * PATCH_DIM, s.file, 'truncated shard?');
      for (let m = 0; m < take; m += 65536) {
        const k = Math.min(65536, take - m);
        readExact(fds.meta, metaBuf.subarray(0, k * META_BYTES), (local + m) * META_BYTES, s.metaFile, 'truncated shard?');
        decodeMeta(metaBuf, k, meta, at + done + m);
      }
      done += take;
    }
  }

  /** Patches [start, start+count) as uint8 [count, 3072] with their metadata. */
  readRange(start: number, count: number): { patches: Uint8Array; meta: PatchMetaArrays } {
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= this.count)) {
      throw new RangeError(`readRange(${start}, ${count}) is outside the store's ${this.count} patches`);
    }
    checkAlloc(this.dir, `reading ${count} patches`, count * PATCH_DIM);
    const patches = new Uint8Array(count * PATCH_DIM);
    const meta = allocMeta(count);
    this.readInto(start, count, patches, meta, 0);
    return { patches, meta };
  }

  /**
   * Patches at the given global indices, output in the given order. Reads are issued in
   * ascending index order and runs of consecutive indices are read with one call.
   */
  readIndices(indices: ArrayLike<number>): { patches: Uint8Array; meta: PatchMetaArrays } {
    const n = indices.length;
    checkAlloc(this.dir, `reading ${n} patches`, n * PATCH_DIM);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => indices[a]! - indices[b]!);
    const patches = new Uint8Array(n * PATCH_DIM);
    const meta = allocMeta(n);
    const row = new Uint8Array(PATCH_DIM);
    const one = allocMeta(1);
    for (let k = 0; k < n; ) {
      const first = indices[order[k]!]!;
      if (!(Number.isInteger(first) && first >= 0 && first < this.count)) {
        throw new RangeError(`patch index ${first} is outside the store's ${this.count} patches`);
      }
      // Extend a run while sorted indices are consecutive and their outputs are consecutive too.
      let run = 1;
      while (
        k + run < n &&
        indices[order[k + run]!] === first + run &&
        order[k + run] === order[k]! + run
      ) {
        run++;
      }
      if (run > 1) {
        this.readInto(first, run, patches, meta, order[k]!);
      } else {
        this.readInto(first, 1, row, one, 0);
        const dst = order[k]!;
        patches.set(row, dst * PATCH_DIM);
        meta.imageId[dst] = one.imageId[0]!;
        meta.row[dst] = one.row[0]!;
        meta.col[dst] = one.col[0]!;
        meta.rows[dst] = one.rows[0]!;
        meta.cols[dst] = one.cols[0]!;
      }
      k += run;
    }
    return { patches, meta };
  }

  /** `n` distinct patches drawn uniformly without replacement; `indices` ascending. */
  sample(n: number, rng: Rng): { indices: Uint32Array; patches: Uint8Array; meta: PatchMetaArrays } {
    if (n > this.count) throw new UvuError(`cannot sample ${n} patches from a store of ${this.count}`);
    const indices = rng.sampleIndices(this.count, n).sort();
    const { patches, meta } = this.readIndices(indices);
    return { indices, patches, meta };
  }

  /** Sequential pass over all patches in batches of `batchSize` (the last may be shorter). */
  *scan(batchSize: number): Iterable<{ start: number; patches: Uint8Array; meta: PatchMetaArrays }> {
    if (!(batchSize >= 1)) throw new RangeError(`scan: batchSize must be ≥ 1, got ${batchSize}`);
    for (let start = 0; start < this.count; start += batchSize) {
      const n = Math.min(batchSize, this.count - start);
      yield { start, ...this.readRange(start, n) };
    }
  }

  /** Recompute every shard's and images.jsonl's sha256 (whatever `verify` says); throws naming the first bad file. */
  verify(): void {
    const check = (file: string, expected: string) => checkHash(join(this.dir, file), sha256File(join(this.dir, file)), expected);
    for (const s of this.manifest.shards) {
      check(s.file, s.sha256);
      check(s.metaFile, s.metaSha256);
    }
    check(this.manifest.imagesFile, this.manifest.imagesSha256);
  }

  close(): void {
    for (const f of this.fds.values()) {
      closeSync(f.data);
      closeSync(f.meta);
    }
    this.fds.clear();
  }
}

export interface OpenOptions {
  /**
   * Check each shard's data and meta sha256 against the manifest the first time the shard is
   * read, and images.jsonl's when it is read (default true; false is the CLI's --no-verify).
   */
  verify?: boolean;
}

/**
 * The manifest of the store in `dir`, read and checked once: valid JSON, ManifestSchema (shard and
 * index names must be plain file names, so nothing outside the folder is ever opened), shard
 * patch counts that add up to the totals, and the fingerprint over options and shard hashes.
 */
export function readManifest(dir: string): PatchStoreManifest {
  const manifestPath = join(dir, MANIFEST_FILE);
  let exists = true;
  try {
    statSync(manifestPath);
  } catch (err) {
    exists = (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
  if (!exists) {
    let hint = '';
    try {
      statSync(join(dir, 'build-state.json'));
      hint = ' (the build was interrupted; rerun it with --resume)';
    } catch {
      /* no build state: not a store */
    }
    throw new UvuError(`${dir} is not a patch store: ${MANIFEST_FILE} not found${hint}`);
  }
  const raw = readJsonFile(manifestPath, 'patch-store manifest');
  const m = parseOrFail(ManifestSchema, raw, `${manifestPath}: invalid manifest`);
  const names = canonicalNameProblem(m.shards, m.imagesFile);
  if (names) throw new UvuError(`${manifestPath}: invalid manifest: ${names}`);
  const sum = m.shards.reduce((a, s) => a + s.patches, 0);
  if (sum !== m.totals.patches) {
    throw new UvuError(`${manifestPath}: shards hold ${sum} patches but totals.patches is ${m.totals.patches}`);
  }
  if (m.skipped.length !== m.totals.skipped) {
    throw new UvuError(`${manifestPath}: lists ${m.skipped.length} skipped inputs but totals.skipped is ${m.totals.skipped}`);
  }
  if (storeFingerprint(m.options, m.shards) !== m.fingerprint) {
    throw new UvuError(`${manifestPath}: fingerprint does not match the listed shards and options (edited manifest?)`);
  }
  return m;
}

/**
 * The file names a store may list are the ones the writer gives: shard i is shardFileName(i) and
 * shardMetaFileName(i), the index is images.jsonl (none of them is covered by the fingerprint,
 * so a changed name would otherwise point at another file of the store). Null when all match.
 */
export function canonicalNameProblem(shards: readonly { file: string; metaFile: string }[], imagesFile?: string): string | null {
  for (let i = 0; i < shards.length; i++) {
    const s = shards[i]!;
    if (s.file !== shardFileName(i)) return `shards.${i}.file: expected "${shardFileName(i)}", got ${JSON.stringify(s.file).slice(0, 60)}`;
    if (s.metaFile !== shardMetaFileName(i)) return `shards.${i}.metaFile: expected "${shardMetaFileName(i)}", got ${JSON.stringify(s.metaFile).slice(0, 60)}`;
  }
  if (imagesFile !== undefined && imagesFile !== IMAGES_FILE) return `imagesFile: expected "${IMAGES_FILE}", got ${JSON.stringify(imagesFile).slice(0, 60)}`;
  return null;
}

function checkHash(path: string, actual: string, expected: string): void {
  if (actual !== expected) {
    throw new UvuError(`${path}: content does not match the manifest (sha256 ${actual.slice(0, 12)}…, expected ${expected.slice(0, 12)}…); the store is corrupt: rebuild it, or pass --no-verify to read it anyway`);
  }
}

function checkSize(path: string, expected: number): void {
  let actual: number;
  try {
    actual = statSync(path).size;
  } catch (err) {
    throw new UvuError(`${path}: cannot open shard file (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  if (actual !== expected) {
    throw new UvuError(`${path}: shard file is ${actual} bytes, manifest expects ${expected} (truncated or wrong file)`);
  }
}
