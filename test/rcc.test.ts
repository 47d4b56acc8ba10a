import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { parseRcc } from '../scripts/rcc.js';
import { UvuError } from '../src/util/errors.js';

/** One tree node as rcc writes it (version ≥ 2: 22 bytes). */
type Node =
  | { name: string; dir: true; childCount: number; firstChild: number }
  | { name: string; dir: false; flags: number; payload: Buffer };

/**
 * Build an rcc file by hand, following the layout in scripts/rcc.ts: header, names, data, tree.
 * Node 0 is the root; `nodes` must already be in tree order (children contiguous).
 */
function buildRcc(nodes: Node[], version = 3): Buffer {
  const names: Buffer[] = [];
  const nameOffset = new Map<string, number>();
  let namesLen = 0;
  for (const n of nodes.slice(1)) {
    if (nameOffset.has(n.name)) continue;
    const utf16 = Buffer.from(n.name, 'utf16le').swap16();
    const head = Buffer.alloc(6);
    head.writeUInt16BE(n.name.length, 0);
    head.writeUInt32BE(0x1234, 2); // hash: unused by the parser
    nameOffset.set(n.name, namesLen);
    names.push(head, utf16);
    namesLen += 6 + utf16.length;
  }
  const datas: Buffer[] = [];
  const dataOffset: number[] = [];
  let dataLen = 0;
  for (const n of nodes) {
    if (n.dir) continue;
    const size = Buffer.alloc(4);
    size.writeUInt32BE(n.payload.length, 0);
    dataOffset.push(dataLen);
    datas.push(size, n.payload);
    dataLen += 4 + n.payload.length;
  }
  const nodeSize = version >= 2 ? 22 : 14;
  const tree = Buffer.alloc(nodes.length * nodeSize);
  let fileIndex = 0;
  nodes.forEach((n, i) => {
    const at = i * nodeSize;
    tree.writeUInt32BE(i === 0 ? 0 : nameOffset.get(n.name)!, at);
    if (n.dir) {
      tree.writeUInt16BE(0x02, at + 4);
      tree.writeUInt32BE(n.childCount, at + 6);
      tree.writeUInt32BE(n.firstChild, at + 10);
    } else {
      tree.writeUInt16BE(n.flags, at + 4);
      tree.writeUInt32BE(dataOffset[fileIndex++]!, at + 10);
    }
  });
  const header = Buffer.alloc(version >= 3 ? 24 : 20);
  header.write('qres', 0, 'latin1');
  header.writeUInt32BE(version, 4);
  const namesAt = header.length;
  const dataAt = namesAt + namesLen;
  const treeAt = dataAt + dataLen;
  header.writeUInt32BE(treeAt, 8);
  header.writeUInt32BE(dataAt, 12);
  header.writeUInt32BE(namesAt, 16);
  return Buffer.concat([header, ...names, ...datas, tree]);
}

/** qCompress format: u32 uncompressed size + zlib stream. */
function qCompress(data: Buffer): Buffer {
  const size = Buffer.alloc(4);
  size.writeUInt32BE(data.length, 0);
  return Buffer.concat([size, deflateSync(data)]);
}

const plain = Buffer.from('hello rcc');
const big = Buffer.from('photo bytes '.repeat(100));
const bigStored = qCompress(big);
const sampleNodes: Node[] = [
  { name: '', dir: true, childCount: 2, firstChild: 1 },
  { name: 'img', dir: true, childCount: 3, firstChild: 3 },
  { name: 'top.txt', dir: false, flags: 0, payload: plain },
  { name: 'a.txt', dir: false, flags: 0, payload: plain },
  { name: 'b.bin', dir: false, flags: 0x01, payload: bigStored },
  { name: 'c.zst', dir: false, flags: 0x04, payload: Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]) },
];

