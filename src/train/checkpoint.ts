/**
 * Checkpoints: one directory holding everything needed to resume training or run the model.
 *
 *   model.safetensors      every parameter (F32, Hugging Face names/layouts); metadata: model config, vocab
 *   optimizer.safetensors  AdamW moments m.<name>, v.<name>; metadata: update count
 *   tokenizer.json         the text tokenizer (Hugging Face format)
 *   state.json             step, run config, dataset facts, and the sha256 of each file above
 *
 * A checkpoint is written into a temporary sibling directory and swapped in by rename, so an
 * interrupted write leaves the previous checkpoint intact. Loading verifies every file's sha256
 * and shape before any weight is used: a corrupt checkpoint is refused, never half-loaded.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { readSafetensors, writeSafetensors, type Tensor } from '../io/safetensors.js';
import { ModelConfigSchema } from '../model/config.js';
import { UvuModel, variableFrom } from '../model/model.js';
import { Vocab } from '../tokens/vocab.js';
import { sha256File } from '../util/fsio.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError } from '../util/errors.js';
import type { AdamW, AdamWState } from '../optim/adamw.js';

export const CHECKPOINT_FORMAT = 'uvu-checkpoint';
const FILES = ['model.safetensors', 'optimizer.safetensors', 'tokenizer.json'] as const;

/** Facts about the data a checkpoint was trained on, needed to run it on new images. */
export const DataFactsSchema = z.object({
  /** Image coder the targets came from (for complete-image reconstruction). */
  imageCoder: z.object({ kind: z.enum(['codebook', 'vq']), path: z.string(), sha256: z.string(), K: z.number().int().nonnegative() }),
  /** Images are resized to at most this many pixels, sides multiples of 32 (DESIGN §1). */
  maxPixels: z.number().int().positive(),
  /** Context length of the training rows. */
  contextLength: z.number().int().positive(),
});
export type DataFacts = z.infer<typeof DataFactsSchema>;

const StateSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  version: z.literal(1),
  /** Optimizer steps completed. */
  step: z.number().int().nonnegative(),
  /** The run config (as validated) that produced this checkpoint. */
  trainConfig: z.record(z.string(), z.unknown()),
  data: DataFactsSchema,
  files: z.record(z.string(), z.string()),
});
export type CheckpointState = z.infer<typeof StateSchema>;

export interface LoadedCheckpoint {
  model: UvuModel;
  state: CheckpointState;
  tokenizerJson: string;
  /** Present when loaded with optimizer state. */
  optimizer?: AdamWState;
}

/** Write a checkpoint directory atomically (temp dir + rename). */
export function saveCheckpoint(
  dir: string,
  args: { model: UvuModel; optimizer: AdamW; tokenizerJson: string; step: number; trainConfig: object; data: DataFacts },
): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const { model } = args;
  const { t, m, v } = args.optimizer.state();
  const weights: Record<string, Tensor> = {};
  const moments: Record<string, Tensor> = {};
  for (const [name, p] of model.params) {
    weights[name] = { dtype: 'F32', shape: p.shape, data: Float32Array.from(p.dataSync() as Float32Array) };
    moments[`m.${name}`] = { dtype: 'F32', shape: p.shape, data: m.get(name)! };
    moments[`v.${name}`] = { dtype: 'F32', shape: p.shape, data: v.get(name)! };
  }
  writeSafetensors(join(tmp, 'model.safetensors'), weights, {
    format: 'uvu-model',
    model_config: JSON.stringify(model.config),
    vocab: JSON.stringify(model.vocab.toJSON()),
  });
  writeSafetensors(join(tmp, 'optimizer.safetensors'), moments, { format: 'uvu-adamw', t: String(t) });
  writeFileAtomic(join(tmp, 'tokenizer.json'), args.tokenizerJson);
  const files: Record<string, string> = {};
  for (const f of FILES) files[f] = sha256File(join(tmp, f));
  const state: CheckpointState = {
    format: CHECKPOINT_FORMAT,
    version: 1,
    step: args.step,
    trainConfig: args.trainConfig as Record<string, unknown>,
    data: args.data,
    files,
  };
  writeFileAtomic(join(tmp, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  // Swap: the old checkpoint is removed only once the new one is complete and in place.
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

/** Read and verify a checkpoint directory; the model's variables are created only after every check passes. */
export function loadCheckpoint(dir: string, opts: { withOptimizer?: boolean } = {}): LoadedCheckpoint {
  const statePath = join(dir, 'state.json');
  if (!existsSync(statePath)) throw new UvuError(`${dir}: not a checkpoint (no state.json)`);
  let state: CheckpointState;
  try {
    state = StateSchema.parse(JSON.parse(readFileSync(statePath, 'utf8')));
  } catch (err) {
    throw new UvuError(`${statePath}: corrupt checkpoint state: ${(err as Error).message.split('\n')[0]}`);
  }
  for (const f of FILES) {
    const path = join(dir, f);
    if (!existsSync(path)) throw new UvuError(`${path}: missing from checkpoint`);
    if (sha256File(path) !== state.files[f]) throw new UvuError(`${path}: corrupt checkpoint (sha256 does not match state.json)`);
  }
  const modelFile = readSafetensors(join(dir, 'model.safetensors'));
  const meta = modelFile.metadata;
  if (meta.format !== 'uvu-model') throw new UvuError(`${join(dir, 'model.safetensors')}: not a uvu model file`);
  const config = ModelConfigSchema.parse(JSON.parse(meta.model_config ?? '{}'));
  const vocab = new Vocab(JSON.parse(meta.vocab ?? '{}'));
  const model = new UvuModel(config, vocab);
  const shapes = model.paramShapes();
  for (const [name, shape] of shapes) {
    const t = modelFile.tensors[name];
    if (!t || t.dtype !== 'F32' || t.shape.join(',') !== shape.join(',')) {
      throw new UvuError(`${join(dir, 'model.safetensors')}: parameter ${name} missing or not F32 [${shape.join(', ')}]`);
    }
  }
  let optimizer: LoadedCheckpoint['optimizer'];
  if (opts.withOptimizer) {
    const opt = readSafetensors(join(dir, 'optimizer.safetensors'));
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const [name, shape] of shapes) {
      const tm = opt.tensors[`m.${name}`];
      const tv = opt.tensors[`v.${name}`];
      const n = shape.reduce((a, b) => a * b, 1);
      if (!tm || !tv || tm.data.length !== n || tv.data.length !== n) throw new UvuError(`${join(dir, 'optimizer.safetensors')}: moments of ${name} missing or mis-sized`);
      m.set(name, Float32Array.from(tm.data as Float32Array));
      v.set(name, Float32Array.from(tv.data as Float32Array));
    }
    optimizer = { t: Number(opt.metadata.t ?? 0), m, v };
  }
  for (const [name, shape] of shapes) {
    model.params.set(name, variableFrom(Float32Array.from(modelFile.tensors[name]!.data as Float32Array), shape));
  }
  return { model, state, tokenizerJson: readFileSync(join(dir, 'tokenizer.json'), 'utf8'), optimizer };
}
