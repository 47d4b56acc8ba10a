/**
 * Checkpoints: one directory holding everything needed to resume training or run the model.
 *
 *   model.safetensors      every parameter (F32, Hugging Face names/layouts); metadata: model config, vocab
 *   optimizer.safetensors  AdamW moments m.<name>, v.<name>; metadata: update count
 *   tokenizer.json         the text tokenizer (Hugging Face format)
 *   state.json             step, run config, dataset facts, and the sha256 of each file above
 *
 * A checkpoint is written into a temporary sibling directory `DIR.tmp-PID` and swapped in by two
 * renames (DIR → DIR.old-PID, DIR.tmp-PID → DIR), so an interrupted write leaves the previous
 * checkpoint intact. A crash between the two renames leaves no DIR but two complete siblings:
 * loading then uses the newest intact one (findCheckpoint), so at most `checkpoint_every` steps
 * are lost. Loading verifies state.json against its schema, every file's sha256, the model config
 * and vocabulary in the model file's metadata (schemas), and every tensor's dtype, shape and
 * finiteness before any weight is used: a corrupt checkpoint is refused, never half-loaded.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { metadataJson, readSafetensors, writeSafetensors, type Tensor } from '../io/safetensors.js';
import { ModelConfigSchema } from '../model/config.js';
import { UvuModel, variableFrom } from '../model/model.js';
import { parseVocab } from '../tokens/vocab.js';
import { parseOrFail, readJsonFile, sha256File } from '../util/fsio.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError, warnOnce } from '../util/errors.js';
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

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 (64 lowercase hex digits)');

const StateSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  version: z.literal(1),
  /** Optimizer steps completed. */
  step: z.number().int().nonnegative(),
  /** The run config (as validated) that produced this checkpoint. */
  trainConfig: z.record(z.string(), z.unknown()),
  data: DataFactsSchema,
  /** sha256 of each file of the checkpoint. */
  files: z.object({ 'model.safetensors': sha256, 'optimizer.safetensors': sha256, 'tokenizer.json': sha256 }),
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
  const files = {} as CheckpointState['files'];
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
  // Leftovers of an interrupted swap (another process's DIR.tmp-PID / DIR.old-PID) are stale now.
  for (const sibling of swapSiblings(dir)) rmSync(sibling, { recursive: true, force: true });
}

/** The DIR.tmp-PID and DIR.old-PID directories beside `dir` (a swap in progress or interrupted). */
function swapSiblings(dir: string): string[] {
  const parent = dirname(dir);
  const base = basename(dir);
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(`${base}.`) && /^\.(tmp|old)-\d+$/.test(n.slice(base.length))).map((n) => join(parent, n));
}

/** Read state.json of checkpoint directory `dir` and check it against its schema. */
function readState(dir: string): CheckpointState {
  const statePath = join(dir, 'state.json');
  return parseOrFail(StateSchema, readJsonFile(statePath, 'checkpoint state'), `${statePath}: not a valid checkpoint state`);
}

/** state.json of `dir`, after checking that every file it lists is present with its recorded sha256. */
function verifiedState(dir: string): CheckpointState {
  const state = readState(dir);
  for (const f of FILES) {
    const path = join(dir, f);
    if (!existsSync(path)) throw new UvuError(`${path}: missing from checkpoint`);
    if (sha256File(path) !== state.files[f]) throw new UvuError(`${path}: corrupt checkpoint (sha256 does not match state.json)`);
  }
  return state;
}

/**
 * The directory to load for checkpoint `dir`: `dir` itself when it holds a state.json; when `dir`
 * is missing because a save was interrupted between its two renames, the newest intact
 * DIR.tmp-PID or DIR.old-PID sibling (state.json valid, every sha256 matching; a warning says
 * which); null when there is neither.
 */
