/**
 * Binary row shards of a sequence dataset. Shard i of a split is three files:
 *
 *   <split>-<iiiii>.rows                 rows × (4T + T) bytes; row r at byte r·5T:
 *                                        ids int32 LE [T], then flags u8 [T] (FLAG_* bits)
 *   <split>-<iiiii>.images.safetensors   image table, one entry per image, sorted by (row, start):
 *                                        "table"        I32 [n, 6] = row, start (position of c_1),
 *                                                       grid rows, grid cols, width, height (px)
 *                                        "pixel_offset" I64 [n]    byte offset in the .pixels file
 *   <split>-<iiiii>.pixels               u8 RGB [height, width, 3] of each image exactly as
 *                                        tokenized (sides = 32·grid), concatenated in table order
 *
 * Fixed-size rows give random access by row index with one pread. The manifest lists each file
 * with its size and sha256. Opening checks the names (plain file names in the dataset folder),
 * then the sizes, then (unless verification is off) the sha256 of all three files, before the
 * image table is parsed; every row read is range-checked too. So a damaged shard is reported by
 * name instead of feeding garbage to training.
 */
import { closeSync, fstatSync, fsyncSync, openSync, statSync, writeSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { readExact, sha256File } from '../util/fsio.js';
import { plainFileName } from '../util/filenames.js';
import { checkAlloc } from '../util/limits.js';
import { PATCH } from '../patches/patchify.js';
import { UvuError } from '../util/errors.js';
import { FLAG_MASK } from './sequence.js';

export const IMAGE_TABLE_FORMAT = 'uvu-seqdata-images';
/** Columns of the image table's "table" tensor. */
const TABLE_COLS = 6;

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const fileName = plainFileName('the dataset folder');
const FileEntrySchema = z.object({ file: fileName, bytes: z.number().int().nonnegative(), sha256 });
export const ShardEntrySchema = z.object({
  file: fileName,
  rows: z.number().int().positive(),
  bytes: z.number().int().positive(),
  sha256,
  images: FileEntrySchema.extend({ count: z.number().int().nonnegative() }),
  pixels: FileEntrySchema,
});
export type ShardEntry = z.infer<typeof ShardEntrySchema>;

/** Bytes of one row of context T. */
export const rowBytes = (T: number): number => 5 * T;

export function shardBaseName(split: string, index: number): string {
  return `${split}-${String(index).padStart(5, '0')}`;
}

/** One image of a row, as stored. */
export interface RowImage {
  /** Position of c_1 in the row. */
  start: number;
  rows: number;
  cols: number;
  width: number;
  height: number;
  /** u8 RGB [height, width, 3]. */
  pixels: Uint8Array;
}

export interface Row {
  ids: Int32Array;
  flags: Uint8Array;
  images: RowImage[];
}

/** An append-only file with a running sha256. */
class HashedFile {
  private readonly fd: number;
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  write(buf: Uint8Array): void {
    let off = 0;
    while (off < buf.byteLength) off += writeSync(this.fd, buf, off, Math.min(buf.byteLength - off, 1 << 30));
    this.hash.update(buf);
    this.bytes += buf.byteLength;
  }

  close(): string {
    fsyncSync(this.fd);
    closeSync(this.fd);
    return this.hash.digest('hex');
  }
}

/** Writes one shard. Files go straight into `dir` (the build's temporary folder). */
export class ShardWriter {
  private readonly rowsFile: HashedFile;
  private readonly pixelsFile: HashedFile;
  private readonly table: number[] = [];
  private readonly offsets: bigint[] = [];
  private readonly rowBuf: Buffer;
  rows = 0;

  constructor(
    private readonly dir: string,
    private readonly base: string,
    private readonly T: number,
  ) {
    this.rowsFile = new HashedFile(join(dir, `${base}.rows`));
    this.pixelsFile = new HashedFile(join(dir, `${base}.pixels`));
    this.rowBuf = Buffer.alloc(rowBytes(T));
  }

  /** Bytes written so far (rows + pixels). */
  get bytes(): number {
    return this.rowsFile.bytes + this.pixelsFile.bytes;
  }

  add(row: Row): void {
    const { T } = this;
    if (row.ids.length !== T || row.flags.length !== T) throw new Error(`ShardWriter: row has ${row.ids.length} ids, ${row.flags.length} flags; T = ${T}`);
    for (let t = 0; t < T; t++) this.rowBuf.writeInt32LE(row.ids[t]!, 4 * t);
    this.rowBuf.set(row.flags, 4 * T);
    this.rowsFile.write(this.rowBuf);
    for (const img of row.images) {
      if (img.pixels.length !== img.width * img.height * 3) throw new Error(`ShardWriter: image of ${img.width}×${img.height} has ${img.pixels.length} bytes`);
      this.table.push(this.rows, img.start, img.rows, img.cols, img.width, img.height);
      this.offsets.push(BigInt(this.pixelsFile.bytes));
      this.pixelsFile.write(img.pixels);
    }
    this.rows++;
  }

  finish(): ShardEntry {
    const rowsSha = this.rowsFile.close();
    const pixelsSha = this.pixelsFile.close();
    const n = this.offsets.length;
    const imagesFile = `${this.base}.images.safetensors`;
    const imagesPath = join(this.dir, imagesFile);
    writeSafetensors(
      imagesPath,
      {
        table: { dtype: 'I32', shape: [n, TABLE_COLS], data: Int32Array.from(this.table) },
        pixel_offset: { dtype: 'I64', shape: [n], data: BigInt64Array.from(this.offsets) },
      },
      { format: IMAGE_TABLE_FORMAT, version: '1', columns: 'row,start,rows,cols,width,height' },
    );
    return {
      file: `${this.base}.rows`,
      rows: this.rows,
      bytes: this.rowsFile.bytes,
      sha256: rowsSha,
      images: { file: imagesFile, count: n, bytes: statSync(imagesPath).size, sha256: sha256File(imagesPath) },
      pixels: { file: `${this.base}.pixels`, bytes: this.pixelsFile.bytes, sha256: pixelsSha },
    };
  }
}

function openChecked(path: string, expectedBytes: number): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new UvuError(`${path}: cannot open dataset shard (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new UvuError(`${path}: dataset shard is not a regular file`);
  }
  if (st.size !== expectedBytes) {
    closeSync(fd);
    throw new UvuError(`${path}: dataset shard is ${st.size} bytes, the manifest says ${expectedBytes} (${st.size < expectedBytes ? 'truncated' : 'corrupt'}); rebuild the dataset`);
  }
  return fd;
}

/** Compare a dataset file's sha256 with the manifest: `PATH: … is corrupt (sha256 differs …)`. */
export function checkSha256(path: string, expected: string, what = 'dataset shard'): void {
  let actual: string;
  try {
    actual = sha256File(path);
  } catch (err) {
    throw new UvuError(`${path}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (actual !== expected) throw new UvuError(`${path}: ${what} is corrupt (sha256 differs from the manifest); rebuild the dataset`);
}

/** Random access to the rows of one shard. Holds two open file descriptors until `close`. */
export class ShardReader {
  private readonly rowsFd: number;
  private readonly pixelsFd: number;
  private readonly rowsPath: string;
  private readonly pixelsPath: string;
  /** Image table [n, 6] and pixel offsets [n]; `firstImage[r] … firstImage[r+1]` are row r's entries. */
  private readonly table: Int32Array;
  private readonly pixelOffset: Float64Array;
  private readonly firstImage: Int32Array;
  private readonly buf: Buffer;
  private closed = false;

  /**
   * `entry` comes from a validated manifest (its names are plain file names).
   * @param vocabSize ids must lie in [0, vocabSize); `imageOffset` is the first image id (for checks)
   * @param verify check the sha256 of the three files before the image table is parsed
   */
  constructor(
    dir: string,
    readonly entry: ShardEntry,
    private readonly T: number,
    private readonly vocabSize: number,
    private readonly imageOffset: number,
    verify = false,
  ) {
    this.rowsPath = join(dir, entry.file);
    this.pixelsPath = join(dir, entry.pixels.file);
    const imagesPath = join(dir, entry.images.file);
    const manifestPath = join(dir, 'manifest.json');
    if (entry.bytes !== entry.rows * rowBytes(T)) throw new UvuError(`${manifestPath}: shard ${entry.file} is listed with ${entry.bytes} bytes for ${entry.rows} rows of ${rowBytes(T)} bytes`);
    // Sizes from the manifest, checked before anything of that size is allocated.
    checkAlloc(manifestPath, `the row index of shard ${entry.file} (${entry.rows} rows)`, 4 * (entry.rows + 1));
    checkAlloc(manifestPath, `the image table of shard ${entry.file} (${entry.images.count} images)`, 40 * entry.images.count);
    // Sizes first: a truncated file is named before anything is read from it.
    const imagesFd = openChecked(imagesPath, entry.images.bytes);
    closeSync(imagesFd);
    this.rowsFd = openChecked(this.rowsPath, entry.bytes);
    try {
      this.pixelsFd = openChecked(this.pixelsPath, entry.pixels.bytes);
    } catch (err) {
      closeSync(this.rowsFd);
      throw err;
    }
    try {
      // Hashes before parsing: a damaged image table is named as corrupt, never half-read.
      if (verify) this.verify(dir);
      const t = readImageTable(imagesPath, entry, T);
      this.table = t.table;
      this.pixelOffset = t.pixelOffset;
      this.firstImage = t.firstImage;
    } catch (err) {
      this.close();
      throw err;
    }
    this.buf = Buffer.alloc(rowBytes(T));
  }

  get rows(): number {
    return this.entry.rows;
  }

  /** Read row r (0-based within the shard), range-checked. */
  read(r: number): Row {
    const { T } = this;
    if (!(Number.isInteger(r) && r >= 0 && r < this.entry.rows)) throw new RangeError(`${this.rowsPath}: row ${r} out of range (0 … ${this.entry.rows - 1})`);
    readExact(this.rowsFd, this.buf, r * rowBytes(T), this.rowsPath);
    const ids = new Int32Array(T);
    for (let t = 0; t < T; t++) {
      const id = this.buf.readInt32LE(4 * t);
      if (!(id >= 0 && id < this.vocabSize)) throw new UvuError(`${this.rowsPath}: row ${r} is corrupt: id ${id} at position ${t} is outside the vocabulary (size ${this.vocabSize})`);
      ids[t] = id;
    }
    const flags = new Uint8Array(T);
    flags.set(this.buf.subarray(4 * T, 5 * T));
    for (let t = 0; t < T; t++) {
      if ((flags[t]! & ~FLAG_MASK) !== 0) throw new UvuError(`${this.rowsPath}: row ${r} is corrupt: flag byte ${flags[t]} at position ${t}`);
    }
    const images: RowImage[] = [];
    for (let e = this.firstImage[r]!; e < this.firstImage[r + 1]!; e++) {
      const [, start, rows, cols, width, height] = this.table.subarray(e * TABLE_COLS, (e + 1) * TABLE_COLS);
      for (let i = 0; i < rows * cols; i++) {
        if (!(ids[start + i]! >= this.imageOffset)) throw new UvuError(`${this.rowsPath}: row ${r} is corrupt: position ${start + i} of an image holds a non-image id ${ids[start + i]}`);
      }
      const pixels = new Uint8Array(width * height * 3);
      readExact(this.pixelsFd, pixels, this.pixelOffset[e]!, this.pixelsPath);
      images.push({ start, rows, cols, width, height, pixels });
    }
    return { ids, flags, images };
  }

  /** Compare each file's sha256 with the manifest (reads every byte). */
  verify(dir: string): void {
    for (const f of [this.entry, this.entry.images, this.entry.pixels]) checkSha256(join(dir, f.file), f.sha256);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.rowsFd);
    closeSync(this.pixelsFd);
  }
}

