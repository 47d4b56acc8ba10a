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
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError } from '../util/errors.js';
import { describeZodError, readExact } from '../util/fsio.js';
import { checkAlloc } from '../util/limits.js';

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

/**
 * sha256 over each tensor's name and bytes, in name order: a content hash of the tensors that
 * does not depend on the file's header layout (checkpoint checksums, content-addressed files).
 */
export function tensorsSha256(tensors: Record<string, Tensor>): string {
  const h = createHash('sha256');
  for (const name of Object.keys(tensors).sort()) {
    const d = tensors[name]!.data;
    h.update(name);
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

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

/** Largest JSON header accepted (the reference implementation's limit, 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

/** "__metadata__": a string → string map (the spec's only allowed value type). */
const MetadataSchema = z.record(z.string(), z.string());

/** One tensor entry of the header (the spec's three fields; the dtype is checked against BYTES after). */
const TensorInfoSchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

/** A tensor entry of a validated header: where its bytes lie in the data section. */
interface TensorEntry {
  name: string;
  dtype: SafeDtype;
  shape: number[];
  begin: number;
  end: number;
}

interface Header {
  fd: number;
  dataStart: number;
  metadata: Record<string, string>;
  entries: TensorEntry[];
}

/** A name that would set the prototype of the plain objects we return ("__proto__") is refused. */
const UNSAFE_NAME = '__proto__';

/**
 * Open a safetensors file and validate its header completely before any tensor byte is read:
 * the length prefix against the file size, UTF-8 JSON, the metadata map and each tensor entry
 * (schema, dtype, shape × dtype size = byte span), and the byte ranges: inside the data section,
 * no overlaps, no holes, nothing after the last tensor (the spec's "entirely indexed" buffer).
 * Every failure is `FILE: not a valid safetensors file: WHAT`.
 */
function openHeader(path: string): Header {
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
    readExact(fd, lenBuf, 0, path);
    const headerLen = Number(lenBuf.readBigUInt64LE());
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) throw bad(`header length ${headerLen} exceeds the file size ${fileSize}`);
    const headerBuf = Buffer.alloc(headerLen);
    readExact(fd, headerBuf, 8, path);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
    } catch {
      throw bad('header is not JSON');
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
    const dataStart = 8 + headerLen;
    const { metadata, entries } = validateHeader(header as Record<string, unknown>, fileSize - dataStart, bad);
    return { fd, dataStart, metadata, entries };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** Check the parsed header object (see openHeader) against a data section of `dataLen` bytes. */
function validateHeader(header: Record<string, unknown>, dataLen: number, bad: (what: string) => UvuError): { metadata: Record<string, string>; entries: TensorEntry[] } {
  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      const r = MetadataSchema.safeParse(raw);
      if (!r.success) throw bad(`"__metadata__" must map names to strings: ${describeZodError(r.error)}`);
      if (Object.hasOwn(raw as object, UNSAFE_NAME)) throw bad(`metadata name "${UNSAFE_NAME}" is not allowed`);
      metadata = r.data;
      continue;
    }
    if (name === UNSAFE_NAME) throw bad(`tensor name "${UNSAFE_NAME}" is not allowed`);
    const r = TensorInfoSchema.safeParse(raw);
    if (!r.success) throw bad(`tensor "${name}": ${describeZodError(r.error)}`);
    const info = r.data;
    if (!Object.hasOwn(BYTES, info.dtype)) throw bad(`tensor "${name}" has unsupported dtype ${JSON.stringify(info.dtype)}`);
    const dtype = info.dtype as SafeDtype;
    const [begin, end] = info.data_offsets;
    const bytes = numel(info.shape) * BYTES[dtype];
    if (end - begin !== bytes) throw bad(`tensor "${name}": data_offsets span ${end - begin} bytes but shape ${JSON.stringify(info.shape)} ${dtype} needs ${bytes}`);
    if (end > dataLen) throw bad(`tensor "${name}" lies outside the file (file truncated? data section is ${dataLen} bytes, tensor ends at ${end})`);
    entries.push({ name, dtype, shape: info.shape, begin, end });
  }
  // The byte ranges must tile the data section exactly: sorted by offset, each starts where the previous ended.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorEntry | null = null;
  for (const e of sorted) {
    if (e.begin < covered) throw bad(`tensors "${previous!.name}" and "${e.name}" overlap (bytes ${e.begin} … ${Math.min(covered, e.end)} of the data section)`);
    if (e.begin > covered) throw bad(`bytes ${covered} … ${e.begin} of the data section belong to no tensor (before "${e.name}")`);
    covered = e.end;
    previous = e;
  }
  if (covered !== dataLen) throw bad(`the data section has ${dataLen - covered} bytes after the last tensor (its ${dataLen} bytes must be exactly the tensors' bytes)`);
  return { metadata, entries };
}

/**
 * A JSON-valued metadata field, parsed: `WHERE: metadata "KEY" is missing` or `… is not valid
 * JSON` otherwise (`where` names the file and what it should be). `fallback` stands in for a
 * missing field when given. The caller checks the value against its schema.
 */
export function metadataJson(metadata: Record<string, string>, key: string, where: string, fallback?: string): unknown {
  const raw = metadata[key] ?? fallback;
  if (raw === undefined) throw new UvuError(`${where}: metadata "${key}" is missing`);
  try {
    return JSON.parse(raw);
  } catch {
    throw new UvuError(`${where}: metadata "${key}" is not valid JSON`);
  }
}

/** The "__metadata__" map of a safetensors file, reading only its header (codebooks can be GBs). */
export function readSafetensorsMetadata(path: string): Record<string, string> {
  const { fd, metadata } = openHeader(path);
  closeSync(fd);
  return metadata;
}

/**
 * Read a whole safetensors file after validating its header (openHeader). Each tensor's size
 * passes the allocation limit (checkAlloc) before its buffer is allocated. Errors name the file.
 */
export function readSafetensors(path: string): SafetensorsFile {
  const { fd, dataStart, metadata, entries } = openHeader(path);
  try {
    const tensors: Record<string, Tensor> = {};
    for (const { name, dtype, shape, begin, end } of entries) {
      const bytes = end - begin;
      checkAlloc(path, `tensor "${name}" (${dtype} ${JSON.stringify(shape)})`, bytes);
      // Read into a fresh, aligned buffer (the file's data section need not be aligned for every dtype).
      const buf = new ArrayBuffer(bytes);
      readExact(fd, new Uint8Array(buf), dataStart + begin, path, `tensor "${name}" is truncated`);
      tensors[name] = { dtype, shape, data: viewAs(dtype, buf, 0, numel(shape)) };
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}
