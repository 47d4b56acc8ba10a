/**
 * Matrix-product throughput of the autograd engine's backends (src/engine/tf.ts) on the
 * products of a small transformer (width C = 256, MLP width 768, 8 heads of 32):
 * uvu-blas (tfjs-backend-cpu with BatchMatMul on sgemm) against the stock tfjs 'cpu' and
 * 'wasm' backends, in the same run. Sizes: full = B·T = 2048 rows and T = 256 for
 * attention, small = 512 and 128. Each product: best of 3, repetitions alternating over
 * the backends so background load hits them alike; time = tf.matMul + reading the result.
 *
 * Standalone: node dist/bench/engine.js [--size small|full]
 */
import { fileURLToPath } from 'node:url';
import { tf, activeEngine, initEngine, BACKEND_OF, type EngineName } from '../src/engine/tf.js';
import { blasInfo } from '../src/linalg/blas.js';
import { Rng } from '../src/util/rng.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

const REPEATS = 3;
const ENGINES: EngineName[] = ['blas', 'cpu', 'wasm'];

interface Product {
  config: string;
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
  /** 2·batch·M·N·K */
  flop: number;
}

function products(size: BenchSize): Product[] {
  const rows = size === 'full' ? 2048 : 512; // B·T
  const T = size === 'full' ? 256 : 128;
  const C = 256, F = 768, H = 8, hd = 32;
  return [
    { config: `${rows}×${C} · ${C}×${F} (qkv / MLP in, forward)`, a: [rows, C], b: [C, F], transposeA: false, transposeB: false, flop: 2 * rows * C * F },
    { config: `${rows}×${F} · ${F}×${C} (MLP out, forward)`, a: [rows, F], b: [F, C], transposeA: false, transposeB: false, flop: 2 * rows * F * C },
    { config: `(${rows}×${C})ᵀ · ${rows}×${F} (weight gradient)`, a: [rows, C], b: [rows, F], transposeA: true, transposeB: false, flop: 2 * rows * C * F },
    { config: `[${H},${T},${hd}] × [${H},${hd},${T}] (attention scores)`, a: [H, T, hd], b: [H, hd, T], transposeA: false, transposeB: false, flop: 2 * H * T * T * hd },
  ];
}

function uniform(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = 2 * rng.next() - 1;
  return a;
}

/** Seconds for one product and its values. */
function timeProduct(a: tf.Tensor, b: tf.Tensor, p: Product): { seconds: number; values: Float32Array } {
  const t0 = performance.now();
  const c = tf.matMul(a, b, p.transposeA, p.transposeB);
  const values = c.dataSync() as Float32Array;
  const seconds = (performance.now() - t0) / 1e3;
  c.dispose();
  return { seconds, values };
}

/** max |x − ref| / max |ref| */
function relDiff(x: Float32Array, ref: Float32Array): number {
  let d = 0, s = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(x[i]! - ref[i]!));
    s = Math.max(s, Math.abs(ref[i]!));
  }
  return d / s;
}

export async function benchEngine(size: BenchSize): Promise<BenchRow[]> {
  await initEngine();
  const previous = activeEngine()!;
  const info = blasInfo();
  const notes: Record<EngineName, string> = {
    blas: `sgemm on ${info.backend} ${info.library ?? ''} threads=${info.threads ?? '?'}`.replace('  ', ' '),
    cpu: 'tfjs-backend-cpu, JS triple loop, one thread',
    wasm: 'tfjs-backend-wasm, one thread under Node',
  };
  const rows: BenchRow[] = [];
  const rng = new Rng(3);
  try {
    await initEngine('wasm');
    notes.wasm += `, SIMD ${(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) ? 'on' : 'off'}`;
    for (const p of products(size)) {
      const va = uniform(rng, p.a.reduce((x, y) => x * y, 1));
      const vb = uniform(rng, p.b.reduce((x, y) => x * y, 1));
      const inputs = new Map<EngineName, [tf.Tensor, tf.Tensor]>();
      const best = new Map<EngineName, number>();
      const values = new Map<EngineName, Float32Array>();
      for (const engine of ENGINES) {
        await initEngine(engine);
        const pair: [tf.Tensor, tf.Tensor] = [tf.tensor(va, p.a), tf.tensor(vb, p.b)];
        inputs.set(engine, pair);
        values.set(engine, timeProduct(pair[0], pair[1], p).values); // warm-up (JIT, BLAS threads, wasm memory)
        best.set(engine, Infinity);
      }
      for (let rep = 0; rep < REPEATS; rep++) {
        for (const engine of ENGINES) {
          await initEngine(engine);
          const [a, b] = inputs.get(engine)!;
          best.set(engine, Math.min(best.get(engine)!, timeProduct(a, b, p).seconds));
        }
      }
      const gflops = (engine: EngineName) => p.flop / best.get(engine)! / 1e9;
      for (const engine of ENGINES) {
        const diff = engine === 'blas' ? '' : `; max rel. diff to uvu-blas ${relDiff(values.get(engine)!, values.get('blas')!).toExponential(1)}`;
        rows.push({ bench: 'engine', config: `${BACKEND_OF[engine]} matMul ${p.config}`, metric: 'throughput', value: gflops(engine), unit: 'GFLOP/s', note: `${(best.get(engine)! * 1e3).toFixed(2)} ms; ${notes[engine]}${diff}` });
      }
      rows.push({ bench: 'engine', config: `uvu-blas vs cpu, ${p.config}`, metric: 'speed-up', value: gflops('blas') / gflops('cpu'), unit: '×' });
      rows.push({ bench: 'engine', config: `uvu-blas vs wasm, ${p.config}`, metric: 'speed-up', value: gflops('blas') / gflops('wasm'), unit: '×' });
      for (const [a, b] of inputs.values()) tf.dispose([a, b]);
    }
  } finally {
    await initEngine(previous);
  }
  return rows;
}

/** The bench/run.ts interface. */
export function run(opts: { size: BenchSize }): Promise<BenchRow[]> {
  return benchEngine(opts.size);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--size');
  const size = (i >= 0 ? process.argv[i + 1] : 'small') as BenchSize;
  if (size !== 'small' && size !== 'full') {
    process.stderr.write('usage: node dist/bench/engine.js [--size small|full]\n');
    process.exit(2);
  }
  process.stdout.write(formatRows(await benchEngine(size)) + '\n');
}
