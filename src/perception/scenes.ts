/**
 * Benchmark scenes: a square crop of a real background photo with 1–4 photographic object
 * cut-outs pasted on it at random positions, scales and horizontal flips.
 *
 * Boxes are exact: each cut-out is resized (and flipped) first, its alpha is cleaned (alpha <
 * ALPHA_MIN → 0), and the box is the bounding box of its non-zero alpha; compositing is done
 * here, pixel by pixel, so no pixel outside the union of boxes differs from the background.
 * Boxes are [x0, y0, x1, y1] in scene pixels, x1/y1 exclusive (width = x1 − x0).
 *
 * Occlusion limits: every pair of boxes has IoU ≤ MAX_IOU, and every object keeps at least
 * MIN_VISIBLE of its mask (alpha ≥ ALPHA_OPAQUE) uncovered by objects pasted after it.
 *
 * Splits are disjoint by background photo and (in the `hard` regime) by object instance
 * (`splitBackgrounds`, `splitInstances`, both from a seeded hash of ids so that adding a photo or
 * a stamp does not move the others); the in-distribution regime shares every instance between
 * the splits (`sharedInstances`). Every scene is drawn from its own Rng seeded by (seed, split, index).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import sharp from 'sharp';
import { BUNDLED_PHOTOS, bundledPhotoPath } from '../data/bundled.js';
import { resolveInputs } from '../patches/inputs.js';
import { loadImageCovering, loadRgba, writePng, type RgbaImage, type RgbImage } from '../image/io.js';
import { UvuError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { ALPHA_OPAQUE, type ObjectClass, type ObjectInstance, type ObjectLibrary } from './stamps.js';

export type Split = 'train' | 'test';
/** [x0, y0, x1, y1] in pixels; x1, y1 exclusive. */
export type Box = [number, number, number, number];

/** Edge pixels fainter than this are cleared, so that boxes are not stretched by invisible halos. */
export const ALPHA_MIN = 32;
export const MAX_IOU = 0.2;
export const MIN_VISIBLE = 0.7;
/** Longest side of a pasted object as a fraction of the scene side. */
export const SCALE_RANGE: [number, number] = [0.18, 0.38];
/** Fraction of backgrounds and of each class's instances held out for the test split. */
export const TEST_FRACTION = 0.25;
/** Size of the class group in a scene (the counting target): P(1..4). */
const GROUP_SIZE_P = [0.4, 0.3, 0.2, 0.1];
/** Probability that a scene with a group of one has no other object. */
export const SINGLE_OBJECT_P = 0.2;
const PLACE_TRIES = 60;

// ---------------------------------------------------------------- seeding and splits

/** A u32 seed from (seed, key): independent streams for scenes, splits, classes. */
export function hashSeed(seed: number, key: string): number {
  return createHash('sha256').update(`${seed}\0${key}`).digest().readUInt32BE(0);
}

/** Test split = the TEST_FRACTION of ids with the smallest seeded hashes (at least one, never all). */
export function holdOut<T>(items: T[], id: (t: T) => string, seed: number, salt: string): { train: T[]; test: T[] } {
  if (items.length < 2) return { train: items.slice(), test: [] };
  const ranked = items.map((t) => ({ t, h: hashSeed(seed, `${salt}/${id(t)}`) })).sort((a, b) => a.h - b.h || (id(a.t) < id(b.t) ? -1 : 1));
  const nTest = Math.min(items.length - 1, Math.max(1, Math.round(TEST_FRACTION * items.length)));
  const test = new Set(ranked.slice(0, nTest).map((r) => r.t));
  return { train: items.filter((t) => !test.has(t)), test: items.filter((t) => test.has(t)) };
}

/**
 * Instances per split for every class. A class with a single instance cannot be held out: it
 * appears in training scenes only, and test questions never ask about it (it may still be a
 * "no" candidate in existence questions, as its name is known from training).
 */
export function splitInstances(lib: ObjectLibrary, seed: number): Record<Split, Map<string, ObjectInstance[]>> {
  const out = { train: new Map<string, ObjectInstance[]>(), test: new Map<string, ObjectInstance[]>() };
  for (const c of lib.classes) {
    const { train, test } = holdOut(c.instances, (i) => i.id, seed, `instances/${c.name}`);
    out.train.set(c.name, train);
    if (test.length > 0) out.test.set(c.name, test);
  }
  return out;
}

