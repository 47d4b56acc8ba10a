/**
 * The unified autoregressive model (summary §Key Designs 3, DESIGN §6), in one file:
 *
 *   image pixels ──ViT(16-px patches, 2D sin-cos positions)──2×2 merge──MLP projector──┐
 *                                                                                    ▼ v_i
 *   token ids ──embed_tokens──► x (B,T,C) with visual positions replaced by v_i ──► Qwen2.5-style
 *   decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU) ──► final norm ──► head over the whole
 *   vocabulary (text | specials | K image codes).
 *
 * Hidden states are kept flat as (N=B·T, C) so every linear layer is one 2-D matrix product (the
 * BLAS kernel of src/engine); attention is one fused op per layer (attention.ts). Parameter names and layouts follow
 * Hugging Face (Linear weights are [out, in]) so real Qwen2 / SigLIP weights can be mapped later.
 * Callers wrap forward passes in tf.tidy / tf.variableGrads; this file allocates no long-lived
 * tensors except the parameters and small constant tables (RoPE, rotate-half, 2D positions).
 */
import { requireEngine, tf } from '../engine/tf.js';
import { Rng } from '../util/rng.js';
import { gelu, rmsNorm, swiglu } from './ops.js';
import { bidirectionalSelfAttention, causalSelfAttention, type RopeTables } from './attention.js';
import { UvuError } from '../util/errors.js';
import type { ModelConfig } from './config.js';
import type { Vocab } from '../tokens/vocab.js';

type T2 = tf.Tensor2D;

/** One image placed in a row: its visual tokens occupy positions start … start+rows·cols-1. */
export interface ImageInput {
  row: number;
  start: number;
  /** Grid of 32-px patches. */
  rows: number;
  cols: number;
  /** RGB u8 pixels, (rows·32) × (cols·32) × 3, HWC. */
  pixels: Uint8Array;
}

/** A batch of token rows plus the images whose features replace the visual positions. */
export interface ModelInputs {
  B: number;
  T: number;
  /** (B·T) token ids; at visual positions the id is the image code (unused as input). */
  ids: Int32Array;
  images: ImageInput[];
  /**
   * (B·T) first position, within its row, of the packed sample each position belongs to
   * (pack.ts sampleStarts). Attention stays inside a sample and RoPE positions restart at its
   * start. Absent: every row is one sample.
   */
  sampleStart?: Int32Array;
}

const VIT_PATCH = 16;
/** Values of one 16-px RGB ViT patch: the input width of visual.patch_embed. */
export const VIT_PATCH_DIM = VIT_PATCH * VIT_PATCH * 3;

export class UvuModel {
  readonly params = new Map<string, tf.Variable>();
  private readonly constants = new Map<string, tf.Tensor>();
  private readonly ropeCache = new Map<number, RopeTables>();

  constructor(
    readonly config: ModelConfig,
    readonly vocab: Vocab,
  ) {
    requireEngine('UvuModel');
  }

