/**
 * `uvu serve`'s codebook page at K = 16,384 and K = 200,000 (synthetic codebooks written with the
 * codebook file writer: smooth colour patterns, so sheets compress like real centres do), in
 * Debian's chromium (headless, playwright-core):
 *   first paint        navigation → the first thumbnails drawn (cold: empty sheet cache; warm: cached sheets)
 *   scroll to the end  once the usage histogram is drawn: 20 jumps through the grid (one per frame), then
 *                      scrollTop to the bottom → the last code's thumbnail drawn
 *   long tasks         the longest main-thread task while scrolling (PerformanceObserver "longtask": only
 *                      tasks over 50 ms are reported, so 0 means none over 50 ms)
 *   tile generation    one 1024-code sprite sheet rendered from centers_pixel and written (cold), and the
 *                      same sheet read back from the cache by a fresh view (cached), medians over sheets
 * Targets (issue "uvu serve"): first paint ≤ 1 s; no task over 100 ms while scrolling.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCodebook } from '../src/codebook/file.js';
import { PATCH, PATCH_DIM } from '../src/patches/patchify.js';
import { CodebookView } from '../src/serve/codebook-view.js';
import { startExplorer } from '../src/serve/server.js';
import { Rng } from '../src/util/rng.js';
import { launchChromium } from '../test/browser.js';
import type { BenchRow, BenchSize } from './rows.js';

/** Scroll jumps through the grid before the jump to the end. */
const SCROLL_STEPS = 20;

