/**
 * The tape-free training step of the unified model (llm.c style): the forward pass, the loss
 * w_img·L_image + w_text·L_text and the backward pass over every decoder parameter, written by hand
 * over Float32Array buffers that are allocated once per batch shape (B, T) and reused every step.
 * It computes what the tfjs model does (model.ts forwardHidden + logits, train/loss.ts unifiedLoss,
 * under tf.variableGrads) to float32 rounding; test/train-step.test.ts checks every gradient.
 *
 *   forward                                              (N = B·T rows, n supervised rows)
 *     x₀ = embed_tokens[ids], visual positions ← VisionStep.forward(images)     (N, C)
 *     per layer l:
 *       h1 = rmsNorm(x_l);  q, k, v = h1 W_{q,k,v}ᵀ + b                          (N, C), (N, kv)
 *       y  = attention(q, k, v)   causal, grouped-query, RoPE, per-sample segments (attention.ts)
 *       m  = x_l + y W_oᵀ
 *       h2 = rmsNorm(m);  a = silu(h2 W_gᵀ) ⊙ (h2 W_uᵀ)                            (N, I)
 *       x_{l+1} = m + a W_dᵀ
 *     at the n supervised rows only: h = rmsNorm(x_L[rows]), logits = h headᵀ (n, V),
 *     ce = cross-entropy(logits, targets)  (the head is embed_tokens when tied, else lm_head)
 *     L_text = Σ ce·textMask / n_text,  L_image = Σ ce·imageMask / n_image
 *   backward(grads, w): ∂(w.image·L_image + w.text·L_text) added (+=) into grads, through every
 *     layer in reverse, the embedding rows and, at visual positions, VisionStep.backward.
 *
 * One forward can serve several backward passes (the gradient-angle diagnostic differentiates
 * L_image and L_text separately): backward reads the saved activations and never writes them.
 */
import { UvuError } from '../util/errors.js';
import type { GradMap } from '../optim/adamw.js';
import { CausalAttention, type DecoderAttentionShape } from './attention.js';
import {
  addInto,
  crossEntropyBackward,
  crossEntropyForward,
  embeddingBackward,
  embeddingForward,
  embeddingGradScratch,
  type EmbeddingGradScratch,
  linearBackward,
  linearForward,
  rmsNormBackward,
  rmsNormForward,
  swigluBackward,
  swigluForward,
} from './kernels.js';
import { samplePositions, type ModelInputs, type UvuModel } from './model.js';
import { VisionStep } from './vision-step.js';

/** Per-position targets and 0/1 masks over the B·T positions of a batch. */
export interface LossTargets {
  targets: Int32Array;
  textMask: Float32Array;
  imageMask: Float32Array;
}

/** Weights of the two loss parts. */
export interface LossWeights {
  image: number;
  text: number;
}

/** The losses of one forward pass, as the tfjs path computes them (float32). */
export interface StepLosses {
  /** w_img·L_image + w_text·L_text (a part with weight 0, or no targets, counts 0). */
  total: number;
  /** Mean cross-entropy over supervised image / text targets (0 when there are none). */
  image: number;
  text: number;
}

/** Saved activations of one decoder layer (N rows). */
interface LayerActs {
  /** Residual stream into the layer (N, C); layer l+1's x is layer l's output. */
  x: Float32Array;
  h1: Float32Array;
  rstd1: Float32Array;
  /** Attention output, input of o_proj (N, C). */
  y: Float32Array;
  att: CausalAttention;
  /** Residual stream after attention (N, C). */
  m: Float32Array;
  h2: Float32Array;
  rstd2: Float32Array;
  /** Gate and up projections, σ(gate), and the SwiGLU output (N, I). */
  gate: Float32Array;
  up: Float32Array;
  sig: Float32Array;
  act: Float32Array;
}