/** Load and validate a shard's image table against its manifest entry and the context length. */
function readImageTable(path: string, entry: ShardEntry, T: number): { table: Int32Array; pixelOffset: Float64Array; firstImage: Int32Array } {
  const { tensors, metadata } = readSafetensors(path);
  const fail = (what: string): never => {
    throw new UvuError(`${path}: invalid image table: ${what}`);
  };
  if (metadata?.format !== IMAGE_TABLE_FORMAT) fail(`metadata "format" is ${JSON.stringify(metadata?.format)}, expected "${IMAGE_TABLE_FORMAT}"`);
  const n = entry.images.count;
  const tab = tensors.table ?? fail('missing tensor "table"');
  const off = tensors.pixel_offset ?? fail('missing tensor "pixel_offset"');
  if (tab.dtype !== 'I32' || tab.shape.length !== 2 || tab.shape[0] !== n || tab.shape[1] !== TABLE_COLS) fail(`"table" is ${tab.dtype} ${JSON.stringify(tab.shape)}, expected I32 [${n}, ${TABLE_COLS}]`);
  if (off.dtype !== 'I64' || off.shape[0] !== n || off.shape.length !== 1) fail(`"pixel_offset" is ${off.dtype} ${JSON.stringify(off.shape)}, expected I64 [${n}]`);
  const table = tab.data as Int32Array;
  const pixelOffset = Float64Array.from(off.data as BigInt64Array, Number);
  const firstImage = new Int32Array(entry.rows + 1);
  let expectedOffset = 0;
  let prevRow = -1;
  let prevEnd = 0;
  for (let e = 0; e < n; e++) {
    const [row, start, rows, cols, width, height] = table.subarray(e * TABLE_COLS, (e + 1) * TABLE_COLS);
    if (!(row >= prevRow && row < entry.rows)) fail(`entry ${e}: row ${row} is out of order or ≥ ${entry.rows}`);
    if (row !== prevRow) prevEnd = 0;
    if (!(rows >= 1 && cols >= 1 && width === cols * PATCH && height === rows * PATCH)) fail(`entry ${e}: ${width}×${height} px does not match a ${rows}×${cols} grid`);
    // c_1 follows <img> and c_N is followed by </img>, all inside the row.
    if (!(start >= prevEnd + 1 && start + rows * cols + 1 <= T)) fail(`entry ${e}: image at position ${start} with ${rows * cols} codes does not fit a row of ${T}`);
    if (pixelOffset[e] !== expectedOffset) fail(`entry ${e}: pixel offset ${pixelOffset[e]}, expected ${expectedOffset}`);
    expectedOffset += width * height * 3;
    for (let r = prevRow + 1; r <= row; r++) firstImage[r] = e;
    prevRow = row;
    prevEnd = start + rows * cols;
  }
  for (let r = prevRow + 1; r <= entry.rows; r++) firstImage[r] = n;
  if (expectedOffset !== entry.pixels.bytes) fail(`its images cover ${expectedOffset} pixel bytes, the pixel file has ${entry.pixels.bytes}`);
  return { table, pixelOffset, firstImage };
}
