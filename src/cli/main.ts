#!/usr/bin/env node
/**
 * The `uvu` command line. Exit codes: 0 success, 1 input cannot be processed (one line naming
 * the file and the problem), 2 usage error. `--json` prints exactly one JSON object on stdout.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { patchesCommand } from './patches.js';
import { codebookCommand } from './codebook.js';
import { reconstructCommand, roundtripCommand, tokenizeCommand } from './tokens.js';
import { demoCommand } from './demo.js';
import { dataCommand } from './data.js';
import { vqCommand } from './vq.js';
import { trainCommand } from './train.js';
import { askCommand, completeImageCommand } from './infer.js';
import { benchDataCommand } from './bench-data.js';
import { evalCommand } from './eval.js';
import { reportError } from './common.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('uvu')
    .description('UVU: pixel-level visual codebook (patches → codebook → tokens → images) and the unified autoregressive model (data → train → ask / complete-image → eval)')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)')
    .addCommand(patchesCommand())
    .addCommand(codebookCommand())
    .addCommand(tokenizeCommand())
    .addCommand(reconstructCommand())
    .addCommand(roundtripCommand())
    .addCommand(dataCommand())
    .addCommand(vqCommand())
    .addCommand(trainCommand())
    .addCommand(askCommand())
    .addCommand(completeImageCommand())
    .addCommand(benchDataCommand())
    .addCommand(evalCommand())
    .addCommand(demoCommand());
  // Usage errors (unknown option, missing argument, bad value) exit 2 instead of commander's 1.
  const exitOverride = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end with exit code 0; everything else commander raises is usage.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(err);
  }
}

await main();
