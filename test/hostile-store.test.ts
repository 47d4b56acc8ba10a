/**
 * Hostile inputs for the patch store (README "Files we read and how we check them"): its
 * manifest.json, images.jsonl, shard .bin / .meta.bin files and an interrupted build's
 * build-state.json; input discovery (symlink loops, two names for one file); failed builds
 * (nothing left behind); resume requests that differ from the recorded build; and the uvu
 * --config file. Seeded mutations of one small valid store: each must either open and give
 * exactly the reference patches, metadata and image index, or be refused with a one-line
 * UvuError that names the file. Most cases call the library; a handful run the CLI for the
 * one-line / exit-code / nothing-left-behind contract.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { buildPatchStore, BUILD_STATE_FILE, type BuildOptions } from '../src/patches/build.js';
import { discoverInputs } from '../src/patches/inputs.js';
import { PatchStore, storeFingerprint, type PatchStoreManifest } from '../src/patches/store.js';
import { exportSample, readNpyF32, readNpyI32, writeNpyF32 } from '../src/patches/npy.js';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { saveCodebook } from '../src/codebook/file.js';
import { buildUvuCodebook } from '../src/codebook/uvu/build.js';
import { parseUvuConfig } from '../src/codebook/uvu/config.js';
import { UsageError } from '../src/util/errors.js';
import { readUvuConfigFile } from '../src/cli/codebook.js';
import { assertCleanFailure, assertUvuErrorNaming, byteMutations, jsonMutations, runUvu, tryReader, withFileReplaced, type Tally } from './hostile.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-hostile-store-'));
after(() => rmSync(work, { recursive: true, force: true }));

/**
 * Tally per format (set by each test before its cases): hostile cases tried, refused cleanly,
 * accepted with identical content, accepted otherwise (--no-verify, or bytes an .npy holds as data).
 */
const tallies = new Map<string, Tally>();
let tally: Tally = { tried: 0, refused: 0, identical: 0, accepted: 0 };
function format(name: string): void {
  tally = tallies.get(name) ?? { tried: 0, refused: 0, identical: 0, accepted: 0 };
  tallies.set(name, tally);
}
after(() => {
  const all = [...tallies.values()].reduce((a, t) => ({ tried: a.tried + t.tried, refused: a.refused + t.refused, identical: a.identical + t.identical, accepted: a.accepted + t.accepted }), { tried: 0, refused: 0, identical: 0, accepted: 0 });
  for (const [name, t] of [...tallies, ['all', all] as const]) {
    console.log(`# hostile-store ${name}: ${t.tried} cases, ${t.refused} refused cleanly, ${t.identical} accepted identical, ${t.accepted} accepted otherwise`);
  }
});

// ---- One small valid store: two bundled photos and a file that does not decode (a skipped entry).
const inputs = join(work, 'in');
mkdirSync(inputs);
cpSync(bundledPhotoPath('nagasaki-boats'), join(inputs, 'a-boats.jpg'));
cpSync(bundledPhotoPath('black-canyon'), join(inputs, 'b-canyon.jpg'));
writeFileSync(join(inputs, 'c-broken.jpg'), 'not a jpeg');
const OPTS = { maxPixels: 128 * 128, shardSize: 7, progress: false } satisfies Partial<BuildOptions>;
const storeDir = join(work, 'store');
await buildPatchStore([inputs], { out: storeDir, ...OPTS });
const manifest = JSON.parse(readFileSync(join(storeDir, 'manifest.json'), 'utf8')) as PatchStoreManifest;
assert.ok(manifest.shards.length >= 3 && manifest.skipped.length === 1, 'fixture: several shards and one skipped input');

// ---- An interrupted build (a build state after the first sealed shards), resumed after mutations.
const interrupted = join(work, 'interrupted');
{
  const controller = new AbortController();
  const r = await buildPatchStore([inputs], { out: interrupted, ...OPTS, signal: controller.signal, onImage: () => controller.abort() });
  assert.equal(r.manifest, null);
  assert.ok(existsSync(join(interrupted, BUILD_STATE_FILE)), 'fixture: a build state exists');
}
const buildState = JSON.parse(readFileSync(join(interrupted, BUILD_STATE_FILE), 'utf8')) as Record<string, unknown>;