  /** A freshly initialised model: N(0, initializer_range) weights from a seeded Rng, zero biases, unit norms. */
  static init(config: ModelConfig, vocab: Vocab, seed: number): UvuModel {
    const m = new UvuModel(config, vocab);
    const rng = new Rng(seed);
    const std = config.text_config.initializer_range;
    for (const [name, shape] of m.paramShapes()) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (/norm|layernorm/.test(name) && name.endsWith('.weight')) data.fill(1);
      else if (!name.endsWith('.bias')) for (let i = 0; i < n; i++) data[i] = std * rng.normal();
      m.params.set(name, variableFrom(data, shape));
    }
    return m;
  }

  /** Every parameter's name and shape, in a fixed order (the order of checkpoints and the optimizer). */
  paramShapes(): [string, number[]][] {
    const v = this.config.vision_config;
    const p = this.config.projector_config;
    const t = this.config.text_config;
    const hd = t.hidden_size / t.num_attention_heads;
    const kvDim = hd * t.num_key_value_heads;
    const out: [string, number[]][] = [];
    const linear = (name: string, o: number, i: number, bias: boolean): void => {
      out.push([`${name}.weight`, [o, i]]);
      if (bias) out.push([`${name}.bias`, [o]]);
    };
    const layerNorm = (name: string, c: number): void => {
      out.push([`${name}.weight`, [c]], [`${name}.bias`, [c]]);
    };
    linear('visual.patch_embed', v.hidden_size, VIT_PATCH_DIM, true);
    for (let l = 0; l < v.num_hidden_layers; l++) {
      const b = `visual.blocks.${l}`;
      layerNorm(`${b}.norm1`, v.hidden_size);
      linear(`${b}.attn.qkv`, 3 * v.hidden_size, v.hidden_size, true);
      linear(`${b}.attn.proj`, v.hidden_size, v.hidden_size, true);
      layerNorm(`${b}.norm2`, v.hidden_size);
      linear(`${b}.mlp.fc1`, v.intermediate_size, v.hidden_size, true);
      linear(`${b}.mlp.fc2`, v.hidden_size, v.intermediate_size, true);
    }
    layerNorm('visual.post_layernorm', v.hidden_size);
    linear('visual.merger.mlp.0', p.hidden_size, 4 * v.hidden_size, true);
    linear('visual.merger.mlp.2', t.hidden_size, p.hidden_size, true);
    out.push(['model.embed_tokens.weight', [this.vocab.size, t.hidden_size]]);
    for (let l = 0; l < t.num_hidden_layers; l++) {
      const b = `model.layers.${l}`;
      out.push([`${b}.input_layernorm.weight`, [t.hidden_size]]);
      linear(`${b}.self_attn.q_proj`, t.hidden_size, t.hidden_size, true);
      linear(`${b}.self_attn.k_proj`, kvDim, t.hidden_size, true);
      linear(`${b}.self_attn.v_proj`, kvDim, t.hidden_size, true);
      linear(`${b}.self_attn.o_proj`, t.hidden_size, t.hidden_size, false);
      out.push([`${b}.post_attention_layernorm.weight`, [t.hidden_size]]);
      linear(`${b}.mlp.gate_proj`, t.intermediate_size, t.hidden_size, false);
      linear(`${b}.mlp.up_proj`, t.intermediate_size, t.hidden_size, false);
      linear(`${b}.mlp.down_proj`, t.hidden_size, t.intermediate_size, false);
    }
    out.push(['model.norm.weight', [t.hidden_size]]);
    if (!t.tie_word_embeddings) out.push(['lm_head.weight', [this.vocab.size, t.hidden_size]]);
    return out;
  }

  /**
   * Parameters shared by both modalities (DESIGN §8): vision encoder, projector, decoder blocks and
   * final norm — not the embedding table or output head, whose rows are modality-specific.
   */
  sharedParamNames(): string[] {
    return [...this.params.keys()].filter((n) => n !== 'model.embed_tokens.weight' && n !== 'lm_head.weight');
  }

  parameterCount(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    for (const c of this.constants.values()) c.dispose();
    this.params.clear();
    this.constants.clear();
  }

  /**
   * The live values of a parameter: the variable's own Float32Array on the CPU-style backends
   * (dataSync returns it without a copy), so the tape-free step reads it and AdamW may update it
   * in place.
   */
  paramValues(name: string): Float32Array {
    return this.p(name).dataSync() as Float32Array;
  }

  private p(name: string): tf.Variable {
    const v = this.params.get(name);
    if (!v) throw new UvuError(`model: missing parameter ${name}`);
    return v;
  }

  /** y = x Wᵀ + b for x (N, in), W [out, in]. */
  private linear(x: T2, name: string, bias = true): T2 {
    return tf.fused.matMul({ a: x, b: this.p(`${name}.weight`), transposeB: true, bias: bias ? this.p(`${name}.bias`) : undefined }) as T2;
  }

  // ---------------------------------------------------------------- vision encoder

  /**
   * Visual tokens of the batch's images: (Σ rows·cols, C), in the order of `images` and raster
   * order inside each image — visual token i covers exactly 32-px patch i.
   */
  encodeImages(images: ImageInput[]): T2 {
    const C = this.config.text_config.hidden_size;
    if (images.length === 0) return tf.zeros([0, C]);
    // Images of one grid size run through the ViT together as one (nImg, n16, Cv) batch.
    const groups = new Map<string, number[]>();
    images.forEach((im, i) => {
      const key = `${im.rows}x${im.cols}`;
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    const parts: T2[] = new Array(images.length);
    for (const idx of groups.values()) {
      const first = images[idx[0]!]!;
      const feats = this.vit(idx.map((i) => images[i]!), first.rows, first.cols); // (nImg·n32, C)
      const n32 = first.rows * first.cols;
      idx.forEach((imgIndex, j) => {
        parts[imgIndex] = tf.slice(feats, [j * n32, 0], [n32, C]);
      });
    }
    return tf.concat(parts, 0);
  }

  /** ViT + 2×2 merge + projector for images sharing one grid: (nImg·rows·cols, C). */
  private vit(images: ImageInput[], rows: number, cols: number): T2 {
    const v = this.config.vision_config;
    const Cv = v.hidden_size;
    const nImg = images.length;
    const n16 = rows * cols * 4;
    const N = nImg * n16;
    const x0 = tf.tensor2d(vitPatches(images, rows, cols), [N, VIT_PATCH_DIM]);
    let x = this.linear(x0, 'visual.patch_embed'); // (N, Cv)
    x = tf.add(x, tf.tile(this.constant(`pos2d:${rows}x${cols}`, () => tf.tensor2d(posEmbed2d(rows, cols, Cv), [rows * cols * 4, Cv])), [nImg, 1]));
    for (let l = 0; l < v.num_hidden_layers; l++) {
      const b = `visual.blocks.${l}`;
      // Bidirectional attention within each image (attention.ts), from the fused qkv (N, 3·Cv).
      const h = this.layerNorm(x, `${b}.norm1`, v.layer_norm_eps);
      const y = bidirectionalSelfAttention(this.linear(h, `${b}.attn.qkv`), nImg, n16, v.num_attention_heads);
      x = tf.add(x, this.linear(y, `${b}.attn.proj`));
      const h2 = this.layerNorm(x, `${b}.norm2`, v.layer_norm_eps);
      x = tf.add(x, this.linear(gelu(this.linear(h2, `${b}.mlp.fc1`)), `${b}.mlp.fc2`));
    }
    x = this.layerNorm(x, 'visual.post_layernorm', v.layer_norm_eps);
    // 2×2 merge: the ViT tokens are laid out so each 32-px patch's four 16-px tokens are adjacent.
    const merged = tf.reshape(x, [nImg * rows * cols, 4 * Cv]) as T2;
    return this.linear(gelu(this.linear(merged, 'visual.merger.mlp.0')), 'visual.merger.mlp.2');
  }

  private layerNorm(x: T2, name: string, eps: number): T2 {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    return tf.add(tf.mul(tf.mul(xc, rstd), this.p(`${name}.weight`)), this.p(`${name}.bias`));
  }

  // ---------------------------------------------------------------- decoder

  private rmsNorm(x: T2, name: string): T2 {
    return rmsNorm(x, this.p(`${name}.weight`) as tf.Tensor1D, this.config.text_config.rms_norm_eps);
  }

  /**
   * Final hidden states (B·T, C) for a batch: token embeddings with visual positions replaced by
   * the projected image features, through the causal decoder and the final norm.
   * `onLayerKv`, when given, sees each decoder layer's keys (after RoPE) and values, both
   * (B, Hkv, T, hd): what a KV cache keeps (src/model/kv-cache.ts). It changes no result.
   */
  forwardHidden(inputs: ModelInputs, onLayerKv?: (layer: number, k: tf.Tensor4D, v: tf.Tensor4D) => void): T2 {
    const { B, T, ids } = inputs;
    const t = this.config.text_config;
    if (T > t.max_position_embeddings) throw new UvuError(`model: sequence length ${T} exceeds max_position_embeddings ${t.max_position_embeddings}`);
    const N = B * T;
    const C = t.hidden_size;
    // Where each position's input comes from: its embedding row (0 … N-1) or visual token (N + j).
    const source = new Int32Array(N);
    for (let i = 0; i < N; i++) source[i] = i;
    let j = 0;
    for (const im of inputs.images) {
      const n = im.rows * im.cols;
      if (im.start < 0 || im.start + n > T) throw new UvuError(`model: image of ${n} visual tokens at position ${im.start} does not fit in context ${T}`);
      for (let i = 0; i < n; i++) source[im.row * T + im.start + i] = N + j++;
    }
    const emb = tf.gather(this.p('model.embed_tokens.weight'), tf.tensor1d(ids, 'int32')) as T2; // (N, C)
    let x = j > 0 ? (tf.gather(tf.concat([emb, this.encodeImages(inputs.images)], 0), tf.tensor1d(source, 'int32')) as T2) : emb;

    const H = t.num_attention_heads;
    const Hkv = t.num_key_value_heads;
    const hd = C / H;
    const shape = { B, T, H, Hkv, hd, ...samplePositions(inputs) };
    const rope = this.ropeTables(T);
    for (let l = 0; l < t.num_hidden_layers; l++) {
      const b = `model.layers.${l}`;
      const h = this.rmsNorm(x, `${b}.input_layernorm`);
      const q = this.linear(h, `${b}.self_attn.q_proj`);
      const k = this.linear(h, `${b}.self_attn.k_proj`);
      const v = this.linear(h, `${b}.self_attn.v_proj`);
      // Causal grouped-query attention with RoPE (attention.ts); keys and values as a cache keeps them.
      const onKv = onLayerKv && ((kd: Float32Array, vd: Float32Array): void => onLayerKv(l, tf.tensor4d(kd, [B, Hkv, T, hd]), tf.tensor4d(vd, [B, Hkv, T, hd])));
      const yFlat = causalSelfAttention(q, k, v, shape, rope, onKv);
      x = tf.add(x, this.linear(yFlat, `${b}.self_attn.o_proj`, false));
      const h2 = this.rmsNorm(x, `${b}.post_attention_layernorm`);
      const gate = this.linear(h2, `${b}.mlp.gate_proj`, false);
      const up = this.linear(h2, `${b}.mlp.up_proj`, false);
      x = tf.add(x, this.linear(swiglu(gate, up), `${b}.mlp.down_proj`, false));
    }
    return this.rmsNorm(x, 'model.norm');
  }

  /** Logits over the whole vocabulary for hidden rows (n, C) → (n, V). */
  logits(hidden: T2): T2 {
    const head = this.config.text_config.tie_word_embeddings ? this.p('model.embed_tokens.weight') : this.p('lm_head.weight');
    return tf.matMul(hidden, head, false, true);
  }

  /** RoPE tables (P, hd) of positions 0 … P−1 in the Hugging Face rotate-half layout (float64 angles, stored float32). */
  ropeTables(P: number): RopeTables {
    let r = this.ropeCache.get(P);
    if (!r) {
      const t = this.config.text_config;
      const hd = t.hidden_size / t.num_attention_heads;
      r = { cos: new Float32Array(P * hd), sin: new Float32Array(P * hd) };
      for (let pos = 0; pos < P; pos++) {
        for (let i = 0; i < hd / 2; i++) {
          const a = pos / Math.pow(t.rope_theta, (2 * i) / hd);
          r.cos[pos * hd + i] = r.cos[pos * hd + i + hd / 2] = Math.cos(a);
          r.sin[pos * hd + i] = r.sin[pos * hd + i + hd / 2] = Math.sin(a);
        }
      }
      this.ropeCache.set(P, r);
    }
    return r;
  }

  private constant(key: string, make: () => tf.Tensor): tf.Tensor {
    let c = this.constants.get(key);
    if (!c) {
      c = tf.keep(tf.tidy(make));
      this.constants.set(key, c);
    }
    return c;
  }
}

/** RoPE positions and attention segments of a batch: restarted at each packed sample's start. */
export function samplePositions({ B, T, sampleStart }: ModelInputs): { positions: Int32Array | null; segmentStart: Int32Array | null } {
  if (!sampleStart) return { positions: null, segmentStart: null };
  if (sampleStart.length !== B * T) throw new UvuError(`model: ${sampleStart.length} sample starts for a batch of ${B}×${T} positions`);
  const positions = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) {
    const t = i % T;
    const s = sampleStart[i]!;
    if (!(s >= 0 && s <= t && (t === 0 || s >= sampleStart[i - 1]!))) throw new UvuError(`model: sample start ${s} at position ${t} of row ${Math.floor(i / T)} is not a start at or before it`);
    positions[i] = t - s;
  }
  return { positions, segmentStart: sampleStart };
}

