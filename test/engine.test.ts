import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initEngine, profileKernels, type EngineName } from '../src/engine/tf.js';
import { UsageError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';

await initEngine();

type Act = 'linear' | 'relu' | 'relu6' | 'elu' | 'prelu' | 'leakyrelu' | 'sigmoid';
const ACTIVATIONS: Act[] = ['linear', 'relu', 'relu6', 'elu', 'prelu', 'leakyrelu', 'sigmoid'];
const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

function uniform(rng: Rng, n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * rng.next() - 1) * scale;
  return a;
}

const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

/** Stored shape of a logical [..., rows, cols] matrix batch, transposed on request. */
function stored(shape: number[], transpose: boolean): number[] {
  if (!transpose) return shape;
  const s = shape.slice();
  [s[s.length - 2], s[s.length - 1]] = [s[s.length - 1]!, s[s.length - 2]!];
  return s;
}

/** Runs `fn` with `engine` as backend and returns the values of its result; restores 'blas'. */
async function valuesOn(engine: EngineName, fn: () => tf.Tensor): Promise<Float32Array> {
  await initEngine(engine);
  try {
    return tf.tidy(() => fn().dataSync() as Float32Array).slice();
  } finally {
    await initEngine('blas');
  }
}

/** |got − want| ≤ rel · max|want| elementwise (and equal lengths). */
function assertClose(got: Float32Array, want: Float32Array, rel: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= rel * scale, `${what}: [${i}] ${got[i]} vs ${want[i]}`);
  }
}

test("uvu-blas registers its own matrix, gather and elementwise kernels and is the default backend", () => {
  assert.equal(tf.getBackend(), 'uvu-blas');
  for (const name of ['BatchMatMul', '_FusedMatMul', 'GatherV2', 'UnsortedSegmentSum', 'Add', 'Sub', 'Multiply', 'RealDiv', 'Softmax', 'Transpose', 'Sum']) {
    assert.notEqual(tf.getKernel(name, 'uvu-blas')!.kernelFunc, tf.getKernel(name, 'cpu')!.kernelFunc, name);
  }
  assert.equal(tf.getKernel('Exp', 'uvu-blas')!.kernelFunc, tf.getKernel('Exp', 'cpu')!.kernelFunc);
});

test('BatchMatMul on uvu-blas equals stock cpu: 2-D, batched, broadcast batch, rank 4, every transpose', async () => {
  // Logical shapes [..., M, K] × [..., K, N].
  const cases: [number[], number[]][] = [
    [[5, 7], [7, 3]],
    [[4, 5, 7], [4, 7, 3]],
    [[1, 3, 4], [2, 4, 5]],
    [[2, 5, 7], [7, 3]], // one B for all batches: a single stacked sgemm unless A is transposed
    [[5, 7], [2, 7, 3]],
    [[2, 3, 5, 7], [2, 3, 7, 4]],
    [[2, 3, 5, 7], [3, 7, 4]],
  ];
  const rng = new Rng(11);
  for (const [la, lb] of cases) {
    for (const [tA, tB] of TRANSPOSES) {
      const sa = stored(la, tA);
      const sb = stored(lb, tB);
      const va = uniform(rng, size(sa), 1);
      const vb = uniform(rng, size(sb), 1);
      const f = () => tf.matMul(tf.tensor(va, sa), tf.tensor(vb, sb), tA, tB);
      const what = `[${sa}]×[${sb}] tA=${tA} tB=${tB}`;
      const want = await valuesOn('cpu', f);
      const got = await valuesOn('blas', f);
      assert.deepEqual(tf.tidy(f).shape, [...(la.length > lb.length ? la : lb).slice(0, -2), la.at(-2)!, lb.at(-1)!], what);
      assertClose(got, want, 1e-4, what);
    }
  }
});

test('BatchMatMul broadcasts batch dims of both inputs like NumPy (compared with cpu on tiled inputs)', async () => {
  const rng = new Rng(12);
  const va = uniform(rng, 2 * 5 * 7, 1);
  const vb = uniform(rng, 3 * 7 * 4, 1);
  const got = await valuesOn('blas', () => tf.matMul(tf.tensor(va, [2, 1, 5, 7]), tf.tensor(vb, [1, 3, 7, 4])));
  const want = await valuesOn('cpu', () =>
    tf.matMul(tf.tile(tf.tensor(va, [2, 1, 5, 7]), [1, 3, 1, 1]), tf.tile(tf.tensor(vb, [1, 3, 7, 4]), [2, 1, 1, 1])),
  );
  assertClose(got, want, 1e-4, '[2,1,5,7]×[1,3,7,4]');
});

