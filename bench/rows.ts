/**
 * One measured number of a benchmark. Every bench module exports
 * `run(opts: { size: 'small' | 'full' }): Promise<BenchRow[]>`; the runner (bench/run.ts)
 * collects the rows and writes BENCHMARKS.md.
 */
export interface BenchRow {
  /** Benchmark module / topic, e.g. "search". */
  bench: string;
  /** What was measured on what, e.g. "FlatIndex.search n=20000 K=8192 D=3072". */
  config: string;
  /** Quantity name, e.g. "throughput", "ratio to sgemm". */
  metric: string;
  value: number;
  unit: string;
  note?: string;
}

export type BenchSize = 'small' | 'full';

/** Rows as an aligned plain-text table (for standalone runs). */
export function formatRows(rows: BenchRow[]): string {
  const header = ['bench', 'config', 'metric', 'value', 'unit', 'note'];
  const cells = rows.map((r) => [r.bench, r.config, r.metric, formatValue(r.value), r.unit, r.note ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

/** Best wall time of `fn` over `repeats` runs, in seconds. */
export function bestOf(repeats: number, fn: () => void): number {
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, (performance.now() - t0) / 1e3);
  }
  return best;
}
