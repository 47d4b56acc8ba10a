/**
 * What the codebook page shows of one codebook file: its codes as 32×32 thumbnails on sprite
 * sheets (rendered from centers_pixel, cached on disk), the orders it can be sorted in, per-code
 * statistics, nearest codes, and, when a patch store is given, the store's patches assigned to
 * each code (the assignment `uvu codebook eval --patches` makes, MetricsAccumulator).
 *
 * Sheets: SHEET_SIDE × SHEET_SIDE codes (1024×1024 px), in the order of one sort, so a screen of
 * the page needs one or two sheets whatever the sort; the file is
 * <cache>/<codebook key>/<sort>-<n>.png, the key a hash of the codebook's real path, size and
 * modification time (and the store's fingerprint, which the radius order depends on).
 */
import { mkdirSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadCodebook, type Codebook } from '../codebook/file.js';
import { MetricsAccumulator } from '../codebook/metrics.js';
import { exactDistSq } from '../codebook/search.js';
import { encodePng } from '../image/io.js';
import { floatToPatchesU8, PATCH_DIM, unpatchify, U8_TO_UNIT } from '../patches/patchify.js';
import { PatchStore, sha256Hex } from '../patches/store.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError } from '../util/errors.js';
import { Rng } from '../util/rng.js';

/** Codes per side of a sprite sheet. */
export const SHEET_SIDE = 32;
export const CODES_PER_SHEET = SHEET_SIDE * SHEET_SIDE;
export const SORTS = ['id', 'count', 'radius', 'brightness'] as const;
export type Sort = (typeof SORTS)[number];
/** Store patches kept per code to show on its page. */
export const MEMBER_SAMPLES = 16;
const MEMBER_COLS = 4;
/** Nearest codes listed for a code. */
export const NEAREST = 8;
/** Store patches per read while assigning them (bounds memory to this × 3072 bytes). */
const ASSIGN_BATCH = 4096;
/**
 * At most this many patch–centre distances (patches × K) in the assignment, about 0.8 TFLOP: all of
 * a store when it fits (6,600 demo patches at K = 256 use 0.6 %), else a seeded uniform sample of
 * ⌊2^28 / K⌋ patches (1,342 at K = 200,000), so the page never starts an hour-long job.
 */
const MAX_ASSIGN_PAIRS = 2 ** 28;
const ASSIGN_SEED = 1;

/**
 * The store patches assigned to codes: per code the members, the radius max‖p − c_k‖₂ in
 * assignment space and up to MEMBER_SAMPLES patch indices (−1 = none); `assigned` of `total`
 * store patches took part.
 */
export interface StoreAssignment {
  members: Float64Array;
  radius: Float64Array;
  samples: Int32Array;
  assigned: number;
  total: number;
}

export class CodebookView {
  /** Mean pixel value of each code's centre, in [0, 1]. */
  readonly brightness: Float32Array;
  private readonly orders = new Map<Sort, Int32Array>();
  private readonly sheets = new Map<string, Promise<string>>();
  private assignment: Promise<StoreAssignment> | null = null;
  /** The assignment once it is done (null before). */
  assigned: StoreAssignment | null = null;

  private constructor(
    /** File name shown in the page. */
    readonly name: string,
    readonly cb: Codebook,
    /** Folder of this codebook's cached sheets. */
    readonly cacheDir: string,
    readonly storeDir: string | null,
  ) {
    const { K, D, centersPixel } = cb;
    this.brightness = new Float32Array(K);
    for (let k = 0; k < K; k++) {
      let sum = 0;
      for (let j = k * D; j < (k + 1) * D; j++) sum += centersPixel[j]!;
      this.brightness[k] = sum / D;
    }
  }

  /** Load a codebook file (a clear error naming it when it is not one) with its sheet cache under `cacheRoot`. */
  static open(path: string, cacheRoot: string, storeDir: string | null): CodebookView {
    const cb = loadCodebook(path);
    const real = realpathSync(path);
    const st = statSync(real);
    const storeKey = storeDir ? PatchStore.open(storeDir, { verify: false }).fingerprint : '';
    const key = sha256Hex(real, String(st.size), String(st.mtimeMs), storeKey).slice(0, 20);
    const cacheDir = join(cacheRoot, key);
    mkdirSync(cacheDir, { recursive: true });
    return new CodebookView(basename(path), cb, cacheDir, storeDir);
  }

