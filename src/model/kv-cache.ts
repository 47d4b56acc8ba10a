/**
 * Incremental decoding with a key/value cache, for inference only (no gradients).
 *
 *   prefill(prompt, images): one ordinary forwardHidden pass over the prompt (the same tf code as
 *     training and as the uncached path, so its logits are bit-identical to that path's first
 *     step); each decoder layer's keys (after RoPE) and values are copied into the cache,
 *     [Hkv, capacity, hd] per layer.
 *   step(id): the one new token at position `length`, in plain TypeScript on Float32Arrays with the
 *     linear layers as 1-row BLAS products: embedding row → per layer RMSNorm, q/k/v, RoPE at its
 *     position, keys/values appended to the cache, grouped-query attention over the cached
 *     positions 0 … length, o_proj, RMSNorm, SwiGLU MLP → final norm → logits over the vocabulary.
 *
 * The elementwise steps round as the fused ops of ops.ts do (RMSNorm, SwiGLU, softmax); matrix
 * products sum in another order than the full-prefix pass, so logits agree with it to float32
 * rounding (about 1e-6 relative), not bit for bit. Weights are read once, when the decoder is made:
 * a decoder belongs to one generation and must not outlive a parameter update.
 */
import { tf } from '../engine/tf.js';
import { sgemm } from '../linalg/blas.js';
import { UvuError } from '../util/errors.js';
import type { ImageInput, UvuModel } from './model.js';

interface LayerWeights {
  inputNorm: Float32Array;
  wq: Float32Array;
  bq: Float32Array;
  wk: Float32Array;
  bk: Float32Array;
  wv: Float32Array;
  bv: Float32Array;
  wo: Float32Array;
  postNorm: Float32Array;
  wGate: Float32Array;
  wUp: Float32Array;
  wDown: Float32Array;
}

export class KvDecoder {
  /** Positions cached so far (the next token goes at this position). */
  length = 0;
  private readonly C: number;
  private readonly I: number;
  private readonly H: number;
  private readonly Hkv: number;
  private readonly hd: number;
  private readonly V: number;
  private readonly eps: number;
  private readonly theta: number;
  private readonly embed: Float32Array;
  private readonly head: Float32Array;
  private readonly finalNorm: Float32Array;
  private readonly layers: LayerWeights[] = [];
  /** Per layer: keys and values, [Hkv, capacity, hd]. */
  private readonly keys: Float32Array[] = [];
  private readonly values: Float32Array[] = [];

  /** A decoder for up to `capacity` positions (default: the model's max_position_embeddings). */
  constructor(
    private readonly model: UvuModel,
    readonly capacity = model.config.text_config.max_position_embeddings,
  ) {
    const t = model.config.text_config;
    this.C = t.hidden_size;
    this.I = t.intermediate_size;
    this.H = t.num_attention_heads;
    this.Hkv = t.num_key_value_heads;
    this.hd = this.C / this.H;
    this.V = model.vocab.size;
    this.eps = t.rms_norm_eps;
    this.theta = t.rope_theta;
    const w = (name: string): Float32Array => {
      const v = model.params.get(name);
      if (!v) throw new UvuError(`model: missing parameter ${name}`);
      return Float32Array.from(v.dataSync() as Float32Array);
    };
    this.embed = w('model.embed_tokens.weight');
    this.head = t.tie_word_embeddings ? this.embed : w('lm_head.weight');
    this.finalNorm = w('model.norm.weight');
    for (let l = 0; l < t.num_hidden_layers; l++) {
      const b = `model.layers.${l}`;
      this.layers.push({
        inputNorm: w(`${b}.input_layernorm.weight`),
        wq: w(`${b}.self_attn.q_proj.weight`),
        bq: w(`${b}.self_attn.q_proj.bias`),
        wk: w(`${b}.self_attn.k_proj.weight`),
        bk: w(`${b}.self_attn.k_proj.bias`),
        wv: w(`${b}.self_attn.v_proj.weight`),
        bv: w(`${b}.self_attn.v_proj.bias`),
        wo: w(`${b}.self_attn.o_proj.weight`),
        postNorm: w(`${b}.post_attention_layernorm.weight`),
        wGate: w(`${b}.mlp.gate_proj.weight`),
        wUp: w(`${b}.mlp.up_proj.weight`),
        wDown: w(`${b}.mlp.down_proj.weight`),
      });
      this.keys.push(new Float32Array(this.Hkv * capacity * this.hd));
      this.values.push(new Float32Array(this.Hkv * capacity * this.hd));
    }
  }

