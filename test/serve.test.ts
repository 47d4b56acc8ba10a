/**
 * `uvu serve` end to end: the command is started as a user starts it, on small real fixtures
 * (a patch store and K = 16 codebook from bundled photos, a perception benchmark, a tiny SFT run
 * and its `uvu eval`), and Debian's chromium (headless, through playwright-core; no browser
 * download) checks that each page shows what the CLI reports for the same files. The HTTP checks
 * (traversal, out-of-root, host and token) use raw requests, so no client normalises the paths.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { loadCodebook } from '../src/codebook/file.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { buildBench } from '../src/perception/build.js';
import { launchChromium } from './browser.js';
import { pngDeclaring } from './png-bomb.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const TINY_CONFIG = fileURLToPath(new URL('../../configs/tiny.json', import.meta.url));

const work = mkdtempSync(join(tmpdir(), 'uvu-serve-'));
const images = join(work, 'images');
const codebook = join(work, 'cb.safetensors');
const codebook2 = join(work, 'cb-k8.safetensors');
const bench = join(work, 'bench');
const runDir = join(work, 'runs', 'sft');

function uvu(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: work, maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, `uvu ${args.join(' ')}\n${r.stderr.slice(-2000)}`);
  return r.stdout;
}
const uvuJson = (args: string[]): Record<string, any> => JSON.parse(uvu([...args, '--json', '--quiet'])) as Record<string, any>;

/** Start `uvu serve ARGS --json` and read the URL it prints. */
async function serve(args: string[]): Promise<{ proc: ChildProcess; url: string; token: string | null }> {
  const proc = spawn(process.execPath, [CLI, 'serve', ...args, '--cache', join(work, 'cache'), '--json'], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { proc: ChildProcess; url: string; token: string | null } & object);
    });
    proc.on('exit', (code) => reject(new Error(`uvu serve exited with ${code}: ${err}`)));
  }).then((r) => ({ proc, ...(r as { url: string; token: string | null }) }));
}

/**
 * A raw request (the path is sent exactly as given; a body makes it a POST) → status and body.
 * A number instead of a body declares that many bytes (content-length) and sends none: the
 * server must refuse an oversized upload from its headers.
 */
function rawRequest(base: string, path: string, headers: Record<string, string> = {}, body?: Buffer | number): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  const declared = typeof body === 'number' ? { 'content-length': String(body) } : {};
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: body !== undefined ? 'POST' : 'GET', headers: { ...headers, ...declared } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode!, body: text });
        req.destroy();
      });
    });
    req.on('error', reject);
    if (typeof body === 'number') req.flushHeaders();
    else req.end(body);
  });
}
const rawGet = (base: string, path: string, headers: Record<string, string> = {}) => rawRequest(base, path, headers);

let server: { proc: ChildProcess; url: string };
let browser: Browser;
let evalReport: Record<string, any>;

before(async () => {
  mkdirSync(images);
  for (const name of ['black-canyon', 'march-pastoral', 'acanthus-mollis'] as const) copyFileSync(bundledPhotoPath(name), join(images, `${name}.jpg`));
  uvuJson(['patches', 'build', images, '--out', 'store', '--max-pixels', String(256 * 256)]);
  uvuJson(['codebook', 'build', '--patches', 'store', '--size', '16', '--iters', '4', '--seed', '3', '--out', codebook]);
  uvuJson(['codebook', 'build', '--patches', 'store', '--size', '8', '--iters', '4', '--seed', '3', '--out', codebook2]);
  // Out of the images root: a file beside it, reachable only through a symlink inside it.
  writeFileSync(join(work, 'secret.txt'), 'secret');
  symlinkSync(join(work, 'secret.txt'), join(images, 'link.jpg'));
  // A tiny benchmark, a tiny SFT run on its train questions, and its evaluation.
  await buildBench({ out: bench, seed: 2, trainScenes: 6, testScenes: 4, size: 128, backgroundSources: BUNDLED_PHOTOS.map((n) => ({ id: `bundled/${n}`, path: bundledPhotoPath(n) })) });
  uvuJson(['data', 'build', '--out', 'data', '--image-tokenizer', codebook, '--samples', join(bench, 'train.jsonl'), '--train-tokenizer', '300', '--context', '128', '--max-pixels', String(128 * 128), '--val-fraction', '0']);
  uvuJson(['train', '--config', TINY_CONFIG, '--set', 'stage=sft', '--set', 'data=data', '--set', `out=${runDir}`, '--set', 'steps=6', '--set', 'batch_size=2', '--set', 'eval_batches=0', '--set', 'checkpoint_every=1000']);
  evalReport = uvuJson(['eval', '--checkpoint', join(runDir, 'checkpoint'), '--bench', bench, '--limit', '8']);
  server = await serve(['--codebook', codebook, '--codebook', codebook2, '--patches', 'store', '--images', images, '--runs', join(work, 'runs'), '--bench', bench]);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.proc.kill();
  rmSync(work, { recursive: true, force: true });
});