/** Every buffer of one batch shape. Row-indexed buffers of the head part hold up to N rows. */
interface Buffers {
  B: number;
  T: number;
  layers: LayerActs[];
  /** Output of the last layer (N, C). */
  xL: Float32Array;
  /** Supervised rows: x_L rows, their rstd, normed hidden (n ≤ N, C); probabilities (n, V); ce (n). */
  xr: Float32Array;
  rstdF: Float32Array;
  hF: Float32Array;
  probs: Float32Array;
  ce: Float32Array;
  // Backward scratch.
  dx: Float32Array;
  dh: Float32Array;
  dhTmp: Float32Array;
  dY: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  dAct: Float32Array;
  dGate: Float32Array;
  dUp: Float32Array;
  dLogits: Float32Array;
  dce: Float32Array;
  dHF: Float32Array;
  dXr: Float32Array;
  /** Forward scratch: q, k, v projections and a linear output before its residual add. */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  tmp: Float32Array;
}

/** Names of one decoder layer's parameters. */
function layerNames(l: number): Record<'norm1' | 'wq' | 'bq' | 'wk' | 'bk' | 'wv' | 'bv' | 'wo' | 'norm2' | 'wg' | 'wu' | 'wd', string> {
  const b = `model.layers.${l}`;
  return {
    norm1: `${b}.input_layernorm.weight`,
    wq: `${b}.self_attn.q_proj.weight`,
    bq: `${b}.self_attn.q_proj.bias`,
    wk: `${b}.self_attn.k_proj.weight`,
    bk: `${b}.self_attn.k_proj.bias`,
    wv: `${b}.self_attn.v_proj.weight`,
    bv: `${b}.self_attn.v_proj.bias`,
    wo: `${b}.self_attn.o_proj.weight`,
    norm2: `${b}.post_attention_layernorm.weight`,
    wg: `${b}.mlp.gate_proj.weight`,
    wu: `${b}.mlp.up_proj.weight`,
    wd: `${b}.mlp.down_proj.weight`,
  };
}

export class TrainStep {
  private readonly C: number;
  private readonly I: number;
  private readonly L: number;
  private readonly H: number;
  private readonly Hkv: number;
  private readonly hd: number;
  private readonly V: number;
  private readonly eps: number;
  private readonly headName: string;
  private buf: Buffers | null = null;
  // The last forward: its inputs, supervised rows and their targets and masks, visual positions.
  private inputs: ModelInputs | null = null;
  private n = 0;
  private rows = new Int32Array(0);
  private rowTargets = new Int32Array(0);
  private rowText = new Float32Array(0);
  private rowImage = new Float32Array(0);
  private nText = 0;
  private nImage = 0;
  /** (N) 1 where the position's input is its token embedding, 0 at visual positions. */
  private isToken = new Uint8Array(0);
  private visualPos = new Int32Array(0);
  private dFeatures = new Float32Array(0);
  private readonly embedScratch: EmbeddingGradScratch;

  /** The vision tower's own tape-free step (vision-step.ts). */
  private readonly vision: VisionStep;

  constructor(private readonly model: UvuModel) {
    this.vision = new VisionStep(model);
    const t = model.config.text_config;
    this.C = t.hidden_size;
    this.I = t.intermediate_size;
    this.L = t.num_hidden_layers;
    this.H = t.num_attention_heads;
    this.Hkv = t.num_key_value_heads;
    this.hd = this.C / this.H;
    this.V = model.vocab.size;
    this.eps = t.rms_norm_eps;
    this.headName = t.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    this.embedScratch = embeddingGradScratch(this.V, this.C);
  }

