/**
 * The vision tower of the training step (issue 13, target 1): forward + backward of the ViT,
 * post-LayerNorm, 2×2 merge and projector on the images of bench/train.ts makeBatch (B = 2), in
 * the tape-free VisionStep (src/model/vision-step.ts) and on the tfjs tape (UvuModel.encodeImages
 * under tf.variableGrads, gradients read back as Float32Arrays), for the loss
 * sum(features ⊙ ∂features) with a fixed random ∂features.
 *
 * Runs alternate between the two paths (ROUNDS rounds, each one timed run of each after warm-up),
 * so that load from other processes hits both alike; rows give best-of and median times and the
 * tape / tape-free ratio, at the BLAS thread counts of THREADS (the other kernels are single-threaded);
 * at 1 thread also the median process CPU time, which load from other processes barely changes.
 *
 * Standalone: node dist/bench/vision-step.js [--size small]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initEngine, tf } from '../src/engine/tf.js';
import { withBlasThreads } from '../src/linalg/blas.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel } from '../src/model/model.js';
import { VisionStep } from '../src/model/vision-step.js';
import type { GradMap } from '../src/optim/adamw.js';
import { Vocab } from '../src/tokens/vocab.js';
import { Rng } from '../src/util/rng.js';
import { makeBatch } from './train.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

const THREADS = [2, 1];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Wall and process CPU seconds of one call of fn. */
function seconds(fn: () => void): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1e3, cpu: (c.user + c.system) / 1e6 };
}

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  await initEngine('blas');
  const full = o.size === 'full';
  const configFile = full ? 'configs/reference.json' : 'configs/tiny.json';
  const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { model: unknown };
  const modelConfig = ModelConfigSchema.parse(raw.model);
  const rounds = full ? 15 : 3;
  const vocab = new Vocab({ textSize: 1024, K: 1024 });
  const { inputs } = await makeBatch(vocab, 2, full ? 256 : 128);
  const images = inputs.images;
  const model = UvuModel.init(modelConfig, vocab, 0);
  const C = modelConfig.text_config.hidden_size;
  const nVis = images.reduce((a, im) => a + im.rows * im.cols, 0);
  const rng = new Rng(1);
  const dFeat = Float32Array.from({ length: nVis * C }, () => rng.normal());
  const dFeatT = tf.tensor2d(dFeat, [nVis, C]);
  const names = [...model.params.keys()].filter((n) => n.startsWith('visual.'));
  const vars = names.map((n) => model.params.get(n)!);

  const tape = (): void => {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.encodeImages(images), dFeatT)) as tf.Scalar, vars);
    for (const g of Object.values(grads)) {
      g.dataSync();
      g.dispose();
    }
    value.dispose();
  };
  const step = new VisionStep(model);
  const grads: GradMap = new Map(names.map((n) => [n, new Float32Array(model.params.get(n)!.size)]));
  const tapeFree = (): void => {
    for (const g of grads.values()) g.fill(0);
    step.forward(images);
    step.backward(dFeat, grads);
  };

  const grids = images.map((im) => `${im.rows}×${im.cols}`).join(', ');
  const v = modelConfig.vision_config;
  const config = `${configFile} ViT (hidden ${v.hidden_size}, ${v.num_hidden_layers} layers, ${v.num_attention_heads} heads, MLP ${v.intermediate_size}), images of makeBatch: ${grids} patches of 32 px`;
  const rows: BenchRow[] = [];
  for (const threads of THREADS) {
    await withBlasThreads(threads, async () => {
      tape();
      tapeFree();
      const tTape: number[] = [];
      const tStep: number[] = [];
      const cTape: number[] = [];
      const cStep: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const a = seconds(tape);
        const b = seconds(tapeFree);
        tTape.push(a.wall);
        cTape.push(a.cpu);
        tStep.push(b.wall);
        cStep.push(b.cpu);
      }
      const ms = (s: number): string => `${(s * 1e3).toFixed(2)} ms`;
      const bestTape = Math.min(...tTape);
      const bestStep = Math.min(...tStep);
      rows.push(
        { bench: 'vision-step', config, metric: `tfjs tape fwd+bwd, ${threads} BLAS thread${threads > 1 ? 's' : ''} (best of ${rounds})`, value: bestTape * 1e3, unit: 'ms', note: `median ${ms(median(tTape))}` },
        { bench: 'vision-step', config, metric: `VisionStep fwd+bwd, ${threads} BLAS thread${threads > 1 ? 's' : ''} (best of ${rounds})`, value: bestStep * 1e3, unit: 'ms', note: `median ${ms(median(tStep))}` },
        { bench: 'vision-step', config, metric: `speed-up tape / VisionStep, ${threads} thread${threads > 1 ? 's' : ''} (best, interleaved)`, value: bestTape / bestStep, unit: '×', note: `median ratio ${(median(tTape) / median(tStep)).toFixed(2)}` },
      );
      if (threads === 1) {
        rows.push({ bench: 'vision-step', config, metric: 'speed-up tape / VisionStep, 1 thread, median CPU time', value: median(cTape) / median(cStep), unit: '×', note: `tape ${ms(median(cTape))}, VisionStep ${ms(median(cStep))} of process CPU time` });
      }
    });
  }
  dFeatT.dispose();
  model.dispose();
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size: BenchSize = process.argv.includes('--size') && process.argv[process.argv.indexOf('--size') + 1] === 'small' ? 'small' : 'full';
  console.log(formatRows(await run({ size })));
}
