/**
 * Captioned training images from unannotated photos: random square crops (position, scale,
 * mirror) of each photo, resized to `size`×`size`, each with a generated caption describing that
 * crop (src/data/captions.ts). Written as PNGs plus a sample JSONL for `uvu data build`.
 */
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { decodeRgb, resizeRgb, writePng, type RgbImage } from '../image/io.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { describePhoto } from './captions.js';

export interface CaptionedCropsOptions {
  /** Output folder: crops/*.png and captions.jsonl. */
  out: string;
  cropsPerPhoto: number;
  /** Side of the square crops in pixels (a multiple of 32). */
  size: number;
  seed: number;
}

/** Crop (x, y, side) of a square taking 50–100 % of the shorter side. */
function randomSquare(img: RgbImage, rng: Rng): { x: number; y: number; side: number } {
  const short = Math.min(img.width, img.height);
  const side = Math.max(1, Math.round(short * (0.5 + 0.5 * rng.next())));
  return { x: rng.int(img.width - side + 1), y: rng.int(img.height - side + 1), side };
}

function crop(img: RgbImage, x0: number, y0: number, side: number, mirror: boolean): RgbImage {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const sx = mirror ? x0 + side - 1 - x : x0 + x;
      const s = ((y0 + y) * img.width + sx) * 3;
      data.set(img.data.subarray(s, s + 3), (y * side + x) * 3);
    }
  }
  return { data, width: side, height: side };
}

/** Write the crops and their captions; returns the JSONL path (image paths relative to it). */
export async function writeCaptionedCrops(photos: { path: string; subject: string }[], o: CaptionedCropsOptions): Promise<{ jsonl: string; samples: number }> {
  if (o.size % 32 !== 0 || o.size <= 0) throw new UvuError(`captioned crops: size must be a positive multiple of 32, got ${o.size}`);
  const dir = join(o.out, 'crops');
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(o.seed);
  const lines: string[] = [];
  const bar = progress('captioned crops', photos.length * o.cropsPerPhoto, 'crops');
  for (const [p, photo] of photos.entries()) {
    const img = await decodeRgb(photo.path);
    for (let c = 0; c < o.cropsPerPhoto; c++) {
      const sq = randomSquare(img, rng);
      const view = await resizeRgb(crop(img, sq.x, sq.y, sq.side, rng.next() < 0.5), o.size, o.size);
      const file = join(dir, `${String(p).padStart(4, '0')}-${String(c).padStart(3, '0')}.png`);
      await writePng(file, view);
      lines.push(JSON.stringify({ image: relative(o.out, file), text: describePhoto(view, photo.subject) }));
      bar.tick();
    }
  }
  bar.stop();
  const jsonl = join(o.out, 'captions.jsonl');
  writeFileAtomic(jsonl, lines.join('\n') + '\n');
  return { jsonl, samples: lines.length };
}
