/**
 * Streaming build of a patch store from image inputs (files, folders, globs, @lists).
 *
 * Memory stays flat in the number of images: one decoded image at a time plus one shard
 * buffer (≤ shardSize × 3072 B). With `dedup`, a hash set of 64-bit patch hashes grows with
 * the number of unique patches: 8 bytes per slot at load 0.35–0.7, i.e. about 12–23 bytes
 * per unique patch (≈ 2.3 GB for 100 M patches; 1.5× that briefly while the table grows).
 * Two different patches with equal 64-bit hashes (probability ≈ n²/2^65) would wrongly
 * drop one of them.
 *
 * Crash safety and resume: shards are written atomically, then `build-state.json` records
 * the committed shards and where the input stream stood (the input index of the image in
 * progress and how many of its kept patches were already committed). A build killed at any
 * moment resumes from the last state: stale shards and temp files are removed, images.jsonl
 * is cut back, the dedup set is rebuilt by rehashing committed patches, and every image
 * is decoded again deterministically (per-image RNG seeded by (seed, input index)), so the
 * result equals an uninterrupted build byte for byte.
 */
import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { UsageError, UvuError, warnOnce } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { Rng } from '../util/rng.js';
import { info, progress } from '../util/progress.js';
import { DEFAULT_BACKGROUND, DEFAULT_MAX_PIXELS, loadImage, type RgbImage } from '../image/io.js';
import { PATCH, PATCH_DIM, patchify } from './patchify.js';
import { resolveInputs } from './inputs.js';
import {
  DEFAULT_SHARD_SIZE,
  IMAGES_FILE,
  MANIFEST_FILE,
  ManifestSchema,
  MAX_SHARD_SIZE,
  ShardWriter,
  SkippedSchema,
  STORE_FORMAT,
  STORE_VERSION,
  StoreOptionsSchema,
  sha256File,
  sha256Hex,
  storeFingerprint,
  type ImageEntry,
  type PatchStoreManifest,
  type ShardEntry,
  type SkippedInput,
  type StoreOptions,
} from './store.js';

export const BUILD_STATE_FILE = 'build-state.json';

export interface BuildOptions {
  /** Output folder (created; must be empty or absent unless `resume`). */
  out: string;
  /** Pixel budget per image after resizing (default 512·512). */
  maxPixels?: number;
  /** Random grid-offset augmentation: crop 0..31 px at the left and top before patchifying. */
  offsets?: boolean;
  /** Drop exact duplicate patches (64-bit hash set; see the module comment for memory). */
  dedup?: boolean;
  /** Seed for the offsets (default 0). */
  seed?: number;
  /** Cut every input this many times, each pass with new random grid offsets (needs `offsets`). */
  passes?: number;
  /** Continue an interrupted build in `out`. */
  resume?: boolean;
  /** Patches per shard (default 65,536 = 192 MiB). */
  shardSize?: number;
  /** RGB for transparent pixels (default [128, 128, 128]). */
  background?: [number, number, number];
  /** Show a progress bar on stderr (default true; off anyway when stderr is not a TTY). */
  progress?: boolean;
  /** Testing hook: return after this many inputs are processed, as if killed there. */
  stopAfterImages?: number;
}

export interface BuildResult {
  /** The finished store's manifest, or null when stopped by `stopAfterImages`. */
  manifest: PatchStoreManifest | null;
  /** Inputs processed in this call (not counting those done before a resume). */
  imagesProcessed: number;
}

const BuildStateSchema = z.object({
  format: z.literal('uvu-patches-build-state'),
  version: z.literal(1),
  inputsSha256: z.string(),
  options: StoreOptionsSchema,
  shards: z.array(
    z.object({ file: z.string(), metaFile: z.string(), patches: z.number(), sha256: z.string(), metaSha256: z.string() }),
  ),
  /** Input index of the image being processed when the last shard was sealed. */
  nextInput: z.number().int().nonnegative(),
  /** Kept patches of that image already committed in the shards. */
  partialEmitted: z.number().int().nonnegative(),
  /** Counters as of the start of that image. */
  imageCount: z.number().int().nonnegative(),
  imagesBytes: z.number().int().nonnegative(),
  duplicatesBefore: z.number().int().nonnegative(),
  skipped: z.array(SkippedSchema),
  /** Patches committed in all shards (includes partialEmitted). */
  patches: z.number().int().nonnegative(),
});
type BuildState = z.infer<typeof BuildStateSchema>;