/**
 * Seen instances (the in-distribution regime): both splits draw from every instance of every
 * class; test scenes differ from train scenes by background, layout, scale and flip only.
 */
export function sharedInstances(lib: ObjectLibrary): Record<Split, Map<string, ObjectInstance[]>> {
  const all = new Map(lib.classes.map((c) => [c.name, c.instances.slice()]));
  return { train: all, test: new Map(all) };
}

// ---------------------------------------------------------------- backgrounds

export interface BackgroundSource {
  /** Stable id ("bundled/nagasaki-boats", "photos/train/x.jpg"). */
  id: string;
  path: string;
}

/**
 * Default backgrounds: the 9 bundled photos, plus data/photos/{train,val} (from
 * `npm run data:photos`) when present under `cwd`.
 */
export function defaultBackgrounds(cwd = process.cwd()): BackgroundSource[] {
  const out: BackgroundSource[] = BUNDLED_PHOTOS.map((name) => ({ id: `bundled/${name}`, path: bundledPhotoPath(name) }));
  for (const sub of ['train', 'val']) {
    const dir = resolve(cwd, 'data/photos', sub);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
    for (const f of readdirSync(dir).sort()) if (/\.(jpe?g|png|webp)$/i.test(f)) out.push({ id: `photos/${sub}/${f}`, path: join(dir, f) });
  }
  return out;
}

/**
 * Backgrounds from folders, files or globs (`--backgrounds`). Ids: "<folder name>/<path under
 * it>" for folders, the path relative to `cwd` for files and globs, so the split of a photo does
 * not depend on which other photos are given.
 */
export function backgroundsFrom(inputs: string[], cwd = process.cwd()): BackgroundSource[] {
  const out: BackgroundSource[] = [];
  for (const input of inputs) {
    const root = resolve(cwd, input);
    const isDir = !/[*?]/.test(input) && existsSync(root) && statSync(root).isDirectory();
    for (const f of resolveInputs([input], cwd)) {
      out.push({ id: isDir ? `${basename(root)}/${relative(root, f).split(sep).join('/')}` : relative(cwd, f).split(sep).join('/'), path: f });
    }
  }
  return out;
}

/**
 * `n` uniform-colour backgrounds (`plain-NN.png`, 64×64, seeded colours) written to `dir` (made
 * if needed): a scene on them shows nothing but its objects, the easiest setting to learn
 * counting and positions in (issue 14's probes). The files are a pure function of (n, seed).
 */
export async function writePlainBackgrounds(dir: string, n: number, seed: number): Promise<BackgroundSource[]> {
  if (!Number.isInteger(n) || n < 2) throw new UvuError(`plain backgrounds: need at least 2 (one per split), got ${n}`);
  const rng = new Rng(hashSeed(seed, 'plain-backgrounds'));
  mkdirSync(dir, { recursive: true });
  const out: BackgroundSource[] = [];
  for (let i = 0; i < n; i++) {
    const rgb = [rng.int(256), rng.int(256), rng.int(256)];
    const data = new Uint8Array(64 * 64 * 3);
    for (let p = 0; p < data.length; p++) data[p] = rgb[p % 3]!;
    const path = join(dir, `plain-${String(i).padStart(2, '0')}.png`);
    await writePng(path, { data, width: 64, height: 64 });
    out.push({ id: `plain/${basename(path)}`, path });
  }
  return out;
}

export function splitBackgrounds(bgs: BackgroundSource[], seed: number): Record<Split, BackgroundSource[]> {
  if (bgs.length < 2) throw new UvuError(`need at least 2 background photos (one per split), found ${bgs.length}`);
  const ids = new Set<string>();
  for (const b of bgs) {
    if (ids.has(b.id)) throw new UvuError(`${b.path}: background id ${b.id} occurs twice`);
    ids.add(b.id);
  }
  return holdOut(bgs, (b) => b.id, seed, 'backgrounds');
}

/** A decoded background, short side ≈ 1.5 scene sides, so random crops can zoom a little. */
interface LoadedBackground extends RgbImage {
  id: string;
}

