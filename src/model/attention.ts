/**
 * Attention as single tape nodes with hand-written backward passes (llm.c style: forward and
 * backward side by side, shapes in comments). Composed from tfjs ops, one decoder attention was
 * ~25 tape nodes (reshapes, RoPE as mul/add/rotate products, four transposes, two batched
 * products, softmax), each allocating its output and its gradient; here it is one node whose
 * glue is plain loops over Float32Arrays and whose products are the same sgemm calls.
 *
 * The results are bit-identical to that composition: every product is the sgemm call tfjs's
 * BatchMatMul kernel (src/engine/blas-kernels.ts) and its gradient made — same operands laid out
 * contiguously the same way, same shapes, same transpose flags — and every elementwise step
 * rounds to float32 where the tfjs kernel did (Math.fround on each product and sum of RoPE).
 * test/attention.test.ts checks both passes against the composition bit for bit.
 *
 *   causalSelfAttention  decoder: grouped-query, RoPE on q and k, causal, optionally
 *                        block-diagonal per packed sample (segments) with per-sample positions.
 *   bidirectionalSelfAttention  ViT: fused qkv projection, full attention within each image.
 */
import { tf } from '../engine/tf.js';
import { sgemm } from '../linalg/blas.js';
import { UvuError } from '../util/errors.js';

const f32 = (t: tf.Tensor): Float32Array => t.dataSync() as Float32Array;

/**
 * Softmax of scale·s over the visible keys [lo_r, hi_r) of each row r of S (R, T), into P (which
 * may be S itself):
 *   forward:  p_k = exp(scale·(s_k − max)) / Σ_j exp(scale·(s_j − max)), 0 outside [lo, hi)
 * (exponentials and sums in double, stored as float32, as scaledSoftmax in ops.ts did).
 */
function softmaxRowsVisible(S: Float32Array, P: Float32Array, off: number, R: number, T: number, scale: number, lo: Int32Array, hi: Int32Array): void {
  for (let r = 0; r < R; r++) {
    const o = off + r * T;
    const a = lo[r]!;
    const b = hi[r]!;
    let max = -Infinity;
    for (let k = a; k < b; k++) if (S[o + k]! > max) max = S[o + k]!;
    let sum = 0;
    for (let k = a; k < b; k++) sum += P[o + k] = Math.exp(scale * (S[o + k]! - max));
    const inv = 1 / sum;
    for (let k = a; k < b; k++) P[o + k]! *= inv;
    P.fill(0, o, o + a);
    P.fill(0, o + b, o + T);
  }
}

/**
 *   backward: ∂s_k = scale · p_k · (dp_k − Σ_j dp_j p_j) over the visible keys, 0 elsewhere
 * (dS is overwritten in place of dP).
 */
function softmaxRowsBackward(P: Float32Array, dP: Float32Array, off: number, R: number, T: number, scale: number, lo: Int32Array, hi: Int32Array): void {
  for (let r = 0; r < R; r++) {
    const o = off + r * T;
    const a = lo[r]!;
    const b = hi[r]!;
    let dot = 0;
    for (let k = a; k < b; k++) dot += dP[o + k]! * P[o + k]!;
    for (let k = 0; k < a; k++) dP[o + k] = 0;
    for (let k = a; k < b; k++) dP[o + k] = scale * P[o + k]! * (dP[o + k]! - dot);
    for (let k = b; k < T; k++) dP[o + k] = 0;
  }
}

/**
 * RoPE in the rotate-half layout on rows of `heads` heads of size hd, from x (n, heads·hd) into
 * out, row n at position pos[n]:
 *   out_i = x_i·cos_i + rot_i·sin_i,  rot = (−x₂, x₁) over the two halves of the head
 * Each product and the sum are rounded to float32 (as tfjs's Multiply/Add kernels do).
 */
