/**
 * Hostile inputs of `uvu tokenize`, `reconstruct`, `roundtrip` and `complete-image` (README
 * "Files we read and how we check them"): mutated tokens files and images, number flags outside
 * the safe range, unwritable --out paths, a write that fails half-way, and file names that are not
 * valid UTF-8. Every run must exit 0, or exit 1 (2 for a flag) with one `uvu: error:` line naming
 * the file or flag, no stack trace, and no output (or temporary file) left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { InvalidArgumentError } from 'commander';
import { pngDeclaring } from './png-bomb.js';
import { assertCleanFailure, byteMutations, CLI, jsonMutations, runUvu, type CliRun } from './hostile.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { loadImage } from '../src/image/io.js';
import { patchify, patchesToFloat } from '../src/patches/patchify.js';
import { saveCodebook } from '../src/codebook/file.js';
import { NO_POSENC } from '../src/codebook/posenc.js';
import { tokenizeImage } from '../src/tokens/tokenize.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { UvuError } from '../src/util/errors.js';
import { parseNonNegative, parseNonNegativeInt, parsePositiveInt } from '../src/cli/common.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-hostile-cli-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

/** Tally of the hostile cases this file tries (printed at the end, counted in the issue's closing note). */
const tally = { tried: 0, refused: 0, accepted: 0 };
function count(r: CliRun): void {
  tally.tried++;
  if (r.status === 0) tally.accepted++;
  else tally.refused++;
}

// Fixture: a codebook holding exactly the 3×5 patches of a photo at 160×96 (K = 15), its tokens
// file, and small JPEG / PNG versions of another photo.
const photo = bundledPhotoPath('black-canyon');
const img = await loadImage(photo, { maxPixels: 128 * 128 });
const { patches, rows, cols } = patchify(img);
const codebook = { K: rows * cols, D: 3072, patchSize: 32, centersPixel: patchesToFloat(patches), centersAssign: null, counts: new Float32Array(rows * cols).fill(1), pe: NO_POSENC, build: {}, data: '', metrics: {} };
const cbPath = join(work, 'cb.safetensors');
saveCodebook(cbPath, codebook);
const { tokens } = await tokenizeImage(photo, codebook, { maxPixels: 128 * 128 });
const tokensPath = join(work, 'tokens.json');
writeFileSync(tokensPath, `${JSON.stringify(tokens)}\n`);
const small = sharp(bundledPhotoPath('march-pastoral')).resize(96, 64, { fit: 'fill' });
const jpeg = await small.clone().jpeg({ quality: 90 }).toBuffer();
const png = await small.clone().png().toBuffer();
const jpegPath = join(work, 'photo.jpg');
writeFileSync(jpegPath, jpeg);
const adir = join(work, 'a-folder');
mkdirSync(adir);

/**
 * runUvu (test/hostile.ts) without blocking: the same child, the same peak-memory hook, so that
 * two children run at once on a 2-core machine.
 */
function runUvuAsync(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliRun> {
  const dir = mkdtempSync(join(tmpdir(), 'uvu-rss-'));
  const rssFile = join(dir, 'rss');
  const hook = `import { writeFileSync } from 'node:fs'; process.on('exit', () => writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS)));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(hook)}`, CLI, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => {
      const maxRssMiB = existsSync(rssFile) ? Number(readFileSync(rssFile, 'utf8')) / 1024 : NaN;
      rmSync(dir, { recursive: true, force: true });
      resolve({ status: status ?? -1, stdout, stderr, maxRssMiB });
    });
  });
}

/** Runs `jobs` two at a time (the suite's 2 cores); results in order. */
async function inPairs<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < jobs.length; i += 2) out.push(...(await Promise.all(jobs.slice(i, i + 2).map((j) => j()))));
  return out;
}

function noTempFiles(dir: string): void {
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], `temporary files left in ${dir}`);
}

