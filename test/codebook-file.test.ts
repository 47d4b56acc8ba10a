import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadCodebook, saveCodebook, type Codebook } from '../src/codebook/file.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { UvuError } from '../src/util/errors.js';

const D = 3072;
const dir = mkdtempSync(join(tmpdir(), 'uvu-cb-'));

function sampleCodebook(K: number, withAssign: boolean): Codebook {
  const centersPixel = Float32Array.from({ length: K * D }, (_, i) => (i % 251) / 251);
  return {
    K,
    D,
    patchSize: 32,
    centersPixel,
    centersAssign: withAssign ? Float32Array.from(centersPixel, (x, i) => x + (i % 7) * 0.01) : null,
    counts: Float32Array.from({ length: K }, (_, k) => k + 1),
    pe: withAssign ? { type: '2d-sincos', scale: 0.1 } : { type: 'none', scale: 0 },
    build: { method: 'kmeans', size: K, iters: 3 },
    data: 'abc123',
    metrics: { prp: 0.9 },
  };
}

test('codebook save → load round trip, with and without assignment centres', () => {
  for (const withAssign of [false, true]) {
    const path = join(dir, `cb-${withAssign}.safetensors`);
    const cb = sampleCodebook(5, withAssign);
    saveCodebook(path, cb);
    const back = loadCodebook(path);
    assert.equal(back.K, 5);
    assert.deepEqual(back.centersPixel, cb.centersPixel);
    assert.deepEqual(back.centersAssign, cb.centersAssign);
    assert.deepEqual(back.counts, cb.counts);
    assert.deepEqual(back.pe, cb.pe);
    assert.deepEqual(back.build, cb.build);
    assert.equal(back.data, 'abc123');
  }
  // Atomic write leaves no temp files behind.
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
});

test('safetensors layout follows the spec: u64 header length, JSON, 8-byte aligned data', () => {
  const path = join(dir, 'layout.safetensors');
  writeSafetensors(path, { a: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }, b: { dtype: 'I64', shape: [1], data: new BigInt64Array([7n]) } }, { k: 'v' });
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  assert.deepEqual(header.a, { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
  assert.deepEqual(header.b, { dtype: 'I64', shape: [1], data_offsets: [24, 32] });
  assert.deepEqual(header.__metadata__, { k: 'v' });
  assert.equal(buf.readFloatLE(8 + n + 4 * 5), 6);
  const back = readSafetensors(path);
  assert.deepEqual(Array.from(back.tensors.a!.data as Float32Array), [1, 2, 3, 4, 5, 6]);
});

test('a codebook written here loads in numpy by the safetensors spec (when /usr/bin/python3 has numpy)', (t) => {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    const why = probe.error?.message ?? probe.stderr.trim().split('\n').pop();
    return t.skip(`numpy not importable by /usr/bin/python3 (${why}); CI installs python3-numpy`);
  }
  const path = join(dir, 'py.safetensors');
  const cb = sampleCodebook(3, true);
  saveCodebook(path, cb);
  const script = `
import json, struct, sys, numpy as np
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8+n])
body = raw[8+n:]
def get(name):
    e = h[name]; b, end = e['data_offsets']
    return np.frombuffer(body[b:end], dtype={'F32': '<f4', 'I64': '<i8'}[e['dtype']]).reshape(e['shape'])
p = get('centers_pixel'); a = get('centers_assign'); c = get('counts')
print(json.dumps({'shape': list(p.shape), 'p': float(p[2, 100]), 'a': float(a[1, 5]), 'c': c.tolist(), 'meta': h['__metadata__']['format']}))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script, path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.shape, [3, D]);
  assert.equal(out.p, cb.centersPixel[2 * D + 100]);
  assert.equal(out.a, cb.centersAssign![D + 5]);
  assert.deepEqual(out.c, [1, 2, 3]);
  assert.equal(out.meta, 'uvu-codebook');
});

function expectError(path: string, pattern: RegExp): void {
  assert.throws(() => loadCodebook(path), (err: unknown) => err instanceof UvuError && pattern.test(err.message) && err.message.includes(path));
}

test('invalid codebooks are refused with a message that names the file and the problem', () => {
  // Wrong dimension.
  const wrongDim = join(dir, 'wrong-dim.safetensors');
  writeSafetensors(wrongDim, { centers_pixel: { dtype: 'F32', shape: [2, 768], data: new Float32Array(2 * 768) }, counts: { dtype: 'F32', shape: [2], data: new Float32Array(2) } }, { format: 'uvu-codebook', version: '1', patch_size: '32', pe: '{"type":"none","scale":0}', build: '{}', data: '', metrics: '{}' });
  expectError(wrongDim, /dimension 768, expected 3072/);
  // NaN and Inf.
  const cb = sampleCodebook(4, false);
  cb.centersPixel[D * 2 + 17] = NaN;
  const nan = join(dir, 'nan.safetensors');
  saveCodebook(nan, cb);
  expectError(nan, /non-finite value \(NaN\) at entry 2, dim 17/);
  cb.centersPixel[D * 2 + 17] = Infinity;
  saveCodebook(nan, cb);
  expectError(nan, /non-finite value \(Infinity\)/);
  // Truncated file.
  const good = join(dir, 'good.safetensors');
  saveCodebook(good, sampleCodebook(4, false));
  const bytes = readFileSync(good);
  const truncated = join(dir, 'truncated.safetensors');
  writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
  expectError(truncated, /truncated|outside the file/);
  // Not a safetensors file at all, zero bytes, wrong format tag, missing file.
  const junk = join(dir, 'junk.safetensors');
  writeFileSync(junk, 'hello world, not a tensor file');
  expectError(junk, /not a valid safetensors file/);
  const empty = join(dir, 'empty.safetensors');
  writeFileSync(empty, '');
  expectError(empty, /shorter than the 8-byte header/);
  const other = join(dir, 'other.safetensors');
  writeSafetensors(other, { x: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, { format: 'something-else' });
  expectError(other, /"format" is "something-else"/);
  expectError(join(dir, 'missing.safetensors'), /cannot open \(ENOENT\)/);
  // PE on but no assignment table.
  const noAssign = join(dir, 'no-assign.safetensors');
  const pe = sampleCodebook(2, false);
  pe.pe = { type: '2d-sincos', scale: 0.1 };
  saveCodebook(noAssign, pe);
  expectError(noAssign, /centers_assign" is missing/);
});
