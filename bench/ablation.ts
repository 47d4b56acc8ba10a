/**
 * The codebook-construction ablation of the paper (PRP 70.14 → 82.84 → 95.63 at K = 200K):
 *   (a) pure k-means, (b) + positional encoding, (c) the full method (PE + dedup + iterative
 *   hierarchical clustering), (d) faiss.Kmeans — same training patches, same K, evaluated on
 *   validation photos that were never clustered. Also writes, per K, a PNG grid of two
 *   validation photos reconstructed by each method (docs/bench/ablation-kK.png).
 *
 * Data: the photos of `npm run data:photos` at native resolution; training patches from
 * data/photos/train cut in `passes` passes with random grid offsets, validation patches from
 * data/photos/val. full: K ∈ {256, 1024}, ~1.1M training patches; large: K = 4096 on the
 * same data (`--only ablation-large`); small: K = 64, bundled photos.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PatchStore } from '../src/patches/store.js';
import { exportSample, readNpyF32 } from '../src/patches/npy.js';
import { PATCH, PATCH_DIM } from '../src/patches/patchify.js';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { buildUvuCodebook } from '../src/codebook/uvu/build.js';
import { parseUvuConfig } from '../src/codebook/uvu/config.js';
import { MetricsAccumulator, type CodebookMetrics } from '../src/codebook/metrics.js';
import { NO_POSENC, type PosEnc } from '../src/codebook/posenc.js';
import type { Codebook } from '../src/codebook/file.js';
import { tokenizeImage, reconstructImage } from '../src/tokens/tokenize.js';
import { resizeRgb, writePng, type RgbImage } from '../src/image/io.js';
import { sideBySide } from '../src/tokens/roundtrip.js';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../src/data/bundled.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';
import { openOrBuildStore } from './data.js';

const FAISS_PYTHON = '/usr/bin/python3';
const FAISS_SCRIPT = fileURLToPath(new URL('../../bench/faiss_kmeans.py', import.meta.url));
const SEED = 1234;
const PE: PosEnc = { type: '2d-sincos', scale: 0.1 };
const GRID_DIR = 'docs/bench';

interface Setting {
  /** Codebook sizes, each with its Lloyd iteration budget and training points per centre for (a), (b) and (d). */
  ks: { k: number; iters: number; perCentre: number }[];
  trainInputs: string[];
  valInputs: string[];
  passes: number;
  rounds: number;
  roundSize: number;
  label: string;
}

/**
 * full: K = 256 and 1024 with Faiss's default 25 iterations on 256 points per centre; large:
 * K = 4096, where 25 Lloyd iterations on 1M patches take about an hour per method here, so
 * (a), (b) and (d) get 4 iterations on 128 points per centre (the .npy for Faiss is then 6 GiB):
 * about the wall time of the full method, a comparable time budget.
 */
function setting(size: BenchSize | 'large'): Setting {
  const photos = existsSync('data/photos/train') && existsSync('data/photos/val');
  if (size !== 'small' && !photos) throw new Error('the full ablation needs `npm run data:photos` first');
  const real = { trainInputs: ['data/photos/train'], valInputs: ['data/photos/val'], passes: 4, rounds: 20, roundSize: 65_536, label: 'data:photos' };
  if (size === 'full') return { ...real, ks: [{ k: 256, iters: 25, perCentre: 256 }, { k: 1024, iters: 25, perCentre: 256 }] };
  if (size === 'large') return { ...real, ks: [{ k: 4096, iters: 4, perCentre: 128 }] };
  const bundled = BUNDLED_PHOTOS.map(bundledPhotoPath);
  return { ks: [{ k: 64, iters: 10, perCentre: 256 }], trainInputs: bundled.slice(0, 7), valInputs: bundled.slice(7), passes: 2, rounds: 6, roundSize: 4096, label: 'bundled photos' };
}

function evaluate(cb: Codebook, val: PatchStore): CodebookMetrics {
  const acc = new MetricsAccumulator(cb);
  for (const b of val.scan(4096)) acc.add(b.patches, b.meta.row.length, b.meta);
  return acc.result();
}

/** faiss.Kmeans on the exported sample; returns its centroids as a codebook (or null when Faiss is missing). */
function faissCodebook(npy: string, k: number, iters: number, dir: string): { cb: Codebook; seconds: number } | null {
  const out = join(dir, `faiss-${k}.npy`);
  try {
    const r = JSON.parse(execFileSync(FAISS_PYTHON, [FAISS_SCRIPT, npy, String(k), String(iters), String(SEED), out], { encoding: 'utf8' }).trim().split('\n').at(-1)!) as { seconds: number };
    const { data } = readNpyF32(out);
    return { cb: { K: k, D: PATCH_DIM, patchSize: PATCH, centersPixel: data, centersAssign: null, counts: new Float32Array(k), pe: NO_POSENC, build: { method: 'faiss.Kmeans' }, data: '', metrics: {} }, seconds: r.seconds };
  } catch {
    return null;
  }
}