function ropeForward(x: Float32Array, out: Float32Array, n: number, heads: number, hd: number, pos: ArrayLike<number>, cos: Float32Array, sin: Float32Array): void {
  const half = hd / 2;
  const fr = Math.fround;
  for (let r = 0; r < n; r++) {
    const tab = pos[r]! * hd;
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * hd;
      for (let i = 0; i < hd; i++) {
        const rot = i < half ? -x[o + i + half]! : x[o + i - half]!;
        out[o + i] = fr(x[o + i]! * cos[tab + i]!) + fr(rot * sin[tab + i]!);
      }
    }
  }
}

/**
 * Backward of ropeForward, in place on d (n, heads·hd):
 *   ∂x_i = dy_i·cos_i + (i < hd/2 ? dy_{i+hd/2}·sin_{i+hd/2} : −dy_{i−hd/2}·sin_{i−hd/2})
 */
function ropeBackward(d: Float32Array, n: number, heads: number, hd: number, pos: ArrayLike<number>, cos: Float32Array, sin: Float32Array): void {
  const half = hd / 2;
  const fr = Math.fround;
  const tmp = new Float32Array(hd);
  for (let r = 0; r < n; r++) {
    const tab = pos[r]! * hd;
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * hd;
      for (let i = 0; i < hd; i++) {
        const j = i < half ? i + half : i - half;
        const viaRot = fr(d[o + j]! * sin[tab + j]!);
        tmp[i] = fr(d[o + i]! * cos[tab + i]!) + (i < half ? viaRot : -viaRot);
      }
      d.set(tmp, o);
    }
  }
}

/**
 * Copies heads between the row layout (B·T, heads·hd) of the projections and the head-major
 * layout (B, heads, T, hd) the batched products use. toHeads: rows → heads; else heads → rows.
 */
function regroup(rows: Float32Array, heads4: Float32Array, B: number, T: number, heads: number, hd: number, toHeads: boolean): void {
  const C = heads * hd;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < T; t++) {
        const r = (b * T + t) * C + h * hd;
        const m = ((b * heads + h) * T + t) * hd;
        // Element loops, not set(subarray): a view per row and head was most of a step's garbage.
        if (toHeads) for (let i = 0; i < hd; i++) heads4[m + i] = rows[r + i]!;
        else for (let i = 0; i < hd; i++) rows[r + i] = heads4[m + i]!;
      }
    }
  }
}

/** Visible key range [lo, hi) of every row (g stacked query heads × T positions) of one batch row. */
function visibleRanges(T: number, g: number, causal: boolean, segStart: Int32Array | null): { lo: Int32Array; hi: Int32Array } {
  const lo = new Int32Array(g * T);
  const hi = new Int32Array(g * T);
  for (let r = 0; r < g * T; r++) {
    const t = r % T;
    lo[r] = segStart ? segStart[t]! : 0;
    hi[r] = causal ? t + 1 : T;
  }
  return { lo, hi };
}

export interface RopeTables {
  /** (P, hd) cos and sin of position p·θ_i in the rotate-half layout, P ≥ every position used. */
  cos: Float32Array;
  sin: Float32Array;
}

export interface DecoderAttentionShape {
  B: number;
  T: number;
  /** Query heads, key/value heads (H a multiple of Hkv), head size (even). */
  H: number;
  Hkv: number;
  hd: number;
  /** (B·T) RoPE position of each row; null: 0 … T−1 in every batch row. */
  positions: Int32Array | null;
  /**
   * (B·T) first position of the packed sample each position belongs to; attention never looks
   * before it. null: the whole row is one sample.
   */
  segmentStart: Int32Array | null;
}

