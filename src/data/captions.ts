/**
 * Simple generated captions for real photos without annotations: the subject (from the photo's
 * name) plus what the pixels show — overall brightness and the dominant colour of the top and
 * bottom halves. Every word is checkable against the image, so a model can learn it from pixels.
 */
import { basename, extname } from 'node:path';
import type { RgbImage } from '../image/io.js';

/** Name of an sRGB colour by hue, saturation and value (coarse, human-style). */
export function colourName(r: number, g: number, b: number): string {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const v = max / 255;
  const s = max === 0 ? 0 : (max - min) / max;
  if (v < 0.18) return 'black';
  if (s < 0.15) return v > 0.8 ? 'white' : 'grey';
  let h = 0;
  if (max === r) h = ((g - b) / (max - min) + 6) % 6;
  else if (max === g) h = (b - r) / (max - min) + 2;
  else h = (r - g) / (max - min) + 4;
  h *= 60;
  if (h < 15 || h >= 340) return v < 0.5 ? 'brown' : 'red';
  if (h < 45) return v < 0.6 ? 'brown' : 'orange';
  if (h < 70) return 'yellow';
  if (h < 165) return 'green';
  if (h < 255) return 'blue';
  if (h < 290) return 'purple';
  return 'pink';
}

/** Mean RGB over rows [y0, y1) of an image. */
function meanColour(img: RgbImage, y0: number, y1: number): [number, number, number] {
  const sum = [0, 0, 0];
  for (let y = y0; y < y1; y++) {
    for (let x = 0; x < img.width; x++) {
      const o = (y * img.width + x) * 3;
      sum[0]! += img.data[o]!;
      sum[1]! += img.data[o + 1]!;
      sum[2]! += img.data[o + 2]!;
    }
  }
  const n = Math.max(1, (y1 - y0) * img.width);
  return [sum[0]! / n, sum[1]! / n, sum[2]! / n];
}

/** A readable subject from a file or photo name: "nagasaki-boats.jpg" → "nagasaki boats", trailing digits dropped. */
export function subjectFromName(name: string): string {
  const stem = basename(name, extname(name)).split(/__|_/).pop() ?? name;
  return stem
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .replace(/[-_.]+/g, ' ')
    .replace(/\d+$/, '')
    .trim()
    .toLowerCase();
}

/** "a bright photo of nagasaki boats, blue at the top and brown at the bottom". */
export function describePhoto(img: RgbImage, subject?: string): string {
  const half = Math.floor(img.height / 2);
  const top = meanColour(img, 0, half);
  const bottom = meanColour(img, half, img.height);
  const luma = (c: [number, number, number]): number => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
  const l = (luma(top) + luma(bottom)) / 2;
  const light = l > 160 ? 'bright ' : l < 80 ? 'dark ' : '';
  const what = subject ? ` of ${subject}` : '';
  return `a ${light}photo${what}, ${colourName(...top)} at the top and ${colourName(...bottom)} at the bottom`;
}