/** Everything a reader gets from a store: every patch with its metadata, and the image index. */
function contents(store: PatchStore): unknown {
  const { patches, meta } = store.readRange(0, store.count);
  return { patches: Buffer.from(patches).toString('base64'), meta, images: store.images(), fingerprint: store.fingerprint };
}
const reference = (() => {
  const store = PatchStore.open(storeDir);
  try {
    return contents(store);
  } finally {
    store.close();
  }
})();

/** A file's bytes as a plain Uint8Array: byteMutations copies with slice(), which on a Buffer is a view. */
const bytesOf = (path: string): Uint8Array => new Uint8Array(readFileSync(path));

/**
 * Open `dir` and read everything. With `exact`, a store that opens must give the reference
 * contents; every failure must be a one-line UvuError starting with `names`.
 */
function tryStore(dir: string, label: string, names: string, opts: { verify: boolean; exact: boolean }): void {
  tryReader(tally, {
    label,
    names,
    exact: opts.exact,
    reference,
    // The default (what the commands do without --no-verify) must verify.
    open: () => (opts.verify ? PatchStore.open(dir) : PatchStore.open(dir, { verify: false })),
    read: contents,
    close: (store) => store.close(),
  });
}

/** A scratch copy of the store whose files are mutated in place and restored after each case. */
const scratch = join(work, 'scratch');
cpSync(storeDir, scratch, { recursive: true });

/** Write `bytes` to `file` in the scratch copy, run `fn`, restore the file. */
const withFile = (file: string, bytes: Uint8Array | string, fn: () => void): void => withFileReplaced(scratch, file, bytes, fn);

test('manifest.json: every mutation is refused naming the manifest, or reads identically', () => {
  format('manifest.json');
  const path = join(scratch, 'manifest.json');
  for (const m of jsonMutations(manifest, 101, 70)) {
    withFile('manifest.json', m.text, () => tryStore(scratch, `manifest: ${m.name}`, path, { verify: true, exact: true }));
  }
  for (const m of byteMutations(bytesOf(join(storeDir, 'manifest.json')), 102, 12)) {
    withFile('manifest.json', m.bytes, () => tryStore(scratch, `manifest bytes: ${m.name}`, path, { verify: true, exact: true }));
  }
});

test('manifest.json: shard and index names that leave the folder are refused before the target is touched', () => {
  format('manifest.json names');
  const path = join(scratch, 'manifest.json');
  // A file outside the store with exactly the size the manifest expects: only the name check can refuse it.
  const outside = join(work, 'outside.bin');
  const size = manifest.shards[0]!.patches * 3072;
  writeFileSync(outside, Buffer.alloc(size));
  const names = ['../outside.bin', outside, 'sub/shard.bin', '..', '.', '', 'a\\b', 'x\0y', 'C:shard.bin', 'x'.repeat(300)];
  for (const name of names) {
    for (const field of ['file', 'metaFile', 'imagesFile'] as const) {
      const m = structuredClone(manifest);
      if (field === 'imagesFile') m.imagesFile = name;
      else m.shards[0]![field] = name;
      m.fingerprint = storeFingerprint(m.options, m.shards);
      withFile('manifest.json', JSON.stringify(m), () => {
        const label = `${field} = ${JSON.stringify(name).slice(0, 40)}`;
        tryStore(scratch, label, path, { verify: false, exact: true });
        assert.throws(() => PatchStore.open(scratch, { verify: false }), (e: unknown) => {
          assert.match((e as Error).message, /is not a plain file name inside the store folder/, label);
          assert.ok(!(e as Error).message.includes(String(size)), `${label}: the message gives a fact about the target: ${(e as Error).message}`);
          return true;
        });
      });
    }
  }
});