test('reconstruct: mutated tokens files are refused cleanly, naming the file; no PNG left behind', async () => {
  const cases = jsonMutations(tokens, 7, 13);
  // The memory bomb of the issue: a consistent 1000×1000 grid (12 GB of float patches).
  cases.push({ name: '1000×1000 grid', text: JSON.stringify({ ...tokens, width: 32000, height: 32000, rows: 1000, cols: 1000, ids: new Array(1_000_000).fill(0) }) });
  // Ids that are valid for the file's own k but not for the codebook's K.
  cases.push({ name: 'k larger than the codebook', text: JSON.stringify({ ...tokens, k: 64, ids: tokens.ids.map(() => 40) }) });
  const runs = await inPairs(
    cases.map((m, i) => () => {
      writeFileSync(join(work, `mutant-${i}.json`), m.text);
      return runUvuAsync(['reconstruct', `mutant-${i}.json`, '--codebook', cbPath, '--out', `rec-${i}.png`], { cwd: work });
    }),
  );
  let refused = 0;
  runs.forEach((r, i) => {
    count(r);
    const out = join(work, `rec-${i}.png`);
    assertCleanFailure(r, { names: `mutant-${i}.json`, noOutputs: [out], allowSuccess: true, rssCapMiB: 512 }, `reconstruct ${cases[i]!.name}`);
    if (r.status === 0) rmSync(out);
    else refused++;
  });
  assert.ok(refused >= cases.length - 3, `only ${refused} of ${cases.length} mutations refused`);
  noTempFiles(work);
});

test('tokenize: mutated JPEG and PNG files are refused cleanly or decoded; no tokens file left behind', async () => {
  const cases = [...byteMutations(jpeg, 3, 4).map((m) => ({ ...m, ext: 'jpg' })), ...byteMutations(png, 4, 3).slice(1).map((m) => ({ ...m, ext: 'png' }))];
  // A decompression bomb: 300 bytes that declare 60000×60000 pixels (10 GB of RGB).
  cases.push({ name: 'PNG header declaring 60000×60000', bytes: await pngDeclaring(60_000, 60_000), ext: 'png' });
  const runs = await inPairs(
    cases.map((m, i) => () => {
      writeFileSync(join(work, `mutant-${i}.${m.ext}`), m.bytes);
      return runUvuAsync(['tokenize', `mutant-${i}.${m.ext}`, '--codebook', cbPath, '--out', `tok-${i}.json`], { cwd: work });
    }),
  );
  runs.forEach((r, i) => {
    count(r);
    const out = join(work, `tok-${i}.json`);
    assertCleanFailure(r, { names: `mutant-${i}.${cases[i]!.ext}`, noOutputs: [out], allowSuccess: true, rssCapMiB: 512 }, `tokenize ${cases[i]!.ext} ${cases[i]!.name}`);
    if (cases[i]!.name.startsWith('PNG header')) assert.match(r.stderr, /cannot decode image: its header declares 60000×60000 = 3600000000 pixels/);
    if (r.status === 0) rmSync(out);
  });
  noTempFiles(work);
});

test('number flags outside the safe range are usage errors (exit 2) before any output', async () => {
  const out = join(work, 'never.out');
  const cases: [string[], string][] = [
    [['tokenize', jpegPath, '--codebook', cbPath, '--max-pixels', '1e400', '--out', out], '--max-pixels'],
    [['roundtrip', jpegPath, '--codebook', cbPath, '--out', out, '--max-pixels', '9007199254740993'], '--max-pixels'],
    [['tokenize', jpegPath, '--codebook', cbPath, '--max-pixels', '100', '--out', out], '--max-pixels'],
    [['ask', 'how many?', '--checkpoint', work, '--image', jpegPath, '--seed', '9007199254740993'], '--seed'],
    [['complete-image', '--checkpoint', work, '--image', jpegPath, '--keep-rows', '1e400', '--out', out], '--keep-rows'],
    [['--max-alloc', '1e999', 'reconstruct', tokensPath, '--codebook', cbPath, '--out', out], '--max-alloc'],
  ];
  const runs = await inPairs(cases.map(([args]) => () => runUvuAsync(args, { cwd: work })));
  runs.forEach((r, i) => {
    count(r);
    assertCleanFailure(r, { names: cases[i]![1], noOutputs: [out], exitCode: 2 }, cases[i]![0].join(' '));
  });
});

