/**
 * Start-up time of the `uvu` command: wall-clock seconds of whole processes, as a user waits
 * for them. Each command runs REPEATS times in turn (interleaved, so a noisy moment hits every
 * command alike) and the median is reported, next to `node -e ''`, the floor that no command of
 * a Node program can go under. Targets (issue "One-way layers, instant CLI start"): `--help`
 * ≤ 0.3 s, `tokenize` of one photo ≤ 1 s including the codebook load.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildKmeansCodebook } from '../src/codebook/build.js';
import { saveCodebook } from '../src/codebook/file.js';
import { bundledPhotoPath } from '../src/data/bundled.js';
import { buildPatchStore } from '../src/patches/build.js';
import type { BenchRow, BenchSize } from './rows.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Wall-clock seconds of one process run; fails loudly if the command fails. */
function timeRun(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`startup bench: node ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`);
  return seconds;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function run(o: { size: BenchSize }): Promise<BenchRow[]> {
  const repeats = o.size === 'full' ? 15 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'uvu-bench-startup-'));
  try {
    // A small store and a K = 256 codebook: what `patches info` and `tokenize` open.
    const store = join(dir, 'store');
    const codebook = join(dir, 'codebook.safetensors');
    await buildPatchStore([bundledPhotoPath('black-canyon'), bundledPhotoPath('march-pastoral')], { out: store, progress: false });
    saveCodebook(codebook, buildKmeansCodebook(store, { method: 'kmeans', size: 256, iters: 2, seed: 1 }));
    const photo = bundledPhotoPath('nagasaki-boats');
    const commands: { config: string; args: string[]; target?: number }[] = [
      { config: "node -e '' (Node's own start, the floor)", args: ['-e', ''] },
      { config: 'uvu --help', args: [CLI, '--help'], target: 0.3 },
      { config: 'uvu patches info STORE --json', args: [CLI, 'patches', 'info', store, '--json'] },
      { config: 'uvu tokenize PHOTO --codebook CB (K = 256, 512×512 photo)', args: [CLI, 'tokenize', photo, '--codebook', codebook, '--out', join(dir, 'tokens.json'), '--quiet'], target: 1 },
    ];
    const times = commands.map(() => [] as number[]);
    for (let r = 0; r < repeats; r++) commands.forEach((c, i) => times[i]!.push(timeRun(c.args)));
    return commands.map((c, i) => ({
      bench: 'startup',
      config: c.config,
      metric: 'wall time (median)',
      value: median(times[i]!),
      unit: 's',
      note: `${repeats} runs, min ${Math.min(...times[i]!).toFixed(3)} s${c.target !== undefined ? `; target ≤ ${c.target} s` : ''}`,
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
