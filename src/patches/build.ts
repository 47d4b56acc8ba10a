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
 * result equals an uninterrupted build byte for byte. Cancelling through `signal` stops
 * between images and leaves the same resumable folder as a kill at that point.
 *
 * A resume checks the build state (schema, canonical shard names, counters, shard sizes, the kept
 * lines of images.jsonl) and refuses a request whose inputs or options differ from the recorded
 * ones, naming the fields; so does a resume of a finished store. A build that fails (rather than
 * being cancelled) removes what it wrote, unless a build state makes the folder resumable.
 */
import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { UsageError, UvuError, warnOnce } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { parseOrFail, readExact, sha256File } from '../util/fsio.js';
import { Rng } from '../util/rng.js';
import { info, progress } from '../util/progress.js';
import { checkAlloc } from '../util/limits.js';
import { fsErrorReason } from '../util/fserror.js';
import { DEFAULT_BACKGROUND, loadImage, type LoadedImage, type RgbImage } from '../image/io.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';
import { PATCH, PATCH_DIM, patchify } from './patchify.js';
import { discoverInputs } from './inputs.js';
import {
  DEFAULT_SHARD_SIZE,
  IMAGES_FILE,
  MANIFEST_FILE,
  MAX_SHARD_SIZE,
  META_BYTES,
  PatchStore,
  ShardEntrySchema,
  parseImageLines,
  canonicalNameProblem,
  ShardWriter,
  SkippedSchema,
  STORE_FORMAT,
  STORE_VERSION,
  StoreOptionsSchema,
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
  /**
   * Cancels the build: checked before each input, so an abort takes effect once the current
   * image is done. The build then returns `manifest: null`, leaving the folder as a kill at
   * that point would (the build state of the last sealed shard); rerun with `resume` to
   * finish it. An abort that comes after the last input started is ignored.
   */
  signal?: AbortSignal;
  /** Called after each input (decoded or skipped) with the number processed in this call. */
  onImage?: (processed: number) => void;
}

export interface BuildResult {
  /** The finished store's manifest, or null when cancelled through `signal`. */
  manifest: PatchStoreManifest | null;
  /** Inputs processed in this call (not counting those done before a resume). */
  imagesProcessed: number;
}

