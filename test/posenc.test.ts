import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodingVector, PosEncoder } from '../src/codebook/posenc.js';

const D = 3072;
const H = D / 2;

test('2d-sincos: row in the first half, column in the second, sin on even dims and cos on odd', () => {
  const v = encodingVector({ type: '2d-sincos', scale: 0.5 }, D, 3, 7, 16);
  for (const j of [0, 1, 10, 100, 767]) {
    const w = 1 / Math.pow(10000, (2 * j) / H);
    assert.ok(Math.abs(v[2 * j]! - 0.5 * Math.sin(3 * w)) < 1e-6);
    assert.ok(Math.abs(v[2 * j + 1]! - 0.5 * Math.cos(3 * w)) < 1e-6);
    assert.ok(Math.abs(v[H + 2 * j]! - 0.5 * Math.sin(7 * w)) < 1e-6);
    assert.ok(Math.abs(v[H + 2 * j + 1]! - 0.5 * Math.cos(7 * w)) < 1e-6);
  }
  // Hand values: dim 0 = λ·sin(row), dim 1 = λ·cos(row).
  assert.ok(Math.abs(v[0]! - 0.5 * Math.sin(3)) < 1e-7);
  assert.ok(Math.abs(v[H + 1]! - 0.5 * Math.cos(7)) < 1e-7);
});

test('1d-sincos encodes the raster index over all dims; none and λ = 0 are zero', () => {
  const v = encodingVector({ type: '1d-sincos', scale: 1 }, D, 2, 5, 10); // pos = 25
  assert.ok(Math.abs(v[0]! - Math.sin(25)) < 1e-6);
  assert.ok(Math.abs(v[1]! - Math.cos(25)) < 1e-6);
  const j = 500;
  assert.ok(Math.abs(v[2 * j]! - Math.sin(25 / Math.pow(10000, (2 * j) / D))) < 1e-6);
  assert.ok(encodingVector({ type: 'none', scale: 1 }, D, 2, 5, 10).every((x) => x === 0));
  assert.ok(encodingVector({ type: '2d-sincos', scale: 0 }, D, 2, 5, 10).every((x) => x === 0));
});

test('different positions give different encodings, so identical pixels at two positions separate', () => {
  const enc = PosEncoder.shared({ type: '2d-sincos', scale: 0.1 }, D);
  assert.equal(PosEncoder.shared({ type: '2d-sincos', scale: 0.1 }, D), enc, 'one shared encoder per encoding');
  const a = enc.vector(0, 0, 16);
  const b = enc.vector(0, 1, 16);
  let distSq = 0;
  for (let d = 0; d < D; d++) distSq += (a[d]! - b[d]!) ** 2;
  assert.ok(distSq > 1e-3);
  assert.equal(enc.vector(0, 1, 16), b, 'vectors are cached');
});