test('images.jsonl: byte and field mutations are refused naming the index (by hash, or by schema without --no-verify)', () => {
  format('images.jsonl');
  const path = join(scratch, 'images.jsonl');
  const valid = bytesOf(join(storeDir, 'images.jsonl'));
  for (const m of byteMutations(valid, 201, 24)) {
    withFile('images.jsonl', m.bytes, () => {
      tryStore(scratch, `images bytes: ${m.name}`, path, { verify: true, exact: true });
      tryStore(scratch, `images bytes (no verify): ${m.name}`, path, { verify: false, exact: false });
    });
  }
  const lines = Buffer.from(valid).toString('utf8').trim().split('\n');
  for (const m of jsonMutations(JSON.parse(lines[1]!), 202, 24)) {
    const text = [lines[0], m.text, ...lines.slice(2)].join('\n') + '\n';
    withFile('images.jsonl', text, () => {
      tryStore(scratch, `images line 2: ${m.name}`, path, { verify: true, exact: true });
      tryStore(scratch, `images line 2 (no verify): ${m.name}`, path, { verify: false, exact: false });
    });
  }
  // Without verification the schema still refuses wrong shapes.
  withFile('images.jsonl', [lines[0], 'null', ...lines.slice(2)].join('\n') + '\n', () => {
    const store = PatchStore.open(scratch, { verify: false });
    assert.throws(() => store.images(), /images\.jsonl: line 2: \(root\): /);
    store.close();
  });
});

test('shard .bin and .meta.bin: every flipped bit or truncation is refused naming the shard file', () => {
  format('shard .bin/.meta.bin');
  for (const file of [manifest.shards[1]!.file, manifest.shards[1]!.metaFile, manifest.shards.at(-1)!.file]) {
    const path = join(scratch, file);
    for (const m of byteMutations(bytesOf(join(storeDir, file)), 301 + file.length, 20)) {
      withFile(file, m.bytes, () => {
        tryStore(scratch, `${file}: ${m.name}`, path, { verify: true, exact: true });
        tryStore(scratch, `${file} (no verify): ${m.name}`, path, { verify: false, exact: false });
      });
    }
  }
  // Verification happens before a shard's first byte is returned, for every kind of read.
  withFile(manifest.shards[1]!.file, Buffer.from(readFileSync(join(storeDir, manifest.shards[1]!.file)).map((b, i) => (i === 5 ? b ^ 1 : b))), () => {
    const store = PatchStore.open(scratch);
    const first = manifest.shards[0]!.patches;
    assert.throws(() => store.readIndices([first + 1]), /shard-000001\.bin: content does not match the manifest/);
    assert.throws(() => store.readRange(first, 1), /shard-000001\.bin: content does not match/);
    assert.throws(() => exportSample(store, store.count, 1, join(work, 'never.npy')), /shard-000001\.bin/);
    assert.equal(existsSync(join(work, 'never.npy')), false);
    store.readRange(0, 1); // other shards still read
    store.close();
  });
});

