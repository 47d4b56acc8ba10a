/**
 * The runs page: the curves of every run under --runs (losses, gradient angle, throughput, the
 * kept fraction and entropies of balanced sampling), several runs on one chart. Each run's
 * log.jsonl is followed with server-sent events, so a run still training updates live.
 */
import uPlot from 'uplot';
import { el, url, type Config } from './api.js';

interface StepLog {
  step: number;
  [key: string]: number | null;
}

interface Chart {
  title: string;
  keys: string[];
}

const CHARTS: Chart[] = [
  { title: 'loss (total)', keys: ['loss'] },
  { title: 'L_text', keys: ['loss_text'] },
  { title: 'L_image', keys: ['loss_image'] },
  { title: 'gradient angle θ(L_image, L_text), degrees', keys: ['angle_deg'] },
  { title: 'tokens / s', keys: ['tokens_per_s'] },
  { title: 'balanced sampling: kept fraction of image targets', keys: ['kept_fraction'] },
  { title: 'balanced sampling: entropy of supervised ids (bits), before / after', keys: ['entropy_before', 'entropy_after'] },
];
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

export function runsPage(main: HTMLElement, cfg: Config): () => void {
  if (cfg.runs.length === 0) {
    main.append(el('p', {}, 'No runs: start uvu serve with --runs DIR (a run folder with log.jsonl, or a folder of them).'));
    return () => undefined;
  }
  const logs = new Map<number, StepLog[]>(cfg.runs.map((r) => [r.id, []]));
  const shown = new Set(cfg.runs.map((r) => r.id));
  const legend = el('div', { class: 'legend', id: 'runs-legend' });
  const charts = el('div', { class: 'charts' });
  main.append(legend, charts);
  const counters = new Map<number, HTMLElement>();
  cfg.runs.forEach((r, i) => {
    const box = el('input', { type: 'checkbox', checked: '' });
    box.addEventListener('change', () => {
      if (box.checked) shown.add(r.id);
      else shown.delete(r.id);
      redraw();
    });
    const count = el('span', { class: 'count', 'data-run': r.name, 'data-points': '0' }, '0 steps');
    counters.set(r.id, count);
    legend.append(el('label', { class: 'run' }, box, el('span', { class: 'swatch', style: `background:${COLORS[i % COLORS.length]}` }), ` ${r.name} `, count));
  });

  let plots: uPlot[] = [];
  let frame = 0;
  const redraw = (): void => {
    for (const p of plots) p.destroy();
    plots = [];
    charts.replaceChildren();
    const runs = cfg.runs.filter((r) => shown.has(r.id));
    for (const chart of CHARTS) {
      const tables: uPlot.AlignedData[] = [];
      const series: uPlot.Series[] = [{ label: 'step' }];
      runs.forEach((r) => {
        const lines = logs.get(r.id)!;
        for (const key of chart.keys) {
          const xs: number[] = [], ys: number[] = [];
          for (const l of lines) if (typeof l[key] === 'number') (xs.push(l.step), ys.push(l[key] as number));
          if (xs.length === 0) continue;
          tables.push([xs, ys]);
          const color = COLORS[cfg.runs.indexOf(r) % COLORS.length]!;
          series.push({ label: chart.keys.length > 1 ? `${r.name} ${key.split('_')[1]}` : r.name, stroke: color, dash: key === 'entropy_before' ? [6, 4] : undefined, spanGaps: true, points: { show: xs.length < 60 } });
        }
      });
      if (tables.length === 0) continue;
      const data = tables.length === 1 ? tables[0]! : uPlot.join(tables);
      const box = el('div', { class: 'chart', 'data-chart': chart.keys.join(','), 'data-x': String(data[0].length) }, el('div', { class: 'caption' }, chart.title));
      charts.append(box);
      plots.push(new uPlot({ width: Math.min(560, Math.max(320, (main.clientWidth - 40) / 2)), height: 220, scales: { x: { time: false } }, series, legend: { live: false } }, data, box));
    }
  };
  const schedule = (): void => {
    if (!frame) frame = requestAnimationFrame(() => {
      frame = 0;
      redraw();
    });
  };
  const sources = cfg.runs.map((r) => {
    const source = new EventSource(url(`/api/runs/${r.id}/events?from=0`));
    source.onmessage = (e) => {
      const got = JSON.parse(e.data as string) as { lines: StepLog[]; reset: boolean };
      const lines = got.reset ? [] : logs.get(r.id)!;
      lines.push(...got.lines);
      logs.set(r.id, lines);
      const count = counters.get(r.id)!;
      count.textContent = `${lines.length} steps`;
      count.dataset.points = String(lines.length);
      schedule();
    };
    return source;
  });
  return () => sources.forEach((s) => s.close());
}
