/** `uvu serve`: the web explorer of codebooks, round trips, training runs and evaluations (src/serve/). */
import { Command } from 'commander';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startExplorer, type ServeOptions } from '../serve/server.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';
import { applyOutputOptions, collect, emit, parseNonNegativeInt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';

/** The flags: ServeOptions, with --codebook repeatable under its singular name. */
interface ServeFlags extends OutputOptions, Omit<ServeOptions, 'codebooks'> {
  codebook: string[];
}

export function serveCommand(): Command {
  return withOutputOptions(
    new Command('serve')
      .option('--codebook <file>', 'codebook file to show (repeat for several, e.g. k-means and uvu side by side)', collect, [])
      .option('--patches <dir>', 'patch store: cluster radii and the real patches assigned to each code')
      .option('--runs <dir>', 'a training run folder (log.jsonl), or a folder of them (repeatable)', collect, [])
      .option('--bench <dir>', 'perception benchmark (`uvu bench-data build`): scene images and true boxes of the evaluations')
      .option('--images <dir>', 'images to pick for round trips')
      .option('--host <address>', 'address to listen on; any other than loopback requires the printed token', '127.0.0.1')
      .option('--port <n>', 'port (0: any free port)', parseNonNegativeInt, 0)
      .option('--cache <dir>', 'folder of cached sprite sheets', join(tmpdir(), 'uvu-serve-cache'))
      .option('--max-pixels <n>', 'resize policy of round trips, as `uvu roundtrip --max-pixels`', parsePositiveInt, DEFAULT_MAX_PIXELS),
  ).action(async (o: ServeFlags) => {
    applyOutputOptions(o);
    const explorer = await startExplorer({ ...o, codebooks: o.codebook });
    emit(o, { url: explorer.url, token: explorer.token }, () =>
      [`uvu serve: ${explorer.url}`, ...(explorer.token ? ['  the token in this URL is required by every request; it is printed only once'] : []), '  (Ctrl-C stops it)'].join('\n'));
    const stop = (): void => void explorer.close().then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