test('int32 matMul on uvu-blas goes to the cpu kernel and is exact', async () => {
  const a = Int32Array.from({ length: 12 }, (_, i) => i - 5);
  const b = Int32Array.from({ length: 8 }, (_, i) => 3 - i);
  const f = () => tf.matMul(tf.tensor(a, [3, 4], 'int32'), tf.tensor(b, [4, 2], 'int32'));
  const got = tf.tidy(() => Array.from(f().dataSync()));
  const want: number[] = [];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += a[i * 4 + k]! * b[k * 2 + j]!;
    want.push(s);
  }
  assert.deepEqual(got, want);
});

test('_FusedMatMul on uvu-blas equals stock cpu for every transpose, bias shape and activation, and frees intermediates', async () => {
  const rng = new Rng(13);
  const M = 6, K = 5, N = 4;
  const shapes: [number[], number[]][] = [
    [[M, K], [K, N]],
    [[3, M, K], [3, K, N]],
    [[3, M, K], [K, N]],
  ];
  // Row vectors are added in place; [M, N] goes through the cpu Add kernel.
  const biasShapes: number[][] = [[N], [1, N], [1], [M, N]];
  const run = async (la: number[], lb: number[], tA: boolean, tB: boolean, biasShape: number[] | null, act: Act, alphaShape: number[]) => {
    const sa = stored(la, tA);
    const sb = stored(lb, tB);
    const va = uniform(rng, size(sa), 1.5);
    const vb = uniform(rng, size(sb), 1.5);
    const vbias = biasShape ? uniform(rng, size(biasShape), 1) : null;
    const valpha = uniform(rng, size(alphaShape), 0.5);
    const f = () =>
      tf.fused.matMul({
        a: tf.tensor(va, sa),
        b: tf.tensor(vb, sb),
        transposeA: tA,
        transposeB: tB,
        bias: vbias && biasShape ? tf.tensor(vbias, biasShape) : undefined,
        activation: act,
        preluActivationWeights: act === 'prelu' ? tf.tensor(valpha, alphaShape) : undefined,
        leakyreluAlpha: 0.1,
      });
    const what = `[${sa}]×[${sb}] tA=${tA} tB=${tB} bias=[${biasShape ?? 'none'}] ${act} alpha=[${alphaShape}]`;
    assertClose(await valuesOn('blas', f), await valuesOn('cpu', f), 1e-4, what);
  };
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const dataIdsBefore = backend.numDataIds();
  for (const [la, lb] of shapes) {
    for (const [tA, tB] of TRANSPOSES) {
      for (const act of ACTIVATIONS) await run(la, lb, tA, tB, [N], act, [N]);
    }
  }
  for (const biasShape of [null, ...biasShapes]) {
    for (const act of ACTIVATIONS) await run([M, K], [K, N], false, false, biasShape, act, [N]);
  }
  await run([M, K], [K, N], false, true, [N], 'prelu', [M, N]); // prelu weights through the cpu Prelu kernel
  await run([M, K], [K, N], false, true, [N], 'prelu', [1]);
  assert.equal(backend.numDataIds(), dataIdsBefore, 'tensor data left behind on uvu-blas');
});

/**
 * Central differences of a float64 loss of float32 forward values: for each input element,
 * (L(x + h) − L(x − h)) / (2h) with h the step actually representable in float32.
 */
function finiteDifferences(inputs: Float32Array[], loss: (inputs: Float32Array[]) => number, eps: number): Float64Array[] {
  return inputs.map((x) => {
    const g = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i]!;
      x[i] = x0 + eps;
      const up = x[i]!;
      const lUp = loss(inputs);
      x[i] = x0 - eps;
      const down = x[i]!;
      const lDown = loss(inputs);
      x[i] = x0;
      g[i] = (lUp - lDown) / (up - down);
    }
    return g;
  });
}

function assertGradClose(got: Float32Array, want: Float64Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= 2e-3 + 1e-3 * Math.abs(want[i]!), `${what}[${i}]: autograd ${got[i]} vs finite difference ${want[i]}`);
  }
}

