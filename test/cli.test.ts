/** End-to-end checks of the `uvu` command line contract: exit codes, --json, --help, no partial outputs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundledPhotoPath } from '../src/data/bundled.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'uvu-cli-'));

function uvu(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: work });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function json(...args: string[]): Record<string, unknown> {
  const r = uvu(...args, '--json');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, `--json must print exactly one line, got:\n${r.stdout}`);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

// Training photos plus one file that is not an image: the build skips it with a warning.
const photos = join(work, 'photos');
mkdirSync(photos);
for (const name of ['black-canyon', 'march-pastoral', 'acanthus-mollis'] as const) copyFileSync(bundledPhotoPath(name), join(photos, `${name}.jpg`));
writeFileSync(join(photos, 'notes.jpg'), 'this is not a JPEG');
const heldOut = bundledPhotoPath('allium-oreophilum');

test('every command has --help (exit 0); usage errors exit 2', () => {
  const commands = [[], ['patches', 'build'], ['patches', 'info'], ['patches', 'export'], ['codebook', 'build'], ['codebook', 'refine'], ['codebook', 'eval'], ['tokenize'], ['reconstruct'], ['roundtrip'], ['data', 'build'], ['data', 'info'], ['vq', 'train'], ['vq', 'eval'], ['train'], ['ask'], ['complete-image'], ['bench-data', 'build'], ['eval'], ['demo']];
  for (const cmd of commands) {
    const r = uvu(...cmd, '--help');
    assert.equal(r.status, 0, `${cmd.join(' ')} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`Usage: uvu${cmd.length ? ` ${cmd.join(' ')}` : ''} `));
    // The command's own options are listed, not just the stub of the command list.
    if (cmd.length) assert.match(r.stdout, /Options:\n(.*\n)*.*--/, `${cmd.join(' ')} --help lists no options`);
  }
  // `help X` shows the same page as `X --help`.
  assert.equal(uvu('help', 'tokenize').stdout, uvu('tokenize', '--help').stdout);
  assert.equal(uvu('patches', 'build', photos, '--out', 'x', '--bogus').status, 2);
  const ten = uvu('codebook', 'build', '--patches', 'p', '--size', 'ten', '--out', 'c');
  assert.equal(ten.status, 2);
  // Usage errors are printed like every other error: one line `uvu: error: …` naming the flag.
  assert.match(ten.stderr, /^uvu: error: option '--size [^']*' argument 'ten' is invalid/);
  assert.equal(ten.stderr.split('\n').filter((l) => l.startsWith('uvu: error:')).length, 1);
  assert.equal(uvu('codebook', 'build', '--patches', 'p', '--size', '4', '--method', 'magic', '--out', 'c').status, 2);
  const unknown = uvu('no-such-command');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^uvu: error: unknown command 'no-such-command'/);
});

test('patches → codebook → eval → tokenize → reconstruct → roundtrip, all with --json', () => {
  const built = json('patches', 'build', photos, '--out', 'store', '--max-pixels', String(256 * 256));
  assert.equal(built.images, 3);
  assert.equal(built.skipped, 1);
  assert.ok((built.patches as number) > 100);
  const info = json('patches', 'info', 'store');
  assert.equal(info.patches, built.patches);
  assert.equal(info.fingerprint, built.fingerprint);

  const cb = json('codebook', 'build', '--patches', 'store', '--size', '16', '--iters', '4', '--seed', '3', '--out', 'cb.safetensors');
  assert.equal(cb.k, 16);
  const ev = json('codebook', 'eval', 'cb.safetensors', '--images', heldOut);
  for (const key of ['prp', 'psc', 'mse', 'psnr', 'r2', 'k', 'k_active', 'utilization']) assert.equal(typeof ev[key], 'number', key);
  assert.ok((ev.prp as number) > 0 && (ev.prp as number) < 1);
  const evStore = json('codebook', 'eval', 'cb.safetensors', '--patches', 'store');
  assert.equal(evStore.m, built.patches);

  const tok = uvu('tokenize', heldOut, '--codebook', 'cb.safetensors');
  assert.equal(tok.status, 0, tok.stderr);
  const tokens = JSON.parse(tok.stdout) as { rows: number; cols: number; ids: number[] };
  assert.equal(tokens.ids.length, tokens.rows * tokens.cols);
  writeFileSync(join(work, 'tokens.json'), tok.stdout);
  const rec = json('reconstruct', 'tokens.json', '--codebook', 'cb.safetensors', '--out', 'rec.png');
  assert.equal(rec.width, tokens.cols * 32);
  const rt = json('roundtrip', heldOut, '--codebook', 'cb.safetensors', '--out', 'rt.png');
  assert.equal(rt.rows, tokens.rows);
  // The round trip of an image is the held-out eval of that image alone.
  assert.ok(Math.abs((rt.prp as number) - (ev.prp as number)) < 1e-9);
  assert.ok(readFileSync(join(work, 'rt.png')).subarray(1, 4).toString() === 'PNG');

  const exp = json('patches', 'export', 'store', '--format', 'npy', '--count', '50', '--out', 'sample.npy', '--seed', '2');
  assert.equal(exp.count, 50);
  assert.equal(readFileSync(join(work, 'sample.npy')).length > 50 * 3072 * 4, true);
});

/**
 * The modules a command resolves, read by a module-resolve hook in the child process: a check
 * that start-up loads only what the command needs (the timings are in BENCHMARKS.md, "startup").
 */