async function loadBackground(src: BackgroundSource, size: number): Promise<LoadedBackground> {
  const short = Math.ceil(1.5 * size);
  try {
    const img = await loadImageCovering(src.path, short);
    return { id: src.id, ...img };
  } catch (err) {
    throw new UvuError(`${src.path}: cannot read background photo (${String((err as Error).message).split('\n')[0]})`);
  }
}

/** Crop a random square (60–100% of the short side) and resize it to size×size. */
async function cropBackground(bg: LoadedBackground, size: number, rng: Rng): Promise<{ image: RgbImage; crop: Box }> {
  const short = Math.min(bg.width, bg.height);
  const side = Math.max(1, Math.round(short * (0.6 + 0.4 * rng.next())));
  const left = rng.int(bg.width - side + 1);
  const top = rng.int(bg.height - side + 1);
  const out = await sharp(Buffer.from(bg.data.buffer, bg.data.byteOffset, bg.data.length), { raw: { width: bg.width, height: bg.height, channels: 3 } })
    .extract({ left, top, width: side, height: side })
    .resize(size, size, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { image: { data: new Uint8Array(out.buffer, out.byteOffset, out.length), width: size, height: size }, crop: [left, top, left + side, top + side] };
}

// ---------------------------------------------------------------- object sprites

/** A cut-out cropped to its alpha bounding box. */
interface Cutout {
  instance: ObjectInstance;
  rgba: RgbaImage;
}

async function loadCutout(instance: ObjectInstance): Promise<Cutout> {
  const img = await loadRgba(instance.path);
  const b = alphaBox(img, ALPHA_MIN);
  if (!b) throw new UvuError(`${instance.path}: object cut-out is fully transparent`);
  return { instance, rgba: cropRgba(img, b) };
}

/** Bounding box of pixels with alpha ≥ minAlpha, or null when there are none. */
export function alphaBox(img: RgbaImage, minAlpha: number): Box | null {
  const { data, width: w, height: h } = img;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (data[(y * w + x) * 4 + 3]! >= minAlpha) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
}

function cropRgba(img: RgbaImage, [x0, y0, x1, y1]: Box): RgbaImage {
  const w = x1 - x0, h = y1 - y0;
  const out = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(((y0 + y) * img.width + x0) * 4, ((y0 + y) * img.width + x1) * 4), y * w * 4);
  return { data: out, width: w, height: h };
}

/** Resize (lanczos3 on premultiplied alpha, by sharp) and optionally flip; faint alpha cleared. */
async function transformCutout(c: Cutout, width: number, height: number, flip: boolean): Promise<RgbaImage> {
  let p = sharp(Buffer.from(c.rgba.data.buffer, c.rgba.data.byteOffset, c.rgba.data.length), { raw: { width: c.rgba.width, height: c.rgba.height, channels: 4 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
  if (flip) p = p.flop();
  const buf = await p.raw().toBuffer();
  const data = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  for (let i = 3; i < data.length; i += 4) if (data[i]! < ALPHA_MIN) data[i] = 0;
  return { data, width, height };
}

// ---------------------------------------------------------------- layout

export interface PlacedObject {
  className: string;
  /** Instance id (stamp path relative to the objects root). */
  instance: string;
  /** Exact box of the pasted pixels (alpha > 0). */
  box: Box;
  /** Fraction of the object's mask (alpha ≥ ALPHA_OPAQUE) not covered by later objects. */
  visible: number;
  flip: boolean;
}

export interface Scene {
  id: string;
  split: Split;
  index: number;
  size: number;
  background: string;
  /** Square crop of the decoded background (at short side 1.5·size) before resizing. */
  crop: Box;
  /** In paste order (later ones on top). */
  objects: PlacedObject[];
}

/** A pasted sprite: its pixels and where its top-left corner sits in the scene. */
interface Sprite {
  rgba: RgbaImage;
  left: number;
  top: number;
}

export function boxArea(b: Box): number {
  return Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
}

export function boxIou(a: Box, b: Box): number {
  const iw = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  return inter / (boxArea(a) + boxArea(b) - inter);
}

/** Visible fraction of each sprite's opaque mask given the paste order (later covers earlier). */
export function visibleFractions(sprites: Sprite[], size: number): number[] {
  // top[y*size+x] = index of the last sprite whose opaque mask covers the pixel, −1 if none.
  const top = new Int16Array(size * size).fill(-1);
  const total = new Array<number>(sprites.length).fill(0);
  sprites.forEach((s, k) => {
    const { data, width: w, height: h } = s.rgba;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (data[(y * w + x) * 4 + 3]! >= ALPHA_OPAQUE) {
          top[(s.top + y) * size + s.left + x] = k;
          total[k]!++;
        }
      }
    }
  });
  const seen = new Array<number>(sprites.length).fill(0);
  for (let i = 0; i < top.length; i++) if (top[i]! >= 0) seen[top[i]!]!++;
  return total.map((t, k) => (t > 0 ? seen[k]! / t : 0));
}

/** Alpha-composite sprites over a copy of the background (u8 RGB, [size, size, 3]). */
export function composite(background: RgbImage, sprites: Sprite[]): RgbImage {
  const { width: W } = background;
  const out = background.data.slice();
  for (const s of sprites) {
    const { data, width: w, height: h } = s.rgba;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const a = data[(y * w + x) * 4 + 3]!;
        if (a === 0) continue;
        const si = (y * w + x) * 4;
        const di = ((s.top + y) * W + s.left + x) * 3;
        for (let c = 0; c < 3; c++) out[di + c] = Math.round((data[si + c]! * a + out[di + c]! * (255 - a)) / 255);
      }
    }
  }
  return { data: out, width: W, height: background.height };
}

