/**
 * Model configuration. Field names follow the Hugging Face SigLIP (vision) and Qwen2 (text)
 * configs, so real checkpoints can be mapped onto this model later; every field is commented.
 * Vocabulary sizes are not configured here: they come from the dataset (tokenizer + image coder).
 * Sizes have upper bounds far above any model this code can train (widths ≤ 65,536, MLP widths
 * ≤ 262,144, ≤ 1,024 layers, ≤ 2²⁰ positions) so that a typo is refused by the schema and every
 * product of sizes stays an exact integer; what a run would allocate is checked against the
 * allocation limit before training starts (train.ts).
 */
import { z } from 'zod';

/** Upper bounds of the size fields (see above). */
const MAX_WIDTH = 2 ** 16;
const MAX_MLP_WIDTH = 2 ** 18;
const MAX_LAYERS = 1024;
const MAX_POSITIONS = 2 ** 20;

export const VisionConfigSchema = z
  .object({
    /** ViT patch side in pixels. Fixed at 16 so that a 2×2 merge covers one 32×32 codebook patch. */
    patch_size: z.literal(16).default(16),
    /** Width of the vision transformer. */
    hidden_size: z.number().int().positive().max(MAX_WIDTH).default(96),
    /** Number of bidirectional transformer blocks. */
    num_hidden_layers: z.number().int().nonnegative().max(MAX_LAYERS).default(2),
    /** Attention heads; hidden_size must be divisible by it. */
    num_attention_heads: z.number().int().positive().default(4),
    /** Width of the GELU MLP inside each block. */
    intermediate_size: z.number().int().positive().max(MAX_MLP_WIDTH).default(384),
    /** LayerNorm epsilon. */
    layer_norm_eps: z.number().positive().default(1e-6),
    /** Side of the token merge: 2 → four 16-px tokens become one visual token (Qwen2.5-VL merger). */
    spatial_merge_size: z.literal(2).default(2),
  })
  .strict();

export const ProjectorConfigSchema = z
  .object({
    /** Hidden width of the 2-layer MLP from merged vision features (4·vision hidden) to the decoder width. */
    hidden_size: z.number().int().positive().max(MAX_MLP_WIDTH).default(384),
  })
  .strict();

export const TextConfigSchema = z
  .object({
    /** Decoder width. */
    hidden_size: z.number().int().positive().max(MAX_WIDTH).default(192),
    /** SwiGLU MLP width. */
    intermediate_size: z.number().int().positive().max(MAX_MLP_WIDTH).default(512),
    /** Number of decoder blocks. */
    num_hidden_layers: z.number().int().nonnegative().max(MAX_LAYERS).default(4),
    /** Query heads; hidden_size must be divisible by it. */
    num_attention_heads: z.number().int().positive().default(6),
    /** Key/value heads (grouped-query attention); must divide num_attention_heads. */
    num_key_value_heads: z.number().int().positive().default(2),
    /** RMSNorm epsilon. */
    rms_norm_eps: z.number().positive().default(1e-6),
    /** RoPE base frequency. */
    rope_theta: z.number().positive().default(10000),
    /** Longest sequence the model is built for (RoPE tables). */
    max_position_embeddings: z.number().int().positive().max(MAX_POSITIONS).default(1024),
    /**
     * Share the input embedding table and the output head (Qwen2.5-3B does). Generated image
     * codes are fed back through their embedding rows (DESIGN §6); tied weights are what train
     * those rows, since image codes never appear as inputs during teacher forcing.
     */
    tie_word_embeddings: z.boolean().default(true),
    /** Std of the normal initialisation of weights. */
    initializer_range: z.number().positive().default(0.02),
  })
  .strict();

export const ModelConfigSchema = z
  .object({
    vision_config: VisionConfigSchema.default(VisionConfigSchema.parse({})),
    projector_config: ProjectorConfigSchema.default(ProjectorConfigSchema.parse({})),
    text_config: TextConfigSchema.default(TextConfigSchema.parse({})),
  })
  .strict()
  .superRefine((c, ctx) => {
    const v = c.vision_config;
    const t = c.text_config;
    if (v.hidden_size % v.num_attention_heads !== 0) {
      ctx.addIssue({ code: 'custom', path: ['vision_config', 'num_attention_heads'], message: `must divide hidden_size ${v.hidden_size}` });
    }
    if (t.hidden_size % t.num_attention_heads !== 0) {
      ctx.addIssue({ code: 'custom', path: ['text_config', 'num_attention_heads'], message: `must divide hidden_size ${t.hidden_size}` });
    }
    if (t.num_attention_heads % t.num_key_value_heads !== 0) {
      ctx.addIssue({ code: 'custom', path: ['text_config', 'num_key_value_heads'], message: `must divide num_attention_heads ${t.num_attention_heads}` });
    }
    if ((t.hidden_size / t.num_attention_heads) % 2 !== 0) {
      ctx.addIssue({ code: 'custom', path: ['text_config', 'num_attention_heads'], message: 'head dimension must be even (RoPE rotates pairs)' });
    }
  });

export type ModelConfig = z.infer<typeof ModelConfigSchema>;
export type VisionConfig = z.infer<typeof VisionConfigSchema>;
export type TextConfig = z.infer<typeof TextConfigSchema>;
