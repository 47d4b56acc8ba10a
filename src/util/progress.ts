/**
 * Progress bars on stderr for work longer than about a second. Off when stderr is not a
 * TTY or when the command runs with --quiet (with --json, stdout stays one JSON object either way).
 */
import cliProgress from 'cli-progress';

export interface Progress {
  /** Advance by `n` units (default 1); `status` (e.g. "loss 2.31 | 900 tok/s") is shown after the bar. */
  tick(n?: number, status?: string): void;
  /** Set the absolute position. */
  set(value: number, status?: string): void;
  /** Change the total (when it becomes known late). */
  setTotal(total: number): void;
  stop(): void;
}

let globallyQuiet = false;
/** Called by the CLI for --quiet. */
export function setQuiet(quiet: boolean): void {
  globallyQuiet = quiet;
}

const noop: Progress = { tick() {}, set() {}, setTotal() {}, stop() {} };

/** A progress bar labelled `label` over `total` units named `unit` (e.g. "images"). */
export function progress(label: string, total: number, unit = 'items'): Progress {
  if (globallyQuiet || !process.stderr.isTTY) return noop;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} |{bar}| {percentage}% {value}/{total} ${unit} | {duration_formatted} elapsed, ETA {eta_formatted}{status}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { status: '' });
  let value = 0;
  const payload = (status?: string): { status: string } | undefined => (status === undefined ? undefined : { status: ` | ${status}` });
  return {
    tick(n = 1, status) {
      value += n;
      bar.update(value, payload(status));
    },
    set(v, status) {
      value = v;
      bar.update(v, payload(status));
    },
    setTotal(t) {
      bar.setTotal(t);
    },
    stop() {
      bar.stop();
    },
  };
}

/** Informational log line on stderr (suppressed by --quiet). */
export function info(message: string): void {
  if (!globallyQuiet) process.stderr.write(`${message}\n`);
}
