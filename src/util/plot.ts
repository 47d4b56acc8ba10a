/**
 * Line plots as PNG without a plotting library: we lay out an SVG by hand (panels in a grid,
 * axes with "nice" ticks, legend) and let sharp (librsvg) rasterize it. Used for training
 * curves (losses, gradient angle, sampling statistics).
 */
import sharp from 'sharp';
import { writeFileAtomic } from './atomic.js';
import { UvuError } from './errors.js';

export interface PlotSeries {
  name: string;
  x: number[];
  y: number[];
  /** CSS colour; default: the series' index in PLOT_COLORS (set it to keep one series' colour across panels). */
  color?: string;
}

export interface PlotPanel {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Log-scale y axis; points with y ≤ 0 are then gaps. */
  yLog?: boolean;
  series: PlotSeries[];
}

export interface PlotSpec {
  title?: string;
  /** Image size in pixels; default 480 per grid column × 320 per grid row (+ title). */
  width?: number;
  height?: number;
  panels: PlotPanel[];
}

/** One axis: data → pixel mapping domain [lo, hi] (log10 space when log) and tick values. */
export interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
}

/** Tableau-10: distinct colours that stay distinguishable on white. */
export const PLOT_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const FONT = 'DejaVu Sans, Arial, Helvetica, sans-serif';
const TITLE_H = 34;
/** Panel margins in px: room for the panel title (top), tick labels and axis labels (left, bottom). */
const M = { left: 72, right: 18, top: 30, bottom: 48 };

/** Grid of the panels: one column for up to two panels, else two columns. */
function grid(n: number): { cols: number; rows: number } {
  const cols = n <= 2 ? 1 : 2;
  return { cols, rows: Math.max(1, Math.ceil(n / cols)) };
}

/** 1, 2 or 5 × 10^k closest above `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/**
 * Axis covering `values` (non-finite values ignored; for log axes also values ≤ 0):
 * linear → about 5 ticks at a nice step, domain widened to whole steps; log → domain widened
 * to whole decades, ticks at decades (plus 2× and 5× when it spans at most two decades).
 */
export function computeAxis(values: Iterable<number>, log = false): Axis {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v) || (log && v <= 0)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (log) {
    if (min > max) [min, max] = [1, 10];
    let lo = Math.floor(Math.log10(min));
    let hi = Math.ceil(Math.log10(max));
    if (hi === lo) hi = lo + 1;
    const decades = hi - lo;
    const every = Math.ceil(decades / 8); // at most ~8 decade ticks
    const ticks: number[] = [];
    for (let e = lo; e <= hi; e++) {
      // Parsed from text so 1e-5 is exactly the double "1e-5" (10 ** -5 is not).
      if ((e - lo) % every === 0) ticks.push(Number(`1e${e}`));
      if (decades <= 2 && e < hi) ticks.push(Number(`2e${e}`), Number(`5e${e}`));
    }
    return { lo, hi, log: true, ticks };
  }
  if (min > max) [min, max] = [0, 1];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const step = niceStep((max - min) / 5);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  // Round each tick to the step's precision so 0.1·3 prints as 0.3.
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) ticks.push(Number((lo + i * step).toFixed(Math.min(20, digits))));
  return { lo, hi, log: false, ticks };
}

/** Short tick label: plain for moderate magnitudes, else exponent form (1e-4, 2.5e+6). */
function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(6)));
  return Number(v.toPrecision(6)).toExponential();
}

/**
 * Text as SVG character data: markup escaped, and the characters XML 1.0 forbids (control
 * characters, lone surrogates, U+FFFE/U+FFFF: a model's byte-level answer can hold any of them)
 * shown as U+FFFD, since a single one makes the whole SVG unparseable.
 */
export function escapeXml(s: string): string {
  return s
    .replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!)
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

const f1 = (v: number) => v.toFixed(1);

