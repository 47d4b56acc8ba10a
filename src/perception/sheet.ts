/**
 * Contact sheet of example predictions: each cell shows a scene (upscaled), the true boxes of
 * the objects asked about in green, the predicted box (grounding) in red, and below it the
 * question, the true answer and the prediction (green when correct, red when wrong).
 */
import { join } from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';
import { writeFileAtomic } from '../util/atomic.js';
import { escapeXml } from '../util/plot.js';
import type { Box } from './scenes.js';
import type { QaItem, Task } from './tasks.js';
import { isBoxTask, TASKS } from './tasks.js';

export interface SheetEntry {
  item: QaItem;
  prediction: string;
  correct: boolean;
  /** Grounding: the parsed predicted box in scene pixels. */
  predictedBox?: Box | null;
}

export interface SheetOptions {
  /** Cells on the sheet (default 16). */
  max?: number;
  cols?: number;
  /** Scene upscaling factor (default 2). */
  scale?: number;
}

const TEXT_H = 58;
const PAD = 6;

const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const fmtBox = (b: Box): string => `[${b.map((v) => Math.round(v)).join(',')}]`;

/** Examples spread over tasks: round-robin over the tasks, in item order within each. */
export function pickExamples(entries: SheetEntry[], max: number): SheetEntry[] {
  const byTask = new Map<Task, SheetEntry[]>(TASKS.map((t) => [t, []]));
  for (const e of entries) byTask.get(e.item.task)!.push(e);
  const out: SheetEntry[] = [];
  for (let k = 0; out.length < max; k++) {
    let added = false;
    for (const t of TASKS) {
      const e = byTask.get(t)![k];
      if (e && out.length < max) {
        out.push(e);
        added = true;
      }
    }
    if (!added) break;
  }
  return out;
}

/** Draw the sheet of `entries` (images relative to `benchDir`) and write it to `outPath` as PNG. */
export async function drawSheet(benchDir: string, entries: SheetEntry[], outPath: string, opts: SheetOptions = {}): Promise<{ path: string; cells: number }> {
  const shown = pickExamples(entries, opts.max ?? 16);
  const cols = Math.max(1, Math.min(opts.cols ?? 4, shown.length || 1));
  const scale = opts.scale ?? 2;
  const size = shown[0]?.item.size ?? 192;
  const cw = size * scale + 2 * PAD, ch = size * scale + TEXT_H + 2 * PAD;
  const rows = Math.max(1, Math.ceil(shown.length / cols));
  const layers: OverlayOptions[] = [];
  for (let k = 0; k < shown.length; k++) {
    const { item, prediction, correct, predictedBox } = shown[k]!;
    const left = (k % cols) * cw + PAD, top = Math.floor(k / cols) * ch + PAD;
    const s = item.size * scale;
    layers.push({ input: await sharp(join(benchDir, item.image)).resize(s, s, { kernel: 'nearest' }).png().toBuffer(), left, top });
    const rect = (b: Box, colour: string) =>
      `<rect x="${b[0] * scale + 1}" y="${b[1] * scale + 1}" width="${Math.max(1, (b[2] - b[0]) * scale - 2)}" height="${Math.max(1, (b[3] - b[1]) * scale - 2)}" fill="none" stroke="${colour}" stroke-width="3"/>`;
    const boxes = item.boxes.map((b) => rect(b, '#20ff20')).join('') + (predictedBox ? rect(predictedBox, '#ff2020') : '');
    layers.push({ input: Buffer.from(`<svg width="${s}" height="${s}" xmlns="http://www.w3.org/2000/svg">${boxes}</svg>`), left, top });
    const truth = isBoxTask(item.task) ? fmtBox(item.boxes[0]!) : item.answer;
    const pred = isBoxTask(item.task) ? (predictedBox ? fmtBox(predictedBox) : `unparsed: ${prediction}`) : prediction;
    const chars = Math.floor(s / 7);
    const text =
      `<svg width="${s}" height="${TEXT_H}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="13">` +
      `<text x="2" y="15" fill="#ffffff">${escapeXml(clip(`${item.task}: ${item.prompt}`, chars))}</text>` +
      `<text x="2" y="33" fill="#20ff20">${escapeXml(clip(`true: ${truth}`, chars))}</text>` +
      `<text x="2" y="51" fill="${correct ? '#20ff20' : '#ff4040'}">${escapeXml(clip(`pred: ${pred} ${correct ? '✓' : '✗'}`, chars))}</text></svg>`;
    layers.push({ input: Buffer.from(text), left, top: top + s + 2 });
  }
  const png = await sharp({ create: { width: cols * cw, height: rows * ch, channels: 3, background: '#000000' } }).composite(layers).png().toBuffer();
  writeFileAtomic(outPath, png);
  return { path: outPath, cells: shown.length };
}
