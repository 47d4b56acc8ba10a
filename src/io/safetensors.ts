/**
 * safetensors reader/writer (https://github.com/huggingface/safetensors, format spec in its README):
 *   [u64 little-endian header length N][N bytes of JSON header, space-padded][raw little-endian tensor bytes]
 * The header maps tensor names to { dtype, shape, data_offsets: [begin, end) relative to the data
 * section } plus an optional "__metadata__" string→string map. Files we write load with Python's
 * `safetensors.numpy.load_file` / `safetensors.torch.load_file`.
 *
 * The format is small and fully specified; the npm packages that implement it are unmaintained
 * stubs, so we keep ~150 lines here with strict validation on read.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError } from '../util/errors.js';

export type SafeDtype = 'F32' | 'F64' | 'I64' | 'I32' | 'U8' | 'U32' | 'I16' | 'U16';
type TypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint32Array | Int16Array | Uint16Array;

export interface Tensor {
  dtype: SafeDtype;
  shape: number[];
  data: TypedArray;
}

const BYTES: Record<SafeDtype, number> = { F32: 4, F64: 8, I64: 8, I32: 4, U8: 1, U32: 4, I16: 2, U16: 2 };

function viewAs(dtype: SafeDtype, buf: ArrayBuffer, byteOffset: number, length: number): TypedArray {
  switch (dtype) {
    case 'F32': return new Float32Array(buf, byteOffset, length);
    case 'F64': return new Float64Array(buf, byteOffset, length);
    case 'I64': return new BigInt64Array(buf, byteOffset, length);
    case 'I32': return new Int32Array(buf, byteOffset, length);
    case 'U8': return new Uint8Array(buf, byteOffset, length);
    case 'U32': return new Uint32Array(buf, byteOffset, length);
    case 'I16': return new Int16Array(buf, byteOffset, length);
    case 'U16': return new Uint16Array(buf, byteOffset, length);
  }
}

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Write tensors (in the given key order) and string metadata to `path`, atomically. */
export function writeSafetensors(path: string, tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const bodies: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = numel(t.shape) * BYTES[t.dtype];
    if (t.data.byteLength !== bytes) {
      throw new Error(`safetensors: tensor "${name}" has ${t.data.byteLength} bytes, shape ${JSON.stringify(t.shape)} ${t.dtype} needs ${bytes}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    bodies.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad so the data section starts 8-byte aligned (as the reference implementation does).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(jsonBytes.length));
  writeFileAtomic(path, [len, jsonBytes, ...bodies]);
}

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Open a safetensors file and parse its JSON header (validated against the file size). */
function openHeader(path: string): { fd: number; fileSize: number; headerLen: number; header: Record<string, unknown>; bad: (what: string) => UvuError } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new UvuError(`${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const bad = (what: string): UvuError => new UvuError(`${path}: not a valid safetensors file: ${what}`);
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw bad(`file is ${fileSize} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE());
    if (headerLen > 100_000_000 || 8 + headerLen > fileSize) throw bad(`header length ${headerLen} exceeds the file size ${fileSize}`);
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw bad('header is not JSON');
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
    return { fd, fileSize, headerLen, header, bad };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** The "__metadata__" map of a safetensors file, reading only its header (codebooks can be GBs). */
export function readSafetensorsMetadata(path: string): Record<string, string> {
  const { fd, header } = openHeader(path);
  closeSync(fd);
  const meta = header.__metadata__;
  return meta && typeof meta === 'object' ? (meta as Record<string, string>) : {};
}

/** Read a whole safetensors file, validating the header against the file size. Errors name the file. */
export function readSafetensors(path: string): SafetensorsFile {
  const { fd, fileSize, headerLen, header, bad } = openHeader(path);
  try {
    const dataStart = 8 + headerLen;
    const dataLen = fileSize - dataStart;
    const metadata: Record<string, string> = {};
    const tensors: Record<string, Tensor> = {};
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') {
        for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
          if (typeof v !== 'string') throw bad(`metadata "${k}" is not a string`);
          metadata[k] = v;
        }
        continue;
      }
      const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof info.dtype !== 'string' || !(info.dtype in BYTES)) throw bad(`tensor "${name}" has unsupported dtype ${JSON.stringify(info.dtype)}`);
      const dtype = info.dtype as SafeDtype;
      if (!Array.isArray(info.shape) || !info.shape.every((s) => Number.isInteger(s) && s >= 0)) throw bad(`tensor "${name}" has an invalid shape`);
      const shape = info.shape as number[];
      const offs = info.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o))) throw bad(`tensor "${name}" has invalid data_offsets`);
      const [begin, end] = offs as [number, number];
      const bytes = numel(shape) * BYTES[dtype];
      if (end - begin !== bytes) throw bad(`tensor "${name}": data_offsets span ${end - begin} bytes but shape ${JSON.stringify(shape)} ${dtype} needs ${bytes}`);
      if (begin < 0 || end > dataLen) throw bad(`tensor "${name}" lies outside the file (file truncated? data section is ${dataLen} bytes, tensor ends at ${end})`);
      // Read into a fresh, aligned buffer (the file's data section need not be aligned for every dtype).
      const buf = new ArrayBuffer(bytes);
      const u8 = new Uint8Array(buf);
      let got = 0;
      while (got < bytes) {
        const n = readSync(fd, u8, got, Math.min(bytes - got, 1 << 30), dataStart + begin + got);
        if (n === 0) throw bad(`tensor "${name}" is truncated`);
        got += n;
      }
      tensors[name] = { dtype, shape, data: viewAs(dtype, buf, 0, numel(shape)) };
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}