test('parseRcc reads directories, plain, zlib and zstd entries of a hand-built file', () => {
  for (const version of [1, 2, 3]) {
    const entries = parseRcc(buildRcc(sampleNodes, version));
    assert.deepEqual(
      entries.map((e) => [e.path, e.compression, e.size]),
      [
        ['img/a.txt', 'none', plain.length],
        ['img/b.bin', 'zlib', bigStored.length],
        ['img/c.zst', 'zstd', 6],
        ['top.txt', 'none', plain.length],
      ],
      `version ${version}`,
    );
    assert.deepEqual(entries[0]!.data, plain);
    assert.deepEqual(entries[1]!.data, big);
    assert.equal(entries[2]!.data, null);
  }
});

test('parseRcc decodes non-ASCII names (UTF-16BE)', () => {
  const nodes: Node[] = [
    { name: '', dir: true, childCount: 1, firstChild: 1 },
    { name: 'élan-写真.jpg', dir: false, flags: 0, payload: plain },
  ];
  assert.equal(parseRcc(buildRcc(nodes))[0]!.path, 'élan-写真.jpg');
});

test('parseRcc rejects corrupt input with a clear error', () => {
  const good = buildRcc(sampleNodes);
  const expectError = (buf: Buffer, pattern: RegExp) =>
    assert.throws(() => parseRcc(buf, 'x.rcc'), (err: unknown) => err instanceof UvuError && pattern.test(err.message) && err.message.startsWith('x.rcc: '));

  const badMagic = Buffer.from(good);
  badMagic.write('qrez', 0, 'latin1');
  expectError(badMagic, /magic/);

  const badVersion = Buffer.from(good);
  badVersion.writeUInt32BE(9, 4);
  expectError(badVersion, /version 9/);

  // Point the root's children past the node table.
  const badChildren = Buffer.from(good);
  badChildren.writeUInt32BE(40, badChildren.readUInt32BE(8) + 10);
  expectError(badChildren, /beyond node table/);

  // A directory that lists itself as its own child.
  const cyclic = Buffer.from(good);
  cyclic.writeUInt32BE(0, cyclic.readUInt32BE(8) + 10);
  expectError(cyclic, /twice/);

  // Corrupt the zlib header of b.bin. Blobs are [u32 size][bytes] in node order: top.txt, a.txt, b.bin.
  const badZlib = Buffer.from(good);
  const zlibAt = badZlib.readUInt32BE(12) + 2 * (4 + plain.length) + 4 + 4;
  badZlib.fill(0xff, zlibAt, zlibAt + 2);
  expectError(badZlib, /zlib entry "img\/b.bin" does not inflate/);

  expectError(good.subarray(0, good.length - 30), /beyond|past end/);
  expectError(Buffer.from('qres'), /magic/);
});

test('parseRcc reads a real GCompris resource file when the package is cached', (t) => {
  const cache = fileURLToPath(new URL('../../data/.debs/', import.meta.url));
  const deb = existsSync(cache) ? readdirSync(cache).find((f) => f.startsWith('gcompris-qt-data_') && f.endsWith('.deb')) : undefined;
  if (!deb) {
    t.skip(`no gcompris-qt-data_*.deb in ${cache} (npm run data:photos downloads it)`);
    return;
  }
  let rcc: Buffer;
  try {
    rcc = execSync(`dpkg-deb --fsys-tarfile '${cache}${deb}' | tar -xO ./usr/share/gcompris-qt/rcc/erase.rcc`, { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    const why = e.stderr?.toString().trim().split('\n').filter(Boolean).join('; ') || e.message.split('\n')[0];
    t.skip(`cannot extract erase.rcc from ${deb} (dpkg-deb or tar missing, or not in this version): ${why}`);
    return;
  }
  const entries = parseRcc(rcc, 'erase.rcc');
  const images = entries.filter((e) => e.path.endsWith('.webp') && e.data !== null);
  assert.ok(images.length >= 10, `expected the erase activity's photos, got ${images.length}`);
  for (const e of images) {
    assert.equal(e.data!.toString('latin1', 0, 4), 'RIFF', e.path);
    assert.equal(e.data!.toString('latin1', 8, 12), 'WEBP', e.path);
  }
  assert.ok(entries.some((e) => e.path.endsWith('.qml') && e.compression === 'zlib'));
});
