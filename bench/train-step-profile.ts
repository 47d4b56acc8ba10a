/**
 * The tape-free training step alone, for a CPU profile (the table in BENCHMARKS.md's
 * train-vs-torch section): STEPS steps (default 20) of the reference config's batch
 * (bench/train.ts makeBatch, B = 2, T = 256) on one BLAS thread — zero the gradients, forward,
 * backward, clip, AdamW — then the median milliseconds of each phase.
 *
 *   npm run build && STEPS=20 node --cpu-prof --cpu-prof-dir=prof dist/bench/train-step-profile.js
 */
import { readFileSync } from 'node:fs';
import { initEngine } from '../src/engine/tf.js';
import { withBlasThreads } from '../src/linalg/blas.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel } from '../src/model/model.js';
import { TrainStep } from '../src/model/train-step.js';
import { AdamW, clipGradients, type GradMap } from '../src/optim/adamw.js';
import { TrainConfigSchema } from '../src/train/config.js';
import { Vocab } from '../src/tokens/vocab.js';
import { makeBatch } from './train.js';

await initEngine('blas');
const raw = JSON.parse(readFileSync('configs/reference.json', 'utf8')) as { model: unknown; optim: unknown };
const optim = TrainConfigSchema.shape.optim.parse(raw.optim);
const model = UvuModel.init(ModelConfigSchema.parse(raw.model), new Vocab({ textSize: 1024, K: 1024 }), 0);
const { inputs, targets } = await makeBatch(model.vocab, 2, 256);
const weights = { image: 0.5, text: 1 };
const optimizer = new AdamW(model.params, optim);
const step = new TrainStep(model);
const grads: GradMap = new Map([...model.params].map(([name, v]) => [name, new Float32Array(v.size)]));
const ms = { forward: [] as number[], backward: [] as number[], 'clip + AdamW': [] as number[] };
const steps = Number(process.env['STEPS'] ?? 20);
await withBlasThreads(1, async () => {
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    for (const g of grads.values()) g.fill(0);
    step.forward(inputs, targets, weights);
    const t1 = performance.now();
    step.backward(grads, weights);
    const t2 = performance.now();
    clipGradients(grads, optim.grad_clip);
    optimizer.step(grads, optim.lr);
    ms.forward.push(t1 - t0);
    ms.backward.push(t2 - t1);
    ms['clip + AdamW'].push(performance.now() - t2);
  }
});
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`${steps} steps, median ms: ${Object.entries(ms).map(([k, v]) => `${k} ${median(v).toFixed(1)}`).join(', ')}`);
model.dispose();