/** Σ w·y + ¼ Σ y² in float64 over float32 values y (quadratic: central differences are exact up to rounding). */
function quadLoss(y: Float32Array, w: Float32Array): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += w[i]! * y[i]! + 0.25 * y[i]! * y[i]!;
  return s;
}
const quadLossTf = (y: tf.Tensor, w: tf.Tensor): tf.Scalar => tf.add(tf.sum(tf.mul(w, y)), tf.mul(0.25, tf.sum(tf.square(y))));

test('gradients of tf.matMul run through the uvu-blas BatchMatMul and match finite differences, broadcast batches included', async () => {
  const rng = new Rng(21);
  // Logical shapes; the broadcast ones need the summing wrapper of src/engine/gradients.ts.
  const cases: [number[], number[]][] = [
    [[2, 3, 4], [2, 4, 5]],
    [[2, 3, 4], [4, 5]],
    [[1, 3, 4], [2, 4, 5]],
  ];
  for (const [[la, lb], [tA, tB]] of cases.flatMap((c) => TRANSPOSES.map((t) => [c, t] as const))) {
    const sa = stored(la, tA);
    const sb = stored(lb, tB);
    const va = uniform(rng, size(sa), 1);
    const vb = uniform(rng, size(sb), 1);
    const w = uniform(rng, 2 * 3 * 5, 1);
    const forward = ([a, b]: Float32Array[]) =>
      tf.tidy(() => quadLoss(tf.matMul(tf.tensor(a!, sa), tf.tensor(b!, sb), tA, tB).dataSync() as Float32Array, w));
    const want = finiteDifferences([va, vb], forward, 1e-2);
    let got: Float32Array[] = [];
    const profile = await profileKernels(() => {
      const wt = tf.tensor(w, [2, 3, 5]);
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => quadLossTf(tf.matMul(a, b, tA, tB), wt))([tf.tensor(va, sa), tf.tensor(vb, sb)]);
      got = grads.map((g) => g.dataSync() as Float32Array);
    });
    const what = `[${sa}]×[${sb}] tA=${tA} tB=${tB}`;
    assertGradClose(got[0]!, want[0]!, `${what} dA`);
    assertGradClose(got[1]!, want[1]!, `${what} dB`);
    assert.equal(profile.byKernel.find((k) => k.name === 'BatchMatMul')?.calls, 3, `${what}: forward + two gradient products on uvu-blas`);
  }
});

test('gradients of tf.fused.matMul with bias (linear: the uvu-blas _FusedMatMul; relu: unfused by tfjs) match finite differences', async () => {
  // A linear layer on (N, C) activations, weight stored (out, C) as in the model.
  const shapeA = [6, 5];
  const shapeW = [4, 5];
  for (const activation of ['linear', 'relu'] as const) {
    // Keep every pre-activation away from relu's kink, farther than one step can move it.
    let seed = 31;
    let va: Float32Array, vw: Float32Array, vb: Float32Array;
    for (;;) {
      const rng = new Rng(seed++);
      va = uniform(rng, size(shapeA), 1);
      vw = uniform(rng, size(shapeW), 1);
      vb = uniform(rng, 4, 1);
      const z = tf.tidy(() =>
        tf.fused.matMul({ a: tf.tensor(va, shapeA), b: tf.tensor(vw, shapeW), transposeB: true, bias: tf.tensor(vb, [4]) }).dataSync(),
      );
      if (z.every((v) => Math.abs(v) > 0.1)) break;
    }
    const w = uniform(new Rng(7), 6 * 4, 1);
    const fused = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) => tf.fused.matMul({ a, b, transposeB: true, bias, activation });
    const forward = ([a, b, bias]: Float32Array[]) =>
      tf.tidy(() => quadLoss(fused(tf.tensor(a!, shapeA), tf.tensor(b!, shapeW), tf.tensor(bias!, [4])).dataSync() as Float32Array, w));
    const want = finiteDifferences([va!, vw!, vb!], forward, 1e-2);
    let got: Float32Array[] = [];
    const profile = await profileKernels(() => {
      const wt = tf.tensor(w, [6, 4]);
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) => quadLossTf(fused(a, b, bias), wt))([
        tf.tensor(va!, shapeA),
        tf.tensor(vw!, shapeW),
        tf.tensor(vb!, [4]),
      ]);
      got = grads.map((g) => g.dataSync() as Float32Array);
    });
    assertGradClose(got[0]!, want[0]!, `${activation} dA`);
    assertGradClose(got[1]!, want[1]!, `${activation} dW`);
    assertGradClose(got[2]!, want[2]!, `${activation} dBias`);
    const calls = (name: string) => profile.byKernel.find((k) => k.name === name)?.calls ?? 0;
    if (activation === 'linear') {
      assert.equal(calls('_FusedMatMul'), 1, 'forward on the fused kernel');
      assert.equal(calls('BatchMatMul'), 2, 'gradient products');
    } else {
      assert.equal(calls('BatchMatMul'), 3, 'tfjs unfuses non-linear activations under a gradient tape');
    }
  }
});