/** A trainable variable holding a copy of `data` (the temporary tensor is freed). */
export function variableFrom(data: Float32Array, shape: number[]): tf.Variable {
  const t = tf.tensor(data, shape);
  const v = tf.variable(t, true);
  t.dispose();
  return v;
}

/**
 * Fixed 2D sin-cos position embedding (n16, Cv) of the ViT tokens (float64 sin/cos stored float32), in merge order: half the
 * channels encode the 16-px row, half the column, so any image size works (native aspect ratio).
 */
export function posEmbed2d(rows: number, cols: number, Cv: number): Float32Array {
  const quarter = Math.floor(Cv / 4);
  const out = new Float32Array(rows * cols * 4 * Cv);
  let tok = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      for (let s = 0; s < 4; s++, tok++) {
        const y = 2 * r + (s >> 1);
        const x = 2 * c + (s & 1);
        for (let i = 0; i < quarter; i++) {
          const w = 1 / Math.pow(10000, i / quarter);
          out[tok * Cv + i] = Math.sin(y * w);
          out[tok * Cv + quarter + i] = Math.cos(y * w);
          out[tok * Cv + 2 * quarter + i] = Math.sin(x * w);
          out[tok * Cv + 3 * quarter + i] = Math.cos(x * w);
        }
      }
    }
  }
  return out;
}