/**
 * Causal grouped-query self-attention with RoPE, from the projections to the input of o_proj:
 *   q (B·T, H·hd), k (B·T, Hkv·hd), v (B·T, Hkv·hd) → y (B·T, H·hd)
 * The g = H/Hkv query heads sharing one kv head are stacked along the rows, so each (batch row,
 * kv head) is one product with no repeated K/V:
 *   forward                                     backward
 *   qr, kr = rope(q), rope(k)                   ∂q, ∂k = rope⁻¹(∂qr), rope⁻¹(∂kr)
 *   Qg (B,Hkv,g·T,hd), K, V (B,Hkv,T,hd)        regroup ∂Qg, ∂K, ∂V into rows
 *   S  = Qg Kᵀ              (g·T, T)           ∂Qg = ∂S K,  ∂K = ∂Sᵀ Qg
 *   P  = softmax(S/√hd, causal[, segments])    ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)) / √hd
 *   Yg = P V                (g·T, hd)          ∂P = ∂Yg Vᵀ,  ∂V = Pᵀ ∂Yg
 *   y  = rows(Yg)
 * One buffer-level implementation (CausalAttention: forward, then backward of that forward) serves
 * both the tape (causalSelfAttention, a tf.customGrad node) and the tape-free training step
 * (src/model/train-step.ts), which keeps one CausalAttention per layer and reuses its buffers.
 */
export class CausalAttention {
  readonly B: number;
  readonly T: number;
  readonly H: number;
  readonly Hkv: number;
  readonly hd: number;
  /** Keys after RoPE and values of the last forward, (B, Hkv, T, hd): what a KV cache stores. */
  readonly K: Float32Array;
  readonly V: Float32Array;
  /** Queries after RoPE, head-major with the g heads of a kv head stacked: (B, Hkv, g·T, hd). */
  private readonly Qg: Float32Array;
  /** Attention probabilities (B, Hkv, g·T, T) (the scores, until the softmax). */
  private readonly P: Float32Array;
  /** Scratch: RoPE outputs in row layout, Yg / ∂Yg, ∂P, ∂Qg, ∂K, ∂V. */
  private readonly qr: Float32Array;
  private readonly kr: Float32Array;
  private readonly Yg: Float32Array;
  private readonly dP: Float32Array;
  private readonly dQg: Float32Array;
  private readonly dK: Float32Array;
  private readonly dV: Float32Array;
  /** RoPE position of each row, and the visible key ranges of each batch row, of the last forward. */
  private pos: Int32Array;
  private ranges: { lo: Int32Array; hi: Int32Array }[] = [];
  private rope: RopeTables | null = null;

  constructor(B: number, T: number, H: number, Hkv: number, hd: number) {
    const g = H / Hkv;
    if (!Number.isInteger(g) || hd % 2 !== 0) throw new UvuError(`CausalAttention: H=${H} must be a multiple of Hkv=${Hkv} and hd=${hd} even`);
    this.B = B;
    this.T = T;
    this.H = H;
    this.Hkv = Hkv;
    this.hd = hd;
    const N = B * T;
    this.qr = new Float32Array(N * H * hd);
    this.kr = new Float32Array(N * Hkv * hd);
    this.Qg = new Float32Array(N * H * hd);
    this.K = new Float32Array(N * Hkv * hd);
    this.V = new Float32Array(N * Hkv * hd);
    this.P = new Float32Array(B * H * T * T);
    this.Yg = new Float32Array(N * H * hd);
    this.dP = new Float32Array(B * H * T * T);
    this.dQg = new Float32Array(N * H * hd);
    this.dK = new Float32Array(N * Hkv * hd);
    this.dV = new Float32Array(N * Hkv * hd);
    this.pos = new Int32Array(N);
  }

  /** Whether this instance's buffers fit an attention of shape s. */
  fits(s: DecoderAttentionShape): boolean {
    return s.B === this.B && s.T === this.T && s.H === this.H && s.Hkv === this.Hkv && s.hd === this.hd;
  }

