/**
 * The vision tower of the tape-free training step (llm.c style): what UvuModel.encodeImages
 * computes — ViT on 16-px patches with 2-D sin-cos positions, post-LayerNorm, 2×2 merge, MLP
 * projector — as a hand-written forward and backward over Float32Arrays allocated once per
 * (grid, image count) shape and reused every step. No tfjs tensor is created.
 *
 * Per group of nImg images sharing a rows×cols grid of 32-px patches (n16 = 4·rows·cols ViT
 * tokens each, N = nImg·n16, M = nImg·rows·cols visual tokens):
 *
 *   x₀ = patch_embed(patches) + pos            (N, Cv)
 *   per block l:  h  = LN₁(x_l)                  (N, Cv)
 *                 y  = attn(qkv(h))              (N, Cv)   within each image
 *                 m  = x_l + proj(y)
 *                 f  = fc1(LN₂(m))               (N, I)
 *                 x_{l+1} = m + fc2(GELU(f))
 *   z = LN_post(x_L) viewed as (M, 4·Cv)         (the 2×2 merge: a 32-px patch's four tokens are adjacent)
 *   out = mlp.2(GELU(mlp.0(z)))                  (M, C)
 *
 * The forward equals encodeImages bit for bit (every kernel rounds where its tfjs op did); the
 * backward equals tfjs's gradients to float32 rounding (sums taken in another order).
 */
import type { GradMap } from '../optim/adamw.js';
import { UvuError } from '../util/errors.js';
import { bidirectionalAttentionBackward, bidirectionalAttentionForward, bidirectionalScratch, type BidirectionalScratch, type BidirectionalShape } from './attention.js';
import { geluBackward, geluForward, layerNormBackward, layerNormForward, linearBackward, linearForward } from './kernels.js';
import { posEmbed2d, VIT_PATCH_DIM, vitPatches, type ImageInput, type UvuModel } from './model.js';

/**
 * Buffer sets kept for reuse. Native-aspect-ratio batches can bring many (grid, image count)
 * shapes (a few MB each at the reference size); beyond this many, the least recently used goes.
 */
const MAX_CACHED_SHAPES = 32;

/** Activations of one ViT block kept for the backward. */
interface BlockActs {
  /** (N, Cv) block input x_l, its LN₁ output h, row mean and 1/std (N). */
  x: Float32Array;
  h: Float32Array;
  mean1: Float32Array;
  rstd1: Float32Array;
  /** (N, 3Cv) qkv projection, (nImg, H, n16, n16) attention probabilities. */
  qkv: Float32Array;
  P: Float32Array;
  /** (N, Cv) attention output (input of proj), then the mid residual m and LN₂ of it. */
  y: Float32Array;
  m: Float32Array;
  h2: Float32Array;
  mean2: Float32Array;
  rstd2: Float32Array;
  /** (N, I) fc1 output, its GELU tanh term and GELU output. */
  f: Float32Array;
  ft: Float32Array;
  g: Float32Array;
}

/** Every buffer of one (grid, image count) shape: forward activations, then backward scratch. */
interface GroupBuffers {
  nImg: number;
  rows: number;
  cols: number;
  N: number;
  M: number;
  attnShape: BidirectionalShape;
  patches: Float32Array; // (N, 768)
  /** (n16, Cv) position table of the grid, shared by the images. */
  pos: Float32Array;
  blocks: BlockActs[];
  /** (N, Cv) output of the last block, post-LayerNorm z and its row stats. */
  xL: Float32Array;
  z: Float32Array;
  meanPost: Float32Array;
  rstdPost: Float32Array;
  /** (M, P) merger.mlp.0 output, its GELU tanh term and output; (M, C) features. */
  a: Float32Array;
  at: Float32Array;
  ag: Float32Array;
  out: Float32Array;
  // ---- scratch (both passes)
  dQkv: Float32Array; // (N, 3Cv)
  tmp: Float32Array; // (N, Cv) proj / fc2 outputs, then ∂h
  scratch: BidirectionalScratch;
  dOut: Float32Array; // (M, C)
  dA: Float32Array; // (M, P)
  dZ: Float32Array; // (N, Cv)
  dX: Float32Array; // (N, Cv) the residual stream's gradient
  dY: Float32Array; // (N, Cv)
  dF: Float32Array; // (N, I)
}

