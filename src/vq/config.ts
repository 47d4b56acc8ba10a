/**
 * Configuration of the patch-level VQ-VAE (DESIGN.md §9), the AR+VQ baseline's image tokenizer.
 * The architecture fields (K … output) are stored in the model file and rebuild the network on
 * load; the training fields only describe how the stored weights were obtained.
 */
import { z } from 'zod';
import { parseOrFail } from '../util/fsio.js';
import { checkAlloc } from '../util/limits.js';
import { PATCH_DIM } from '../patches/patchify.js';

export const VqConfigSchema = z
  .object({
    /** K, number of codes (the image vocabulary). DESIGN §9: same K as the pixel codebook. */
    K: z.number().int().min(2).max(2 ** 24).default(1024),
    /** Dimension of the encoder output z_e and of each code e_k. DESIGN §9: 8. */
    codeDim: z.number().int().min(1).max(2 ** 16).default(8),
    /** Width of the single hidden layer of the encoder (3072→hidden→codeDim) and of the decoder (codeDim→hidden→3072). */
    hidden: z.number().int().min(1).max(2 ** 20).default(256),
    /** Hidden nonlinearity: GELU (tanh approximation) or ReLU. */
    activation: z.enum(['gelu', 'relu']).default('gelu'),
    /** Decoder output: sigmoid keeps pixels in (0,1); linear is clamped to [0,1] only when converting to u8. */
    output: z.enum(['sigmoid', 'linear']).default('sigmoid'),
    /** β, weight of the commitment term β‖z_e − sg[e]‖². DESIGN §9: 0.25. */
    beta: z.number().min(0).default(0.25),
    /** Adam learning rate. */
    lr: z.number().positive().default(1e-3),
    /** Training patches per step. */
    batch: z.number().int().min(1).default(256),
    /** Optimizer steps. */
    steps: z.number().int().min(1).default(2000),
    /** Seed of the weight initialisation, the codebook initialisation, the batch sampling and the restarts. */
    seed: z.number().int().min(0).default(1234),
    /** Dead-code restart period in steps: codes unused during the last `restartEvery` steps are reset to random z_e of the current batch. 0 = never. */
    restartEvery: z.number().int().min(0).default(100),
    /** Steps per log interval (interval stats: recon MSE, commitment, perplexity, active codes, restarts). */
    logEvery: z.number().int().min(1).default(100),
    /** Held-out patches for the final metrics, excluded from training batches (capped at a quarter of the store). */
    evalSize: z.number().int().min(1).default(4096),
    /** Patches whose encoder outputs seed the codebook (k-means++ seeding over them); at least K are used when the store has them. */
    initSample: z.number().int().min(1).default(4096),
  })
  .strict();
export type VqConfig = z.infer<typeof VqConfigSchema>;
export type VqConfigInput = z.input<typeof VqConfigSchema>;

/** The fields that define the network (stored in the file; checked against the tensor shapes on load). */
export type VqArch = Pick<VqConfig, 'K' | 'codeDim' | 'hidden' | 'activation' | 'output'>;

/**
 * Parse a config object; unknown fields and wrong types are usage errors naming the field. The
 * sizes it asks for (a batch of patches, the weight matrices, the codebook, the batch × K
 * distances) pass the allocation limit (checkAlloc) here, before training allocates them.
 */
export function parseVqConfig(raw: unknown, source = 'vq config'): VqConfig {
  const c = parseOrFail(VqConfigSchema, raw, source, { usage: true });
  checkAlloc(source, `batch ${c.batch} × ${PATCH_DIM} pixel values (f32)`, c.batch * PATCH_DIM * 4);
  checkAlloc(source, `hidden ${c.hidden} × ${PATCH_DIM} weights (f32)`, c.hidden * PATCH_DIM * 4);
  checkAlloc(source, `K ${c.K} × codeDim ${c.codeDim} codebook (f32)`, c.K * c.codeDim * 4);
  checkAlloc(source, `batch ${c.batch} × K ${c.K} distances (f32)`, c.batch * c.K * 4);
  return c;
}