  /**
   * Runs the prompt (row 0, with its images) through the model, fills the cache with its
   * positions and returns the logits (V) of its last position.
   */
  prefill(ids: number[], images: ImageInput[]): Float32Array {
    const T = ids.length;
    if (this.length !== 0) throw new UvuError('KvDecoder: prefill on a cache that is not empty');
    if (T < 1 || T > this.capacity) throw new UvuError(`KvDecoder: prompt of ${T} tokens for a cache of ${this.capacity} positions`);
    const { Hkv, hd, capacity } = this;
    const logits = tf.tidy(() => {
      const hidden = this.model.forwardHidden({ B: 1, T, ids: Int32Array.from(ids), images }, (l, k, v) => {
        // (1, Hkv, T, hd) → the first T positions of each head's [capacity, hd] block.
        const kd = k.dataSync() as Float32Array;
        const vd = v.dataSync() as Float32Array;
        for (let h = 0; h < Hkv; h++) {
          this.keys[l]!.set(kd.subarray(h * T * hd, (h + 1) * T * hd), h * capacity * hd);
          this.values[l]!.set(vd.subarray(h * T * hd, (h + 1) * T * hd), h * capacity * hd);
        }
      });
      const last = tf.slice(hidden, [T - 1, 0], [1, hidden.shape[1]]);
      return Float32Array.from(this.model.logits(last).dataSync() as Float32Array);
    });
    this.length = T;
    return logits;
  }