/** One grid-size group of the last forward: its buffers and the indices of its images in `images`. */
interface GroupRun {
  buf: GroupBuffers;
  /** images[idx[j]] is the group's image j; its features start at row firstRow[j] of the output. */
  idx: number[];
  firstRow: number[];
}

/** Tape-free ViT + post-layernorm + 2×2 merge + projector (what UvuModel.encodeImages computes). */
export class VisionStep {
  private readonly Cv: number;
  private readonly I: number;
  private readonly P: number;
  private readonly C: number;
  private readonly H: number;
  private readonly L: number;
  private readonly eps: number;
  private readonly groups = new Map<string, GroupBuffers>();
  private readonly posTables = new Map<string, Float32Array>();
  private readonly outputs = new Map<number, Float32Array>();
  private last: { runs: GroupRun[]; nVis: number } | null = null;

  constructor(private readonly model: UvuModel) {
    const v = model.config.vision_config;
    this.Cv = v.hidden_size;
    this.I = v.intermediate_size;
    this.P = model.config.projector_config.hidden_size;
    this.C = model.config.text_config.hidden_size;
    this.H = v.num_attention_heads;
    this.L = v.num_hidden_layers;
    this.eps = v.layer_norm_eps;
    if (this.Cv % this.H !== 0) throw new UvuError(`VisionStep: vision hidden_size ${this.Cv} is not a multiple of ${this.H} heads`);
  }

  /**
   * Visual features (nVis, C) of `images`, in their order and raster order inside each image:
   * UvuModel.encodeImages(images) to float32 rounding. The array belongs to the step and is
   * valid until the next forward; what backward needs is kept inside.
   */
  forward(images: ImageInput[]): Float32Array {
    const C = this.C;
    // Group images by grid as encodeImages does; each image's features start at its row offset.
    const byGrid = new Map<string, number[]>();
    const firstRowOf: number[] = [];
    let nVis = 0;
    images.forEach((im, i) => {
      const key = `${im.rows}x${im.cols}`;
      const idx = byGrid.get(key);
      if (idx) idx.push(i);
      else byGrid.set(key, [i]);
      firstRowOf.push(nVis);
      nVis += im.rows * im.cols;
    });
    let features = this.outputs.get(nVis);
    if (!features) this.outputs.set(nVis, (features = new Float32Array(nVis * C)));
    const runs: GroupRun[] = [];
    for (const idx of byGrid.values()) {
      const first = images[idx[0]!]!;
      const buf = this.buffers(first.rows, first.cols, idx.length);
      vitPatches(idx.map((i) => images[i]!), buf.rows, buf.cols, buf.patches);
      this.forwardGroup(buf);
      const firstRow = idx.map((i) => firstRowOf[i]!);
      const n32 = buf.rows * buf.cols;
      firstRow.forEach((r, j) => features.set(buf.out.subarray(j * n32 * C, (j + 1) * n32 * C), r * C));
      runs.push({ buf, idx, firstRow });
    }
    this.last = { runs, nVis };
    return features;
  }

  /** Given ∂features (nVis, C) of the last forward, adds (+=) every vision/projector parameter's gradient into grads[name]. */
  backward(dFeatures: Float32Array, grads: GradMap): void {
    const last = this.last;
    if (!last) throw new UvuError('VisionStep.backward: no forward to differentiate');
    const C = this.C;
    if (dFeatures.length !== last.nVis * C) throw new UvuError(`VisionStep.backward: ∂features has ${dFeatures.length} values, the last forward made ${last.nVis}×${C}`);
    for (const { buf, firstRow } of last.runs) {
      const n32 = buf.rows * buf.cols;
      firstRow.forEach((r, j) => buf.dOut.set(dFeatures.subarray(r * C, (r + n32) * C), j * n32 * C));
      this.backwardGroup(buf, grads);
    }
  }

