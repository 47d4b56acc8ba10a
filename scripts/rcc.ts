/**
 * Parser for Qt binary resource files (`.rcc`, as written by `rcc -binary`), used to pull
 * photographs out of packages that ship their assets that way (e.g. GCompris).
 *
 * Layout (all integers big-endian):
 *   header: "qres", u32 version (1..3), u32 treeOffset, u32 dataOffset, u32 namesOffset,
 *           [version ≥ 3: u32 overallFlags]
 *   tree:   nodes of 14 bytes (version 1) or 22 bytes (version ≥ 2, + u64 mtime), node 0 = root:
 *           u32 nameOffset, u16 flags,
 *           directory (flags & 0x02): u32 childCount, u32 firstChildIndex
 *           file:                     u16 territory, u16 language, u32 dataOffset
 *   names:  at namesOffset + nameOffset: u16 length (UTF-16 units), u32 hash, UTF-16BE chars
 *   data:   at dataOffset + node.dataOffset: u32 size, then `size` bytes. With flag 0x01 the bytes
 *           are qCompress output (u32 uncompressed size + zlib stream); with flag 0x04 they are a
 *           zstd frame (Qt ≥ 5.13), which Node 20 cannot decode.
 */
import { inflateSync } from 'node:zlib';
import { UvuError } from '../src/util/errors.js';

export interface RccEntry {
  /** Resource path without the leading ':/' (e.g. "gcompris/src/activities/x/resource/a.jpg"). */
  path: string;
  /** Decoded bytes; null when the entry is zstd-compressed (not decodable in Node 20). */
  data: Buffer | null;
  compression: 'none' | 'zlib' | 'zstd';
  /** Stored size in bytes (compressed size for compressed entries). */
  size: number;
}

const FLAG_ZLIB = 0x01;
const FLAG_DIRECTORY = 0x02;
const FLAG_ZSTD = 0x04;

/** Parse every file entry of an rcc buffer, depth-first in tree order. `source` names the input in errors. */
export function parseRcc(buf: Buffer, source = 'rcc buffer'): RccEntry[] {
  const fail = (what: string): never => {
    throw new UvuError(`${source}: invalid Qt rcc file: ${what}`);
  };
  if (buf.length < 20 || buf.toString('latin1', 0, 4) !== 'qres') fail('missing "qres" magic');
  const version = buf.readUInt32BE(4);
  if (version < 1 || version > 3) fail(`unsupported version ${version}`);
  const treeOffset = buf.readUInt32BE(8);
  const dataOffset = buf.readUInt32BE(12);
  const namesOffset = buf.readUInt32BE(16);
  const nodeSize = version >= 2 ? 22 : 14;
  for (const [name, off] of [['tree', treeOffset], ['data', dataOffset], ['names', namesOffset]] as const) {
    if (off > buf.length) fail(`${name} offset ${off} beyond end of file (${buf.length} bytes)`);
  }
  const nodeCount = Math.floor((buf.length - treeOffset) / nodeSize);

  const need = (start: number, len: number, what: string): void => {
    if (start + len > buf.length) fail(`${what} at byte ${start} (+${len}) runs past end of file (${buf.length} bytes)`);
  };

  const nameAt = (nameOffset: number): string => {
    const at = namesOffset + nameOffset;
    need(at, 6, 'name header');
    const units = buf.readUInt16BE(at);
    need(at + 6, units * 2, 'name');
    // Swap to little-endian for Buffer's utf16le decoder.
    const le = Buffer.from(buf.subarray(at + 6, at + 6 + units * 2));
    le.swap16();
    return le.toString('utf16le');
  };

  const out: RccEntry[] = [];
  // Each node is visited once; a cycle or shared child would show up as a revisit.
  const visited = new Uint8Array(nodeCount);

  const visit = (index: number, prefix: string): void => {
    if (index >= nodeCount) fail(`tree node index ${index} beyond node table (${nodeCount} nodes)`);
    if (visited[index]) fail(`tree node ${index} reached twice (cyclic tree)`);
    visited[index] = 1;
    const at = treeOffset + index * nodeSize;
    const flags = buf.readUInt16BE(at + 4);
    const name = index === 0 ? '' : nameAt(buf.readUInt32BE(at));
    const path = prefix === '' ? name : `${prefix}/${name}`;
    if (flags & FLAG_DIRECTORY) {
      const childCount = buf.readUInt32BE(at + 6);
      const firstChild = buf.readUInt32BE(at + 10);
      if (firstChild + childCount > nodeCount) {
        fail(`directory "${path}" children ${firstChild}..${firstChild + childCount - 1} beyond node table (${nodeCount} nodes)`);
      }
      for (let c = 0; c < childCount; c++) visit(firstChild + c, path);
      return;
    }
    if (index === 0) fail('root node is not a directory');
    const blobAt = dataOffset + buf.readUInt32BE(at + 10);
    need(blobAt, 4, `data size of "${path}"`);
    const size = buf.readUInt32BE(blobAt);
    need(blobAt + 4, size, `data of "${path}"`);
    const stored = buf.subarray(blobAt + 4, blobAt + 4 + size);
    if (flags & FLAG_ZSTD) {
      out.push({ path, data: null, compression: 'zstd', size });
    } else if (flags & FLAG_ZLIB) {
      if (size < 4) fail(`zlib entry "${path}" shorter than its 4-byte size prefix`);
      const expected = stored.readUInt32BE(0);
      let data: Buffer;
      try {
        data = inflateSync(stored.subarray(4));
      } catch (err) {
        return fail(`zlib entry "${path}" does not inflate (${(err as Error).message})`);
      }
      if (data.length !== expected) fail(`zlib entry "${path}" inflated to ${data.length} bytes, header says ${expected}`);
      out.push({ path, data, compression: 'zlib', size });
    } else {
      out.push({ path, data: Buffer.from(stored), compression: 'none', size });
    }
  };

  if (nodeCount < 1) fail('empty tree');
  visit(0, '');
  return out;
}
