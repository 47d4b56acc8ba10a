/** `uvu patches build|info|export`. */
import { Command, Option } from 'commander';
import { buildPatchStore } from '../patches/build.js';
import { PatchStore } from '../patches/store.js';
import { exportSample } from '../patches/npy.js';
import { applyOutputOptions, emit, EXIT_INTERRUPTED, parsePositiveInt, parseNonNegativeInt, withInterrupt, withOutputOptions, type OutputOptions } from './common.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';

export function patchesCommand(): Command {
  const cmd = new Command('patches');

  withOutputOptions(
    cmd
      .command('build')
      .description('build a sharded patch store from image files, folders (recursive), globs or @list files')
      .argument('<inputs...>', 'files, folders, globs ("photos/**/*.jpg") or @list.txt (one path per line)')
      .requiredOption('--out <dir>', 'store folder to create')
      .option('--max-pixels <n>', 'resize so that w·h ≤ n (DESIGN §1)', parsePositiveInt, DEFAULT_MAX_PIXELS)
      .option('--offsets', 'random grid offset per image (0..31 px, augmentation)', false)
      .option('--dedup', 'drop exact duplicate patches (64-bit hash)', false)
      .option('--seed <s>', 'seed for --offsets', parseNonNegativeInt, 0)
      .option('--passes <n>', 'cut every image n times, each with new random offsets (needs --offsets)', parsePositiveInt, 1)
      .option('--shard-size <n>', 'patches per shard', parsePositiveInt, 65536)
      .option('--resume', 'continue an interrupted build in --out', false),
  ).action(async (inputs: string[], o: OutputOptions & { out: string; maxPixels: number; offsets: boolean; dedup: boolean; seed: number; passes: number; shardSize: number; resume: boolean }) => {
    applyOutputOptions(o);
    const t0 = performance.now();
    const { result } = await withInterrupt((signal) =>
      buildPatchStore(inputs, { out: o.out, maxPixels: o.maxPixels, offsets: o.offsets, dedup: o.dedup, seed: o.seed, passes: o.passes, shardSize: o.shardSize, resume: o.resume, signal }),
    );
    if (result.manifest === null) {
      process.stderr.write(`uvu: stopped after ${result.imagesProcessed} input(s); ${o.out} is resumable: rerun with --resume\n`);
      process.exitCode = EXIT_INTERRUPTED;
      return;
    }
    const m = result.manifest;
    const seconds = (performance.now() - t0) / 1000;
    emit(o, { out: o.out, ...m.totals, shards: m.shards.length, fingerprint: m.fingerprint, seconds }, () =>
      `wrote ${o.out}: ${m.totals.patches} patches from ${m.totals.images} images in ${m.shards.length} shard(s)` +
      (m.totals.skipped ? `, ${m.totals.skipped} input(s) skipped` : '') +
      (m.options.dedup ? `, ${m.totals.duplicatesRemoved} duplicate patches removed` : '') +
      (m.totals.duplicateInputs ? `, ${m.totals.duplicateInputs} duplicate input path(s) stored once` : '') +
      ` (${seconds.toFixed(1)} s)`,
    );
  });

  withOutputOptions(
    cmd
      .command('info')
      .description('summarise a patch store')
      .argument('<dir>', 'store folder')
      .option('--verify', 're-hash every shard against the manifest', false),
  ).action((dir: string, o: OutputOptions & { verify: boolean }) => {
    applyOutputOptions(o);
    const store = PatchStore.open(dir);
    if (o.verify) store.verify();
    const m = store.manifest;
    const result = {
      dir,
      patches: store.count,
      images: store.imageCount,
      shards: m.shards.length,
      fingerprint: store.fingerprint,
      skipped: m.totals.skipped,
      duplicatesRemoved: m.totals.duplicatesRemoved,
      bytes: store.count * m.dim,
      options: m.options,
      verified: o.verify,
    };
    store.close();
    emit(o, result, () =>
      [
        `store        ${dir}`,
        `patches      ${result.patches} (${(result.bytes / 2 ** 20).toFixed(1)} MiB of uint8 rows)`,
        `images       ${result.images} (${result.skipped} skipped)`,
        `shards       ${result.shards}`,
        `fingerprint  ${result.fingerprint}`,
        `options      ${JSON.stringify(result.options)}`,
        ...(o.verify ? ['verified     every shard matches its sha256'] : []),
      ].join('\n'),
    );
  });

  withOutputOptions(
    cmd
      .command('export')
      .description('write a random sample of patches as float32 [N, 3072] (values /255) for numpy/Faiss')
      .argument('<dir>', 'store folder')
      .addOption(new Option('--format <fmt>', 'file format').choices(['npy']).default('npy'))
      .requiredOption('--count <n>', 'patches to export', parsePositiveInt)
      .requiredOption('--out <file>', '.npy file to write')
      .option('--seed <s>', 'sampling seed', parseNonNegativeInt, 0)
      .option('--no-verify', 'skip the sha256 check of each shard before its first read'),
  ).action((dir: string, o: OutputOptions & { format: 'npy'; count: number; out: string; seed: number; verify: boolean }) => {
    applyOutputOptions(o);
    const store = PatchStore.open(dir, { verify: o.verify });
    exportSample(store, o.count, o.seed, o.out);
    store.close();
    emit(o, { out: o.out, count: o.count, dim: 3072, dtype: 'float32', seed: o.seed }, () => `wrote ${o.out}: float32 [${o.count}, 3072]`);
  });

  return cmd;
}
