#!/usr/bin/env node
/**
 * The `uvu` command line. Exit codes: 0 success, 1 input cannot be processed (one line naming
 * the file and the problem), 2 usage error. `--json` prints exactly one JSON object on stdout.
 *
 * Start-up stays instant: this file imports only commander. The command named on the command
 * line is the only module loaded (with what it needs: sharp, BLAS, tfjs…); `uvu --help` and an
 * unknown command load none of them.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';

interface CommandEntry {
  name: string;
  /** One line, shown by `uvu --help` and as the command's own description. */
  summary: string;
  /** Loads the command's module and builds it (options, subcommands, action). */
  load: () => Promise<Command>;
}

/** Every command, in pipeline order: image → patches → codebook → tokens → data → model → train → infer → eval, then the explorer. */
export const COMMANDS: readonly CommandEntry[] = [
  { name: 'patches', summary: 'cut photos into 32×32×3 patches and store them on disk', load: async () => (await import('./patches.js')).patchesCommand() },
  { name: 'codebook', summary: 'build and evaluate pixel codebooks', load: async () => (await import('./codebook.js')).codebookCommand() },
  { name: 'tokenize', summary: 'turn an image into codebook token ids {width, height, rows, cols, ids}', load: async () => (await import('./tokens.js')).tokenizeCommand() },
  { name: 'reconstruct', summary: 'rebuild an image from token ids with the codebook (no decoder network)', load: async () => (await import('./tokens.js')).reconstructCommand() },
  { name: 'roundtrip', summary: 'tokenize + reconstruct; write original | reconstruction | error heat-map and print PRP/PSNR', load: async () => (await import('./tokens.js')).roundtripCommand() },
  { name: 'data', summary: 'build and inspect packed image–text sequence datasets', load: async () => (await import('./data.js')).dataCommand() },
  { name: 'vq', summary: 'patch VQ-VAE tokenizer of the AR+VQ baseline (DESIGN §9)', load: async () => (await import('./vq.js')).vqCommand() },
  { name: 'train', summary: 'train the unified model (pretrain or SFT; uvu, text-only or ar-vq) from a JSON config', load: async () => (await import('./train.js')).trainCommand() },
  { name: 'ask', summary: 'answer a question about an image with a trained checkpoint (answer streamed as it is generated)', load: async () => (await import('./infer.js')).askCommand() },
  { name: 'complete-image', summary: 'keep the top rows of an image, let the model predict the codes of the rest, reconstruct them with the image coder', load: async () => (await import('./infer.js')).completeImageCommand() },
  { name: 'bench-data', summary: 'perception benchmark data: photographic objects pasted on real photos, with grounding, counting, spatial and existence questions', load: async () => (await import('./bench-data.js')).benchDataCommand() },
  { name: 'eval', summary: 'answer a perception benchmark split with a checkpoint (greedy) and score it per task, with 95% bootstrap intervals', load: async () => (await import('./eval.js')).evalCommand() },
  { name: 'worker', summary: 'take assignment jobs of a distributed codebook build from Redis (run one or more per machine)', load: async () => (await import('./cluster.js')).workerCommand() },
  { name: 'cluster', summary: 'state of a distributed build: workers alive, queue depths, round and shards', load: async () => (await import('./cluster.js')).clusterCommand() },
  { name: 'serve', summary: 'web explorer of codebooks, round trips, training runs and evaluations (prints the URL, opens nothing)', load: async () => (await import('./serve.js')).serveCommand() },
  { name: 'demo', summary: 'codebook from the bundled photos + round trip of a held-out photo, then a short training run of the unified model that completes that photo', load: async () => (await import('./demo.js')).demoCommand() },
];

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Options of `uvu` itself that take a value (`uvu --max-alloc 16G train …`). */
const ROOT_OPTIONS_WITH_VALUE = new Set(['--max-alloc']);

/** The command named on the command line: the first word that is neither an option nor its value (`help X` names X). */
function commandName(argv: readonly string[]): string | undefined {
  const words: string[] = [];
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (ROOT_OPTIONS_WITH_VALUE.has(args[i]!)) i++;
    else if (!args[i]!.startsWith('-')) words.push(args[i]!);
  }
  return words[0] === 'help' ? words[1] : words[0];
}

/**
 * The program with the command named in `argv` fully built and every other command as a stub
 * (name and summary only: enough for `uvu --help` and for commander's "unknown command").
 */
export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('uvu')
    .description('UVU: pixel-level visual codebook (patches → codebook → tokens → images) and the unified autoregressive model (data → train → ask / complete-image → eval)')
    .version(pkg.version)
    .option('--max-alloc <size>', 'largest single allocation a file or flag may ask for, e.g. 16G (default 4G; see README "Files we read")')
    .showHelpAfterError('(run with --help for usage)')
    .hook('preAction', async () => {
      const size = program.opts<{ maxAlloc?: string }>().maxAlloc;
      if (size === undefined) return;
      const { parseSize, setMaxAllocBytes } = await import('../util/limits.js');
      try {
        setMaxAllocBytes(parseSize(size));
      } catch (err) {
        const { UsageError } = await import('../util/errors.js');
        throw new UsageError(`--max-alloc: ${(err as Error).message.replace(/^--max-alloc /, '')}`);
      }
    });
  const wanted = commandName(argv);
  for (const entry of COMMANDS) {
    const cmd = entry.name === wanted ? await entry.load() : new Command(entry.name);
    program.addCommand(cmd.description(entry.summary));
  }
  // Usage errors (unknown option, missing argument, bad value) exit 2 instead of commander's 1,
  // and are printed as every other error is: one line `uvu: error: …`.
  const exitOverride = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (str, write) => write(str.startsWith('error: ') ? `uvu: ${str}` : str) });
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await (await buildProgram()).parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end with exit code 0; everything else commander raises is usage.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    // Loaded only on failure: it brings the error classes and the progress module.
    const { reportError } = await import('./common.js');
    process.exitCode = reportError(err);
  }
}

await main();
