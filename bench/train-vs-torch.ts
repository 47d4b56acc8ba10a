/**
 * Training speed against PyTorch on CPU (issue 13, target 1): tokens/s of one full training step —
 * forward, backward over every parameter, gradient clipping to norm 1, AdamW — of the reference
 * config (configs/reference.json, B = 2, T = 256, the batch of bench/train.ts) in uvu and in
 * bench/torch_reference.py (Debian python3-torch, the same architecture, weights and batch).
 *
 * uvu runs its step both ways (train config `step`): the tape-free step (`buffers`, the default,
 * src/model/train-step.ts) and the tfjs tape (`tape`), so the gain shows side by side.
 * Runs alternate between the tools (ROUNDS rounds of STEPS steps each, every round after a
 * warm-up step), so that load from other processes hits all alike; rows give best-of and median
 * step times and the ratio uvu / PyTorch in tokens/s, at 2 threads and at 1 thread each (uvu: the
 * BLAS thread count, its other kernels are single-threaded; PyTorch: torch.set_num_threads and
 * OMP_WAIT_POLICY=PASSIVE). At 1 thread the rows also compare process CPU time per step, which
 * other load on the machine barely changes. Without python3-torch the PyTorch rows are left out,
 * with a note.
 *
 * Standalone: node dist/bench/train-vs-torch.js
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../src/engine/tf.js';
import { withBlasThreads } from '../src/linalg/blas.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel } from '../src/model/model.js';
import { AdamW, clipGradients } from '../src/optim/adamw.js';
import { lossGrads } from '../src/train/grads.js';
import { TrainStep } from '../src/model/train-step.js';
import type { GradMap } from '../src/optim/adamw.js';
import { unifiedLoss } from '../src/train/loss.js';
import { Vocab } from '../src/tokens/vocab.js';
import { makeBatch } from './train.js';
import { torchStepSeconds, torchVersion, writeReferenceInputs } from './torch-reference.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

const THREADS = [2, 1];
/** The two ways uvu computes a step (train config `step`). */
type StepKind = 'buffers' | 'tape';
const KINDS: StepKind[] = ['buffers', 'tape'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  await initEngine('blas');
  const full = o.size === 'full';
  const configFile = full ? 'configs/reference.json' : 'configs/tiny.json';
  const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { model: unknown; optim: { weight_decay: number; beta1: number; beta2: number; eps: number } };
  const modelConfig = ModelConfigSchema.parse(raw.model);
  const B = 2;
  const T = full ? 256 : 128;
  const rounds = full ? 5 : 2;
  const stepsPerRound = 2;
  const vocab = new Vocab({ textSize: 1024, K: 1024 });
  const { inputs, targets } = await makeBatch(vocab, B, T);
  const weights = { image: 0.5, text: 1 };
  const model = UvuModel.init(modelConfig, vocab, 0);
  const optimizer = new AdamW(model.params, { beta1: raw.optim.beta1, beta2: raw.optim.beta2, eps: raw.optim.eps, weight_decay: raw.optim.weight_decay });
  // The tape-free step (train config step: buffers, the default) and the tfjs tape (step: tape).
  const tapeFree = new TrainStep(model);
  const grads: GradMap = new Map([...model.params].map(([name, v]) => [name, new Float32Array(v.size)]));
  const steps: Record<StepKind, () => void> = {
    buffers: () => {
      for (const g of grads.values()) g.fill(0);
      tapeFree.forward(inputs, targets, weights);
      tapeFree.backward(grads, weights);
      clipGradients(grads, 1);
      optimizer.step(grads, 1e-3);
    },
    tape: () => {
      const { grads } = lossGrads(model, () => unifiedLoss(model, inputs, targets, weights).total);
      clipGradients(grads, 1);
      optimizer.step(grads, 1e-3);
    },
  };
  const torch = torchVersion();
  const dir = mkdtempSync(join(tmpdir(), 'uvu-train-vs-torch-'));
  const config = `${configFile}, B=${B}, T=${T}, vocab ${vocab.size}, fwd+bwd+clip+AdamW`;
  const rows: BenchRow[] = [];
  try {
    writeReferenceInputs(dir, model, inputs, targets, weights);
    for (const threads of THREADS) {
      const ours: Record<StepKind, number[]> = { buffers: [], tape: [] };
      const oursCpu: Record<StepKind, number[]> = { buffers: [], tape: [] };
      const theirs: number[] = [];
      const theirsCpu: number[] = [];
      await withBlasThreads(threads, async () => {
        for (let r = 0; r < rounds; r++) {
          for (const kind of KINDS) {
            steps[kind](); // warm-up, as the reference does one per round
            for (let s = 0; s < stepsPerRound; s++) {
              const t0 = performance.now();
              const c0 = process.cpuUsage();
              steps[kind]();
              const c = process.cpuUsage(c0);
              ours[kind].push((performance.now() - t0) / 1e3);
              oursCpu[kind].push((c.user + c.system) / 1e6);
            }
          }
          if (torch) {
            const r = torchStepSeconds(dir, threads, stepsPerRound);
            theirs.push(...r.seconds);
            theirsCpu.push(...r.cpu);
          }
        }
      });
      const tok = B * T;
      const note = (xs: number[]): string => `best ${Math.min(...xs).toFixed(3)} s, median ${median(xs).toFixed(3)} s per step over ${xs.length} steps (${rounds} interleaved rounds)`;
      for (const kind of KINDS) {
        rows.push({ bench: 'train-vs-torch', config, metric: `uvu (step: ${kind}) tokens/s, ${threads} thread(s), best`, value: tok / Math.min(...ours[kind]), unit: 'tokens/s', note: note(ours[kind]) });
      }
      rows.push({ bench: 'train-vs-torch', config, metric: `speed-up buffers / tape, ${threads} thread(s), median`, value: median(ours.tape) / median(ours.buffers), unit: '×', note: 'the tape-free step against the tfjs tape, same run' });
      if (!torch) continue;
      rows.push({ bench: 'train-vs-torch', config, metric: `PyTorch ${torch} tokens/s, ${threads} thread(s), best`, value: tok / Math.min(...theirs), unit: 'tokens/s', note: note(theirs) });
      for (const kind of KINDS) {
        rows.push({ bench: 'train-vs-torch', config, metric: `ratio uvu (step: ${kind}) / PyTorch, ${threads} thread(s), best-of`, value: Math.min(...theirs) / Math.min(...ours[kind]), unit: '×', note: 'target ≥ 1.0' });
        rows.push({ bench: 'train-vs-torch', config, metric: `ratio uvu (step: ${kind}) / PyTorch, ${threads} thread(s), median`, value: median(theirs) / median(ours[kind]), unit: '×', note: 'target ≥ 1.0' });
        if (threads === 1) {
          // On one thread, CPU time per step is the work done, whatever else loads the machine.
          rows.push({ bench: 'train-vs-torch', config, metric: `ratio uvu (step: ${kind}) / PyTorch, 1 thread, median CPU time per step`, value: median(theirsCpu) / median(oursCpu[kind]), unit: '×', note: `uvu ${median(oursCpu[kind]).toFixed(3)} s, PyTorch ${median(theirsCpu).toFixed(3)} s of process CPU time per step` });
        }
      }
    }
    if (!torch) rows.push({ bench: 'train-vs-torch', config, metric: 'PyTorch rows', value: NaN, unit: '', note: '/usr/bin/python3 cannot import torch (apt-get install python3-torch)' });
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(formatRows(await run({ size: process.argv.includes('small') ? 'small' : 'full' })));
}