  /** Appends token `id` at position `length` and returns the logits (V) that follow it. */
  step(id: number): Float32Array {
    const { C, I, H, Hkv, hd, capacity } = this;
    const pos = this.length;
    if (pos >= capacity) throw new UvuError(`KvDecoder: cache of ${capacity} positions is full`);
    if (!Number.isInteger(id) || id < 0 || id >= this.V) throw new UvuError(`KvDecoder: token id ${id} outside the vocabulary of ${this.V}`);
    const g = H / Hkv;
    const kvDim = Hkv * hd;
    const x = this.embed.slice(id * C, (id + 1) * C);
    const h = new Float32Array(C);
    const q = new Float32Array(C);
    const k = new Float32Array(kvDim);
    const v = new Float32Array(kvDim);
    const y = new Float32Array(C);
    const o = new Float32Array(C);
    const gate = new Float32Array(I);
    const up = new Float32Array(I);
    const scores = new Float32Array(pos + 1);
    const probs = new Float32Array(pos + 1);
    const { cos, sin } = this.ropeAt(pos);
    const scale = 1 / Math.sqrt(hd);
    for (let l = 0; l < this.layers.length; l++) {
      const L = this.layers[l]!;
      const K = this.keys[l]!;
      const Vc = this.values[l]!;
      rmsNormRow(x, L.inputNorm, this.eps, h);
      linearRow(h, L.wq, L.bq, q);
      linearRow(h, L.wk, L.bk, k);
      linearRow(h, L.wv, L.bv, v);
      applyRopeRow(q, H, hd, cos, sin);
      applyRopeRow(k, Hkv, hd, cos, sin);
      for (let kh = 0; kh < Hkv; kh++) {
        K.set(k.subarray(kh * hd, (kh + 1) * hd), (kh * capacity + pos) * hd);
        Vc.set(v.subarray(kh * hd, (kh + 1) * hd), (kh * capacity + pos) * hd);
      }
      for (let qh = 0; qh < H; qh++) {
        const base = Math.floor(qh / g) * capacity * hd;
        const qo = qh * hd;
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          const ko = base + j * hd;
          for (let d = 0; d < hd; d++) s += q[qo + d]! * K[ko + d]!;
          scores[j] = s;
        }
        // As the training softmax (attention.ts): exp(scale·(z − max)) in double, stored, then normalised.
        let max = -Infinity;
        for (let j = 0; j <= pos; j++) if (scores[j]! > max) max = scores[j]!;
        let sum = 0;
        for (let j = 0; j <= pos; j++) sum += probs[j] = Math.exp(scale * (scores[j]! - max));
        const inv = 1 / sum;
        for (let j = 0; j <= pos; j++) probs[j]! *= inv;
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let j = 0; j <= pos; j++) acc += probs[j]! * Vc[base + j * hd + d]!;
          y[qo + d] = acc;
        }
      }
      linearRow(y, L.wo, null, o);
      for (let c = 0; c < C; c++) x[c] = x[c]! + o[c]!;
      rmsNormRow(x, L.postNorm, this.eps, h);
      linearRow(h, L.wGate, null, gate);
      linearRow(h, L.wUp, null, up);
      // As swiglu (ops.ts): σ(g) rounded to float32, then g·σ·u.
      for (let i = 0; i < I; i++) {
        const gv = gate[i]!;
        const sig = Math.fround(1 / (1 + Math.exp(-gv)));
        gate[i] = gv * sig * up[i]!;
      }
      linearRow(gate, L.wDown, null, o);
      for (let c = 0; c < C; c++) x[c] = x[c]! + o[c]!;
    }
    rmsNormRow(x, this.finalNorm, this.eps, h);
    const logits = new Float32Array(this.V);
    linearRow(h, this.head, null, logits);
    this.length = pos + 1;
    return logits;
  }

  /** RoPE cos / sin (hd) at one position, as model.ts's tables (rotate-half layout). */
  private ropeAt(pos: number): { cos: Float32Array; sin: Float32Array } {
    const hd = this.hd;
    const cos = new Float32Array(hd);
    const sin = new Float32Array(hd);
    for (let i = 0; i < hd / 2; i++) {
      const a = pos / Math.pow(this.theta, (2 * i) / hd);
      cos[i] = cos[i + hd / 2] = Math.cos(a);
      sin[i] = sin[i + hd / 2] = Math.sin(a);
    }
    return { cos, sin };
  }
}

/** out = x Wᵀ (+ b) for one row x (in), W [out, in] — a 1-row BLAS product. */
function linearRow(x: Float32Array, W: Float32Array, b: Float32Array | null, out: Float32Array): void {
  const n = out.length;
  const k = x.length;
  sgemm(false, true, 1, n, k, 1, x, k, W, k, 0, out, n);
  if (b) for (let i = 0; i < n; i++) out[i] = out[i]! + b[i]!;
}

/** As rmsNorm (ops.ts) on one row: out = x·r ⊙ w, r = 1/√(mean(x²) + eps) rounded to float32. */
function rmsNormRow(x: Float32Array, w: Float32Array, eps: number, out: Float32Array): void {
  const C = x.length;
  let ss = 0;
  for (let c = 0; c < C; c++) ss += x[c]! * x[c]!;
  const r = Math.fround(1 / Math.sqrt(ss / C + eps));
  for (let c = 0; c < C; c++) out[c] = x[c]! * r * w[c]!;
}

/** x·cos + rotate_half(x)·sin per head, rotate_half(x) = (−x₂, x₁), each product rounded to float32 as in tf. */
function applyRopeRow(x: Float32Array, heads: number, hd: number, cos: Float32Array, sin: Float32Array): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    const o = h * hd;
    for (let i = 0; i < half; i++) {
      const a = x[o + i]!;
      const b = x[o + i + half]!;
      x[o + i] = Math.fround(a * cos[i]!) + Math.fround(-b * sin[i]!);
      x[o + i + half] = Math.fround(b * cos[i + half]!) + Math.fround(a * sin[i + half]!);
    }
  }
}
