/**
 * `uvu codebook build --method kmeans`: sample patches from a store, cluster them with the
 * baseline k-means, and package the result as a codebook (DESIGN §3). The paper's own method
 * (positional encoding + dedup + iterative hierarchical clustering) is a separate module.
 */
import { z } from 'zod';
import { PatchStore } from '../patches/store.js';
import { PATCH, PATCH_DIM } from '../patches/patchify.js';
import { PatchPoints } from './points.js';
import { kmeans, type AssignAll, type KmeansIterStats } from './kmeans.js';
import type { PosEnc } from './posenc.js';
import { NO_POSENC, PosEncSchema } from './posenc.js';
import type { Codebook } from './file.js';
import { Rng } from '../util/rng.js';
import { UvuError } from '../util/errors.js';
import { DEFAULT_CODEBOOK_SEED } from '../util/defaults.js';

export const KmeansBuildSchema = z.object({
  method: z.literal('kmeans'),
  /** Codebook size K. */
  size: z.number().int().min(1),
  /** Lloyd iterations. */
  iters: z.number().int().min(1).default(25),
  seed: z.number().int().default(DEFAULT_CODEBOOK_SEED),
  /** Training patches drawn from the store (default: all, capped at 256·K like Faiss). */
  sample: z.number().int().min(1).optional(),
  init: z.enum(['random', 'kmeans++']).default('random'),
  /** Positional encoding before clustering ('none' = the paper's "Pure K-means"). */
  pe: PosEncSchema.default(NO_POSENC),
});
export type KmeansBuildOptions = z.input<typeof KmeansBuildSchema>;

/** Default cap on training points per centre (Faiss max_points_per_centroid). */
const MAX_POINTS_PER_CENTROID = 256;

/** The training points of a k-means build, for a backend that assigns them elsewhere. */
export interface KmeansTrainingSet {
  storeDir: string;
  fingerprint: string;
  pe: PosEnc;
  /** Store indices of the training points, ascending (the k-means point order). */
  indices: Uint32Array;
}

/**
 * `io.verify` (default true): check each store shard's sha256 before its first read (kept out of
 * the options so that it is not recorded in the codebook). `io.assignAll`: run every Lloyd
 * iteration's assignment elsewhere (cluster workers); the codebook is the same.
 */
export function buildKmeansCodebook(storeDir: string, options: KmeansBuildOptions, onIter?: (s: KmeansIterStats) => void, io: { verify?: boolean; assignAll?: (training: KmeansTrainingSet) => AssignAll } = {}): Codebook {
  const opts = KmeansBuildSchema.parse(options);
  const store = PatchStore.open(storeDir, { verify: io.verify ?? true });
  const K = opts.size;
  if (K > store.count) throw new UvuError(`${storeDir}: K = ${K} is larger than the number of patches in the store (${store.count}); lower --size or add images`);
  const nSample = Math.min(store.count, opts.sample ?? K * MAX_POINTS_PER_CENTROID);
  // The sampling RNG is separate from k-means' own so --sample does not shift the init.
  const { patches, meta, indices } = nSample === store.count ? { ...store.readRange(0, store.count), indices: null } : store.sample(nSample, new Rng(opts.seed ^ 0x5eed));
  const points = new PatchPoints(patches, nSample, PATCH_DIM, meta, opts.pe);
  // The build never subsamples inside kmeans() (maxPointsPerCentroid ≥ nSample/K below), so these are the training points.
  const assignAll = io.assignAll?.({ storeDir, fingerprint: store.fingerprint, pe: opts.pe, indices: indices ?? Uint32Array.from({ length: nSample }, (_, i) => i) });
  const t0 = performance.now();
  const result = kmeans(
    points,
    {
      k: K,
      iters: opts.iters,
      seed: opts.seed,
      init: opts.init,
      maxPointsPerCentroid: Math.max(MAX_POINTS_PER_CENTROID, Math.ceil(nSample / K)),
    },
    onIter,
    assignAll,
  );
  const seconds = (performance.now() - t0) / 1000;
  const last = result.stats[result.stats.length - 1]!;
  return {
    K,
    D: PATCH_DIM,
    patchSize: PATCH,
    centersPixel: result.centersPixel,
    centersAssign: points.encoded ? result.centersAssign : null,
    counts: result.counts,
    pe: opts.pe,
    build: { ...opts, sample: nSample, trained_on: result.nTrain, seconds },
    data: store.fingerprint,
    metrics: {
      train_objective: last.objective,
      train_mse: last.mse,
      train_imbalance: last.imbalance,
      objective_per_iter: result.stats.map((s) => s.objective),
    },
  };
}