/** K codes of smooth colour gradients (pseudo-random per code), with long-tailed counts. */
function syntheticCodebook(path: string, K: number): void {
  const rng = new Rng(K);
  const centersPixel = new Float32Array(K * PATCH_DIM);
  const counts = new Float32Array(K);
  for (let k = 0; k < K; k++) {
    const base = [rng.next(), rng.next(), rng.next()];
    const dx = [rng.next() - 0.5, rng.next() - 0.5, rng.next() - 0.5];
    const dy = [rng.next() - 0.5, rng.next() - 0.5, rng.next() - 0.5];
    for (let y = 0; y < PATCH; y++) {
      for (let x = 0; x < PATCH; x++) {
        for (let c = 0; c < 3; c++) centersPixel[k * PATCH_DIM + (y * PATCH + x) * 3 + c] = Math.min(1, Math.max(0, base[c]! + (dx[c]! * x + dy[c]! * y) / PATCH));
      }
    }
    counts[k] = Math.floor(1000 / (1 + rng.next() * K));
  }
  saveCodebook(path, { K, D: PATCH_DIM, patchSize: PATCH, centersPixel, centersAssign: null, counts, pe: { type: 'none', scale: 0 }, build: { method: 'synthetic' }, data: '', metrics: {} });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function measurePage(url: string): Promise<{ firstPaint: number; marks: string; scroll: number; longestTask: number; longTasks: number }> {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.addInitScript(() => {
      const w = window as unknown as { longTasks: number[] };
      w.longTasks = [];
      new PerformanceObserver((list) => list.getEntries().forEach((e) => w.longTasks.push(e.duration))).observe({ type: 'longtask', buffered: true });
    });
    const t0 = performance.now();
    await page.goto(`${url}#/codebook`);
    await page.waitForSelector('#pane-0 .grid[data-drawn]:not([data-drawn="0"])');
    const firstPaint = (performance.now() - t0) / 1000;
    // Where the first paint's time went (ms since navigation start, in the page).
    const marks = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      const at = (name: string) => Math.round(performance.getEntriesByName(name)[0]?.startTime ?? NaN);
      return `html ${Math.round(nav.responseEnd)}, script run ${Math.round(nav.domContentLoadedEventEnd)}, /api/config ${at('uvu:config')}, codebook info ${at('uvu:codebook-info')}, first codes drawn ${at('uvu:first-draw')} ms`;
    });
    // The usage histogram (drawn once the statistics arrive) and long tasks of loading the page are not scrolling.
    await page.waitForSelector('#pane-0 .hist .caption', { timeout: 120_000 });
    await page.evaluate(() => ((window as unknown as { longTasks: number[] }).longTasks = []));
    const t1 = performance.now();
    await page.evaluate(async (steps) => {
      const grid = document.querySelector<HTMLElement>('#pane-0 .grid')!;
      for (let i = 1; i <= steps; i++) {
        grid.scrollTop = (grid.scrollHeight * i) / steps;
        await new Promise((r) => requestAnimationFrame(() => r(null)));
      }
      grid.scrollTop = grid.scrollHeight;
    }, SCROLL_STEPS);
    await page.waitForSelector('#pane-0 .grid[data-last-drawn="1"]', { timeout: 120_000 });
    const scroll = (performance.now() - t1) / 1000;
    const tasks = await page.evaluate(() => (window as unknown as { longTasks: number[] }).longTasks);
    return { firstPaint, marks, scroll, longestTask: tasks.length ? Math.max(...tasks) : 0, longTasks: tasks.length };
  } finally {
    await browser.close();
  }
}

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  const sizes = o.size === 'full' ? [16_384, 200_000] : [16_384];
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'uvu-bench-serve-'));
  try {
    for (const K of sizes) {
      const file = join(dir, `synthetic-k${K}.safetensors`);
      syntheticCodebook(file, K);
      const cache = join(dir, `cache-${K}`);
      const explorer = await startExplorer({ codebooks: [file], runs: [], host: '127.0.0.1', port: 0, cache });
      const cold = await measurePage(explorer.url);
      const warm = await measurePage(explorer.url);
      await explorer.close();
      const config = `codebook page, K = ${K.toLocaleString('en-US')} (synthetic), 1280×800 headless chromium`;
      // The machine's load while measuring (this bench's own browser and server included) says how far to trust the numbers.
      const note = `load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores while measuring`;
      rows.push(
        { bench: 'serve', config, metric: 'first paint, cold sheet cache', value: cold.firstPaint, unit: 's', note: `${note}; in the page: ${cold.marks}; target ≤ 1 s` },
        { bench: 'serve', config, metric: 'first paint, cached sheets', value: warm.firstPaint, unit: 's', note: `in the page: ${warm.marks}; target ≤ 1 s` },
        { bench: 'serve', config, metric: 'scroll to the last code, cold sheet cache', value: cold.scroll, unit: 's', note: `${SCROLL_STEPS} jumps, then the end` },
        { bench: 'serve', config, metric: 'scroll to the last code, cached sheets', value: warm.scroll, unit: 's', note: `${SCROLL_STEPS} jumps, then the end` },
        { bench: 'serve', config, metric: 'longest task while scrolling (cached)', value: warm.longestTask, unit: 'ms', note: `${warm.longTasks} task(s) over 50 ms; cold: longest ${cold.longestTask.toFixed(0)} ms, ${cold.longTasks} over 50 ms; target ≤ 100 ms` },
      );

      // Tile generation, in process: cold renders into an empty cache; cached reads them back through a fresh view.
      const tiles = join(dir, `tiles-${K}`);
      const view = CodebookView.open(file, tiles, null);
      const sheets = Math.min(view.sheetCount, 8);
      const coldMs: number[] = [];
      for (let n = 0; n < sheets; n++) {
        const t0 = performance.now();
        await view.sheet('id', n);
        coldMs.push(performance.now() - t0);
      }
      const again = CodebookView.open(file, tiles, null);
      const cachedMs: number[] = [];
      for (let n = 0; n < sheets; n++) {
        const t0 = performance.now();
        readFileSync(await again.sheet('id', n));
        cachedMs.push(performance.now() - t0);
      }
      const tileConfig = `one sprite sheet of 1024 codes (1024×1024 px PNG), K = ${K.toLocaleString('en-US')}`;
      rows.push(
        { bench: 'serve', config: tileConfig, metric: 'tile generation, cold (median)', value: median(coldMs), unit: 'ms', note: `${sheets} sheets, max ${Math.max(...coldMs).toFixed(0)} ms; ${note}` },
        { bench: 'serve', config: tileConfig, metric: 'tile read, cached (median)', value: median(cachedMs), unit: 'ms', note: `${sheets} sheets; ${note}` },
      );
      rmSync(file, { force: true });
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