  // ---------------------------------------------------------------- one group

  private forwardGroup(b: GroupBuffers): void {
    const { Cv, I, P, C, eps } = this;
    const { N, M } = b;
    const x0 = b.blocks.length > 0 ? b.blocks[0]!.x : b.xL;
    linearForward(b.patches, this.param('visual.patch_embed.weight'), this.param('visual.patch_embed.bias'), x0, N, VIT_PATCH_DIM, Cv);
    const posLen = b.pos.length;
    for (let o = 0; o < N * Cv; o += posLen) for (let i = 0; i < posLen; i++) x0[o + i]! += b.pos[i]!;
    for (let l = 0; l < this.L; l++) {
      const pre = `visual.blocks.${l}`;
      const s = b.blocks[l]!;
      const xNext = l + 1 < this.L ? b.blocks[l + 1]!.x : b.xL;
      layerNormForward(s.x, this.param(`${pre}.norm1.weight`), this.param(`${pre}.norm1.bias`), s.h, s.mean1, s.rstd1, N, Cv, eps);
      linearForward(s.h, this.param(`${pre}.attn.qkv.weight`), this.param(`${pre}.attn.qkv.bias`), s.qkv, N, Cv, 3 * Cv);
      bidirectionalAttentionForward(s.qkv, s.y, s.P, b.scratch, b.attnShape);
      linearForward(s.y, this.param(`${pre}.attn.proj.weight`), this.param(`${pre}.attn.proj.bias`), b.tmp, N, Cv, Cv);
      for (let i = 0; i < N * Cv; i++) s.m[i] = s.x[i]! + b.tmp[i]!;
      layerNormForward(s.m, this.param(`${pre}.norm2.weight`), this.param(`${pre}.norm2.bias`), s.h2, s.mean2, s.rstd2, N, Cv, eps);
      linearForward(s.h2, this.param(`${pre}.mlp.fc1.weight`), this.param(`${pre}.mlp.fc1.bias`), s.f, N, Cv, I);
      geluForward(s.f, s.ft, s.g, N * I);
      linearForward(s.g, this.param(`${pre}.mlp.fc2.weight`), this.param(`${pre}.mlp.fc2.bias`), b.tmp, N, I, Cv);
      for (let i = 0; i < N * Cv; i++) xNext[i] = s.m[i]! + b.tmp[i]!;
    }
    layerNormForward(b.xL, this.param('visual.post_layernorm.weight'), this.param('visual.post_layernorm.bias'), b.z, b.meanPost, b.rstdPost, N, Cv, eps);
    linearForward(b.z, this.param('visual.merger.mlp.0.weight'), this.param('visual.merger.mlp.0.bias'), b.a, M, 4 * Cv, P);
    geluForward(b.a, b.at, b.ag, M * P);
    linearForward(b.ag, this.param('visual.merger.mlp.2.weight'), this.param('visual.merger.mlp.2.bias'), b.out, M, P, C);
  }