  /** y (B·T, H·hd) = attention(q, k, v); keeps what backward needs until the next forward. */
  forward(q: Float32Array, k: Float32Array, v: Float32Array, y: Float32Array, s: DecoderAttentionShape, rope: RopeTables): void {
    const { B, T, H, Hkv, hd } = this;
    const g = H / Hkv;
    const N = B * T;
    const gT = g * T;
    if (!this.fits(s) || q.length !== N * H * hd || k.length !== N * Hkv * hd || v.length !== N * Hkv * hd || y.length !== N * H * hd) {
      throw new UvuError(`causal attention: q ${q.length}, k ${k.length}, v ${v.length}, y ${y.length} values do not fit B=${s.B} T=${s.T} H=${s.H} Hkv=${s.Hkv} hd=${s.hd}`);
    }
    if (s.positions) this.pos.set(s.positions);
    else for (let i = 0; i < N; i++) this.pos[i] = i % T;
    this.rope = rope;
    this.ranges = Array.from({ length: B }, (_, b) => visibleRanges(T, g, true, s.segmentStart ? s.segmentStart.subarray(b * T, (b + 1) * T) : null));
    const { qr, kr, Qg, K, V, P, Yg } = this;
    ropeForward(q, qr, N, H, hd, this.pos, rope.cos, rope.sin);
    ropeForward(k, kr, N, Hkv, hd, this.pos, rope.cos, rope.sin);
    // Head-major copies: (B, H, T, hd) is (B, Hkv, g·T, hd) with the g heads of a kv head stacked.
    regroup(qr, Qg, B, T, H, hd, true);
    regroup(kr, K, B, T, Hkv, hd, true);
    regroup(v, V, B, T, Hkv, hd, true);
    for (let blk = 0; blk < B * Hkv; blk++) {
      const { lo, hi } = this.ranges[Math.floor(blk / Hkv)]!;
      const Sblk = this.pBlock(P, blk);
      sgemm(false, true, gT, T, hd, 1, this.qBlock(Qg, blk), hd, this.kvBlock(K, blk), hd, 0, Sblk, T);
      softmaxRowsVisible(Sblk, Sblk, 0, gT, T, 1 / Math.sqrt(hd), lo, hi);
      sgemm(false, false, gT, hd, T, 1, Sblk, T, this.kvBlock(V, blk), hd, 0, this.qBlock(Yg, blk), hd);
    }
    regroup(y, Yg, B, T, H, hd, false);
  }

  /** Given ∂y of the last forward, overwrites ∂q, ∂k, ∂v (row layouts as in forward). */
  backward(dy: Float32Array, dq: Float32Array, dk: Float32Array, dv: Float32Array): void {
    const { B, T, H, Hkv, hd, Qg, K, V, P, dP, dQg, dK, dV, pos } = this;
    const rope = this.rope;
    if (!rope) throw new UvuError('causal attention: backward before forward');
    const g = H / Hkv;
    const N = B * T;
    const gT = g * T;
    const dYg = this.Yg; // the forward's Yg is no longer needed
    regroup(dy, dYg, B, T, H, hd, true);
    const scale = 1 / Math.sqrt(hd);
    for (let blk = 0; blk < B * Hkv; blk++) {
      const { lo, hi } = this.ranges[Math.floor(blk / Hkv)]!;
      const Pblk = this.pBlock(P, blk);
      const dPblk = this.pBlock(dP, blk);
      const dYblk = this.qBlock(dYg, blk);
      sgemm(false, true, gT, T, hd, 1, dYblk, hd, this.kvBlock(V, blk), hd, 0, dPblk, T);
      sgemm(true, false, T, hd, gT, 1, Pblk, T, dYblk, hd, 0, this.kvBlock(dV, blk), hd);
      softmaxRowsBackward(Pblk, dPblk, 0, gT, T, scale, lo, hi);
      sgemm(false, false, gT, hd, T, 1, dPblk, T, this.kvBlock(K, blk), hd, 0, this.qBlock(dQg, blk), hd);
      sgemm(true, false, T, hd, gT, 1, dPblk, T, this.qBlock(Qg, blk), hd, 0, this.kvBlock(dK, blk), hd);
    }
    regroup(dq, dQg, B, T, H, hd, false);
    regroup(dk, dK, B, T, Hkv, hd, false);
    regroup(dv, dV, B, T, Hkv, hd, false);
    ropeBackward(dq, N, H, hd, pos, rope.cos, rope.sin);
    ropeBackward(dk, N, Hkv, hd, pos, rope.cos, rope.sin);
  }