/**
 * ViT input (nImg·rows·cols·4, 768): 16-px patches in merge order (for each 32-px patch in raster
 * order: top-left, top-right, bottom-left, bottom-right), HWC inside a patch, scaled to [−1, 1].
 * Written into `out` when given (a buffer the tape-free step reuses), else into a new array.
 */
export function vitPatches(images: ImageInput[], rows: number, cols: number, out: Float32Array = new Float32Array(images.length * rows * cols * 4 * VIT_PATCH_DIM)): Float32Array {
  const W = cols * 32;
  if (out.length !== images.length * rows * cols * 4 * VIT_PATCH_DIM) throw new UvuError(`model: ViT patch buffer of ${out.length} values for ${images.length} images of ${rows}×${cols} patches`);
  let o = 0;
  for (const im of images) {
    if (im.rows !== rows || im.cols !== cols || im.pixels.length !== rows * 32 * W * 3) {
      throw new UvuError(`model: image pixels do not match its ${im.rows}×${im.cols} patch grid`);
    }
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        for (let s = 0; s < 4; s++) {
          const y0 = r * 32 + (s >> 1) * 16;
          const x0 = c * 32 + (s & 1) * 16;
          for (let y = 0; y < 16; y++) {
            let src = ((y0 + y) * W + x0) * 3;
            for (let i = 0; i < 48; i++) out[o++] = im.pixels[src++]! / 127.5 - 1;
          }
        }
      }
    }
  }
  return out;
}
