/**
 * Generation speed with and without the KV cache (src/model/kv-cache.ts): new tokens per second
 * of `generate` (greedy), the cached path against the full-prefix path that re-runs the whole
 * sequence for every token, on the same randomly initialised model, in the same run. Each
 * timing covers the whole call: image encoding, prompt (prefill) and every new token.
 *
 *   complete-image: a 512×512 image = 16×16 grid of 256 codes; `<bos><img>` + the kept top row
 *     (16 visual tokens) → the remaining 240 codes (image-code range only);
 *   ask: `<bos><|user|><img>` 256 visual tokens `</img>` question `<|assistant|>` → a 20-token
 *     answer (text range, <eos> banned so the answer has exactly 20 tokens).
 *
 * Both paths must return the same ids (the row's note says so; the run fails otherwise).
 * small: configs/tiny.json's model; full: configs/reference.json's (both have 512 positions).
 *
 * Standalone: node dist/bench/generate.js [--size small|full]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../src/engine/tf.js';
import { ModelConfigSchema } from '../src/model/config.js';
import { UvuModel, type ImageInput } from '../src/model/model.js';
import { generate, type GenerateOptions } from '../src/infer/generate.js';
import { questionPrompt } from '../src/data/sequence.js';
import { Vocab } from '../src/tokens/vocab.js';
import { Rng } from '../src/util/rng.js';
import { formatRows, type BenchRow, type BenchSize } from './rows.js';

const GRID = 16;

interface Case {
  name: string;
  prefix: number[];
  images: ImageInput[];
  o: GenerateOptions;
}

function pixels(rows: number, cols: number): Uint8Array {
  const rng = new Rng(5);
  const px = new Uint8Array(rows * 32 * cols * 32 * 3);
  for (let i = 0; i < px.length; i++) px[i] = rng.int(256);
  return px;
}

function cases(vocab: Vocab): Case[] {
  const rng = new Rng(9);
  const image = pixels(GRID, GRID);
  const kept = Array.from({ length: GRID }, () => vocab.imageId(rng.int(vocab.K)));
  const question = Array.from({ length: 12 }, () => rng.int(vocab.textSize));
  const prompt = questionPrompt({ codes: new Int32Array(GRID * GRID), rows: GRID, cols: GRID }, question, vocab);
  return [
    {
      name: `complete-image ${GRID}×${GRID} grid from 1 kept row (${GRID * GRID - GRID} codes)`,
      prefix: [vocab.bos, vocab.imgStart, ...kept],
      images: [{ row: 0, start: 2, rows: 1, cols: GRID, pixels: image.subarray(0, 32 * GRID * 32 * 3) }],
      o: { maxNewTokens: GRID * GRID - GRID, allowFrom: vocab.imageOffset, allowTo: vocab.size },
    },
    {
      name: `ask after a ${GRID}×${GRID}-patch image (${prompt.ids.length}-token prompt), 20-token answer`,
      prefix: Array.from(prompt.ids),
      images: [{ row: 0, start: prompt.image!.start, rows: GRID, cols: GRID, pixels: image }],
      o: {
        maxNewTokens: 20,
        allowFrom: 0,
        allowTo: vocab.imageOffset,
        bannedIds: [vocab.bos, vocab.pad, vocab.imgStart, vocab.imgEnd, vocab.user, vocab.assistant, vocab.eos],
      },
    },
  ];
}

function timed(model: UvuModel, c: Case, kvCache: boolean): { ids: number[]; seconds: number } {
  const t0 = performance.now();
  const ids = generate(model, c.prefix, c.images, { ...c.o, kvCache });
  return { ids, seconds: (performance.now() - t0) / 1000 };
}

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  await initEngine();
  const configFile = o.size === 'full' ? 'configs/reference.json' : 'configs/tiny.json';
  const raw = JSON.parse(readFileSync(configFile, 'utf8')) as { model: unknown };
  const modelConfig = ModelConfigSchema.parse(raw.model);
  const vocab = new Vocab({ textSize: 1024, K: 1024 });
  const model = UvuModel.init(modelConfig, vocab, 0);
  const rows: BenchRow[] = [];
  try {
    for (const c of cases(vocab)) {
      // Warm-up (kernel set-up, RoPE tables, JIT) on a few tokens of each path.
      const warm = { ...c, o: { ...c.o, maxNewTokens: 3 } };
      timed(model, warm, false);
      timed(model, warm, true);
      const before = timed(model, c, false);
      const after = timed(model, c, true);
      const same = before.ids.length === after.ids.length && before.ids.every((id, i) => id === after.ids[i]);
      if (!same) throw new Error(`generate bench: ${c.name}: the cached path's ids differ from the full-prefix path's`);
      const n = after.ids.length;
      const config = `${configFile}, ${c.name}, vocab ${vocab.size}`;
      const tpsBefore = n / before.seconds;
      const tpsAfter = n / after.seconds;
      rows.push(
        { bench: 'generate', config, metric: 'tokens/s, full prefix per token (before)', value: tpsBefore, unit: 'tokens/s', note: `${before.seconds.toFixed(2)} s for ${n} tokens` },
        { bench: 'generate', config, metric: 'tokens/s, KV cache (after)', value: tpsAfter, unit: 'tokens/s', note: `${after.seconds.toFixed(3)} s for ${n} tokens, prefill included` },
        { bench: 'generate', config, metric: 'speed-up', value: tpsAfter / tpsBefore, unit: '×', note: `target ≥ 10×; greedy ids identical (${n} tokens)` },
      );
    }
  } finally {
    model.dispose();
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size: BenchSize = process.argv.includes('full') ? 'full' : 'small';
  console.log(formatRows(await run({ size })));
}