let resumeN = 0;
/** Resume a copy of the interrupted build with `state` as its build-state.json: identical store, or a clean refusal naming the state. */
async function tryResume(state: string | Uint8Array, label: string): Promise<void> {
  tally.tried++;
  const dir = join(work, `resume-${resumeN++}`);
  cpSync(interrupted, dir, { recursive: true });
  writeFileSync(join(dir, BUILD_STATE_FILE), state);
  try {
    const r = await buildPatchStore([inputs], { out: dir, ...OPTS, resume: true });
    const store = PatchStore.open(dir);
    assert.deepEqual(contents(store), reference, `${label}: resumed, but the store differs from an uninterrupted build`);
    store.close();
    assert.equal(r.manifest!.fingerprint, manifest.fingerprint);
    tally.identical++;
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    assertUvuErrorNaming(e, join(dir, BUILD_STATE_FILE), label);
    // A refused resume keeps the folder (and its state) as it was.
    assert.ok(existsSync(join(dir, BUILD_STATE_FILE)), `${label}: the refused resume removed the build state`);
    tally.refused++;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('build-state.json: garbage, truncated or wrong-shape states are refused on --resume naming the state', async () => {
  format('build-state.json');
  for (const m of jsonMutations(buildState, 401, 50)) await tryResume(m.text, `state: ${m.name}`);
  for (const m of byteMutations(bytesOf(join(interrupted, BUILD_STATE_FILE)), 402, 10)) await tryResume(m.bytes, `state bytes: ${m.name}`);
  // Crafted: a shard name that leaves the folder, consistent otherwise.
  const evil = structuredClone(buildState) as { shards: { file: string }[] };
  evil.shards[0]!.file = '../store/shard-000000.bin';
  await tryResume(JSON.stringify(evil), 'state: shards.0.file leaves the folder');
  // The valid state resumes to the identical store.
  const before = tally.identical;
  await tryResume(JSON.stringify(buildState), 'valid state');
  assert.equal(tally.identical, before + 1);
});

test('resume: a request that differs from the recorded build is refused, naming the fields', async () => {
  format('resume request');
  const other = join(work, 'other-in');
  mkdirSync(other);
  cpSync(bundledPhotoPath('nagasaki-boats'), join(other, 'a-boats.jpg'));
  // Interrupted build.
  const dir = join(work, 'resume-differs');
  cpSync(interrupted, dir, { recursive: true });
  await assert.rejects(buildPatchStore([inputs], { out: dir, ...OPTS, seed: 9, offsets: true, resume: true }), /build-state\.json: cannot resume: this request differs from the interrupted build in offsets \(recorded false, now true\), seed \(recorded 0, now 9\)/);
  await assert.rejects(buildPatchStore([other], { out: dir, ...OPTS, resume: true }), /build-state\.json: cannot resume: .* in inputs \(3 jobs recorded, 1 now\)/);
  // Finished store: "already complete" only for the same request.
  const done = join(work, 'resume-done');
  cpSync(storeDir, done, { recursive: true });
  await assert.rejects(buildPatchStore([inputs], { out: done, ...OPTS, maxPixels: 64 * 64, resume: true }), /manifest\.json: cannot resume: this request differs from the finished build in maxPixels \(recorded 16384, now 4096\)/);
  await assert.rejects(buildPatchStore([other], { out: done, ...OPTS, resume: true }), /manifest\.json: cannot resume: .* in inputs \(3 files recorded, 1 now; new: .*other-in\/a-boats\.jpg\)/);
  await assert.rejects(buildPatchStore([inputs], { out: done, ...OPTS, shardSize: 8, dedup: true, resume: true }), /in dedup \(recorded false, now true\), shardSize \(recorded 7, now 8\)/);
  const same = await buildPatchStore([inputs], { out: done, ...OPTS, resume: true });
  assert.equal(same.manifest!.fingerprint, manifest.fingerprint);
  assert.equal(same.imagesProcessed, 0);
  tally.tried += 6;
  tally.refused += 5;
  tally.identical += 1;
});

test('input discovery: symlink loops are walked once, each real file is stored once and duplicates are counted', async () => {
  const dir = join(work, 'loops');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  cpSync(bundledPhotoPath('nagasaki-boats'), join(dir, 'a.jpg'));
  cpSync(bundledPhotoPath('black-canyon'), join(dir, 'sub', 'b.jpg'));
  symlinkSync('.', join(dir, 'self'));
  symlinkSync('.', join(dir, 'self2')); // two loops: 2^40 paths before ELOOP without the folder check
  symlinkSync('..', join(dir, 'sub', 'up'));
  symlinkSync('a.jpg', join(dir, 'c-link.jpg'));
  linkSync(join(dir, 'a.jpg'), join(dir, 'd-hard.jpg'));
  const t0 = performance.now();
  const found = discoverInputs([dir]);
  assert.ok(performance.now() - t0 < 2000, 'discovery took too long');
  assert.deepEqual(found.files, [join(dir, 'a.jpg'), join(dir, 'sub', 'b.jpg')]);
  assert.equal(found.duplicates, 2);
  // The same file given again counts as a duplicate too.
  assert.deepEqual(discoverInputs([dir, join(dir, 'a.jpg')]), { files: found.files, duplicates: 3 });

  const out = join(work, 'loops-store');
  const { manifest: m } = await buildPatchStore([dir], { out, ...OPTS });
  assert.equal(m!.totals.images, 2);
  assert.equal(m!.totals.duplicateInputs, 2);
  // Manifests of builds without duplicates do not get the field (they stay byte-identical).
  assert.equal('duplicateInputs' in manifest.totals, false);
  const r = runUvu(['patches', 'build', dir, '--out', join(work, 'loops-cli'), '--max-pixels', String(128 * 128)]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /from 2 images in 1 shard\(s\), 2 duplicate input path\(s\) stored once/);
});

test('a failed build leaves nothing behind, but keeps folders it did not create and resumable states', async () => {
  format('failed build');
  const bad = join(work, 'undecodable');
  mkdirSync(bad);
  writeFileSync(join(bad, 'a.jpg'), 'not a jpeg');
  writeFileSync(join(bad, 'b.png'), '');
  // A new folder (and its new parents) is removed.
  const nested = join(work, 'new-parent', 'deeper', 'store');
  await assert.rejects(buildPatchStore([bad], { out: nested, ...OPTS }), (e: unknown) => {
    assertUvuErrorNaming(e, nested, 'no decodable image');
    assert.match((e as Error).message, /no patches: all 2 inputs were skipped/);
    return true;
  });
  assert.equal(existsSync(join(work, 'new-parent')), false, 'the created parents are left behind');
  // An empty folder the user made stays, and stays empty.
  const mine = join(work, 'my-empty-folder');
  mkdirSync(mine);
  await assert.rejects(buildPatchStore([bad], { out: mine, ...OPTS }), /no patches/);
  assert.deepEqual(readdirSync(mine), []);
  // A rerun is not refused because of leftovers.
  await assert.rejects(buildPatchStore([bad], { out: mine, ...OPTS }), /no patches/);
  // A failure after a checkpoint keeps the folder: it resumes to the identical store.
  const midway = join(work, 'fails-midway');
  await assert.rejects(buildPatchStore([inputs], { out: midway, ...OPTS, onImage: () => { throw new Error('simulated failure'); } }), /simulated failure/);
  assert.ok(existsSync(join(midway, BUILD_STATE_FILE)));
  await buildPatchStore([inputs], { out: midway, ...OPTS, resume: true });
  assert.equal(PatchStore.open(midway).fingerprint, manifest.fingerprint);
  // A failure before any checkpoint removes the folder it created.
  const early = join(work, 'fails-early');
  await assert.rejects(buildPatchStore([inputs], { out: early, ...OPTS, shardSize: 10_000, onImage: () => { throw new Error('simulated failure'); } }), /simulated failure/);
  assert.equal(existsSync(early), false);
  tally.tried += 5;
  tally.refused += 5;
});

test('uvu build verifies once in the main thread and refuses a corrupt store before any checkpoint', async () => {
  format('shard .bin/.meta.bin');
  const dir = join(work, 'corrupt-for-uvu');
  cpSync(storeDir, dir, { recursive: true });
  const shard = join(dir, manifest.shards.at(-1)!.metaFile);
  const bytes = readFileSync(shard);
  bytes[3] ^= 0x10;
  writeFileSync(shard, bytes);
  const config = parseUvuConfig({ size: 4, roundSize: 16, delta: 1, alpha: 8, maxRounds: 1, valSize: 8, initIters: 2, reclusterIters: 2, shardSize: 8, workers: 2, seed: 1 });
  const ckpt = join(work, 'uvu-ckpt');
  await assert.rejects(buildUvuCodebook({ storeDir: dir, config, checkpointDir: ckpt }), (e: unknown) => {
    assertUvuErrorNaming(e, shard, 'uvu on a corrupt store');
    return true;
  });
  assert.equal(existsSync(ckpt), false, 'a checkpoint was written before the store was checked');
  // --no-verify reads it anyway (workers included).
  const r = await buildUvuCodebook({ storeDir: dir, config, checkpointDir: join(work, 'uvu-ckpt-2'), verify: false });
  assert.equal(r.codebook.K, 4);
  tally.tried += 2;
  tally.refused += 1;
  tally.accepted += 1;
});

test('.npy: truncations, flipped bytes and crafted headers are refused naming the file, or read identically', () => {
  format('.npy');
  const path = join(work, 'm.npy');
  const values = Float32Array.from({ length: 15 }, (_, i) => i / 7);
  writeNpyF32(path, values, [3, 5]);
  const valid = bytesOf(path);
  const reference = { data: Array.from(values), shape: [3, 5] };
  const header = (dict: string, version = 1): Uint8Array => {
    const body = Buffer.from(dict.padEnd(118) + '\n', 'latin1');
    const pre = version === 1 ? [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, body.length & 0xff, body.length >> 8] : [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0, body.length & 0xff, body.length >> 8, 0, 0];
    return Buffer.concat([Buffer.from(pre), body, Buffer.from(valid.subarray(128))]);
  };
  const crafted = [
    { name: 'huge shape', bytes: header("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 3072), }") },
    { name: 'negative shape', bytes: header("{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 5), }") },
    { name: 'float shape', bytes: header("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5, 10), }") },
    { name: 'shape larger than the data', bytes: header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5), }") },
    { name: 'Fortran order', bytes: header("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 5), }") },
    { name: 'version 9', bytes: header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", 9) },
    { name: 'header length past the end', bytes: Uint8Array.from([...valid.subarray(0, 8), 0xff, 0xff, ...valid.subarray(10, 64)]) },
  ];
  for (const m of [...byteMutations(valid, 501, 40), ...crafted]) {
    writeFileSync(path, m.bytes);
    tally.tried++;
    let got: { data: Float32Array; shape: number[] };
    try {
      got = readNpyF32(path);
    } catch (e) {
      assertUvuErrorNaming(e, `${path}: `, `npy: ${m.name}`);
      tally.refused++;
      continue;
    }
    // A flip inside the padding or the data gives a valid file: it must hold what the bytes say.
    assert.deepEqual(got.shape, reference.shape, `npy: ${m.name}`);
    assert.equal(got.data.length, 15, `npy: ${m.name}`);
    tally.accepted++;
  }
  writeFileSync(path, valid);
  assert.deepEqual({ data: Array.from(readNpyF32(path).data), shape: readNpyF32(path).shape }, reference);
  assert.throws(() => readNpyI32(path), /m\.npy: \.npy dtype is not '<i4'/);
  assert.throws(() => readNpyF32(join(work, 'absent.npy')), /absent\.npy: cannot read the \.npy file \(no such file or directory\)/);
});

// ---- The CLI contract: one line naming the file, exit code, nothing left behind.

test('CLI: corrupt, traversing or truncated stores, failed builds and bad --config files fail cleanly', () => {
  format('CLI runs');
  const bad = join(work, 'cli-bad');
  cpSync(storeDir, bad, { recursive: true });
  const shardFile = join(bad, manifest.shards[1]!.file);
  const bytes = readFileSync(shardFile);
  bytes[100] ^= 0x01;
  writeFileSync(shardFile, bytes);
  const cb = join(work, 'cli-out.safetensors');
  const cases: { args: string[]; names: string; noOutputs?: string[]; exitCode?: 1 | 2; label: string }[] = [
    { label: 'kmeans build, flipped bit', args: ['codebook', 'build', '--patches', bad, '--size', '4', '--iters', '2', '--out', cb], names: shardFile, noOutputs: [cb] },
    { label: 'uvu build, flipped bit', args: ['codebook', 'build', '--method', 'uvu', '--patches', bad, '--size', '4', '--round-size', '16', '--delta', '1', '--alpha', '8', '--val-size', '8', '--max-rounds', '1', '--out', cb], names: shardFile, noOutputs: [cb, `${cb}.ckpt`, `${cb}.log.jsonl`] },
    { label: 'export, flipped bit', args: ['patches', 'export', bad, '--count', String(manifest.totals.patches), '--out', join(work, 'x.npy')], names: shardFile, noOutputs: [join(work, 'x.npy')] },
  ];
  const trav = join(work, 'cli-traversal');
  cpSync(storeDir, trav, { recursive: true });
  const m = structuredClone(manifest);
  m.shards[0]!.file = '../../../../etc/passwd';
  writeFileSync(join(trav, 'manifest.json'), JSON.stringify(m));
  cases.push({ label: 'traversal', args: ['codebook', 'build', '--patches', trav, '--size', '4', '--out', cb], names: join(trav, 'manifest.json'), noOutputs: [cb] });
  const st = join(work, 'cli-state');
  cpSync(interrupted, st, { recursive: true });
  writeFileSync(join(st, BUILD_STATE_FILE), readFileSync(join(interrupted, BUILD_STATE_FILE)).subarray(0, 50));
  cases.push({ label: 'truncated build state', args: ['patches', 'build', inputs, '--out', st, '--resume'], names: join(st, BUILD_STATE_FILE) });
  const undecodable = join(work, 'cli-undecodable');
  mkdirSync(undecodable);
  writeFileSync(join(undecodable, 'a.jpg'), 'not a jpeg');
  const newStore = join(work, 'cli-new-store');
  cases.push({ label: 'no decodable image', args: ['patches', 'build', undecodable, '--out', newStore], names: newStore, noOutputs: [newStore] });
  const nullConfig = join(work, 'null.json');
  writeFileSync(nullConfig, 'null');
  cases.push({ label: '--config null', args: ['codebook', 'build', '--method', 'uvu', '--patches', storeDir, '--config', nullConfig, '--size', '4', '--out', cb], names: nullConfig, noOutputs: [cb], exitCode: 2 });
  for (const c of cases) {
    tally.tried++;
    const r = runUvu(c.args, { cwd: work });
    assertCleanFailure(r, { names: c.names, noOutputs: c.noOutputs, exitCode: c.exitCode }, c.label);
    tally.refused++;
  }
  // --no-verify opts out: the same corrupt store builds.
  const ok = runUvu(['codebook', 'build', '--patches', bad, '--size', '4', '--iters', '2', '--out', cb, '--no-verify', '--quiet']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(statSync(cb).size > 0);
});

test('uvu --config: null, an array, a number, invalid JSON or a missing file are usage errors naming the file', () => {
  format('uvu --config');
  for (const [name, text] of [['array.json', '[{"size": 4}]'], ['number.json', '4'], ['string.json', '"size"'], ['invalid.json', '{"size": 4,'], ['empty.json', ''], ['missing.json', null]] as const) {
    const cfg = join(work, name);
    if (text !== null) writeFileSync(cfg, text);
    tally.tried++;
    assert.throws(() => readUvuConfigFile(cfg), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${name}: not a usage error: ${String(e)}`);
      assertUvuErrorNaming(e, `${cfg}: `, name);
      return true;
    });
    tally.refused++;
  }
  assert.deepEqual(readUvuConfigFile(writeAndReturn(join(work, 'ok.json'), '{"size": 4}')), { size: 4 });
});

function writeAndReturn(path: string, text: string): string {
  writeFileSync(path, text);
  return path;
}

test('CLI: codebook eval --patches refuses a corrupt store unless --no-verify', () => {
  format('CLI runs');
  const cbPath = join(work, 'eval-cb.safetensors');
  saveCodebook(cbPath, buildKmeansCodebook(storeDir, { method: 'kmeans', size: 4, iters: 2 }));
  const bad = join(work, 'eval-bad');
  cpSync(storeDir, bad, { recursive: true });
  const meta = join(bad, manifest.shards[0]!.metaFile);
  const bytes = readFileSync(meta);
  bytes[0] ^= 0x80;
  writeFileSync(meta, bytes);
  tally.tried++;
  assertCleanFailure(runUvu(['codebook', 'eval', cbPath, '--patches', bad]), { names: meta }, 'eval on a corrupt store');
  tally.refused++;
  const ok = runUvu(['codebook', 'eval', cbPath, '--patches', bad, '--no-verify', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).m, manifest.totals.patches);
});