  /** Forward pass and losses of one batch under loss weights w (which select the supervised rows). */
  forward(inputs: ModelInputs, t: LossTargets, w: LossWeights): StepLosses {
    const { B, T, ids } = inputs;
    const { C, I, L, H, Hkv, hd, V, eps } = this;
    const N = B * T;
    const kv = Hkv * hd;
    if (T > this.model.config.text_config.max_position_embeddings) throw new UvuError(`model: sequence length ${T} exceeds max_position_embeddings ${this.model.config.text_config.max_position_embeddings}`);
    if (ids.length !== N || t.targets.length !== N || t.textMask.length !== N || t.imageMask.length !== N) {
      throw new UvuError(`train step: ids, targets and masks must each have B·T = ${N} values (got ${ids.length}, ${t.targets.length}, ${t.textMask.length}, ${t.imageMask.length})`);
    }
    const b = this.buffers(B, T);
    this.inputs = inputs;
    this.selectRows(t, w, N);
    const p = (name: string): Float32Array => this.model.paramValues(name);

    // Embeddings, then visual features at visual positions (in image order, raster order inside).
    const x0 = b.layers.length ? b.layers[0]!.x : b.xL;
    embeddingForward(p('model.embed_tokens.weight'), ids, x0, N, C);
    this.placeImages(inputs, N);
    if (this.visualPos.length > 0) {
      const feats = this.vision.forward(inputs.images);
      if (feats.length !== this.visualPos.length * C) throw new UvuError(`train step: the vision step returned ${feats.length} values for ${this.visualPos.length} visual tokens × ${C}`);
      this.visualPos.forEach((pos, j) => x0.set(feats.subarray(j * C, (j + 1) * C), pos * C));
    }

    const shape: DecoderAttentionShape = { B, T, H, Hkv, hd, ...samplePositions(inputs) };
    const rope = this.model.ropeTables(T);
    for (let l = 0; l < L; l++) {
      const a = b.layers[l]!;
      const next = l + 1 < L ? b.layers[l + 1]!.x : b.xL;
      const n = layerNames(l);
      rmsNormForward(a.x, p(n.norm1), a.h1, a.rstd1, N, C, eps);
      linearForward(a.h1, p(n.wq), p(n.bq), b.q, N, C, C);
      linearForward(a.h1, p(n.wk), p(n.bk), b.k, N, C, kv);
      linearForward(a.h1, p(n.wv), p(n.bv), b.v, N, C, kv);
      a.att.forward(b.q, b.k, b.v, a.y, shape, rope);
      linearForward(a.y, p(n.wo), null, b.tmp, N, C, C);
      addInto(a.x, b.tmp, a.m, N * C);
      rmsNormForward(a.m, p(n.norm2), a.h2, a.rstd2, N, C, eps);
      linearForward(a.h2, p(n.wg), null, a.gate, N, C, I);
      linearForward(a.h2, p(n.wu), null, a.up, N, C, I);
      swigluForward(a.gate, a.up, a.sig, a.act, N * I);
      linearForward(a.act, p(n.wd), null, b.tmp, N, I, C);
      addInto(a.m, b.tmp, next, N * C);
    }

    // Final norm and head at the supervised rows only.
    const n = this.n;
    if (n === 0) return { total: 0, image: 0, text: 0 };
    for (let i = 0; i < n; i++) b.xr.set(b.xL.subarray(this.rows[i]! * C, (this.rows[i]! + 1) * C), i * C);
    rmsNormForward(b.xr, p('model.norm.weight'), b.hF, b.rstdF, n, C, eps);
    linearForward(b.hF, p(this.headName), null, b.probs, n, C, V);
    crossEntropyForward(b.probs, this.rowTargets, b.probs, b.ce, n, V);

    // Means as tfjs reduces them: sum in double, stored float32, divided in float32.
    const fr = Math.fround;
    let sumText = 0;
    let sumImage = 0;
    for (let i = 0; i < n; i++) {
      sumText += fr(b.ce[i]! * this.rowText[i]!);
      sumImage += fr(b.ce[i]! * this.rowImage[i]!);
    }
    const text = this.nText > 0 ? fr(fr(sumText) / this.nText) : 0;
    const image = this.nImage > 0 ? fr(fr(sumImage) / this.nImage) : 0;
    const total = fr(fr(text * fr(w.text)) + fr(image * fr(w.image)));
    return { total, image, text };
  }