test("tfjs-core's gradients are registered: gather, softmax, mean, sqrt and concat match finite differences", () => {
  const rng = new Rng(41);
  const vx = uniform(rng, 12, 1);
  const vw = uniform(rng, 8, 1);
  const idx = tf.tensor([2, 0, 2, 1], [4], 'int32');
  const f = (x: tf.Tensor) => {
    const rows = tf.gather(tf.reshape(x, [3, 4]), idx); // (4, 4)
    const p = tf.softmax(rows); // (4, 4)
    const y = tf.concat([p, tf.sqrt(tf.add(tf.square(rows), 1))], 1); // (4, 8)
    return tf.mean(tf.mul(y, tf.tile(tf.reshape(tf.tensor(vw), [1, 8]), [4, 1])));
  };
  const want = finiteDifferences([vx], ([x]) => tf.tidy(() => f(tf.tensor(x!)).dataSync()[0]!), 1e-2);
  const got = tf.tidy(() => tf.grad(f)(tf.tensor(vx)).dataSync() as Float32Array);
  assertGradClose(got, want[0]!, 'dx');
  idx.dispose();
});

test('initEngine switches backends; blas, cpu and wasm agree on a product', async () => {
  const rng = new Rng(51);
  const va = uniform(rng, 33 * 17, 1);
  const vb = uniform(rng, 17 * 9, 1);
  const f = () => tf.matMul(tf.tensor(va, [33, 17]), tf.tensor(vb, [17, 9]));
  const results = new Map<EngineName, Float32Array>();
  for (const [engine, backend] of [['cpu', 'cpu'], ['wasm', 'wasm'], ['blas', 'uvu-blas']] as const) {
    await initEngine(engine);
    assert.equal(tf.getBackend(), backend);
    results.set(engine, tf.tidy(() => f().dataSync() as Float32Array).slice());
  }
  assertClose(results.get('cpu')!, results.get('blas')!, 1e-4, 'cpu vs blas');
  assertClose(results.get('wasm')!, results.get('blas')!, 1e-4, 'wasm vs blas');
  await assert.rejects(initEngine('gpu' as EngineName), UsageError);
  assert.equal(tf.getBackend(), 'uvu-blas');
});

test('profileKernels sums kernel times by name and leaves out composite custom-gradient ops', async () => {
  const a = tf.randomNormal([64, 32], 0, 1, 'float32', 1);
  const w = tf.randomNormal([32, 16], 0, 1, 'float32', 2);
  const tensorsBefore = tf.memory().numTensors;
  const p = await profileKernels(() => {
    const logits = tf.fused.matMul({ a, b: w, activation: 'relu' });
    const y = tf.matMul(logits, w, false, true);
    return tf.losses.softmaxCrossEntropy(tf.oneHot(tf.zeros([64], 'int32'), 32), y);
  });
  assert.equal(tf.memory().numTensors, tensorsBefore, 'returned tensors are disposed');
  const names = p.byKernel.map((k) => k.name);
  assert.ok(!names.some((n) => n.endsWith('__op')), `composite ops listed: ${names}`);
  assert.equal(p.byKernel.find((k) => k.name === '_FusedMatMul')?.calls, 1);
  assert.equal(p.byKernel.find((k) => k.name === 'BatchMatMul')?.calls, 1);
  const sum = p.byKernel.reduce((s, k) => s + k.ms, 0);
  assert.ok(Math.abs(sum - p.totalMs) < 1e-9 * (1 + sum) && p.totalMs > 0 && p.wallMs >= 0);
  for (let i = 1; i < p.byKernel.length; i++) assert.ok(p.byKernel[i - 1]!.ms >= p.byKernel[i]!.ms, 'sorted slowest first');
  tf.dispose([a, w]);
});