/** SVG elements of one panel whose top-left corner is (x0, y0) and size w × h. */
function panelSvg(p: PlotPanel, x0: number, y0: number, w: number, h: number): string {
  for (const s of p.series) {
    if (s.x.length !== s.y.length) throw new UvuError(`plot "${p.title}": series "${s.name}" has ${s.x.length} x values but ${s.y.length} y values`);
  }
  const log = p.yLog === true;
  const xa = computeAxis(p.series.flatMap((s) => s.x));
  const ya = computeAxis(p.series.flatMap((s) => s.y), log);
  // Plot area in pixels.
  const L = x0 + M.left;
  const T = y0 + M.top;
  const W = Math.max(10, w - M.left - M.right);
  const H = Math.max(10, h - M.top - M.bottom);
  const px = (x: number) => L + ((x - xa.lo) / (xa.hi - xa.lo)) * W;
  const py = (y: number) => T + H - (((log ? Math.log10(y) : y) - ya.lo) / (ya.hi - ya.lo)) * H;
  const out: string[] = [];
  out.push(`<text x="${f1(L + W / 2)}" y="${f1(y0 + 20)}" font-size="14" font-weight="bold" text-anchor="middle">${escapeXml(p.title)}</text>`);
  out.push(`<rect class="plot-area" x="${f1(L)}" y="${f1(T)}" width="${f1(W)}" height="${f1(H)}" fill="none" stroke="#000" stroke-width="1"/>`);
  for (const t of xa.ticks) {
    const x = px(t);
    out.push(`<line x1="${f1(x)}" y1="${f1(T)}" x2="${f1(x)}" y2="${f1(T + H)}" stroke="#e5e5e5"/>`);
    out.push(`<line x1="${f1(x)}" y1="${f1(T + H)}" x2="${f1(x)}" y2="${f1(T + H + 5)}" stroke="#000"/>`);
    out.push(`<text x="${f1(x)}" y="${f1(T + H + 18)}" font-size="11" text-anchor="middle">${formatTick(t)}</text>`);
  }
  for (const t of ya.ticks) {
    const y = py(t);
    out.push(`<line x1="${f1(L)}" y1="${f1(y)}" x2="${f1(L + W)}" y2="${f1(y)}" stroke="#e5e5e5"/>`);
    out.push(`<line x1="${f1(L - 5)}" y1="${f1(y)}" x2="${f1(L)}" y2="${f1(y)}" stroke="#000"/>`);
    out.push(`<text x="${f1(L - 8)}" y="${f1(y + 4)}" font-size="11" text-anchor="end">${formatTick(t)}</text>`);
  }
  out.push(`<text x="${f1(L + W / 2)}" y="${f1(y0 + h - 8)}" font-size="12" text-anchor="middle">${escapeXml(p.xLabel)}</text>`);
  const yl = { x: x0 + 16, y: T + H / 2 };
  out.push(`<text x="${f1(yl.x)}" y="${f1(yl.y)}" font-size="12" text-anchor="middle" transform="rotate(-90 ${f1(yl.x)} ${f1(yl.y)})">${escapeXml(p.yLabel)}${log ? ' (log)' : ''}</text>`);

  p.series.forEach((s, si) => {
    const color = s.color ?? PLOT_COLORS[si % PLOT_COLORS.length]!;
    const ok = (i: number) => Number.isFinite(s.x[i]!) && Number.isFinite(s.y[i]!) && (!log || s.y[i]! > 0);
    // Path restarts (M) after each gap; isolated points get a dot so they stay visible.
    let d = '';
    const dots: string[] = [];
    for (let i = 0; i < s.x.length; i++) {
      if (!ok(i)) continue;
      const cmd = i > 0 && ok(i - 1) ? 'L' : 'M';
      d += `${cmd}${f1(px(s.x[i]!))} ${f1(py(s.y[i]!))}`;
      if (cmd === 'M' && !(i + 1 < s.x.length && ok(i + 1))) dots.push(`<circle cx="${f1(px(s.x[i]!))}" cy="${f1(py(s.y[i]!))}" r="2.5" fill="${color}"/>`);
    }
    if (d) out.push(`<path class="series" d="${d}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`);
    out.push(...dots);
  });

  // Legend in the top-right corner of the plot area.
  if (p.series.length > 0) {
    const lw = 34 + 7 * Math.max(...p.series.map((s) => s.name.length));
    const lh = 8 + 16 * p.series.length;
    const lx = L + W - lw - 6;
    const ly = T + 6;
    out.push(`<rect x="${f1(lx)}" y="${f1(ly)}" width="${f1(lw)}" height="${lh}" fill="#fff" fill-opacity="0.85" stroke="#999"/>`);
    p.series.forEach((s, si) => {
      const color = s.color ?? PLOT_COLORS[si % PLOT_COLORS.length]!;
      const y = ly + 12 + 16 * si;
      out.push(`<line x1="${f1(lx + 6)}" y1="${f1(y)}" x2="${f1(lx + 24)}" y2="${f1(y)}" stroke="${color}" stroke-width="3"/>`);
      out.push(`<text x="${f1(lx + 29)}" y="${f1(y + 4)}" font-size="11">${escapeXml(s.name)}</text>`);
    });
  }
  return out.join('\n');
}

/** Size of the image for `spec` (defaults from the panel grid). */
function plotSize(spec: PlotSpec): { width: number; height: number } {
  const { cols, rows } = grid(spec.panels.length);
  const width = spec.width ?? 480 * cols;
  const height = spec.height ?? 320 * rows + (spec.title ? TITLE_H : 0);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 64 || height < 64) throw new UvuError(`plot: size must be integers ≥ 64 px, got ${width}×${height}`);
  return { width, height };
}

/** The SVG document of `spec`. */
export function renderLinePlotSvg(spec: PlotSpec): string {
  const { width, height } = plotSize(spec);
  const { cols, rows } = grid(spec.panels.length);
  const top = spec.title ? TITLE_H : 0;
  const cw = width / cols;
  const ch = (height - top) / rows;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`,
  ];
  if (spec.title) parts.push(`<text x="${width / 2}" y="24" font-size="17" font-weight="bold" text-anchor="middle">${escapeXml(spec.title)}</text>`);
  spec.panels.forEach((p, i) => parts.push(panelSvg(p, (i % cols) * cw, top + Math.floor(i / cols) * ch, cw, ch)));
  parts.push('</svg>');
  return parts.join('\n');
}

/** Render `spec` to a PNG at `path` (written atomically). */
export async function writeLinePlotPng(path: string, spec: PlotSpec): Promise<void> {
  const svg = renderLinePlotSvg(spec);
  let png: Buffer;
  try {
    png = await sharp(Buffer.from(svg)).png().toBuffer();
  } catch (err) {
    throw new UvuError(`${path}: cannot render plot (${(err as Error).message})`);
  }
  writeFileAtomic(path, png);
}