/** Rows of [original, reconstructions...] for two validation photos, scaled to 192 px height. */
async function grid(path: string, photos: string[], codebooks: { name: string; cb: Codebook }[]): Promise<void> {
  const H = 192;
  const fit = async (img: RgbImage) => resizeRgb(img, Math.round((img.width * H) / img.height), H);
  const rows: RgbImage[] = [];
  for (const photo of photos) {
    const cells: RgbImage[] = [];
    for (const [i, { cb }] of codebooks.entries()) {
      const t = await tokenizeImage(photo, cb, { maxPixels: 512 * 512 });
      if (i === 0) cells.push(await fit(t.image));
      cells.push(await fit(reconstructImage(t.tokens, cb)));
    }
    rows.push(sideBySide(cells));
  }
  // Stack the rows vertically (same width) with a white gap.
  const width = Math.max(...rows.map((r) => r.width));
  const gap = 8;
  const height = rows.reduce((h, r) => h + r.height, 0) + gap * (rows.length - 1);
  const data = new Uint8Array(width * height * 3).fill(255);
  let y0 = 0;
  for (const r of rows) {
    for (let y = 0; y < r.height; y++) data.set(r.data.subarray(y * r.width * 3, (y + 1) * r.width * 3), ((y0 + y) * width) * 3);
    y0 += r.height + gap;
  }
  mkdirSync(GRID_DIR, { recursive: true });
  await writePng(path, { data, width, height });
}

/** K = 4096 at a comparable time budget (section "ablation-large" of BENCHMARKS.md). */
export async function runLarge(): Promise<BenchRow[]> {
  return ablation('large');
}

export async function run(opts: { size: BenchSize }): Promise<BenchRow[]> {
  return ablation(opts.size);
}

async function ablation(size: BenchSize | 'large'): Promise<BenchRow[]> {
  const s = setting(size);
  const data = size === 'small' ? 'small' : 'full';
  const train = await openOrBuildStore(`data/bench/ablation-${data}-train`, s.trainInputs, s.passes);
  const val = await openOrBuildStore(`data/bench/ablation-${data}-val`, s.valInputs);
  const valPhotos = s.valInputs.flatMap((p) => (p.startsWith('data/') ? readdirSync(p).sort().map((f) => join(p, f)) : [p])).slice(0, 2);
  const rows: BenchRow[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'uvu-ablation-'));
  const env = `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}`;
  try {
    for (const { k, iters, perCentre } of s.ks) {
      // (a), (b) and (d) see the same training sample.
      const sample = Math.min(train.count, perCentre * k);
      const config = `K=${k}, ${train.count} train patches (${s.label}, ${s.passes} offset passes), ${val.count} val patches`;
      const add = (method: string, cb: Codebook, seconds: number, note: string) => {
        const m = evaluate(cb, val);
        rows.push({ bench: 'ablation', config, metric: `${method}: val PRP`, value: m.prp, unit: '', note });
        rows.push({ bench: 'ablation', config, metric: `${method}: val PSC`, value: m.psc, unit: '', note: `radius q10/q50/q90 ${m.radius_q10.toFixed(3)}/${m.radius_q50.toFixed(3)}/${m.radius_q90.toFixed(3)}` });
        rows.push({ bench: 'ablation', config, metric: `${method}: utilization`, value: m.utilization, unit: '', note: `PSNR ${m.psnr.toFixed(2)} dB` });
        rows.push({ bench: 'ablation', config, metric: `${method}: build time`, value: seconds, unit: 's', note: env });
        return { name: method, cb };
      };
      const books: { name: string; cb: Codebook }[] = [];
      let t0 = performance.now();
      const a = buildKmeansCodebook(train.dir, { method: 'kmeans', size: k, iters, seed: SEED, sample });
      books.push(add('(a) k-means', a, (performance.now() - t0) / 1000, `${iters} iters on ${sample} patches`));
      t0 = performance.now();
      const b = buildKmeansCodebook(train.dir, { method: 'kmeans', size: k, iters, seed: SEED, sample, pe: PE });
      books.push(add('(b) + PE', b, (performance.now() - t0) / 1000, `2d-sincos λ=${PE.scale}`));
      t0 = performance.now();
      const cfg = parseUvuConfig({ size: k, roundSize: Math.max(s.roundSize, 4 * k), maxRounds: s.rounds, pe: PE, seed: SEED, valSize: Math.min(8192, train.count), alpha: Math.max(4096, k) });
      const c = await buildUvuCodebook({ storeDir: train.dir, config: cfg, checkpointDir: join(tmp, `ckpt-${k}`) });
      books.push(add('(c) full method', c.codebook, (performance.now() - t0) / 1000, `${c.state.round} rounds of ${cfg.roundSize} (${c.state.converged ? 'converged' : 'max rounds'}), ${c.state.totals.duplicatesDropped} dups, ${c.state.totals.clustersCached} cached, ${c.state.totals.reclusters} re-clusters`));
      const npy = join(tmp, `sample-${k}.npy`);
      exportSample(train, sample, SEED, npy);
      const f = faissCodebook(npy, k, iters, tmp);
      if (f) books.push(add('(d) faiss.Kmeans', f.cb, f.seconds, `${iters} iters on the same ${sample} patches (Faiss time excludes loading)`));
      else rows.push({ bench: 'ablation', config, metric: '(d) faiss.Kmeans', value: NaN, unit: '', note: 'skipped: python3-faiss not available' });
      rmSync(npy, { force: true });
      if (size !== 'small') await grid(join(GRID_DIR, `ablation-k${k}.png`), valPhotos, books);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    train.close();
    val.close();
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const size: BenchSize = process.argv.includes('full') || process.argv.includes('--size=full') ? 'full' : 'small';
  console.log(formatRows(await run({ size })));
}