  // Views of block blk = b·Hkv + kv (one batch row, one kv head): its g stacked query heads
  // (g·T, hd), its keys or values (T, hd), its scores or probabilities (g·T, T).
  private qBlock(a: Float32Array, blk: number): Float32Array {
    const n = (this.H / this.Hkv) * this.T * this.hd;
    return a.subarray(blk * n, (blk + 1) * n);
  }
  private kvBlock(a: Float32Array, blk: number): Float32Array {
    const n = this.T * this.hd;
    return a.subarray(blk * n, (blk + 1) * n);
  }
  private pBlock(a: Float32Array, blk: number): Float32Array {
    const n = (this.H / this.Hkv) * this.T * this.T;
    return a.subarray(blk * n, (blk + 1) * n);
  }
}

/**
 * CausalAttention as one tape node (the tfjs model, model.ts forwardHidden).
 * `onKv` sees the keys after RoPE and the values, (B, Hkv, T, hd), as a KV cache stores them.
 */
export function causalSelfAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, s: DecoderAttentionShape, rope: RopeTables, onKv?: (k: Float32Array, v: Float32Array) => void): tf.Tensor2D {
  const { B, T, H, Hkv, hd } = s;
  const N = B * T;
  if (q.shape[0] !== N || q.shape[1] !== H * hd || k.shape[0] !== N || k.shape[1] !== Hkv * hd || v.shape[0] !== N || v.shape[1] !== Hkv * hd) {
    throw new UvuError(`causalSelfAttention: q [${q.shape}], k [${k.shape}], v [${v.shape}] do not fit B=${B} T=${T} H=${H} Hkv=${Hkv} hd=${hd}`);
  }
  const op = tf.customGrad((qIn, kIn, vIn) => {
    const att = new CausalAttention(B, T, H, Hkv, hd);
    const y = new Float32Array(N * H * hd);
    att.forward(f32(qIn as tf.Tensor), f32(kIn as tf.Tensor), f32(vIn as tf.Tensor), y, s, rope);
    onKv?.(att.K, att.V);
    return {
      value: tf.tensor2d(y, [N, H * hd]),
      gradFunc: (dy: tf.Tensor) => {
        const dq = new Float32Array(N * H * hd);
        const dk = new Float32Array(N * Hkv * hd);
        const dv = new Float32Array(N * Hkv * hd);
        att.backward(f32(dy), dq, dk, dv);
        return [tf.tensor2d(dq, [N, H * hd]), tf.tensor2d(dk, [N, Hkv * hd]), tf.tensor2d(dv, [N, Hkv * hd])];
      },
    };
  });
  return op(q, k, v) as tf.Tensor2D;
}

/** Shape of a bidirectional attention call: nImg images of n tokens, H heads of size hd. */
export interface BidirectionalShape {
  nImg: number;
  n: number;
  H: number;
  hd: number;
}

/** Scratch of both passes, shareable by every call site of one shape (ViT layers). */
export interface BidirectionalScratch {
  /** (n, n) ∂P → ∂S of one (image, head) block. */
  dP: Float32Array;
  /** Visible key range of every query row: all n keys. */
  lo: Int32Array;
  hi: Int32Array;
}

export function bidirectionalScratch(n: number): BidirectionalScratch {
  return { dP: new Float32Array(n * n), ...visibleRanges(n, 1, false, null) };
}

/**
 * Bidirectional multi-head self-attention within each of nImg images of n tokens, from the fused
 * qkv projection (nImg·n, 3·H·hd) — per row [q heads | k heads | v heads] — to the input of the
 * output projection y (nImg·n, H·hd), keeping the probabilities P (nImg, H, n, n) for the backward:
 *   forward                              backward
 *   S = Q Kᵀ            (n, n)           ∂Q = ∂S K,  ∂K = ∂Sᵀ Q
 *   P = softmax(S/√hd)                   ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)) / √hd
 *   Y = P V             (n, hd)          ∂P = ∂Y Vᵀ,  ∂V = Pᵀ ∂Y
 * per (image, head). Q, K, V and Y of a head are read and written in place in the row layouts
 * (leading dimension 3·H·hd or H·hd), with no head-major copies.
 */