  /**
   * Adds ∂(w.image·L_image + w.text·L_text) of the last forward into grads (every parameter the
   * loss reaches must have an array there, of its size). A part the forward's weights left out
   * (weight 0) has no rows, so its weight here must be 0 too.
   */
  backward(grads: GradMap, w: LossWeights): void {
    const b = this.buf;
    const inputs = this.inputs;
    if (!b || !inputs) throw new UvuError('train step: backward before forward');
    const { C, I, L, V } = this;
    const { B, T, ids } = inputs;
    const N = B * T;
    const kv = this.Hkv * this.hd;
    const n = this.n;
    const p = (name: string): Float32Array => this.model.paramValues(name);
    const g = (name: string): Float32Array => {
      const a = grads.get(name);
      if (!a) throw new UvuError(`train step: no gradient buffer for ${name}`);
      return a;
    };
    if (n === 0) return;

    // ∂ce_i as tfjs's chain of mul/div/sum gradients makes it (float32 at each step).
    const fr = Math.fround;
    const perText = w.text !== 0 && this.nText > 0 ? fr(fr(w.text) / this.nText) : 0;
    const perImage = w.image !== 0 && this.nImage > 0 ? fr(fr(w.image) / this.nImage) : 0;
    for (let i = 0; i < n; i++) b.dce[i] = perText * this.rowText[i]! + perImage * this.rowImage[i]!;
    crossEntropyBackward(b.probs, this.rowTargets, b.dce, b.dLogits, n, V);
    linearBackward(b.dLogits, b.hF, p(this.headName), b.dHF, g(this.headName), null, n, C, V);
    rmsNormBackward(b.dHF, b.xr, p('model.norm.weight'), b.rstdF, b.dXr, g('model.norm.weight'), n, C);
    const dx = b.dx;
    dx.fill(0, 0, N * C);
    for (let i = 0; i < n; i++) dx.set(b.dXr.subarray(i * C, (i + 1) * C), this.rows[i]! * C);

    for (let l = L - 1; l >= 0; l--) {
      const a = b.layers[l]!;
      const nm = layerNames(l);
      // MLP: x_{l+1} = m + a W_dᵀ, a = silu(h2 W_gᵀ) ⊙ (h2 W_uᵀ), h2 = rmsNorm(m)
      linearBackward(dx, a.act, p(nm.wd), b.dAct, g(nm.wd), null, N, I, C);
      swigluBackward(b.dAct, a.gate, a.up, a.sig, b.dGate, b.dUp, N * I);
      linearBackward(b.dUp, a.h2, p(nm.wu), b.dh, g(nm.wu), null, N, C, I);
      linearBackward(b.dGate, a.h2, p(nm.wg), b.dhTmp, g(nm.wg), null, N, C, I);
      addInto(b.dh, b.dhTmp, b.dh, N * C);
      rmsNormBackward(b.dh, a.m, p(nm.norm2), a.rstd2, dx, g(nm.norm2), N, C, true); // dx is now ∂m
      // Attention: m = x_l + y W_oᵀ, y = attention(h1 W_qᵀ + b_q, h1 W_kᵀ + b_k, h1 W_vᵀ + b_v)
      linearBackward(dx, a.y, p(nm.wo), b.dY, g(nm.wo), null, N, C, C);
      a.att.backward(b.dY, b.dq, b.dk, b.dv);
      linearBackward(b.dv, a.h1, p(nm.wv), b.dh, g(nm.wv), g(nm.bv), N, C, kv);
      linearBackward(b.dk, a.h1, p(nm.wk), b.dhTmp, g(nm.wk), g(nm.bk), N, C, kv);
      addInto(b.dh, b.dhTmp, b.dh, N * C);
      linearBackward(b.dq, a.h1, p(nm.wq), b.dhTmp, g(nm.wq), g(nm.bq), N, C, C);
      addInto(b.dh, b.dhTmp, b.dh, N * C);
      rmsNormBackward(b.dh, a.x, p(nm.norm1), a.rstd1, dx, g(nm.norm1), N, C, true); // dx is now ∂x_l
    }

    // Token embeddings at token positions; visual features at visual positions.
    embeddingBackward(dx, ids, g('model.embed_tokens.weight'), N, C, this.isToken, this.embedScratch);
    if (this.visualPos.length > 0) {
      const dF = this.dFeatures;
      this.visualPos.forEach((pos, j) => dF.set(dx.subarray(pos * C, (pos + 1) * C), j * C));
      this.vision.backward(dF, grads);
    }
  }