  /**
   * Assign the store's patches (all of them, or a sample: MAX_ASSIGN_PAIRS) to their codes, in
   * batches, yielding to the event loop between them; once, started on first use.
   */
  storeAssignment(): Promise<StoreAssignment> {
    if (!this.storeDir) throw new UvuError('no patch store: start uvu serve with --patches DIR');
    const storeDir = this.storeDir;
    this.assignment ??= (async () => {
      const store = PatchStore.open(storeDir);
      const { K } = this.cb;
      const total = store.count;
      const n = Math.min(total, Math.max(1, Math.floor(MAX_ASSIGN_PAIRS / K)));
      const indices = n === total ? Uint32Array.from({ length: total }, (_, i) => i) : new Rng(ASSIGN_SEED).sampleIndices(total, n).sort();
      const acc = new MetricsAccumulator(this.cb);
      const samples = new Int32Array(K * MEMBER_SAMPLES).fill(-1);
      const taken = new Uint8Array(K);
      try {
        for (let start = 0; start < n; start += ASSIGN_BATCH) {
          const batch = indices.subarray(start, Math.min(n, start + ASSIGN_BATCH));
          const { patches, meta } = store.readIndices(batch);
          acc.add(patches, batch.length, meta).forEach((k, i) => {
            if (taken[k]! < MEMBER_SAMPLES) samples[k * MEMBER_SAMPLES + taken[k]!++] = batch[i]!;
          });
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        store.close();
      }
      this.assigned = { ...acc.clusters(), samples, assigned: n, total };
      return this.assigned;
    })();
    return this.assignment;
  }

  /** Code ids in the order of `sort`: id; count, radius descending; brightness ascending (ties by id). */
  async order(sort: Sort): Promise<Int32Array> {
    const cached = this.orders.get(sort);
    if (cached) return cached;
    const { K } = this.cb;
    const ids = Int32Array.from({ length: K }, (_, k) => k);
    let key: ArrayLike<number> | null = null;
    if (sort === 'count') key = this.cb.counts.map((c) => -c);
    else if (sort === 'brightness') key = this.brightness;
    else if (sort === 'radius') key = (await this.storeAssignment()).radius.map((r) => -r);
    if (key) {
      const by = key;
      ids.sort((a, b) => by[a]! - by[b]! || a - b);
    }
    this.orders.set(sort, ids);
    return ids;
  }

  /** Number of sprite sheets of a sort. */
  get sheetCount(): number {
    return Math.ceil(this.cb.K / CODES_PER_SHEET);
  }

  /** Path of sheet `n` of `sort` (rendered and written to the cache on first request). */
  sheet(sort: Sort, n: number): Promise<string> {
    if (!(Number.isInteger(n) && n >= 0 && n < this.sheetCount)) throw new UvuError(`sheet ${n} out of range [0, ${this.sheetCount})`);
    const path = join(this.cacheDir, `${sort}-${n}.png`);
    let pending = this.sheets.get(path);
    if (!pending) {
      pending = this.renderSheet(sort, n, path);
      this.sheets.set(path, pending);
      pending.catch(() => this.sheets.delete(path));
    }
    return pending;
  }

  private async renderSheet(sort: Sort, n: number, path: string): Promise<string> {
    try {
      if (statSync(path).isFile()) return path;
    } catch {
      // Not cached yet.
    }
    const order = await this.order(sort);
    const first = n * CODES_PER_SHEET;
    const count = Math.min(CODES_PER_SHEET, this.cb.K - first);
    const rows = Math.ceil(count / SHEET_SIDE);
    // Unused cells of the last row stay white.
    const patches = new Uint8Array(rows * SHEET_SIDE * PATCH_DIM).fill(255);
    for (let i = 0; i < count; i++) {
      const k = order[first + i]!;
      floatToPatchesU8(this.cb.centersPixel.subarray(k * PATCH_DIM, (k + 1) * PATCH_DIM), patches.subarray(i * PATCH_DIM, (i + 1) * PATCH_DIM));
    }
    writeFileAtomic(path, await encodePng(unpatchify(patches, rows, SHEET_SIDE), path));
    return path;
  }

  /** The NEAREST codes to code `id` (squared L2 between pixel-space centres, per element), nearest first. */
  nearest(id: number): { id: number; distSq: number }[] {
    const { K, D, centersPixel } = this.cb;
    const best: { id: number; distSq: number }[] = [];
    for (let k = 0; k < K; k++) {
      if (k === id) continue;
      const d = exactDistSq(centersPixel, id * D, centersPixel, k * D, D) / D;
      if (best.length < NEAREST || d < best[best.length - 1]!.distSq) {
        best.push({ id: k, distSq: d });
        best.sort((a, b) => a.distSq - b.distSq || a.id - b.id);
        if (best.length > NEAREST) best.pop();
      }
    }
    return best;
  }

  /** Up to MEMBER_SAMPLES store patches assigned to code `id`, MEMBER_COLS per row (null when it has none). */
  async memberSheet(id: number): Promise<Buffer | null> {
    const { samples } = await this.storeAssignment();
    const indices = [...samples.subarray(id * MEMBER_SAMPLES, (id + 1) * MEMBER_SAMPLES)].filter((i) => i >= 0);
    if (indices.length === 0) return null;
    const store = PatchStore.open(this.storeDir!);
    try {
      const { patches } = store.readIndices(indices);
      const rows = Math.ceil(indices.length / MEMBER_COLS);
      const grid = new Uint8Array(rows * MEMBER_COLS * PATCH_DIM).fill(255);
      grid.set(patches);
      return await encodePng(unpatchify(grid, rows, MEMBER_COLS), `${this.storeDir} patches of code ${id}`);
    } finally {
      store.close();
    }
  }

  /** Mean squared error per element ([0, 1] pixels) of each patch of an image against its code's centre. */
  patchErrors(patchesU8: Uint8Array, ids: ArrayLike<number>): Float64Array {
    const { D, centersPixel } = this.cb;
    const out = new Float64Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const c = ids[i]! * D;
      let s = 0;
      for (let j = 0; j < D; j++) {
        const e = U8_TO_UNIT[patchesU8[i * D + j]!]! - centersPixel[c + j]!;
        s += e * e;
      }
      out[i] = s / D;
    }
    return out;
  }
}