/** Which classes, how many of each: one group of 1–4 of a class (the counting target), others single. */
function drawComposition(classes: ObjectClass[], singleObjectP: number, rng: Rng): { className: string; count: number }[] {
  let u = rng.next();
  let group = GROUP_SIZE_P.length; // if rounding leaves u ≥ the summed probabilities
  for (let k = 0; k < GROUP_SIZE_P.length; k++) {
    if (u < GROUP_SIZE_P[k]!) {
      group = k + 1;
      break;
    }
    u -= GROUP_SIZE_P[k]!;
  }
  // A lone group object gets 1–3 other objects most of the time (spatial questions need two
  // single objects); a larger group gets 0..(4 − group).
  const others = group === 1 ? (rng.next() < singleObjectP ? 0 : 1 + rng.int(3)) : rng.int(4 - group + 1);
  const picks = rng.sampleIndices(classes.length, Math.min(classes.length, 1 + others));
  return Array.from(picks, (ci, k) => ({ className: classes[ci]!.name, count: k === 0 ? group : 1 }));
}

/** How objects are laid out in a scene (the regime's knobs; defaults: SCALE_RANGE, SINGLE_OBJECT_P). */
export interface LayoutParams {
  /** Longest side of a pasted object as a fraction of the scene side. */
  scaleRange: [number, number];
  /** Probability that a scene with a group of one has no other object. */
  singleObjectP: number;
}

export const DEFAULT_LAYOUT: LayoutParams = { scaleRange: SCALE_RANGE, singleObjectP: SINGLE_OBJECT_P };

export interface SceneContext {
  size: number;
  layout: LayoutParams;
  seed: number;
  split: Split;
  /** Classes usable in this split (with at least one instance in it), in library order. */
  classes: ObjectClass[];
  instances: Map<string, ObjectInstance[]>;
  backgrounds: BackgroundSource[];
  cutouts: Map<string, Cutout>;
  /** Backgrounds decoded so far, by id. */
  loaded: Map<string, LoadedBackground>;
}

/** Load the cut-outs one split needs (cropped to their alpha box); backgrounds load lazily. */
export async function prepareSplit(lib: ObjectLibrary, split: Split, instances: Map<string, ObjectInstance[]>, backgrounds: BackgroundSource[], size: number, seed: number, layout: LayoutParams = DEFAULT_LAYOUT): Promise<SceneContext> {
  const classes = lib.classes.filter((c) => (instances.get(c.name) ?? []).length > 0);
  if (classes.length < 2) throw new UvuError(`${split} split: need at least 2 object classes with instances, found ${classes.length}`);
  const cutouts = new Map<string, Cutout>();
  for (const c of classes) for (const i of instances.get(c.name)!) cutouts.set(i.id, await loadCutout(i));
  return { size, layout, seed, split, classes, instances, backgrounds, cutouts, loaded: new Map() };
}

