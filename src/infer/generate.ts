/**
 * Autoregressive decoding for one sequence: greedy (temperature 0) or temperature sampling, with
 * the candidate ids restricted to a range (text answers never emit image codes; image completion
 * emits only image codes). Generated image codes are fed back through their embedding rows
 * (DESIGN §6). The prompt runs through the model once, filling a key/value cache; each new token
 * then costs one single-position step (src/model/kv-cache.ts). `kvCache: false` re-runs the whole
 * prefix for every token instead: the reference the cached path is tested against.
 */
import { tf } from '../engine/tf.js';
import { UvuError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { KvDecoder } from '../model/kv-cache.js';
import type { ImageInput, UvuModel } from '../model/model.js';

export interface GenerateOptions {
  /** Stop after this many new tokens. */
  maxNewTokens: number;
  /** Candidate ids are [allowFrom, allowTo). */
  allowFrom: number;
  allowTo: number;
  /** Ids inside the range that may never be chosen (e.g. <bos>, <img> in a text answer). */
  bannedIds?: number[];
  /** Ids that end generation (included in the output). */
  stopIds?: number[];
  /** 0: greedy argmax; > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  rng?: Rng;
  /** Called with each new id as soon as it is chosen (streaming). */
  onToken?: (id: number) => void;
  /** true (default): prefill once, then one cached step per token; false: re-run the whole prefix per token. */
  kvCache?: boolean;
}

/** Ids generated after `prefix` (whose images, row 0, give the visual positions' features). */
export function generate(model: UvuModel, prefix: number[], images: ImageInput[], o: GenerateOptions): number[] {
  const temperature = o.temperature ?? 0;
  if (temperature > 0 && !o.rng) throw new UvuError('generate: temperature sampling needs an rng');
  const maxT = model.config.text_config.max_position_embeddings;
  const ids = [...prefix];
  const out: number[] = [];
  const decoder = (o.kvCache ?? true) && o.maxNewTokens > 0 && ids.length < maxT ? new KvDecoder(model, maxT) : null;
  while (out.length < o.maxNewTokens && ids.length < maxT) {
    const logits = decoder
      ? decoder.length === 0
        ? decoder.prefill(ids, images)
        : decoder.step(ids[ids.length - 1]!)
      : tf.tidy(() => {
          const hidden = model.forwardHidden({ B: 1, T: ids.length, ids: Int32Array.from(ids), images });
          const last = tf.slice(hidden, [ids.length - 1, 0], [1, hidden.shape[1]]);
          return model.logits(last).dataSync() as Float32Array;
        });
    for (const b of o.bannedIds ?? []) logits[b] = -Infinity;
    const id = pick(logits, o.allowFrom, o.allowTo, temperature, o.rng);
    ids.push(id);
    out.push(id);
    o.onToken?.(id);
    if (o.stopIds?.includes(id)) break;
  }
  return out;
}

/** Argmax, or a sample at the given temperature, over logits[from, to). */
function pick(logits: Float32Array, from: number, to: number, temperature: number, rng?: Rng): number {
  let best = from;
  while (best < to - 1 && logits[best] === -Infinity) best++;
  for (let i = from + 1; i < to; i++) if (logits[i]! > logits[best]!) best = i;
  if (temperature <= 0) return best;
  const max = logits[best]!;
  let sum = 0;
  const p = new Float64Array(to - from);
  for (let i = from; i < to; i++) sum += p[i - from] = Math.exp((logits[i]! - max) / temperature);
  let u = rng!.next() * sum;
  for (let i = 0; i < p.length; i++) {
    u -= p[i]!;
    if (u <= 0) return from + i;
  }
  return to - 1;
}