const BuildStateSchema = z.object({
  format: z.literal('uvu-patches-build-state'),
  version: z.literal(1),
  inputsSha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Jobs (inputs × passes) of the interrupted build; absent in states written before it was recorded. */
  jobs: z.number().int().nonnegative().optional(),
  options: StoreOptionsSchema,
  /** Sealed shards; their names must be plain file names inside the store folder. */
  shards: z.array(ShardEntrySchema),
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
        readExact(fd, block.subarray(0, k * PATCH_DIM), done * PATCH_DIM, join(dir, s.file), 'truncated shard; cannot resume: delete the folder and rebuild');
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

/** The width×height window at (x, y) of `img` as a new image ([height, width, 3] u8); `img` itself when the window is all of it. */
function cropRgb(img: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  if (x === 0 && y === 0 && width === img.width && height === img.height) return img;
  const data = new Uint8Array(width * height * 3);
  for (let r = 0; r < height; r++) {
    const src = ((y + r) * img.width + x) * 3;
    data.set(img.data.subarray(src, src + width * 3), r * width * 3);
  }
  return { data, width, height };
}

/** Identity of the job list (paths in order), recorded in the build state so a resume with other inputs is refused. */
function inputsHash(files: string[]): string {
  return sha256Hex(files.join('\n'));
}

/** True for an empty or absent folder: the only output a fresh build may write into. */
function isEmptyDir(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw new UvuError(`cannot use output folder ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/** The interrupted build's state in `dir`, or null when there is none (nothing was committed yet). */
function readState(dir: string): BuildState | null {
  const path = join(dir, BUILD_STATE_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new UvuError(`${path}: cannot read the build state (${fsErrorReason(path, err)})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UvuError(`${path}: build state is not valid JSON; delete the folder and rebuild`);
  }
  return parseOrFail(BuildStateSchema, raw, `${path}: invalid build state (delete the folder and rebuild)`);
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

// ---------------------------------------------------------------------------------------
// The build, step by step. `buildPatchStore` reads top to bottom:
//   1. jobs          resolve the inputs, repeated once per pass           resolveJobs
//   2. done?         a resumed store that is already finished             finishedManifest
//   3. folder        check and clean the output folder, load the state    prepareOutput
//   4. restore       counters, dedup set and images.jsonl from the state  openRun
//   5. per job       decode → grid offsets → crop + patchify → dedup →    processJobs, processInput
//                    shards (checkpoint at every sealed shard) → images.jsonl
//   6. finish        seal the last shard, write the manifest              writeManifest

/** Mutable progress of one build call: sealed shards, counters and the open images.jsonl. */
interface BuildRun {
  readonly dir: string;
  readonly options: StoreOptions;
  /** Jobs in pass-major order: pass p of input file j is job p·n + j. */
  readonly files: string[];
  /** Identity of the job list, checked on resume. */
  readonly inputsSha256: string;
  /** Input paths that named a file already in the list (stored once). */
  readonly duplicateInputs: number;
  /** Sealed shards in order; the build state lists exactly these. */
  readonly shards: ShardEntry[];
  readonly skipped: SkippedInput[];
  /** Patches in sealed shards. */
  committed: number;
  /** Images written to images.jsonl, which is also the id of the next image. */
  imageCount: number;
  /** Patches dropped as exact duplicates so far. */
  duplicates: number;
  /** Length of images.jsonl in bytes: where the next line goes. */
  imagesBytes: number;
  /** Kept patches of the first job after a resume that sealed shards already hold; 0 after that job. */
  resumeSkip: number;
  /** 64-bit hashes of every kept patch (null without dedup). */
  readonly dedupSet: Hash64Set | null;
  /** Buffer of the shard being filled (≤ shardSize × 3072 B). */
  readonly writer: ShardWriter;
  readonly imagesFd: number;
}

/**
 * Step 1. The job list: every resolved input once per pass, pass-major, so job indices (and with
 * them the offsets) do not depend on where a build resumes. `duplicates` counts input paths that
 * named a file already in the list (stored once).
 */
function resolveJobs(inputs: string[], passes: number): { files: string[]; unique: string[]; duplicates: number } {
  const { files: unique, duplicates } = discoverInputs(inputs);
  return { files: Array.from({ length: passes }, () => unique).flat(), unique, duplicates };
}

/** `field (recorded X, now Y)` for every store option that differs. */
function optionDifferences(recorded: StoreOptions, now: StoreOptions): string[] {
  const keys = [...new Set([...Object.keys(recorded), ...Object.keys(now)])] as (keyof StoreOptions)[];
  return keys
    .filter((k) => JSON.stringify(recorded[k]) !== JSON.stringify(now[k]))
    .map((k) => `${k} (recorded ${JSON.stringify(recorded[k])}, now ${JSON.stringify(now[k])})`);
}

/** Refuse a resume whose request differs from the one recorded in `record`, naming each field that differs. */
function refuseDifferences(record: string, what: string, differences: string[]): void {
  if (differences.length > 0) {
    throw new UvuError(`${record}: cannot resume: this request differs from the ${what} in ${differences.join(', ')}; rerun with the recorded inputs and options, or build into another --out`);
  }
}

/**
 * Step 2. When resuming a store that already has its manifest, that manifest: nothing is left to
 * do, provided the request is the one the store was built from (the same input files, from its
 * image index and skipped list, and the same options); a difference is refused. Otherwise null.
 */
function finishedManifest(dir: string, resume: boolean, options: StoreOptions, unique: string[]): PatchStoreManifest | null {
  if (!resume || !statSafe(join(dir, MANIFEST_FILE))) return null;
  const store = PatchStore.open(dir);
  try {
    const m = store.manifest;
    const recorded = [...new Set([...store.images().map((e) => e.path), ...m.skipped.map((s) => s.path)])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const differences = optionDifferences(m.options, options);
    if (inputsHash(recorded) !== inputsHash(unique)) {
      const now = new Set(unique);
      const was = new Set(recorded);
      const added = unique.find((p) => !was.has(p));
      const missing = recorded.find((p) => !now.has(p));
      const example = added ? `; new: ${added}` : missing ? `; no longer given: ${missing}` : '';
      differences.unshift(`inputs (${recorded.length} files recorded, ${unique.length} now${example})`);
    }
    refuseDifferences(join(dir, MANIFEST_FILE), 'finished build', differences);
    return m;
  } finally {
    store.close();
  }
}

/**
 * Step 3. Make `dir` ready and return the interrupted build's state, or null to start from
 * scratch. A fresh build needs an absent or empty folder; a resume needs the same jobs and
 * options as the interrupted build and drops every file written after its last state.
 */
function prepareOutput(dir: string, resume: boolean, options: StoreOptions, files: string[], inputsSha256: string): { state: BuildState | null; created: string | undefined } {
  const state = resume ? readState(dir) : null;
  if (!resume && !isEmptyDir(dir)) {
    throw new UvuError(`output folder ${dir} exists and is not empty; use --resume or choose another --out`);
  }
  if (state) {
    const differences = optionDifferences(state.options, options);
    if (state.inputsSha256 !== inputsSha256) {
      differences.unshift(`inputs (${state.jobs === undefined ? 'another list' : `${state.jobs} jobs recorded`}, ${files.length} now)`);
    }
    refuseDifferences(join(dir, BUILD_STATE_FILE), 'interrupted build', differences);
    checkState(dir, state, files.length);
    cleanForResume(dir, state.shards.length);
    return { state, created: undefined };
  }
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new UvuError(`cannot create output folder ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (resume) cleanForResume(dir, 0); // interrupted before the first shard: start over
  return { state: null, created };
}

/**
 * The build state's own invariants, checked before a resume trusts it: the counters agree with
 * each other and with the job list, every sealed shard has a canonical name, is full and has its
 * recorded size, and the kept part of images.jsonl is `imageCount` valid lines.
 */
function checkState(dir: string, state: BuildState, jobs: number): void {
  const where = join(dir, BUILD_STATE_FILE);
  const bad = (what: string) => new UvuError(`${where}: ${what}; delete the folder and rebuild`);
  const names = canonicalNameProblem(state.shards);
  if (names) throw bad(names);
  const sum = state.shards.reduce((a, s) => a + s.patches, 0);
  if (sum !== state.patches) throw bad(`shards hold ${sum} patches but patches is ${state.patches}`);
  if (state.shards.some((s) => s.patches !== state.options.shardSize)) throw bad(`a sealed shard does not hold shardSize = ${state.options.shardSize} patches`);
  if (state.partialEmitted > state.patches) throw bad(`partialEmitted ${state.partialEmitted} exceeds the ${state.patches} committed patches`);
  if (state.nextInput >= jobs) throw bad(`nextInput ${state.nextInput} is past the ${jobs} jobs`);
  // Every job before nextInput became an image or a skipped input.
  if (state.imageCount + state.skipped.length !== state.nextInput) throw bad(`imageCount + skipped (${state.imageCount + state.skipped.length}) differ from nextInput ${state.nextInput}`);
  for (const s of state.shards) {
    checkFileSize(join(dir, s.file), s.patches * PATCH_DIM);
    checkFileSize(join(dir, s.metaFile), s.patches * META_BYTES);
  }
  checkCommittedImages(dir, state, bad);
}

/**
 * The lines of images.jsonl that the state keeps (its first `imagesBytes` bytes): exactly
 * `imageCount` whole lines, each an ImageEntry whose id counts up from 0.
 */
function checkCommittedImages(dir: string, state: BuildState, bad: (what: string) => UvuError): void {
  const path = join(dir, IMAGES_FILE);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new UvuError(`${path}: missing; the interrupted build cannot be resumed: delete the folder and rebuild`);
  }
  if (size < state.imagesBytes) throw bad(`imagesBytes ${state.imagesBytes} is past the end of ${IMAGES_FILE} (${size} bytes)`);
  checkAlloc(path, 'the committed image index', state.imagesBytes);
  const kept = Buffer.alloc(state.imagesBytes);
  const fd = openSync(path, 'r');
  try {
    readExact(fd, kept, 0, path);
  } finally {
    closeSync(fd);
  }
  const lines = kept.toString('utf8').split('\n');
  if (lines.pop() !== '') throw bad(`imagesBytes ${state.imagesBytes} does not end a line of ${IMAGES_FILE}`);
  if (lines.length !== state.imageCount) throw bad(`imageCount is ${state.imageCount} but the first ${state.imagesBytes} bytes of ${IMAGES_FILE} hold ${lines.length} lines`);
  parseImageLines(lines, path, 'delete the folder and rebuild');
}

function checkFileSize(path: string, expected: number): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw new UvuError(`${path}: cannot open committed shard (${(err as NodeJS.ErrnoException).code ?? err}); delete the folder and rebuild`);
  }
  if (size !== expected) throw new UvuError(`${path}: committed shard is ${size} bytes, the build state expects ${expected}; delete the folder and rebuild`);
}

/** Names a build writes into its folder (shards, index, manifest, state, atomic-write temp files). */
function isBuildOutputName(name: string): boolean {
  return /^shard-\d{6}\.(bin|meta\.bin)$/.test(name) || name === IMAGES_FILE || name === MANIFEST_FILE || name === BUILD_STATE_FILE || (name.startsWith('.') && name.endsWith('.tmp'));
}

/**
 * After a failed build, remove what this call wrote: its files in `dir` and the folders it created
 * (`created`: the first folder mkdir made, up to `dir`). A folder holding a build state stays as
 * it is (it can be resumed), and so do folders that were there before and anything that is not a
 * build output. `wasEmpty`: the folder existed and was empty before this call (a fresh build).
 */
function removeFailedOutput(dir: string, created: string | undefined, wasEmpty: boolean): void {
  if (statSafe(join(dir, BUILD_STATE_FILE))) return;
  if (!created && !wasEmpty) return;
  try {
    for (const name of readdirSync(dir)) if (isBuildOutputName(name)) rmSync(join(dir, name), { force: true });
    if (!created) return;
    const top = resolve(created);
    for (let d = resolve(dir); ; d = dirname(d)) {
      rmdirSync(d); // fails (and stops) if anything else is in it
      if (d === top || dirname(d) === d) break;
    }
  } catch {
    /* best effort: never mask the build's own error */
  }
}

/**
 * Step 4. Start the run where `state` left off (or at zero): counters as of the job in
 * progress, the dedup set rebuilt by rehashing the committed patches of earlier jobs, and
 * images.jsonl cut back to the lines of finished jobs (opened for positional writes).
 */
function openRun(dir: string, options: StoreOptions, files: string[], inputsSha256: string, duplicateInputs: number, state: BuildState | null): BuildRun {
  const shards: ShardEntry[] = state ? [...state.shards] : [];
  const committed = state?.patches ?? 0;
  const resumeSkip = state?.partialEmitted ?? 0;
  const dedupSet = options.dedup ? new Hash64Set() : null;
  if (dedupSet && state) rehashCommitted(dir, shards, committed - resumeSkip, dedupSet);

  const imagesFd = openSync(join(dir, IMAGES_FILE), state ? 'r+' : 'w');
  const imagesBytes = state?.imagesBytes ?? 0;
  ftruncateSync(imagesFd, imagesBytes);
  return {
    dir,
    options,
    files,
    inputsSha256,
    duplicateInputs,
    shards,
    skipped: state ? [...state.skipped] : [],
    committed,
    imageCount: state?.imageCount ?? 0,
    duplicates: state?.duplicatesBefore ?? 0,
    imagesBytes,
    resumeSkip,
    dedupSet,
    writer: new ShardWriter(dir, options.shardSize),
    imagesFd,
  };
}

/**
 * Step 5. Run the jobs from `startInput` on, one decoded image in memory at a time. `signal`
 * is checked before each job: on abort the loop returns at once, and the build state of the
 * last sealed shard is what a resume continues from (the unsealed patches are redone).
 */
async function processJobs(
  run: BuildRun,
  startInput: number,
  opts: Pick<BuildOptions, 'signal' | 'onImage'>,
  bar: ReturnType<typeof progress> | null,
): Promise<{ processed: number; aborted: boolean }> {
  let processed = 0;
  for (let inputIndex = startInput; inputIndex < run.files.length; inputIndex++) {
    if (opts.signal?.aborted) return { processed, aborted: true };
    processed++;
    await processInput(run, inputIndex);
    bar?.tick();
    opts.onImage?.(processed);
  }
  return { processed, aborted: false };
}

/** One job: decode (or skip), cut at the job's grid offsets, emit the kept patches, and append the image's line. */
async function processInput(run: BuildRun, inputIndex: number): Promise<void> {
  const path = run.files[inputIndex]!;
  const img = await decodeOrSkip(run, path);
  if (!img) return;
  const { offsetX, offsetY } = gridOffsets(img, run.options, inputIndex);
  const { patches, rows, cols } = cutGrid(img, offsetX, offsetY);
  const id = run.imageCount;
  const firstPatch = run.committed + run.writer.pending - run.resumeSkip;
  const kept = emitPatches(run, inputIndex, patches, rows, cols);
  run.resumeSkip = 0;
  const { originalWidth, originalHeight, width, height } = img;
  appendImageEntry(run, { id, path, originalWidth, originalHeight, width, height, offsetX, offsetY, rows, cols, firstPatch, patches: kept });
}

/** Decode and resize one input; an unreadable one (UvuError) is recorded in `skipped` with a warning and gives null. */
async function decodeOrSkip(run: BuildRun, path: string): Promise<LoadedImage | null> {
  try {
    return await loadImage(path, { maxPixels: run.options.maxPixels, background: run.options.background });
  } catch (err) {
    if (!(err instanceof UvuError)) throw err;
    run.skipped.push({ path, reason: err.message });
    warnOnce(`skip:${path}`, `skipping: ${err.message}`);
    return null;
  }
}

/**
 * Grid offsets in px (each 0..31) cropped at the left and top: drawn x then y from the job's
 * own RNG, seeded by (seed, job index), so a resumed build draws the same. (0, 0) without
 * `offsets`; a side of at most one patch keeps offset 0.
 */
function gridOffsets(img: RgbImage, options: StoreOptions, inputIndex: number): { offsetX: number; offsetY: number } {
  if (!options.offsets) return { offsetX: 0, offsetY: 0 };
  const rng = new Rng(imageSeed(options.seed, inputIndex));
  const offsetX = img.width > PATCH ? rng.int(PATCH) : 0;
  const offsetY = img.height > PATCH ? rng.int(PATCH) : 0;
  return { offsetX, offsetY };
}

/** Crop to the whole patches after the offsets and patchify: `patches` is [rows·cols, 3072] u8 in grid (row-major) order. */
function cutGrid(img: RgbImage, offsetX: number, offsetY: number): { patches: Uint8Array; rows: number; cols: number } {
  const cols = Math.floor((img.width - offsetX) / PATCH);
  const rows = Math.floor((img.height - offsetY) / PATCH);
  const { patches } = patchify(cropRgb(img, offsetX, offsetY, cols * PATCH, rows * PATCH));
  return { patches, rows, cols };
}

/**
 * Feed one image's patches ([rows·cols, 3072] u8) to the shard writer in grid order. With
 * dedup a patch whose hash was seen is dropped; after a resume the first `resumeSkip` kept
 * patches are already committed and are only counted. Every shard that fills up is sealed and
 * checkpointed before the next patch. Returns the image's kept patches (committed ones included).
 */
function emitPatches(run: BuildRun, inputIndex: number, patches: Uint8Array, rows: number, cols: number): number {
  const words = new Uint32Array(patches.buffer, patches.byteOffset, patches.byteLength / 4);
  const imageId = run.imageCount;
  const duplicatesBefore = run.duplicates;
  let kept = 0;
  for (let p = 0; p < rows * cols; p++) {
    if (run.dedupSet) {
      const [h, l] = patchHash64(words, (p * PATCH_DIM) / 4);
      if (!run.dedupSet.add(h, l)) {
        run.duplicates++;
        continue;
      }
    }
    kept++;
    if (kept <= run.resumeSkip) continue; // committed before the interruption
    const full = run.writer.add(patches, p * PATCH_DIM, imageId, Math.floor(p / cols), p % cols, rows, cols);
    if (full) {
      sealShard(run);
      writeCheckpoint(run, inputIndex, kept, duplicatesBefore);
    }
  }
  return kept;
}

/** Write the pending patches as the next shard (atomically) and count them as committed. */
function sealShard(run: BuildRun): void {
  const n = run.writer.pending;
  run.shards.push(run.writer.seal(run.shards.length));
  run.committed += n;
}

/**
 * Record the resumable state right after a shard was sealed: the sealed shards, the job in
 * progress, how many of its kept patches are committed, and the counters as of that job's
 * start. images.jsonl is synced first so the state never points past durable lines.
 */
function writeCheckpoint(run: BuildRun, inputIndex: number, partialEmitted: number, duplicatesBefore: number): void {
  fsyncSync(run.imagesFd);
  const st: BuildState = {
    format: 'uvu-patches-build-state',
    version: 1,
    inputsSha256: run.inputsSha256,
    jobs: run.files.length,
    options: run.options,
    shards: run.shards,
    nextInput: inputIndex,
    partialEmitted,
    imageCount: run.imageCount,
    imagesBytes: run.imagesBytes,
    duplicatesBefore,
    skipped: run.skipped,
    patches: run.committed,
  };
  writeFileAtomic(join(run.dir, BUILD_STATE_FILE), JSON.stringify(st));
}

/** Append the image's line to images.jsonl at byte `imagesBytes` (a resume overwrites the cut-back tail) and count it. */
function appendImageEntry(run: BuildRun, entry: ImageEntry): void {
  const line = Buffer.from(JSON.stringify(entry) + '\n', 'utf8');
  writeSync(run.imagesFd, line, 0, line.length, run.imagesBytes);
  run.imagesBytes += line.length;
  run.imageCount++;
}

/**
 * Step 6. Write manifest.json, which marks the store finished (with the images.jsonl hash and
 * the store fingerprint), and drop the build state. A store without patches is refused.
 */
function writeManifest(run: BuildRun): PatchStoreManifest {
  const { dir, options, shards, skipped } = run;
  if (run.committed === 0) {
    throw new UvuError(
      skipped.length === run.files.length
        ? `${dir}: no patches: all ${run.files.length} inputs were skipped (first: ${skipped[0]?.reason ?? 'none'}); nothing was written`
        : `${dir}: no patches: no input holds a whole ${PATCH}×${PATCH} patch (${skipped.length} of ${run.files.length} skipped); nothing was written`,
    );
  }
  const manifest: PatchStoreManifest = {
    format: STORE_FORMAT,
    version: STORE_VERSION,
    patchSize: PATCH,
    dim: PATCH_DIM,
    shards,
    imagesFile: IMAGES_FILE,
    imagesSha256: sha256File(join(dir, IMAGES_FILE)),
    options,
    totals: {
      patches: run.committed,
      images: run.imageCount,
      skipped: skipped.length,
      duplicatesRemoved: run.duplicates,
      // Only when there were any, so that manifests of other builds stay byte-identical.
      ...(run.duplicateInputs > 0 ? { duplicateInputs: run.duplicateInputs } : {}),
    },
    skipped,
    fingerprint: storeFingerprint(options, shards),
  };
  writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 1) + '\n');
  rmSync(join(dir, BUILD_STATE_FILE), { force: true });
  return manifest;
}

/**
 * Build a patch store in `opts.out` from `inputs` (see inputs.ts for what an input can be).
 * With `opts.signal` aborted the build stops between images and returns `manifest: null`;
 * rerun it with `resume` to continue.
 */
export async function buildPatchStore(inputs: string[], opts: BuildOptions): Promise<BuildResult> {
  const options = storeOptions(opts);
  const dir = opts.out;
  const resume = opts.resume ?? false;
  const { files, unique, duplicates } = resolveJobs(inputs, options.passes);
  const inputsSha256 = inputsHash(files);
  const finished = finishedManifest(dir, resume, options, unique);
  if (finished) {
    info(`${dir}: store is already complete (${finished.totals.patches} patches)`);
    return { manifest: finished, imagesProcessed: 0 };
  }
  const wasEmpty = !resume && statSafe(dir); // isEmptyDir is checked by prepareOutput
  const { state, created } = prepareOutput(dir, resume, options, files, inputsSha256);
  try {
    return await runBuild(dir, options, files, inputsSha256, duplicates, state, opts);
  } catch (err) {
    removeFailedOutput(dir, created, wasEmpty);
    throw err;
  }
}

/** Steps 4–6 of buildPatchStore, on a prepared folder. */
async function runBuild(dir: string, options: StoreOptions, files: string[], inputsSha256: string, duplicates: number, state: BuildState | null, opts: BuildOptions): Promise<BuildResult> {
  const run = openRun(dir, options, files, inputsSha256, duplicates, state);
  const startInput = state?.nextInput ?? 0;
  const bar = opts.progress === false ? null : progress('patchify', files.length, 'images');
  bar?.set(startInput);

  let processed: number;
  try {
    const jobs = await processJobs(run, startInput, opts, bar);
    processed = jobs.processed;
    if (jobs.aborted) return { manifest: null, imagesProcessed: processed };
    if (run.writer.pending > 0) sealShard(run);
    fsyncSync(run.imagesFd);
  } finally {
    bar?.stop();
    closeSync(run.imagesFd);
  }

  const manifest = writeManifest(run);
  if (run.skipped.length > 0) info(`${run.skipped.length} of ${files.length} inputs skipped (listed in ${join(dir, MANIFEST_FILE)})`);
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
