/**
 * The Node side of bench/torch_reference.py (the model in plain PyTorch): writes a model's weights
 * and a batch as safetensors, runs the reference under Debian's /usr/bin/python3 (python3-torch),
 * and reads back what it computed. Used by test/torch-reference.test.ts (logits, losses, gradients)
 * and bench/train-vs-torch.ts (training speed).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, writeSafetensors, type Tensor } from '../src/io/safetensors.js';
import type { ModelInputs, UvuModel } from '../src/model/model.js';
import type { LossTargets, LossWeights } from '../src/train/loss.js';

/** The interpreter python3-torch installs into (the pyenv python3 on PATH has no torch). */
export const TORCH_PYTHON = '/usr/bin/python3';
/** bench/torch_reference.py, found from this file (dist/bench/… → bench/…). */
export const TORCH_SCRIPT = fileURLToPath(new URL('../../bench/torch_reference.py', import.meta.url));

/** The torch version /usr/bin/python3 imports, or null when it has none. */
export function torchVersion(): string | null {
  const r = spawnSync(TORCH_PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Writes `dir`/model.safetensors and `dir`/batch.safetensors for the reference. */
export function writeReferenceInputs(dir: string, model: UvuModel, inputs: ModelInputs, t: LossTargets, w: LossWeights, extra: Record<string, Tensor> = {}): void {
  const weights: Record<string, Tensor> = {};
  for (const [name, p] of model.params) weights[name] = { dtype: 'F32', shape: p.shape, data: Float32Array.from(p.dataSync() as Float32Array) };
  writeSafetensors(join(dir, 'model.safetensors'), weights, { model_config: JSON.stringify(model.config) });
  const N = inputs.B * inputs.T;
  const tensors: Record<string, Tensor> = {
    ids: { dtype: 'I32', shape: [N], data: inputs.ids },
    targets: { dtype: 'I32', shape: [N], data: t.targets },
    text_mask: { dtype: 'F32', shape: [N], data: t.textMask },
    image_mask: { dtype: 'F32', shape: [N], data: t.imageMask },
    ...extra,
  };
  inputs.images.forEach((im, j) => {
    tensors[`image.${j}`] = { dtype: 'U8', shape: [im.rows * 32, im.cols * 32, 3], data: im.pixels };
  });
  const images = inputs.images.map(({ row, start, rows, cols }) => ({ row, start, rows, cols }));
  writeSafetensors(join(dir, 'batch.safetensors'), tensors, { batch: JSON.stringify({ B: inputs.B, T: inputs.T, images, loss_weights: w }) });
}

function runPython(args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(TORCH_PYTHON, [TORCH_SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${TORCH_SCRIPT} ${args[0]} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

/** Reference logits (supervised rows), losses and gradients for the inputs in `dir`. */
export function torchCheck(dir: string): Record<string, Tensor> {
  const out = join(dir, 'torch-out.safetensors');
  runPython(['check', join(dir, 'model.safetensors'), join(dir, 'batch.safetensors'), out]);
  return readSafetensors(out).tensors;
}

/** Wall and CPU seconds of `steps` PyTorch training steps (after a warm-up step) on `threads` threads, passive OpenMP wait. */
export function torchStepSeconds(dir: string, threads: number, steps: number): { seconds: number[]; cpu: number[]; torch: string } {
  const stdout = runPython(['speed', join(dir, 'model.safetensors'), join(dir, 'batch.safetensors'), '--threads', String(threads), '--steps', String(steps)], {
    OMP_WAIT_POLICY: 'PASSIVE',
    OMP_NUM_THREADS: String(threads),
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { seconds: number[]; cpu: number[]; torch: string };
}
