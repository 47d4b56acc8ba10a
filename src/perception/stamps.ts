/**
 * Object cut-outs for the perception benchmark: photographs with an alpha mask, grouped into
 * classes with English names.
 *
 * Default source: Debian's tuxpaint-stamps-default (/usr/share/tuxpaint/stamps), PNG stamps with
 * alpha, each with a `.txt` whose first line is its English description ("A frog."). About a
 * third of them are photographs, the rest drawings. `photoStats` proposes candidates from pixel
 * statistics; the committed, eye-reviewed list `photo-stamps.json` is the filter (only files it
 * names are used, under the class it gives).
 *
 * `--objects DIR` replaces it with the user's own cut-outs: DIR/<class>/*.png (alpha = mask).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RgbaImage } from '../image/io.js';
import { z } from 'zod';
import { UvuError } from '../util/errors.js';
import { parseOrFail, readJsonFile } from '../util/fsio.js';
import { relativePathInside } from '../util/filenames.js';

export const DEFAULT_STAMPS_DIR = '/usr/share/tuxpaint/stamps';
/** The reviewed list, resolved from dist/src/perception/ back to the source tree. */
export const PHOTO_STAMPS_LIST = fileURLToPath(new URL('../../../src/perception/photo-stamps.json', import.meta.url));
export const STAMPS_INSTALL_HINT = 'install them with: sudo apt-get install tuxpaint-stamps-default';

/** Alpha above which a pixel counts as part of the object (for masks, boxes and statistics). */
export const ALPHA_OPAQUE = 128;

// ---------------------------------------------------------------- discovery

export interface StampFile {
  /** Path relative to the stamps root, '/'-separated ("animals/amphibians/frog.png"). */
  rel: string;
  path: string;
  /** First line of the .txt beside it ("A frog."), or "" when there is none. */
  description: string;
  /** A vector original beside it (.svg): Tux Paint then draws the SVG — always a drawing. */
  hasSvg: boolean;
}

/** Every PNG stamp under `root`, sorted by relative path. */
export function listStamps(root: string): StampFile[] {
  if (!existsSync(root)) throw new UvuError(`${root}: stamps directory not found; ${STAMPS_INSTALL_HINT}`);
  const out: StampFile[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.toLowerCase().endsWith('.png')) {
        const stem = p.slice(0, -4);
        const txt = `${stem}.txt`;
        const description = existsSync(txt) ? (readFileSync(txt, 'utf8').split('\n')[0] ?? '').trim() : '';
        out.push({ rel: relative(root, p).split(sep).join('/'), path: p, description, hasSvg: existsSync(`${stem}.svg`) });
      }
    }
  };
  walk(root);
  return out;
}

// ---------------------------------------------------------------- photo proposal

export interface PhotoStats {
  /** Pixels with alpha > ALPHA_OPAQUE. */
  opaque: number;
  /** Distinct colours at 5 bits per channel among opaque pixels: clip-art uses a few dozen. */
  distinctColours: number;
  /** Horizontally adjacent opaque pairs with exactly equal RGB: high for flat-filled drawings. */
  flatFraction: number;
  /** Mean |ΔRGB| over adjacent opaque pairs that differ by at most 24 (texture, not edges): photos carry sensor noise and texture, drawings are 0 inside fills. */
  fineTexture: number;
}

/** Pixel statistics that separate photographs from drawings (a proposal; the reviewed list decides). */
export function photoStats(img: RgbaImage): PhotoStats {
  const { data, width: w, height: h } = img;
  const seen = new Uint8Array(1 << 15);
  let opaque = 0, distinct = 0, pairs = 0, flat = 0, fineSum = 0, fineN = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      if (data[i + 3]! <= ALPHA_OPAQUE) continue;
      opaque++;
      const bin = ((data[i]! >> 3) << 10) | ((data[i + 1]! >> 3) << 5) | (data[i + 2]! >> 3);
      if (!seen[bin]) {
        seen[bin] = 1;
        distinct++;
      }
      if (x + 1 < w && data[i + 7]! > ALPHA_OPAQUE) {
        pairs++;
        const d = Math.abs(data[i]! - data[i + 4]!) + Math.abs(data[i + 1]! - data[i + 5]!) + Math.abs(data[i + 2]! - data[i + 6]!);
        if (d === 0) flat++;
        if (d <= 24) {
          fineSum += d;
          fineN++;
        }
      }
    }
  }
  return { opaque, distinctColours: distinct, flatFraction: pairs ? flat / pairs : 1, fineTexture: fineN ? fineSum / fineN : 0 };
}

/**
 * The automatic proposal: photo-like statistics and no SVG original. Thresholds were set on the
 * reviewed stamps to keep recall high; the review removes what it gets wrong (rendered 3-D
 * objects, photos of drawings, and cut-outs too small to read).
 */