  private backwardGroup(b: GroupBuffers, grads: GradMap): void {
    const { Cv, I, P, C } = this;
    const { N, M } = b;
    const lin = (dy: Float32Array, x: Float32Array, name: string, dx: Float32Array | null, rows: number, inDim: number, outDim: number): void => {
      linearBackward(dy, x, this.param(`${name}.weight`), dx, this.grad(grads, `${name}.weight`), this.grad(grads, `${name}.bias`), rows, inDim, outDim);
    };
    const ln = (dy: Float32Array, x: Float32Array, name: string, mean: Float32Array, rstd: Float32Array, dx: Float32Array, accumulate: boolean): void => {
      layerNormBackward(dy, x, this.param(`${name}.weight`), mean, rstd, dx, this.grad(grads, `${name}.weight`), this.grad(grads, `${name}.bias`), N, Cv, accumulate);
    };
    lin(b.dOut, b.ag, 'visual.merger.mlp.2', b.dA, M, P, C);
    geluBackward(b.dA, b.a, b.at, b.dA, M * P);
    lin(b.dA, b.z, 'visual.merger.mlp.0', b.dZ, M, 4 * Cv, P);
    ln(b.dZ, b.xL, 'visual.post_layernorm', b.meanPost, b.rstdPost, b.dX, false);
    // b.dX is ∂x_{l+1}; each block adds its branches' input gradients to it, making it ∂x_l.
    for (let l = this.L - 1; l >= 0; l--) {
      const pre = `visual.blocks.${l}`;
      const s = b.blocks[l]!;
      lin(b.dX, s.g, `${pre}.mlp.fc2`, b.dF, N, I, Cv);
      geluBackward(b.dF, s.f, s.ft, b.dF, N * I);
      lin(b.dF, s.h2, `${pre}.mlp.fc1`, b.tmp, N, Cv, I);
      ln(b.tmp, s.m, `${pre}.norm2`, s.mean2, s.rstd2, b.dX, true);
      lin(b.dX, s.y, `${pre}.attn.proj`, b.dY, N, Cv, Cv);
      bidirectionalAttentionBackward(b.dY, s.qkv, s.P, b.dQkv, b.scratch, b.attnShape);
      lin(b.dQkv, s.h, `${pre}.attn.qkv`, b.tmp, N, Cv, 3 * Cv);
      ln(b.tmp, s.x, `${pre}.norm1`, s.mean1, s.rstd1, b.dX, true);
    }
    lin(b.dX, b.patches, 'visual.patch_embed', null, N, VIT_PATCH_DIM, Cv);
  }

  // ---------------------------------------------------------------- buffers and parameters

  private buffers(rows: number, cols: number, nImg: number): GroupBuffers {
    const key = `${rows}x${cols}x${nImg}`;
    const have = this.groups.get(key);
    if (have) {
      // Most recently used last, so the eviction below drops the shape unused the longest.
      this.groups.delete(key);
      this.groups.set(key, have);
      return have;
    }
    if (this.groups.size >= MAX_CACHED_SHAPES) this.groups.delete(this.groups.keys().next().value!);
    const { Cv, I, P, C, H } = this;
    const n16 = rows * cols * 4;
    const N = nImg * n16;
    const M = nImg * rows * cols;
    const attnShape = { nImg, n: n16, H, hd: Cv / H };
    const f = (n: number): Float32Array => new Float32Array(n);
    const posKey = `${rows}x${cols}`;
    let pos = this.posTables.get(posKey);
    if (!pos) this.posTables.set(posKey, (pos = posEmbed2d(rows, cols, Cv)));
    const blocks: BlockActs[] = [];
    for (let l = 0; l < this.L; l++) {
      blocks.push({
        x: f(N * Cv), h: f(N * Cv), mean1: f(N), rstd1: f(N), qkv: f(N * 3 * Cv), P: f(nImg * H * n16 * n16),
        y: f(N * Cv), m: f(N * Cv), h2: f(N * Cv), mean2: f(N), rstd2: f(N),
        f: f(N * I), ft: f(N * I), g: f(N * I),
      });
    }
    const b: GroupBuffers = {
      nImg, rows, cols, N, M, attnShape, pos, blocks,
      patches: f(N * VIT_PATCH_DIM),
      xL: f(N * Cv), z: f(N * Cv), meanPost: f(N), rstdPost: f(N),
      a: f(M * P), at: f(M * P), ag: f(M * P), out: f(M * C),
      dQkv: f(N * 3 * Cv), tmp: f(N * Cv), scratch: bidirectionalScratch(n16),
      dOut: f(M * C), dA: f(M * P), dZ: f(N * Cv), dX: f(N * Cv), dY: f(N * Cv), dF: f(N * I),
    };
    this.groups.set(key, b);
    return b;
  }

  /** A parameter's live values (read every pass: AdamW may update them in place). */
  private param(name: string): Float32Array {
    return this.model.paramValues(name);
  }

  private grad(grads: GradMap, name: string): Float32Array {
    const g = grads.get(name);
    if (!g) throw new UvuError(`VisionStep.backward: the gradient map has no entry for ${name}`);
    return g;
  }
}