export function findCheckpoint(dir: string): string | null {
  if (existsSync(join(dir, 'state.json'))) return dir;
  if (existsSync(dir)) return null;
  let best: { path: string; step: number; tmp: boolean } | null = null;
  for (const path of swapSiblings(dir)) {
    let step: number;
    try {
      step = verifiedState(path).step;
    } catch {
      continue; // incomplete (the write was interrupted) or damaged: not a candidate
    }
    const tmp = /\.tmp-\d+$/.test(path);
    if (!best || step > best.step || (step === best.step && tmp && !best.tmp)) best = { path, step, tmp };
  }
  if (best) warnOnce(`checkpoint-swap-${dir}`, `${dir} is missing (a checkpoint write was interrupted); using the intact copy ${best.path} at step ${best.step}`);
  return best?.path ?? null;
}

/** Index of the first non-finite value of `a`, or -1. */
function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
  return -1;
}

/** A tensor of a checkpoint file checked to be F32 of `shape` with finite values. */
function checkedF32(path: string, name: string, t: Tensor | undefined, shape: number[]): Float32Array {
  if (!t || t.dtype !== 'F32' || t.shape.join(',') !== shape.join(',')) {
    throw new UvuError(`${path}: tensor ${name} missing or not F32 [${shape.join(', ')}]${t ? ` (it is ${t.dtype} ${JSON.stringify(t.shape)})` : ''}`);
  }
  const data = t.data as Float32Array;
  const bad = firstNonFinite(data);
  if (bad >= 0) throw new UvuError(`${path}: tensor ${name} has a non-finite value (${data[bad]}) at element ${bad}`);
  return data;
}

/**
 * Read and verify a checkpoint directory (or, after an interrupted save, its intact copy: see
 * findCheckpoint); the model's variables are created only after every check passes.
 */
export function loadCheckpoint(dir: string, opts: { withOptimizer?: boolean } = {}): LoadedCheckpoint {
  const found = findCheckpoint(dir);
  if (found === null) throw new UvuError(`${dir}: not a checkpoint (no state.json)`);
  dir = found;
  const state = verifiedState(dir);
  const modelPath = join(dir, 'model.safetensors');
  const modelFile = readSafetensors(modelPath);
  const meta = modelFile.metadata;
  if (meta.format !== 'uvu-model') throw new UvuError(`${modelPath}: not a uvu model file (metadata "format" is ${JSON.stringify(meta.format)})`);
  const config = parseOrFail(ModelConfigSchema, metadataJson(meta, 'model_config', modelPath), `${modelPath}: metadata "model_config"`);
  const vocab = parseVocab(metadataJson(meta, 'vocab', modelPath), `${modelPath}: metadata "vocab"`);
  const model = new UvuModel(config, vocab);
  const shapes = model.paramShapes();
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) weights.set(name, checkedF32(modelPath, `parameter ${name}`, modelFile.tensors[name], shape));
  const extra = Object.keys(modelFile.tensors).filter((n) => !weights.has(n));
  if (extra.length) throw new UvuError(`${modelPath}: ${extra.length} tensor(s) that the model config does not have (${extra.slice(0, 3).join(', ')})`);
  let optimizer: LoadedCheckpoint['optimizer'];
  if (opts.withOptimizer) {
    const optPath = join(dir, 'optimizer.safetensors');
    const opt = readSafetensors(optPath);
    if (opt.metadata.format !== 'uvu-adamw') throw new UvuError(`${optPath}: not a uvu optimizer file (metadata "format" is ${JSON.stringify(opt.metadata.format)})`);
    const t = Number(opt.metadata.t ?? 0);
    if (!(Number.isSafeInteger(t) && t >= 0)) throw new UvuError(`${optPath}: metadata "t" is ${JSON.stringify(opt.metadata.t)}, expected a count of updates`);
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    for (const [name, shape] of shapes) {
      m.set(name, Float32Array.from(checkedF32(optPath, `m.${name}`, opt.tensors[`m.${name}`], shape)));
      v.set(name, Float32Array.from(checkedF32(optPath, `v.${name}`, opt.tensors[`v.${name}`], shape)));
    }
    optimizer = { t, m, v };
  }
  for (const [name, shape] of shapes) model.params.set(name, variableFrom(Float32Array.from(weights.get(name)!), shape));
  return { model, state, tokenizerJson: readFileSync(join(dir, 'tokenizer.json'), 'utf8'), optimizer };
}