export function bidirectionalAttentionForward(qkv: Float32Array, y: Float32Array, P: Float32Array, scratch: BidirectionalScratch, { nImg, n, H, hd }: BidirectionalShape): void {
  const { lo, hi } = scratch;
  const scale = 1 / Math.sqrt(hd);
  const C = H * hd;
  const C3 = 3 * C;
  for (let img = 0; img < nImg; img++) {
    for (let h = 0; h < H; h++) {
      const po = (img * H + h) * n * n;
      const Sblk = P.subarray(po, po + n * n);
      const q = img * n * C3 + h * hd; // first row's q, k and v of head h
      sgemm(false, true, n, n, hd, 1, qkv.subarray(q), C3, qkv.subarray(q + C), C3, 0, Sblk, n);
      softmaxRowsVisible(Sblk, Sblk, 0, n, n, scale, lo, hi);
      sgemm(false, false, n, hd, n, 1, Sblk, n, qkv.subarray(q + 2 * C), C3, 0, y.subarray(img * n * C + h * hd), C);
    }
  }
}

/** Backward of bidirectionalAttentionForward: ∂qkv (nImg·n, 3·H·hd) from ∂y (nImg·n, H·hd), the forward's qkv and P. */
export function bidirectionalAttentionBackward(dy: Float32Array, qkv: Float32Array, P: Float32Array, dqkv: Float32Array, scratch: BidirectionalScratch, { nImg, n, H, hd }: BidirectionalShape): void {
  const { dP, lo, hi } = scratch;
  const scale = 1 / Math.sqrt(hd);
  const C = H * hd;
  const C3 = 3 * C;
  for (let img = 0; img < nImg; img++) {
    for (let h = 0; h < H; h++) {
      const po = (img * H + h) * n * n;
      const Pblk = P.subarray(po, po + n * n);
      const dYblk = dy.subarray(img * n * C + h * hd);
      const q = img * n * C3 + h * hd;
      const [k, v] = [q + C, q + 2 * C];
      sgemm(false, true, n, n, hd, 1, dYblk, C, qkv.subarray(v), C3, 0, dP, n);
      sgemm(true, false, n, hd, n, 1, Pblk, n, dYblk, C, 0, dqkv.subarray(v), C3);
      softmaxRowsBackward(Pblk, dP, 0, n, n, scale, lo, hi);
      sgemm(false, false, n, hd, n, 1, dP, n, qkv.subarray(k), C3, 0, dqkv.subarray(q), C3);
      sgemm(true, false, n, hd, n, 1, dP, n, qkv.subarray(q), C3, 0, dqkv.subarray(k), C3);
    }
  }
}

/** bidirectionalAttentionForward / Backward as one tape node on qkv (nImg·n, 3·H·hd). */
export function bidirectionalSelfAttention(qkv: tf.Tensor2D, nImg: number, n: number, H: number): tf.Tensor2D {
  const [rows, width] = qkv.shape;
  const C = width / 3;
  const hd = C / H;
  if (rows !== nImg * n || !Number.isInteger(hd)) throw new UvuError(`bidirectionalSelfAttention: qkv [${qkv.shape}] does not fit ${nImg} images × ${n} tokens × 3·${H} heads`);
  const shape = { nImg, n, H, hd };
  const op = tf.customGrad((x) => {
    const xv = f32(x as tf.Tensor);
    const P = new Float32Array(nImg * H * n * n);
    const scratch = bidirectionalScratch(n);
    const y = new Float32Array(rows * C);
    bidirectionalAttentionForward(xv, y, P, scratch, shape);
    return {
      value: tf.tensor2d(y, [rows, C]),
      gradFunc: (dy: tf.Tensor) => {
        const dx = new Float32Array(rows * width);
        bidirectionalAttentionBackward(f32(dy), xv, P, dx, scratch, shape);
        return tf.tensor2d(dx, [rows, width]);
      },
    };
  });
  return op(qkv) as tf.Tensor2D;
}
