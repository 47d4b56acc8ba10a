import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { computeAxis, escapeXml, PLOT_COLORS, renderLinePlotSvg, writeLinePlotPng, type PlotSpec } from '../src/util/plot.js';
import { Rng } from '../src/util/rng.js';
import { UvuError } from '../src/util/errors.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-plot-'));

/** Loss-like curves: decaying noisy values, with a NaN gap in the second series. */
function lossSpec(rng: Rng): PlotSpec {
  const steps = Array.from({ length: 200 }, (_, i) => i * 10);
  const loss = (scale: number) => steps.map((s) => scale * Math.exp(-s / 600) + 0.1 + 0.05 * rng.next());
  const val = loss(3).map((v, i) => (i >= 80 && i < 100 ? NaN : v));
  return {
    title: 'training',
    width: 800,
    height: 560,
    panels: [
      { title: 'loss', xLabel: 'step', yLabel: 'nats', series: [{ name: 'train', x: steps, y: loss(4) }, { name: 'val', x: steps, y: val }] },
      { title: 'loss (log)', xLabel: 'step', yLabel: 'nats', yLog: true, series: [{ name: 'L_text', x: steps, y: loss(2) }, { name: 'L_image', x: steps, y: loss(6) }, { name: 'zero', x: [0, 10], y: [0, -1] }] },
      { title: 'gradient angle', xLabel: 'step', yLabel: 'degrees', series: [{ name: 'θ', x: steps, y: steps.map(() => 60 + 40 * rng.next()) }] },
    ],
  };
}

/** Pixels within distance 40 of `hex` in an RGB(A) buffer. */
function countNear(data: Buffer, channels: number, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
  let n = 0;
  for (let i = 0; i < data.length; i += channels) if (Math.abs(data[i]! - r) + Math.abs(data[i + 1]! - g) + Math.abs(data[i + 2]! - b) < 40) n++;
  return n;
}

test('plot: PNG has the requested size, a white background and the series colours', async () => {
  const path = join(work, 'loss.png');
  await writeLinePlotPng(path, lossSpec(new Rng(1)));
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 800);
  assert.equal(info.height, 560);
  const white = countNear(data, info.channels, '#ffffff') / (info.width * info.height);
  assert.ok(white > 0.5 && white < 0.99, `white fraction ${white}`);
  for (const c of PLOT_COLORS.slice(0, 2)) assert.ok(countNear(data, info.channels, c) > 100, `colour ${c}`);
  assert.ok(countNear(data, info.channels, '#000000') > 200, 'axes and labels');
  // Atomic write leaves no temp files behind.
  assert.deepEqual(readdirSync(work).filter((f) => f.endsWith('.tmp')), []);
});

test('plot: axis domains contain the data and ticks are increasing inside them', () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 200; trial++) {
    const scale = 10 ** (rng.int(12) - 6);
    const offset = (rng.next() - 0.5) * scale * rng.int(100);
    const n = 1 + rng.int(50);
    const v = Array.from({ length: n }, () => offset + (rng.next() - 0.5) * scale);
    const a = computeAxis(v);
    assert.ok(a.lo <= Math.min(...v) && a.hi >= Math.max(...v) && a.lo < a.hi, JSON.stringify({ a, v }));
    assert.ok(a.ticks.length >= 2 && a.ticks.length <= 12, JSON.stringify(a.ticks));
    for (let i = 0; i < a.ticks.length; i++) {
      const t = a.ticks[i]!;
      assert.ok(t >= a.lo - 1e-9 * (a.hi - a.lo) && t <= a.hi + 1e-9 * (a.hi - a.lo));
      if (i > 0) assert.ok(t > a.ticks[i - 1]!);
    }
    const pos = v.map((x) => Math.abs(x) + scale * 1e-3);
    const l = computeAxis([...pos, NaN, -1, 0], true);
    assert.ok(10 ** l.lo <= Math.min(...pos) && 10 ** l.hi >= Math.max(...pos) && l.lo < l.hi);
    assert.ok(l.ticks.every((t) => Math.log10(t) >= l.lo - 1e-9 && Math.log10(t) <= l.hi + 1e-9));
  }
  assert.deepEqual(computeAxis([NaN, Infinity]), computeAxis([]));
  const flat = computeAxis([5, 5, 5]);
  assert.ok(flat.lo < 5 && flat.hi > 5);
});