function storeOptions(opts: BuildOptions): StoreOptions {
  const o: StoreOptions = {
    maxPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS,
    offsets: opts.offsets ?? false,
    dedup: opts.dedup ?? false,
    seed: opts.seed ?? 0,
    shardSize: opts.shardSize ?? DEFAULT_SHARD_SIZE,
    background: opts.background ?? DEFAULT_BACKGROUND,
    passes: opts.passes ?? 1,
  };
  if (!(Number.isInteger(o.passes) && o.passes >= 1)) throw new UsageError(`passes must be a positive integer, got ${o.passes}`);
  if (o.passes > 1 && !o.offsets) throw new UsageError('passes > 1 needs offsets: without random grid offsets every pass would cut the same patches');
  if (!(Number.isInteger(o.maxPixels) && o.maxPixels >= PATCH * PATCH)) {
    throw new UsageError(`maxPixels must be an integer ≥ ${PATCH * PATCH}, got ${o.maxPixels}`);
  }
  if (!(Number.isInteger(o.shardSize) && o.shardSize >= 1 && o.shardSize <= MAX_SHARD_SIZE)) {
    throw new UsageError(`shardSize must be an integer in [1, ${MAX_SHARD_SIZE}], got ${o.shardSize}`);
  }
  if (!Number.isInteger(o.seed)) throw new UsageError(`seed must be an integer, got ${o.seed}`);
  if (o.background.some((v) => !(Number.isInteger(v) && v >= 0 && v <= 255))) {
    throw new UsageError(`background must be three integers in [0, 255], got ${o.background.join(',')}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------
// Exact-duplicate detection: a 64-bit hash per patch in an open-addressing set.

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Two independent 32-bit murmur3-style lanes over the patch's 768 u32 words. */
function patchHash64(words: Uint32Array, wordOffset: number): [number, number] {
  let h1 = 0x9747b28c;
  let h2 = 0x2f6b1d55;
  for (let i = wordOffset, end = wordOffset + PATCH_DIM / 4; i < end; i++) {
    const k = words[i]!;
    let k1 = Math.imul(k, 0xcc9e2d51);
    k1 = (k1 << 15) | (k1 >>> 17);
    h1 ^= Math.imul(k1, 0x1b873593);
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
    let k2 = Math.imul(k ^ 0x5bd1e995, 0x27d4eb2f);
    k2 = (k2 << 17) | (k2 >>> 15);
    h2 ^= Math.imul(k2, 0x165667b1);
    h2 = (h2 << 11) | (h2 >>> 21);
    h2 = (Math.imul(h2, 9) + 0x7feb352d) | 0;
  }
  return [fmix32(h1 ^ PATCH_DIM), fmix32(h2 ^ 0x3c6ef372)];
}

/** Set of 64-bit values (hi, lo) with linear probing; (0, 0) marks an empty slot. */
class Hash64Set {
  private hi = new Uint32Array(1 << 16);
  private lo = new Uint32Array(1 << 16);
  private size = 0;

  /** Insert; returns false if it was already present. */
  add(hi: number, lo: number): boolean {
    if (hi === 0 && lo === 0) lo = 1;
    if (this.size * 10 >= this.hi.length * 7) this.grow();
    const mask = this.hi.length - 1;
    for (let i = lo & mask; ; i = (i + 1) & mask) {
      const h = this.hi[i]!;
      const l = this.lo[i]!;
      if (h === 0 && l === 0) {
        this.hi[i] = hi;
        this.lo[i] = lo;
        this.size++;
        return true;
      }
      if (h === hi && l === lo) return false;
    }
  }

  private grow(): void {
    const oldHi = this.hi;
    const oldLo = this.lo;
    this.hi = new Uint32Array(oldHi.length * 2);
    this.lo = new Uint32Array(oldLo.length * 2);
    this.size = 0;
    for (let i = 0; i < oldHi.length; i++) if (oldHi[i] !== 0 || oldLo[i] !== 0) this.add(oldHi[i]!, oldLo[i]!);
  }
}

/** Rehash the first `n` committed patches (resume with dedup). */
function rehashCommitted(dir: string, shards: ShardEntry[], n: number, set: Hash64Set): void {
  const block = new Uint8Array(4096 * PATCH_DIM);
  const words = new Uint32Array(block.buffer);
  let left = n;
  for (const s of shards) {
    if (left <= 0) break;
    const fd = openSync(join(dir, s.file), 'r');
    try {
      const inShard = Math.min(left, s.patches);
      for (let done = 0; done < inShard; ) {
        const k = Math.min(4096, inShard - done);
        let got = 0;
        while (got < k * PATCH_DIM) {
          const r = readSync(fd, block, got, k * PATCH_DIM - got, done * PATCH_DIM + got);
          if (r === 0) throw new UvuError(`${join(dir, s.file)}: truncated shard; cannot resume (delete the folder and rebuild)`);
          got += r;
        }
        for (let p = 0; p < k; p++) {
          const [h, l] = patchHash64(words, (p * PATCH_DIM) / 4);
          set.add(h, l);
        }
        done += k;
      }
      left -= inShard;
    } finally {
      closeSync(fd);
    }
  }
}

// ---------------------------------------------------------------------------------------

/** Per-image RNG seed from (seed, input index): independent of where a build resumed. */
function imageSeed(seed: number, inputIndex: number): number {
  return fmix32((Math.imul(seed >>> 0, 0x9e3779b1) ^ fmix32(inputIndex + 0x632be5ab)) >>> 0);
}

function cropRgb(img: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  if (x === 0 && y === 0 && width === img.width && height === img.height) return img;
  const data = new Uint8Array(width * height * 3);
  for (let r = 0; r < height; r++) {
    const src = ((y + r) * img.width + x) * 3;
    data.set(img.data.subarray(src, src + width * 3), r * width * 3);
  }
  return { data, width, height };
}

function inputsHash(files: string[]): string {
  return sha256Hex(files.join('\n'));
}

function isEmptyDir(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw new UvuError(`cannot use output folder ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

function readState(dir: string): BuildState | null {
  let text: string;
  try {
    text = readFileSync(join(dir, BUILD_STATE_FILE), 'utf8');
  } catch {
    return null;
  }
  const parsed = BuildStateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new UvuError(`${join(dir, BUILD_STATE_FILE)}: invalid build state; delete the folder and rebuild`);
  return parsed.data;
}

/** Remove temp files and shards that the build state does not list (written after it). */
function cleanForResume(dir: string, committedShards: number): void {
  for (const name of readdirSync(dir)) {
    const m = /^shard-(\d{6})\.(bin|meta\.bin)$/.exec(name);
    if ((name.startsWith('.') && name.endsWith('.tmp')) || (m && Number(m[1]) >= committedShards)) {
      rmSync(join(dir, name), { force: true });
    }
  }
}

/** Build a patch store in `opts.out` from `inputs` (see inputs.ts for what an input can be). */
export async function buildPatchStore(inputs: string[], opts: BuildOptions): Promise<BuildResult> {
  const options = storeOptions(opts);
  const dir = opts.out;
  // Pass-major order: pass p of input j is job p·n + j; its offsets come from the job index.
  const resolved = resolveInputs(inputs);
  const files = Array.from({ length: options.passes }, () => resolved).flat();
  const inputsSha256 = inputsHash(files);

  if (opts.resume && statSafe(join(dir, MANIFEST_FILE))) {
    const manifest = ManifestSchema.parse(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
    info(`${dir}: store is already complete (${manifest.totals.patches} patches)`);
    return { manifest, imagesProcessed: 0 };
  }
  let state = opts.resume ? readState(dir) : null;
  if (!opts.resume && !isEmptyDir(dir)) {
    throw new UvuError(`output folder ${dir} exists and is not empty; use --resume or choose another --out`);
  }
  if (state) {
    if (state.inputsSha256 !== inputsSha256) {
      throw new UvuError(`cannot resume ${dir}: the inputs differ from the interrupted build (${files.length} files now)`);
    }
    if (JSON.stringify(state.options) !== JSON.stringify(options)) {
      throw new UvuError(`cannot resume ${dir}: build options differ from the interrupted build (${JSON.stringify(state.options)})`);
    }
    cleanForResume(dir, state.shards.length);
  } else {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new UvuError(`cannot create output folder ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    if (opts.resume) cleanForResume(dir, 0); // interrupted before the first shard: start over
  }

  const shards: ShardEntry[] = state ? [...state.shards] : [];
  const skipped: SkippedInput[] = state ? [...state.skipped] : [];
  let committed = state?.patches ?? 0; // patches in sealed shards
  let imageCount = state?.imageCount ?? 0;
  let duplicates = state?.duplicatesBefore ?? 0;
  const startInput = state?.nextInput ?? 0;
  let resumeSkip = state?.partialEmitted ?? 0; // kept patches of the first image already committed

  const dedupSet = options.dedup ? new Hash64Set() : null;
  if (dedupSet && state) rehashCommitted(dir, shards, committed - resumeSkip, dedupSet);

  const imagesPath = join(dir, IMAGES_FILE);
  const imagesFd = openSync(imagesPath, state ? 'r+' : 'w');
  let imagesBytes = state?.imagesBytes ?? 0;
  ftruncateSync(imagesFd, imagesBytes);

  const writer = new ShardWriter(dir, options.shardSize);
  const bar = opts.progress === false ? null : progress('patchify', files.length, 'images');
  bar?.set(startInput);

  let processed = 0;
  try {
    for (let inputIndex = startInput; inputIndex < files.length; inputIndex++) {
      if (opts.stopAfterImages !== undefined && processed >= opts.stopAfterImages) {
        return { manifest: null, imagesProcessed: processed };
      }
      processed++;
      const path = files[inputIndex]!;
      let img;
      try {
        img = await loadImage(path, { maxPixels: options.maxPixels, background: options.background });
      } catch (err) {
        if (!(err instanceof UvuError)) throw err;
        skipped.push({ path, reason: err.message });
        warnOnce(`skip:${path}`, `skipping: ${err.message}`);
        bar?.tick();
        continue;
      }

      let offsetX = 0;
      let offsetY = 0;
      if (options.offsets) {
        const rng = new Rng(imageSeed(options.seed, inputIndex));
        offsetX = img.width > PATCH ? rng.int(PATCH) : 0;
        offsetY = img.height > PATCH ? rng.int(PATCH) : 0;
      }
      const cols = Math.floor((img.width - offsetX) / PATCH);
      const rows = Math.floor((img.height - offsetY) / PATCH);
      const { patches } = patchify(cropRgb(img, offsetX, offsetY, cols * PATCH, rows * PATCH));
      const words = new Uint32Array(patches.buffer, patches.byteOffset, patches.byteLength / 4);

      const imageId = imageCount;
      const firstPatch = committed + writer.pending - resumeSkip;
      const duplicatesBefore = duplicates;
      let kept = 0;
      for (let p = 0; p < rows * cols; p++) {
        if (dedupSet) {
          const [h, l] = patchHash64(words, (p * PATCH_DIM) / 4);
          if (!dedupSet.add(h, l)) {
            duplicates++;
            continue;
          }
        }
        kept++;
        if (kept <= resumeSkip) continue; // committed before the interruption
        const full = writer.add(patches, p * PATCH_DIM, imageId, Math.floor(p / cols), p % cols, rows, cols);
        if (full) {
          const n = writer.pending;
          shards.push(writer.seal(shards.length));
          committed += n;
          fsyncSync(imagesFd);
          const st: BuildState = {
            format: 'uvu-patches-build-state',
            version: 1,
            inputsSha256,
            options,
            shards,
            nextInput: inputIndex,
            partialEmitted: kept,
            imageCount,
            imagesBytes,
            duplicatesBefore,
            skipped,
            patches: committed,
          };
          writeFileAtomic(join(dir, BUILD_STATE_FILE), JSON.stringify(st));
        }
      }
      resumeSkip = 0;

      const entry: ImageEntry = {
        id: imageId,
        path,
        originalWidth: img.originalWidth,
        originalHeight: img.originalHeight,
        width: img.width,
        height: img.height,
        offsetX,
        offsetY,
        rows,
        cols,
        firstPatch,
        patches: kept,
      };
      const line = Buffer.from(JSON.stringify(entry) + '\n', 'utf8');
      writeSync(imagesFd, line, 0, line.length, imagesBytes);
      imagesBytes += line.length;
      imageCount++;
      bar?.tick();
    }

    if (writer.pending > 0) {
      const n = writer.pending;
      shards.push(writer.seal(shards.length));
      committed += n;
    }
    fsyncSync(imagesFd);
  } finally {
    bar?.stop();
    closeSync(imagesFd);
  }

  if (committed === 0) {
    throw new UvuError(`no patches: all ${files.length} inputs were skipped (first: ${skipped[0]?.reason ?? 'none'})`);
  }
  const manifest: PatchStoreManifest = {
    format: STORE_FORMAT,
    version: STORE_VERSION,
    patchSize: PATCH,
    dim: PATCH_DIM,
    shards,
    imagesFile: IMAGES_FILE,
    imagesSha256: sha256File(imagesPath),
    options,
    totals: { patches: committed, images: imageCount, skipped: skipped.length, duplicatesRemoved: duplicates },
    skipped,
    fingerprint: storeFingerprint(options, shards),
  };
  writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 1) + '\n');
  rmSync(join(dir, BUILD_STATE_FILE), { force: true });
  if (skipped.length > 0) info(`${skipped.length} of ${files.length} inputs skipped (listed in ${join(dir, MANIFEST_FILE)})`);
  return { manifest, imagesProcessed: processed };
}

function statSafe(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