async function open(hash: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}${hash}`);
  await page.waitForSelector('main[data-ready="1"]');
  assert.deepEqual(errors, []);
  return page;
}

/** Click the code at grid position `i` (the grid is one canvas; the test computes where position i is drawn). */
async function clickCode(page: Page, pane: string, i: number): Promise<void> {
  const cols = Number(await page.getAttribute(`${pane} .grid`, 'data-cols'));
  await page.click(`${pane} canvas.codes`, { position: { x: (i % cols) * CELL + 16, y: Math.floor(i / cols) * CELL + 16 } });
}
/** Grid pitch of web/codebook.ts. */
const CELL = 36;

test('the codebook page draws one thumbnail per code, and clicking a code shows its count from the codebook file', async () => {
  const cb = loadCodebook(codebook);
  const page = await open('#/codebook');
  await page.waitForSelector(`#pane-0[data-sort="id"] .grid[data-drawn="${cb.K}"][data-last-drawn="1"]`);
  assert.equal(await page.getAttribute('#pane-0 [data-k]', 'data-k'), String(cb.K));
  for (const id of [3, cb.K - 1]) {
    await clickCode(page, '#pane-0', id);
    await page.waitForSelector(`#code-id:text-is("${id}")`);
    assert.equal(await page.textContent('#code-count'), String(cb.counts[id]));
  }
  // Sorted by count: the first thumbnail is the most used code.
  await page.selectOption('#sort', 'count');
  await page.waitForSelector(`#pane-0[data-sort="count"] .grid[data-drawn="${cb.K}"]`);
  const top = cb.counts.indexOf(Math.max(...cb.counts));
  await clickCode(page, '#pane-0', 0);
  await page.waitForSelector(`#code-id:text-is("${top}")`);
  // Two codebooks side by side: the second pane draws its own codes.
  await page.selectOption('#cb-b', '1');
  await page.waitForSelector(`#pane-1 .grid[data-drawn="${loadCodebook(codebook2).K}"]`);
  await page.close();
});

test('the round-trip page shows the PRP, PSNR and MSE that `uvu roundtrip --json` prints for the same file', async () => {
  const cli = uvuJson(['roundtrip', join(images, 'march-pastoral.jpg'), '--codebook', codebook, '--out', 'rt.png']);
  const page = await open('#/roundtrip?image=march-pastoral.jpg');
  await page.waitForSelector('#rt-psnr');
  assert.equal(await page.getAttribute('#rt-psnr', 'data-value'), String(cli.psnr));
  assert.equal(await page.textContent('#rt-psnr'), `${(cli.psnr as number).toFixed(2)} dB`);
  assert.equal(await page.getAttribute('#rt-prp', 'data-value'), String(cli.prp));
  assert.equal(await page.getAttribute('#rt-mse', 'data-value'), String(cli.mse));
  await page.close();
});

test('an uploaded image gets the same round trip as the file; uploads over the byte limit are refused', async () => {
  const cli = uvuJson(['roundtrip', join(images, 'black-canyon.jpg'), '--codebook', codebook, '--out', 'rt2.png']);
  const post = (body: Buffer | number) => rawRequest(server.url, '/api/roundtrip?cb=0', { 'content-type': 'image/jpeg' }, body);
  const res = await post(readFileSync(join(images, 'black-canyon.jpg')));
  assert.equal(res.status, 200, res.body);
  const got = JSON.parse(res.body) as { psnr: number; prp: number };
  assert.equal(got.psnr, cli.psnr);
  assert.equal(got.prp, cli.prp);
  assert.equal((await post(17 * 2 ** 20)).status, 413);
  const junk = await post(Buffer.from('not an image'));
  assert.equal(junk.status, 422, junk.body);
  assert.match(junk.body, /cannot decode image/);
  // A few hundred bytes whose header declares 10,000×10,000 pixels: refused from the header.
  const huge = await post(await pngDeclaring(10_000, 10_000));
  assert.equal(huge.status, 413, huge.body);
  assert.match(huge.body, /10000×10000 = 100000000 pixels, at most 67108864/);
});

