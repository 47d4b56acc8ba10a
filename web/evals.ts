/**
 * The evaluation page: per-task accuracy with 95 % bootstrap intervals for every eval-*.json
 * report (`uvu eval` writes one beside each evaluated run), and the items: scene, question, true
 * and predicted answer, true (green) and predicted (red) boxes; filters by task, outcome and run.
 */
import { el, fmt, json, url, type Config } from './api.js';

const TASKS = ['grounding', 'counting', 'spatial', 'existence'];
/** Items drawn per "more" click. */
const PAGE_ITEMS = 60;
const SCENE_PX = 192;

interface Score { n: number; accuracy: number; ci95: [number, number] }
interface Item {
  id: string; task: string; image: string; prompt: string; answer: string; prediction: string; correct: boolean;
  iou?: number; predictedBox?: number[] | null;
  /** From the benchmark's items (empty / absent without --bench). */
  boxes: number[][]; size?: number;
}
interface Report {
  name: string; bench: string; split: string; n: number; seed: number; checkpoint: string;
  tasks: Record<string, Score | undefined>; overall: Score; items: Item[];
}

const pct = (x: number): string => fmt(100 * x, 1);

function scoreCell(s: Score | undefined, id: string): HTMLElement {
  if (!s) return el('td', {}, '—');
  return el('td', { id, 'data-value': String(s.accuracy), title: `n = ${s.n}` }, `${pct(s.accuracy)}%`, el('span', { class: 'ci' }, ` [${pct(s.ci95[0])}, ${pct(s.ci95[1])}]`));
}

function scene(item: Item, size: number, withBench: boolean): HTMLElement {
  const canvas = el('canvas', { width: String(SCENE_PX), height: String(SCENE_PX) });
  const ctx = canvas.getContext('2d')!;
  const k = SCENE_PX / size;
  const draw = (): void => {
    ctx.lineWidth = 2;
    const box = (b: number[], color: string): void => {
      ctx.strokeStyle = color;
      ctx.strokeRect(b[0]! * k, b[1]! * k, (b[2]! - b[0]!) * k, (b[3]! - b[1]!) * k);
    };
    for (const b of item.boxes) box(b, '#2ca02c');
    if (item.predictedBox) box(item.predictedBox, '#d62728');
  };
  if (withBench) {
    const img = new Image();
    img.onload = () => {
      ctx.drawImage(img, 0, 0, SCENE_PX, SCENE_PX);
      draw();
    };
    img.src = url(`/files/bench/${item.image.split('/').map(encodeURIComponent).join('/')}`);
  } else {
    ctx.fillStyle = '#ddd';
    ctx.fillRect(0, 0, SCENE_PX, SCENE_PX);
    draw();
  }
  return canvas;
}

export async function evalPage(main: HTMLElement, cfg: Config): Promise<void> {
  if (cfg.evals.length === 0) {
    main.append(el('p', {}, 'No evaluations: `uvu eval` writes eval-<split>.json beside the run it evaluates; start uvu serve with --runs on those runs (and --bench for the scenes).'));
    return;
  }
  const reports = await Promise.all(cfg.evals.map((e) => json<Report>(`/api/evals/${e.id}`)));
  main.append(
    el('table', { class: 'scores', id: 'eval-scores' },
      el('tr', {}, el('th', {}, 'evaluation'), el('th', {}, 'split'), el('th', {}, 'n'), ...TASKS.map((t) => el('th', {}, t)), el('th', {}, 'overall')),
      ...reports.map((r, i) => el('tr', { 'data-eval': r.name }, el('td', { title: r.checkpoint }, r.name), el('td', {}, r.split), el('td', {}, String(r.n)),
        ...TASKS.map((t) => scoreCell(r.tasks[t], `acc-${i}-${t}`)), scoreCell(r.overall, `acc-${i}-overall`))),
    ),
    el('div', { class: 'caption' }, 'accuracy with 95 % percentile-bootstrap intervals (grounding: IoU ≥ 0.5); boxes: true green, predicted red'),
  );
  const task = el('select', { id: 'f-task' }, el('option', { value: '' }, 'all tasks'), ...TASKS.map((t) => el('option', { value: t }, t)));
  const outcome = el('select', { id: 'f-outcome' }, el('option', { value: '' }, 'correct and wrong'), el('option', { value: 'correct' }, 'correct'), el('option', { value: 'wrong' }, 'wrong'));
  const run = el('select', { id: 'f-run' }, ...reports.map((r, i) => el('option', { value: String(i) }, r.name)));
  const items = el('div', { class: 'items', id: 'eval-items' });
  const more = el('button', {}, 'more');
  const count = el('span', { class: 'caption' });
  main.append(el('div', { class: 'toolbar' }, 'items of ', run, ' ', task, ' ', outcome, ' ', count), items, more);
  let list: Item[] = [];
  let shown = 0;
  const showMore = (): void => {
    for (const it of list.slice(shown, shown + PAGE_ITEMS)) {
      items.append(el('div', { class: `item ${it.correct ? 'right' : 'wrong'}`, 'data-correct': String(it.correct) },
        scene(it, it.size ?? SCENE_PX, cfg.bench),
        el('div', { class: 'q' }, it.prompt),
        el('div', {}, 'true: ', el('b', {}, it.answer)),
        el('div', {}, 'predicted: ', el('b', {}, it.prediction || '(nothing)'), it.correct ? ' ✓' : ' ✗', it.iou !== undefined ? ` (IoU ${fmt(it.iou, 2)})` : '')));
    }
    shown = Math.min(list.length, shown + PAGE_ITEMS);
    more.hidden = shown >= list.length;
  };
  const filter = (): void => {
    const r = reports[Number(run.value)]!;
    list = r.items.filter((it) => (!task.value || it.task === task.value) && (!outcome.value || it.correct === (outcome.value === 'correct')));
    count.textContent = `${list.length} of ${r.items.length} items`;
    items.replaceChildren();
    shown = 0;
    showMore();
  };
  for (const s of [task, outcome, run]) s.addEventListener('change', filter);
  more.addEventListener('click', showMore);
  filter();
}