export function proposePhoto(stats: PhotoStats, file: Pick<StampFile, 'hasSvg' | 'rel'>): boolean {
  if (file.hasSvg || /(^|\/)cartoon\//.test(file.rel)) return false;
  // No colour-count floor beyond 16: greyscale photos (coins, a fly) have few distinct colours.
  return stats.opaque >= 600 && stats.distinctColours >= 16 && stats.flatFraction < 0.3 && stats.fineTexture >= 4;
}

// ---------------------------------------------------------------- the reviewed list

const ClassSchema = z.object({
  /** Singular English name used in prompts ("frog"). */
  name: z.string().regex(/^[a-z][a-z -]*[a-z]$/),
  plural: z.string().regex(/^[a-z][a-z -]*[a-z]$/),
  /** Coarse category (animal, fruit, …): existence questions draw hard negatives from it. */
  category: z.string().min(1),
  /** Whether horizontal flips are allowed (false for objects with writing: coins, mailboxes). */
  flip: z.boolean().default(true),
  /** Stamp paths relative to the stamps root (never outside it). */
  instances: z.array(relativePathInside('the stamps folder').pipe(z.string().regex(/\.png$/, 'must name a .png stamp'))).min(1),
});

export const PhotoStampListSchema = z.object({
  version: z.number().int().positive(),
  source: z.string(),
  note: z.string().optional(),
  classes: z.array(ClassSchema).min(2),
  /** Stamps the heuristic proposed that review rejected, with the reason (documentation and tests). */
  rejected: z.array(z.object({ file: z.string(), reason: z.string() })),
});
export type PhotoStampList = z.infer<typeof PhotoStampListSchema>;

/** Parse and check the reviewed list (names unique, each file listed once). */
export function loadPhotoStampList(path = PHOTO_STAMPS_LIST): PhotoStampList {
  const list = parseOrFail(PhotoStampListSchema, readJsonFile(path, 'photo-stamp list'), path);
  const names = new Set<string>(), files = new Set<string>();
  for (const c of list.classes) {
    if (names.has(c.name)) throw new UvuError(`${path}: class "${c.name}" listed twice`);
    names.add(c.name);
    for (const f of c.instances) {
      if (files.has(f)) throw new UvuError(`${path}: ${f} listed twice`);
      files.add(f);
    }
  }
  for (const r of list.rejected) if (files.has(r.file)) throw new UvuError(`${path}: ${r.file} is both kept and rejected`);
  return list;
}

// ---------------------------------------------------------------- object library

export interface ObjectInstance {
  /** Stable id: path relative to the objects root. */
  id: string;
  path: string;
  className: string;
}

export interface ObjectClass {
  name: string;
  plural: string;
  category: string;
  flip: boolean;
  instances: ObjectInstance[];
}

export interface ObjectLibrary {
  /** Where the cut-outs come from (directory) and how they were selected. */
  root: string;
  selection: string;
  classes: ObjectClass[];
}

/** The reviewed tuxpaint photo stamps; fails with an install hint when the package is missing. */
export function tuxpaintLibrary(root = DEFAULT_STAMPS_DIR, listPath = PHOTO_STAMPS_LIST): ObjectLibrary {
  if (!existsSync(root)) throw new UvuError(`${root}: stamps directory not found; ${STAMPS_INSTALL_HINT}`);
  const list = loadPhotoStampList(listPath);
  const classes = list.classes.map((c) => ({
    name: c.name,
    plural: c.plural,
    category: c.category,
    flip: c.flip,
    instances: c.instances.map((rel) => {
      const path = join(root, rel);
      if (!existsSync(path)) throw new UvuError(`${path}: listed in ${listPath} but missing; ${STAMPS_INSTALL_HINT}`);
      return { id: rel, path, className: c.name };
    }),
  }));
  return { root, selection: `${basename(listPath)} v${list.version}`, classes };
}

/** Naive English plural for user-given class folder names ("box" → "boxes", "cherry" → "cherries"). */
export function pluralize(name: string): string {
  if (/[^aeiou]y$/.test(name)) return `${name.slice(0, -1)}ies`;
  if (/(s|x|z|ch|sh)$/.test(name)) return `${name}es`;
  return `${name}s`;
}

/** User cut-outs: DIR/<class>/*.png, the class name is the folder name (lower case, '_' → ' '). */
export function folderLibrary(root: string): ObjectLibrary {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new UvuError(`${root}: objects directory not found`);
  const classes: ObjectClass[] = [];
  for (const folder of readdirSync(root).sort()) {
    const dir = join(root, folder);
    if (!statSync(dir).isDirectory()) continue;
    const name = folder.toLowerCase().replace(/[_-]+/g, ' ').trim();
    const files = readdirSync(dir).filter((f) => /\.(png|webp)$/i.test(f)).sort();
    if (files.length === 0) continue;
    classes.push({ name, plural: pluralize(name), category: 'object', flip: true, instances: files.map((f) => ({ id: `${folder}/${f}`, path: join(dir, f), className: name })) });
  }
  if (classes.length < 2) throw new UvuError(`${root}: need at least 2 class folders with PNG cut-outs (DIR/<class>/*.png), found ${classes.length}`);
  return { root, selection: 'folders', classes };
}