test('the option parsers refuse what a JavaScript number cannot hold exactly', () => {
  const bad: [(v: string) => number, string][] = [
    [parsePositiveInt, '9007199254740993'], [parsePositiveInt, '9007199254741k'], [parsePositiveInt, '1e400'], [parsePositiveInt, '0'],
    [parseNonNegativeInt, '9007199254740992'], [parseNonNegativeInt, '18446744073709551616'], [parseNonNegativeInt, '-1'], [parseNonNegativeInt, '1e3'],
    [parseNonNegative, '1e400'], [parseNonNegative, 'Infinity'], [parseNonNegative, 'NaN'], [parseNonNegative, ''], [parseNonNegative, '0x10'], [parseNonNegative, '-0.5'],
  ];
  for (const [parse, v] of bad) assert.throws(() => parse(v), InvalidArgumentError, `${parse.name}("${v}")`);
  assert.equal(parsePositiveInt('9007199254740991'), Number.MAX_SAFE_INTEGER);
  assert.equal(parsePositiveInt('200k'), 200_000);
  assert.equal(parseNonNegativeInt('0'), 0);
  assert.equal(parseNonNegative('1e-3'), 0.001);
  assert.equal(parseNonNegative('.5'), 0.5);
});

test('--out that is a folder, or in a missing folder: the message names --out, not a temporary file', async () => {
  const missing = join(work, 'no-such-folder', 'x.png');
  const cases: [string[], string, string][] = [
    [['reconstruct', tokensPath, '--codebook', cbPath, '--out', adir], adir, 'is a directory'],
    [['reconstruct', tokensPath, '--codebook', cbPath, '--out', missing], missing, `folder ${join(work, 'no-such-folder')} does not exist`],
    [['tokenize', jpegPath, '--codebook', cbPath, '--out', adir], adir, 'is a directory'],
    [['roundtrip', jpegPath, '--codebook', cbPath, '--out', join(tokensPath, 'x.png')], join(tokensPath, 'x.png'), `${tokensPath} is not a folder`],
    [['complete-image', '--checkpoint', work, '--image', jpegPath, '--keep-rows', '1', '--out', adir], adir, 'is a directory'],
  ];
  const runs = await inPairs(cases.map(([args]) => () => runUvuAsync(args, { cwd: work })));
  runs.forEach((r, i) => {
    const [args, out, why] = cases[i]!;
    count(r);
    assertCleanFailure(r, { names: out }, args.join(' '));
    assert.ok(r.stderr.includes(`uvu: error: ${out}: cannot write: ${why}\n`), `${args.join(' ')}: ${r.stderr}`);
    assert.ok(!r.stderr.includes('.tmp'), `the temporary file leaks into the message: ${r.stderr}`);
  });
  assert.deepEqual(readdirSync(adir), []);
  noTempFiles(work);
});