function resolvedModules(...args: string[]): string[] {
  const hook = `export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('[resolved] ' + r.url + '\\n'); return r; }`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
  const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, CLI, ...args], { encoding: 'utf8', cwd: work });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr.split('\n').filter((l) => l.startsWith('[resolved] ')).map((l) => l.slice('[resolved] '.length));
}

test('start-up loads only what the command needs: --help only commander, tokenize no tensor engine', () => {
  const help = resolvedModules('--help');
  assert.ok(help.some((u) => u.includes('/node_modules/commander/')), 'the hook saw no module at all');
  const beyond = help.filter((u) => !u.startsWith('node:') && !u.includes('/node_modules/commander/') && !u.endsWith('/src/cli/main.js'));
  assert.deepEqual(beyond, [], '`uvu --help` loads modules beyond main.js and commander');

  const tokenize = resolvedModules('tokenize', heldOut, '--codebook', 'cb.safetensors', '--out', 'startup-tokens.json');
  assert.ok(tokenize.some((u) => u.endsWith('/src/tokens/tokenize.js')));
  assert.deepEqual(tokenize.filter((u) => /@tensorflow|\/src\/(engine|model|train|infer|vq|data)\//.test(u)), [], '`uvu tokenize` loads the tensor engine or a layer above tokens');
});

test('bad input: one-line errors naming the file, exit 1, and no output left behind', () => {
  const r1 = uvu('codebook', 'build', '--patches', 'store', '--size', '100000', '--out', 'too-big.safetensors');
  assert.equal(r1.status, 1);
  assert.match(r1.stderr, /^uvu: error: store: K = 100000 is larger than the number of patches/);
  assert.equal(r1.stderr.trim().split('\n').length, 1);
  assert.equal(existsSync(join(work, 'too-big.safetensors')), false);

  writeFileSync(join(work, 'broken.safetensors'), Buffer.alloc(64, 7));
  const r2 = uvu('tokenize', heldOut, '--codebook', 'broken.safetensors');
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /^uvu: error: broken\.safetensors: not a valid safetensors file/);

  const r3 = uvu('roundtrip', join(photos, 'notes.jpg'), '--codebook', 'cb.safetensors', '--out', 'never.png');
  assert.equal(r3.status, 1);
  assert.match(r3.stderr, /notes\.jpg/);
  assert.equal(r3.stderr.trim().split('\n').length, 1);
  assert.equal(existsSync(join(work, 'never.png')), false);

  const r4 = uvu('patches', 'info', 'nowhere');
  assert.equal(r4.status, 1);
  assert.match(r4.stderr, /nowhere/);

  const r5 = uvu('patches', 'build', photos, '--out', 'store');
  assert.equal(r5.status, 1, 'building into a non-empty folder without --resume must fail');
  assert.match(r5.stderr, /--resume/);

  assert.deepEqual(readdirSync(work).filter((f) => f.endsWith('.tmp')), []);
});
