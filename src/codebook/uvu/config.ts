/**
 * Configuration of the paper's codebook construction (`uvu codebook build --method uvu`):
 * positional encoding + dedup + iterative hierarchical clustering (DESIGN.md §2, §5).
 * Every field is a CLI flag and a field of a JSON config file (`--config`); flags win.
 * Defaults suit a 2-core, 24 GiB machine; the paper's values are given where the summary
 * states them (it gives K, N_round and the data size; δ, α, ε and λ are not published).
 */
import { z } from 'zod';
import { PosEncSchema } from '../posenc.js';
import { UsageError } from '../../util/errors.js';
import { parseOrFail } from '../../util/fsio.js';
import { DEFAULT_CODEBOOK_SEED, DEFAULT_PE_SCALE } from '../../util/defaults.js';

export const UvuClusterConfigSchema = z
  .object({
    /** K, codebook size. Paper: 200,000. */
    size: z.number().int().min(1),
    /** N_round, patches drawn per round by hierarchical sampling. Paper: 20,000,000. */
    roundSize: z.number().int().min(1).default(65_536),
    /** Candidate pool per round = poolFactor·N_round patches drawn uniformly, assigned, then balanced. */
    poolFactor: z.number().min(1).default(2),
    /** δ: clusters with fewer members than this in a round go to the long-tail cache. Paper: not given. */
    delta: z.number().int().min(0).default(2),
    /** α: the cache is re-clustered when it holds at least this many features. Paper: not given. */
    alpha: z.number().int().min(1).default(4096),
    /** ε: stop when the validation objective changes by less than this, relatively. Paper: not given. */
    epsilon: z.number().min(0).default(1e-3),
    /** Maximum number of rounds. */
    maxRounds: z.number().int().min(1).default(20),
    /** Positional encoding before clustering; λ = scale. Paper: sin/cos, λ not given. */
    pe: PosEncSchema.default({ type: '2d-sincos', scale: DEFAULT_PE_SCALE }),
    /** Decimals of the intra-cluster distance used for dedup. Paper: 5. */
    dedupDecimals: z.number().int().min(0).max(12).default(5),
    /** Lloyd iterations of the initial k-means. */
    initIters: z.number().int().min(1).default(10),
    /** Lloyd iterations when the cache is re-clustered. */
    reclusterIters: z.number().int().min(1).default(10),
    /** Fixed validation sample for the convergence test (patches). */
    valSize: z.number().int().min(1).default(8192),
    /** Worker threads for the assignment (1 = in-process, BLAS uses all cores). */
    workers: z.number().int().min(1).default(1),
    /** Patches per assignment shard: the unit of parallel work and of exact merging. */
    shardSize: z.number().int().min(1).default(8192),
    seed: z.number().int().min(0).default(DEFAULT_CODEBOOK_SEED),
    /** Refuse to start when the estimated peak memory exceeds this (MiB). */
    maxMemoryMiB: z.number().positive().optional(),
  })
  .strict();
export type UvuClusterConfig = z.infer<typeof UvuClusterConfigSchema>;
export type UvuClusterConfigInput = z.input<typeof UvuClusterConfigSchema>;

/** Parse a config object; unknown fields and wrong types are usage errors naming the field. */
export function parseUvuConfig(raw: unknown, source = 'config'): UvuClusterConfig {
  return parseOrFail(UvuClusterConfigSchema, raw, source, { usage: true });
}

/**
 * Reject parameter combinations that cannot work, before any work starts.
 * @param storePatches patches in the store
 */
export function checkUvuConfig(cfg: UvuClusterConfig, storePatches: number): void {
  const K = cfg.size;
  if (K > storePatches) throw new UsageError(`K = ${K} is larger than the ${storePatches} patches of the store; lower --size or add images`);
  if (cfg.roundSize < K) throw new UsageError(`--round-size ${cfg.roundSize} is smaller than K = ${K}: a round must be able to give every cluster a member`);
  if (cfg.delta > 0 && cfg.delta >= cfg.roundSize / K) {
    throw new UsageError(`δ = ${cfg.delta} ≥ N_round/K = ${(cfg.roundSize / K).toFixed(2)}: an average cluster would be sent to the cache every round; lower --delta or raise --round-size`);
  }
  if (cfg.alpha < cfg.delta) throw new UsageError(`α = ${cfg.alpha} is smaller than δ = ${cfg.delta}: one long-tail cluster can bring up to δ−1 features, and a re-cluster needs at least one feature per cached centre`);
  if (cfg.valSize > storePatches) throw new UsageError(`--val-size ${cfg.valSize} is larger than the store (${storePatches} patches)`);
}