/** NODE_OPTIONS for a child whose every write to a file fails with ENOSPC (a full disk). */
const FULL_DISK = `--import=data:text/javascript,${encodeURIComponent(
  `import fs from 'node:fs'; import { syncBuiltinESMExports } from 'node:module';
   const w = fs.writeSync;
   fs.writeSync = function (fd, ...a) { if (fd > 2) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' }); return w.call(this, fd, ...a); };
   syncBuiltinESMExports();`,
)}`;

test('a write that fails half-way (disk full) leaves neither the output nor a temporary file', async () => {
  const dir = mkdtempSync(join(work, 'full-'));
  const cases: [string[], string][] = [
    [['tokenize', jpegPath, '--codebook', cbPath, '--out', join(dir, 't.json')], join(dir, 't.json')],
    [['reconstruct', tokensPath, '--codebook', cbPath, '--out', join(dir, 'r.png')], join(dir, 'r.png')],
    [['roundtrip', jpegPath, '--codebook', cbPath, '--out', join(dir, 'rt.png')], join(dir, 'rt.png')],
  ];
  const runs = await inPairs(cases.map(([args]) => () => runUvuAsync(args, { cwd: work, env: { NODE_OPTIONS: FULL_DISK } })));
  runs.forEach((r, i) => {
    const [args, out] = cases[i]!;
    count(r);
    assertCleanFailure(r, { names: out, noOutputs: [out] }, `disk full: ${args.join(' ')}`);
    assert.match(r.stderr, /cannot write: no space left on the device/);
  });
  assert.deepEqual(readdirSync(dir), []);
});

test('writeFileAtomic: a failed write throws one UvuError naming the target and removes its temporary file', () => {
  const dir = mkdtempSync(join(work, 'atomic-'));
  const target = join(dir, 'out.bin');
  const writeSync = fs.writeSync;
  let calls = 0;
  // The second block fails: the temporary file exists and holds the first one.
  (fs as { writeSync: unknown }).writeSync = (fd: number, ...rest: unknown[]) => {
    if (++calls === 2) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
    return (writeSync as (...a: unknown[]) => number)(fd, ...rest);
  };
  syncBuiltinESMExports();
  try {
    assert.throws(() => writeFileAtomic(target, ['first block', 'second block']), (e: unknown) => e instanceof UvuError && e.message === `${target}: cannot write: no space left on the device`);
  } finally {
    fs.writeSync = writeSync;
    syncBuiltinESMExports();
  }
  assert.equal(calls, 2);
  assert.deepEqual(readdirSync(dir), []);
  // A name that fits the file system also fits as the temporary file's name.
  const long = join(dir, `${'n'.repeat(250)}.png`);
  writeFileAtomic(long, 'ok');
  assert.equal(readFileSync(long, 'utf8'), 'ok');
  assert.deepEqual(readdirSync(dir), [`${'n'.repeat(250)}.png`]);
});

test('a file name that is not valid UTF-8: the error says Node changed it, not just "not found"', { skip: process.platform !== 'linux' && 'Linux file names are bytes' }, () => {
  const dir = mkdtempSync(join(work, 'names-'));
  // "café.jpg" in Latin-1: the byte 0xe9 alone is not UTF-8.
  const raw = Buffer.concat([Buffer.from(join(dir, 'caf')), Buffer.from([0xe9]), Buffer.from('.jpg')]);
  writeFileSync(raw, jpeg);
  // The shell passes the raw bytes; Node hands uvu "caf\uFFFD.jpg".
  const out = join(dir, 'tok.json');
  const script = `exec "$0" "${CLI}" tokenize "$(printf '${dir}/caf\\351.jpg')" --codebook "${cbPath}" --out "${out}"`;
  const r = spawnSync('/bin/sh', ['-c', script, process.execPath], { encoding: 'utf8', cwd: work });
  const run = { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, maxRssMiB: 0 };
  count(run);
  assertCleanFailure(run, { names: `${dir}/caf\uFFFD.jpg`, noOutputs: [out] }, 'non-UTF-8 image name');
  assert.match(r.stderr, /its real name ".*caf\\xe9\.jpg" is not valid UTF-8, and Node replaced the invalid bytes by U\+FFFD/);
  // A name with U+FFFD and no such entry: said honestly, as a possibility.
  const r2 = runUvu(['reconstruct', join(dir, 'gone\uFFFD.json'), '--codebook', cbPath, '--out', out], { cwd: work });
  count(r2);
  assertCleanFailure(r2, { names: join(dir, 'gone\uFFFD.json'), noOutputs: [out] }, 'U+FFFD name, no such file');
  assert.match(r2.stderr, /no such file or directory: the name holds U\+FFFD/);
  // An ordinary missing file is just missing.
  const r3 = runUvu(['reconstruct', join(dir, 'gone.json'), '--codebook', cbPath, '--out', out], { cwd: work });
  count(r3);
  assert.equal(r3.status, 1);
  assert.match(r3.stderr, /^uvu: error: .*gone\.json: cannot read tokens file \(no such file or directory\)\n/);
  assert.ok(existsSync(raw));
});

test('summary of the hostile CLI cases', () => {
  process.stderr.write(`hostile-cli: ${tally.tried} cases tried, ${tally.refused} refused cleanly, ${tally.accepted} accepted as valid\n`);
  assert.equal(tally.refused + tally.accepted, tally.tried);
});
