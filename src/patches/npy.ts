/**
 * NumPy .npy (format 1.0) for float32 arrays, little-endian, C order — readable with
 * `numpy.load`. Used to hand patch samples to Python tools.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { UvuError } from '../util/errors.js';
import { readExact } from '../util/fsio.js';
import { fsErrorReason } from '../util/fserror.js';
import { checkAlloc } from '../util/limits.js';
import { tempPathFor } from '../util/atomic.js';
import { Rng } from '../util/rng.js';
import { PATCH_DIM, patchesToFloat } from './patchify.js';
import type { PatchStore } from './store.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/** Header bytes (magic, version 1.0, length, dict padded so data starts at a multiple of 64). */
function npyHeader(shape: number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + dict.length + 1;
  dict += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  if (dict.length > 65535) throw new UvuError(`npy header too long for shape ${shapeText}`);
  const out = new Uint8Array(10 + dict.length);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out[8] = dict.length & 0xff;
  out[9] = dict.length >> 8;
  out.set(Buffer.from(dict, 'latin1'), 10);
  return out;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off, bytes.byteLength - off);
}

function littleEndianBytes(f: Float32Array): Uint8Array {
  // Float32Array is platform-endian; every platform Node supports in practice is little-endian.
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

/**
 * Stream an .npy file: `fill(write)` calls write() with consecutive float32 blocks totalling
 * prod(shape) elements. Written to a temp file and renamed, so a crash leaves no partial file.
 */
function writeNpyStreaming(path: string, shape: number[], fill: (write: (block: Float32Array) => void) => void): void {
  const total = shape.reduce((a, b) => a * b, 1);
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'w');
  try {
    writeAll(fd, npyHeader(shape));
    let written = 0;
    fill((block) => {
      written += block.length;
      if (written > total) throw new Error(`npy: more data than shape [${shape.join(', ')}]`);
      writeAll(fd, littleEndianBytes(block));
    });
    if (written !== total) throw new Error(`npy: wrote ${written} values, shape [${shape.join(', ')}] needs ${total}`);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Write `data` (row-major, prod(shape) values) as a float32 .npy file, atomically. */
export function writeNpyF32(path: string, data: Float32Array, shape: number[]): void {
  const total = shape.reduce((a, b) => a * b, 1);
  if (total !== data.length) throw new UvuError(`writeNpyF32: shape [${shape.join(', ')}] needs ${total} values, got ${data.length}`);
  writeNpyStreaming(path, shape, (write) => write(data));
}

/** Read a float32 little-endian C-order .npy file. */
export function readNpyF32(path: string): { data: Float32Array; shape: number[] } {
  return readNpy(path, '<f4', (n) => new Float32Array(n));
}

/** Read an int32 little-endian C-order .npy file (e.g. ids written by numpy/Faiss). */
export function readNpyI32(path: string): { data: Int32Array; shape: number[] } {
  return readNpy(path, '<i4', (n) => new Int32Array(n));
}

/**
 * Read a little-endian C-order .npy file (format 1.0, 2.0 or 3.0). The header is checked before
 * anything is allocated: magic, version, header length within the file, dtype, C order, a shape
 * of non-negative integers whose data fits the allocation limit and the file's size exactly.
 * Every failure is a one-line UvuError naming the file.
 */
function readNpy<T extends Float32Array | Int32Array>(path: string, descr: '<f4' | '<i4', make: (n: number) => T): { data: T; shape: number[] } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new UvuError(`${path}: cannot read the .npy file (${fsErrorReason(path, err)})`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    const pre = new Uint8Array(12);
    const got = readSync(fd, pre, 0, 12, 0);
    if (got < 10 || MAGIC.some((b, i) => pre[i] !== b)) throw new UvuError(`${path}: not an .npy file`);
    const major = pre[6]!;
    if (major < 1 || major > 3) throw new UvuError(`${path}: .npy format version ${major}.${pre[7]} is not supported (1.0, 2.0, 3.0 are)`);
    if (major > 1 && got < 12) throw new UvuError(`${path}: .npy header truncated`);
    const prefix = major === 1 ? 10 : 12;
    const headerLen = major === 1 ? pre[8]! | (pre[9]! << 8) : new DataView(pre.buffer).getUint32(8, true);
    const dataStart = prefix + headerLen;
    if (dataStart > fileSize) throw new UvuError(`${path}: .npy header length ${headerLen} runs past the end of the file (${fileSize} bytes)`);
    if (headerLen > 1 << 20) throw new UvuError(`${path}: .npy header of ${headerLen} bytes is implausibly long`);
    const headerBytes = new Uint8Array(headerLen);
    readExact(fd, headerBytes, prefix, path, '.npy header truncated');
    const header = Buffer.from(headerBytes).toString(major === 3 ? 'utf8' : 'latin1');
    if (!new RegExp(`'descr':\\s*'${descr}'`).test(header)) throw new UvuError(`${path}: .npy dtype is not '${descr}'`);
    if (!/'fortran_order':\s*False/.test(header)) throw new UvuError(`${path}: only C-order .npy files are supported (fortran_order must be False)`);
    const m = /'shape':\s*\(([^)]*)\)/.exec(header);
    if (!m) throw new UvuError(`${path}: .npy header has no shape`);
    const parts = m[1]!
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
    if (parts.some((x) => !/^\d+$/.test(x))) throw new UvuError(`${path}: .npy shape (${m[1]}) is not a tuple of non-negative integers`);
    const shape = parts.map(Number);
    const total = shape.reduce((a, b) => a * b, 1);
    const bytes = total * 4;
    checkAlloc(path, `the .npy data of shape [${shape.join(', ')}]`, bytes);
    if (fileSize - dataStart !== bytes) {
      throw new UvuError(`${path}: .npy data is ${fileSize - dataStart} bytes, shape [${shape.join(', ')}] needs ${bytes}${fileSize - dataStart < bytes ? ' (truncated?)' : ''}`);
    }
    const data = make(total);
    readExact(fd, new Uint8Array(data.buffer), dataStart, path, '.npy data truncated');
    return { data, shape };
  } finally {
    closeSync(fd);
  }
}

/** The ascending patch indices `exportSample(store, count, seed, …)` writes (same as `store.sample(count, new Rng(seed))`). */
export function sampleExportIndices(storeCount: number, count: number, seed: number): Uint32Array {
  return new Rng(seed).sampleIndices(storeCount, count).sort();
}

/**
 * Export `count` patches drawn uniformly without replacement (seeded) as float32
 * [count, 3072] in [0, 1], rows in ascending store order. Reads and converts `blockRows`
 * rows at a time, so memory is O(count · 4 B) for the indices plus one block.
 */
export function exportSample(store: PatchStore, count: number, seed: number, outPath: string, blockRows = 4096): void {
  if (!(Number.isInteger(count) && count >= 1 && count <= store.count)) {
    throw new UvuError(`cannot export ${count} patches from a store of ${store.count}`);
  }
  const indices = sampleExportIndices(store.count, count, seed);
  const block = new Float32Array(blockRows * PATCH_DIM);
  writeNpyStreaming(outPath, [count, PATCH_DIM], (write) => {
    for (let start = 0; start < count; start += blockRows) {
      const n = Math.min(blockRows, count - start);
      const { patches } = store.readIndices(indices.subarray(start, start + n));
      write(patchesToFloat(patches, block).subarray(0, n * PATCH_DIM));
    }
  });
}