  /** Supervised rows under weights w, with their targets and masks (a part with weight 0 is masked out). */
  private selectRows(t: LossTargets, w: LossWeights, N: number): void {
    if (this.rows.length < N) {
      this.rows = new Int32Array(N);
      this.rowTargets = new Int32Array(N);
      this.rowText = new Float32Array(N);
      this.rowImage = new Float32Array(N);
    }
    let n = 0;
    this.nText = 0;
    this.nImage = 0;
    for (let i = 0; i < N; i++) {
      const tm = w.text > 0 ? t.textMask[i]! : 0;
      const im = w.image > 0 ? t.imageMask[i]! : 0;
      if (tm <= 0 && im <= 0) continue;
      this.rows[n] = i;
      this.rowTargets[n] = t.targets[i]!;
      this.rowText[n] = tm;
      this.rowImage[n] = im;
      this.nText += tm;
      this.nImage += im;
      n++;
    }
    this.n = n;
  }

  /** Visual positions (in image order) and the token-position mask of a batch. */
  private placeImages(inputs: ModelInputs, N: number): void {
    const { T } = inputs;
    if (this.isToken.length !== N) this.isToken = new Uint8Array(N);
    this.isToken.fill(1);
    let nVis = 0;
    for (const im of inputs.images) nVis += im.rows * im.cols;
    if (this.visualPos.length !== nVis) this.visualPos = new Int32Array(nVis);
    if (this.dFeatures.length !== nVis * this.C) this.dFeatures = new Float32Array(nVis * this.C);
    let j = 0;
    for (const im of inputs.images) {
      const nIm = im.rows * im.cols;
      if (im.row < 0 || im.row >= inputs.B || im.start < 0 || im.start + nIm > T) throw new UvuError(`model: image of ${nIm} visual tokens at row ${im.row}, position ${im.start} does not fit in ${inputs.B} rows of context ${T}`);
      for (let i = 0; i < nIm; i++) {
        const pos = im.row * T + im.start + i;
        this.visualPos[j++] = pos;
        this.isToken[pos] = 0;
      }
    }
  }

  /** The buffers of batch shape (B, T), allocated on first use and kept while the shape stays. */
  private buffers(B: number, T: number): Buffers {
    if (this.buf && this.buf.B === B && this.buf.T === T) return this.buf;
    const { C, I, L, H, Hkv, hd, V } = this;
    const N = B * T;
    const kv = Hkv * hd;
    const f = (n: number): Float32Array => new Float32Array(n);
    const layers: LayerActs[] = [];
    for (let l = 0; l < L; l++) {
      layers.push({ x: f(N * C), h1: f(N * C), rstd1: f(N), y: f(N * C), att: new CausalAttention(B, T, H, Hkv, hd), m: f(N * C), h2: f(N * C), rstd2: f(N), gate: f(N * I), up: f(N * I), sig: f(N * I), act: f(N * I) });
    }
    this.buf = {
      B,
      T,
      layers,
      xL: f(N * C),
      xr: f(N * C),
      rstdF: f(N),
      hF: f(N * C),
      probs: f(N * V),
      ce: f(N),
      dx: f(N * C),
      dh: f(N * C),
      dhTmp: f(N * C),
      dY: f(N * C),
      dq: f(N * C),
      dk: f(N * kv),
      dv: f(N * kv),
      dAct: f(N * I),
      dGate: f(N * I),
      dUp: f(N * I),
      dLogits: f(N * V),
      dce: f(N),
      dHF: f(N * C),
      dXr: f(N * C),
      q: f(N * C),
      k: f(N * kv),
      v: f(N * kv),
      tmp: f(N * C),
    };
    return this.buf;
  }
}