test('the runs page plots one point per log.jsonl line, and a line appended while it is open appears without a reload', async () => {
  const log = join(runDir, 'log.jsonl');
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  const page = await open('#/runs');
  await page.waitForSelector(`.count[data-points="${lines.length}"]`);
  await page.waitForSelector(`.chart[data-chart="loss"][data-x="${lines.length}"]`);
  const last = JSON.parse(lines[lines.length - 1]!) as { step: number };
  appendFileSync(log, `${JSON.stringify({ ...last, step: last.step + 1 })}\n`);
  await page.waitForSelector(`.count[data-points="${lines.length + 1}"]`, { timeout: 10_000 });
  await page.waitForSelector(`.chart[data-chart="loss"][data-x="${lines.length + 1}"]`);
  await page.close();
});

test('the evaluation page shows the accuracies `uvu eval --json` printed', async () => {
  const page = await open('#/eval');
  await page.waitForSelector('#acc-0-overall');
  assert.equal(await page.getAttribute('#acc-0-overall', 'data-value'), String(evalReport.overall.accuracy));
  for (const [task, s] of Object.entries(evalReport.tasks as Record<string, { accuracy: number }>)) {
    assert.equal(await page.getAttribute(`#acc-0-${task}`, 'data-value'), String(s.accuracy), task);
  }
  assert.equal(await page.locator('#eval-items .item').count(), evalReport.n);
  await page.selectOption('#f-outcome', 'wrong');
  const wrong = (evalReport.items as { correct: boolean }[]).filter((i) => !i.correct).length;
  assert.equal(await page.locator('#eval-items .item').count(), wrong);
  await page.close();
});

test('traversal, absolute paths, symlinks out of a root and encoded traversal get 404; foreign Host headers 403', async () => {
  const ok = await rawGet(server.url, '/files/images/black-canyon.jpg');
  assert.equal(ok.status, 200, 'the control request (a file inside the root) must succeed');
  for (const path of [
    '/files/images/../secret.txt',
    '/files/images/%2e%2e/secret.txt',
    '/files/images/%2E%2E%2Fsecret.txt',
    '/files/images/..%2fsecret.txt',
    '/files/images/sub/../../secret.txt',
    '/files/images//etc/passwd',
    '/files/images/%2Fetc%2Fpasswd',
    '/files/images/%252e%252e/secret.txt',
    '/files/images/link.jpg',
    '/files/images/..\\secret.txt',
    '/files/images/%00',
    '/files/bench/../../secret.txt',
    '/files/bench/manifest.json/../../secret.txt',
    '/api/roundtrip?cb=0&image=../secret.txt',
    '/api/roundtrip?cb=0&image=%2Fetc%2Fpasswd',
    '/api/roundtrip?cb=0&image=link.jpg',
    '/../../etc/passwd',
    '/api/codebook/0/sheet/id/../../../../etc/passwd',
    '/api/codebook/7',
    '/api/runs/9/log',
  ]) {
    const r = await rawGet(server.url, path);
    assert.equal(r.status, 404, `${path}: ${r.status} ${r.body.slice(0, 100)}`);
    assert.ok(!r.body.includes('secret') && !r.body.includes('root:'), path);
  }
  assert.equal((await rawGet(server.url, '/api/config', { host: 'attacker.example' })).status, 403);
});

test('on a non-loopback address every request needs the printed token', async () => {
  const open = await serve(['--codebook', codebook, '--host', '0.0.0.0']);
  try {
    assert.ok(open.token && open.token.length >= 32, 'a token is printed');
    const base = `http://127.0.0.1:${new URL(open.url).port}`;
    assert.equal((await rawGet(base, '/api/config')).status, 401);
    assert.equal((await rawGet(base, '/api/config?token=wrong')).status, 401);
    assert.equal((await rawGet(base, `/api/config?token=${open.token}`)).status, 200);
  } finally {
    open.proc.kill();
  }
});