/**
 * Scene `index` of a split: layout plus rendered pixels. Objects that cannot be placed within
 * the overlap limits after PLACE_TRIES positions are retried smaller; a scene whose
 * composition cannot be placed at all is redrawn with the next attempt's composition.
 */
export async function makeScene(ctx: SceneContext, index: number): Promise<{ scene: Scene; image: RgbImage; background: RgbImage }> {
  const { size, split } = ctx;
  const rng = new Rng(hashSeed(ctx.seed, `scene/${split}/${index}`));
  const bgSrc = ctx.backgrounds[rng.int(ctx.backgrounds.length)]!;
  // Decoded on first use and kept: small builds touch few photos, large ones reuse them.
  let loaded = ctx.loaded.get(bgSrc.id);
  if (!loaded) ctx.loaded.set(bgSrc.id, (loaded = await loadBackground(bgSrc, size)));
  const { image: bg, crop } = await cropBackground(loaded, size, rng);
  for (let attempt = 0; attempt < 20; attempt++) {
    const comp = drawComposition(ctx.classes, ctx.layout.singleObjectP, rng);
    const wanted: ObjectClass[] = [];
    for (const { className, count } of comp) for (let k = 0; k < count; k++) wanted.push(ctx.classes.find((c) => c.name === className)!);
    rng.shuffle(wanted); // paste order independent of the group
    const sprites: Sprite[] = [];
    const placed: PlacedObject[] = [];
    for (const cls of wanted) {
      const pool = ctx.instances.get(cls.name)!;
      const cut = ctx.cutouts.get(pool[rng.int(pool.length)]!.id)!;
      const flip = cls.flip && rng.next() < 0.5;
      const ok = await placeOne(ctx, rng, cut, flip, sprites, placed);
      if (!ok) break;
    }
    if (placed.length !== wanted.length) continue;
    const visible = visibleFractions(sprites, size);
    placed.forEach((p, k) => (p.visible = round4(visible[k]!)));
    const scene: Scene = { id: `${split}-${String(index).padStart(6, '0')}`, split, index, size, background: bgSrc.id, crop, objects: placed };
    return { scene, image: composite(bg, sprites), background: bg };
  }
  throw new UvuError(`scene ${split}/${index}: could not place objects within the overlap limits (scene size ${size} too small?)`);
}

/** Try scales from large to small and random positions; push the sprite when the limits hold. */
async function placeOne(ctx: SceneContext, rng: Rng, cut: Cutout, flip: boolean, sprites: Sprite[], placed: PlacedObject[]): Promise<boolean> {
  const { size } = ctx;
  const [lo, hi] = ctx.layout.scaleRange;
  let frac = lo + (hi - lo) * rng.next();
  for (let shrink = 0; shrink < 3; shrink++, frac = Math.max(lo * 0.8, frac * 0.8)) {
    const long = Math.max(cut.rgba.width, cut.rgba.height);
    const s = (frac * size) / long;
    const w = Math.max(1, Math.round(cut.rgba.width * s)), h = Math.max(1, Math.round(cut.rgba.height * s));
    const rgba = await transformCutout(cut, w, h, flip);
    const local = alphaBox(rgba, 1);
    if (!local) continue;
    for (let t = 0; t < PLACE_TRIES; t++) {
      const left = rng.int(size - w + 1), top = rng.int(size - h + 1);
      const box: Box = [left + local[0], top + local[1], left + local[2], top + local[3]];
      if (placed.some((p) => boxIou(p.box, box) > MAX_IOU)) continue;
      const trial = [...sprites, { rgba, left, top }];
      if (visibleFractions(trial, size).some((v) => v < MIN_VISIBLE)) continue;
      sprites.push({ rgba, left, top });
      placed.push({ className: cut.instance.className, instance: cut.instance.id, box, visible: 1, flip });
      return true;
    }
  }
  return false;
}

const round4 = (x: number): number => Math.round(x * 1e4) / 1e4;