test('plot: every drawn point lies inside its panel, and NaN gaps break the line', () => {
  const svg = renderLinePlotSvg(lossSpec(new Rng(2)));
  const areas = [...svg.matchAll(/class="plot-area" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/g)].map((m) => m.slice(1).map(Number));
  assert.equal(areas.length, 3);
  const paths = [...svg.matchAll(/class="series" d="([^"]+)"/g)].map((m) => m[1]!);
  assert.equal(paths.length, 5); // the all-non-positive series on the log panel draws nothing
  for (const d of paths) {
    const pts = [...d.matchAll(/[ML]([\d.-]+) ([\d.-]+)/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
    const inside = areas.filter(([x, y, w, h]) => pts.every(([px, py]) => px >= x! - 0.1 && px <= x! + w! + 0.1 && py >= y! - 0.1 && py <= y! + h! + 0.1));
    assert.equal(inside.length, 1, d.slice(0, 80));
  }
  // The validation series has one gap: two subpaths.
  assert.equal((paths[1]!.match(/M/g) ?? []).length, 2);
  assert.equal((paths[0]!.match(/M/g) ?? []).length, 1);
  // Tick labels are short, also for log axes over many decades.
  const lr = renderLinePlotSvg({ panels: [{ title: 'lr', xLabel: 'step', yLabel: 'lr', yLog: true, series: [{ name: 'lr', x: [0, 1, 2], y: [1e-7, 3e-5, 3e-4] }] }] });
  const labels = [...lr.matchAll(/font-size="11" text-anchor="(?:end|middle)">([^<]*)</g)].map((m) => m[1]!);
  assert.ok(labels.includes('1e-5') && labels.includes('0.001'), labels.join(' '));
  assert.ok(labels.every((l) => l.length <= 8), labels.join(' '));
  // Text is escaped.
  assert.ok(renderLinePlotSvg({ panels: [{ title: 'a<b & "c"', xLabel: 'x', yLabel: 'y', series: [] }] }).includes('a&lt;b &amp; &quot;c&quot;'));
});

test('plot: empty panels and series render without throwing; bad input is refused', async () => {
  const path = join(work, 'empty.png');
  await writeLinePlotPng(path, {
    panels: [
      { title: 'nothing', xLabel: 'x', yLabel: 'y', series: [] },
      { title: 'empty series', xLabel: 'x', yLabel: 'y', yLog: true, series: [{ name: 'e', x: [], y: [] }, { name: 'nan', x: [1, 2], y: [NaN, NaN] }] },
      { title: 'one point', xLabel: 'x', yLabel: 'y', series: [{ name: 'p', x: [3], y: [4] }] },
    ],
  });
  assert.ok(existsSync(path));
  const meta = await sharp(path).metadata();
  assert.equal(meta.width, 960); // three panels: a 2-column grid
  assert.equal(meta.height, 640);
  assert.ok(renderLinePlotSvg({ panels: [{ title: 'p', xLabel: 'x', yLabel: 'y', series: [{ name: 'p', x: [3], y: [4] }] }] }).includes('<circle'));
  assert.throws(() => renderLinePlotSvg({ panels: [{ title: 'p', xLabel: 'x', yLabel: 'y', series: [{ name: 's', x: [1, 2], y: [1] }] }] }), UvuError);
  assert.throws(() => renderLinePlotSvg({ width: 10, panels: [] }), UvuError);
});

test('plot text: markup escaped, characters XML forbids (a model answer can hold any) shown as U+FFFD, so the SVG still renders', async () => {
  // \u001c is what a tiny model once answered; a lone high and a lone low surrogate; a valid pair stays.
  const hostile = 'a<b>&"c\u001c\u0000d\uD83D e\uDE00 f\uD83D\uDE00 g\uFFFF';
  assert.equal(escapeXml(hostile), 'a&lt;b&gt;&amp;&quot;c\uFFFD\uFFFDd\uFFFD e\uFFFD f\uD83D\uDE00 g\uFFFD');
  const path = join(work, 'hostile.png');
  await writeLinePlotPng(path, { title: hostile, panels: [{ title: hostile, xLabel: hostile, yLabel: 'y', series: [{ name: hostile, x: [1, 2], y: [3, 4] }] }] });
  assert.equal((await sharp(path).metadata()).format, 'png');
});
