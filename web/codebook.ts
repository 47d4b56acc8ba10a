/**
 * The codebook page: every code as a 32×32 thumbnail in a virtualised grid (only the rows on
 * screen exist as elements; thumbnails are cut from server-rendered sprite sheets of 32×32 codes),
 * sorting, a code's details (count, radius, nearest codes, store patches) and the usage histogram.
 * With two codebooks chosen, two grids side by side.
 */
import uPlot from 'uplot';
import { el, float32, fmt, int32, json, url, type Config } from './api.js';

/** Grid cell pitch (thumbnail + gap), px. */
const CELL = 36;
const THUMB = 32;
/** Must equal SHEET_SIDE of src/serve/codebook-view.ts. */
const SHEET_SIDE = 32;
const CODES_PER_SHEET = SHEET_SIDE * SHEET_SIDE;
/** Rows rendered above and below the visible ones. */
const OVERSCAN_ROWS = 2;

interface CodebookInfo {
  name: string;
  K: number;
  build: Record<string, unknown>;
  metrics: Record<string, unknown>;
  pe: string;
  sheets: number;
  sorts: string[];
}

interface CodeDetails {
  id: number;
  count: number;
  brightness: number;
  members: number | null;
  radius: number | null;
  nearest: { id: number; distSq: number }[];
}

/** Sprite sheets as loaded images, shared by every grid of a codebook. */
const sheetImages = new Map<string, Promise<string>>();
function loadSheet(src: string): Promise<string> {
  let p = sheetImages.get(src);
  if (!p) {
    p = new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(src);
      img.onerror = () => reject(new Error(`sheet ${src} failed to load`));
      img.src = src;
    });
    sheetImages.set(src, p);
  }
  return p;
}

function sheetUrl(cb: number, sort: string, n: number): string {
  return url(`/api/codebook/${cb}/sheet/${sort}/${n}`);
}

/** Style a box as the thumbnail at position `pos` of a sheet (scale: display px per code px). */
function paintThumb(box: HTMLElement, src: string, pos: number, scale = 1): void {
  const inSheet = pos % CODES_PER_SHEET;
  box.style.backgroundImage = `url("${src}")`;
  box.style.backgroundSize = `${SHEET_SIDE * THUMB * scale}px auto`;
  box.style.backgroundPosition = `${-(inSheet % SHEET_SIDE) * THUMB * scale}px ${-Math.floor(inSheet / SHEET_SIDE) * THUMB * scale}px`;
}

/** A thumbnail of code `id` (sort "id" sheets), `scale` times 32 px. */
export function codeThumb(cb: number, id: number, scale = 1): HTMLElement {
  const box = el('div', { class: 'thumb', 'data-id': String(id) });
  box.style.width = box.style.height = `${THUMB * scale}px`;
  const src = sheetUrl(cb, 'id', Math.floor(id / CODES_PER_SHEET));
  void loadSheet(src).then(() => paintThumb(box, src, id, scale));
  return box;
}

/** The virtualised grid of one codebook in one order. */
class CodeGrid {
  readonly root = el('div', { class: 'grid' });
  private readonly spacer = el('div', { class: 'spacer' });
  private readonly cells = new Map<number, HTMLElement>();
  private cols = 1;
  private frame = 0;

  constructor(
    private readonly cb: number,
    private readonly K: number,
    private readonly sort: string,
    /** Code id at each position (null: the id order). */
    private readonly order: Int32Array | null,
    private readonly onSelect: (id: number) => void,
  ) {
    this.root.append(this.spacer);
    this.root.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(this.root);
    this.root.addEventListener('click', (e) => {
      const cell = (e.target as HTMLElement).closest<HTMLElement>('.code');
      if (cell) {
        this.root.querySelector('.code.selected')?.classList.remove('selected');
        cell.classList.add('selected');
        this.onSelect(Number(cell.dataset.id));
      }
    });
  }

  private schedule(): void {
    if (!this.frame) this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Create the cells of the rows on screen (plus overscan), drop the others. */
  render(): void {
    const width = this.root.clientWidth || CELL * 8;
    const cols = Math.max(1, Math.floor(width / CELL));
    if (cols !== this.cols) {
      this.cols = cols;
      for (const c of this.cells.values()) c.remove();
      this.cells.clear();
    }
    const rows = Math.ceil(this.K / cols);
    this.spacer.style.height = `${rows * CELL}px`;
    const top = this.root.scrollTop;
    const height = this.root.clientHeight || CELL * 10;
    const firstRow = Math.max(0, Math.floor(top / CELL) - OVERSCAN_ROWS);
    const lastRow = Math.min(rows - 1, Math.ceil((top + height) / CELL) + OVERSCAN_ROWS);
    const first = firstRow * cols;
    const last = Math.min(this.K - 1, (lastRow + 1) * cols - 1);
    for (const [i, c] of this.cells) {
      if (i < first || i > last) {
        c.remove();
        this.cells.delete(i);
      }
    }
    const fresh = document.createDocumentFragment();
    for (let i = first; i <= last; i++) {
      if (this.cells.has(i)) continue;
      const id = this.order ? this.order[i]! : i;
      const cell = el('div', { class: 'code', 'data-index': String(i), 'data-id': String(id), title: `code ${id}` });
      cell.style.transform = `translate(${(i % cols) * CELL}px, ${Math.floor(i / cols) * CELL}px)`;
      const src = sheetUrl(this.cb, this.sort, Math.floor(i / CODES_PER_SHEET));
      void loadSheet(src).then(() => {
        paintThumb(cell, src, i);
        cell.dataset.ready = '1';
      });
      this.cells.set(i, cell);
      fresh.append(cell);
    }
    this.spacer.append(fresh);
  }
}

/** Counts sorted in decreasing order against their rank, both axes log (codes with count 0 are left out). */
function histogram(target: HTMLElement, counts: Float32Array): void {
  const sorted = Float64Array.from(counts).sort().reverse();
  const used = sorted.findIndex((c) => !(c > 0));
  const n = used < 0 ? sorted.length : used;
  target.append(el('div', { class: 'caption' }, `code usage, most used first (log–log): ${n} of ${counts.length} codes used`));
  if (n === 0) return;
  const ranks = Float64Array.from({ length: n }, (_, i) => i + 1);
  const plot = el('div');
  target.append(plot);
  new uPlot(
    {
      width: Math.max(280, target.clientWidth || 400), height: 160, legend: { show: false },
      scales: { x: { time: false, distr: 3 }, y: { distr: 3 } },
      axes: [{ label: 'rank' }, { label: 'count' }],
      series: [{}, { stroke: '#3b6ea5', fill: 'rgba(59,110,165,0.15)', points: { show: false } }],
    },
    [ranks, sorted.subarray(0, n)],
    plot,
  );
}

/** One codebook: header, grid, histogram. */
async function codebookPane(cbId: number, sort: string, details: HTMLElement): Promise<HTMLElement> {
  const info = await json<CodebookInfo>(`/api/codebook/${cbId}`);
  const pane = el('section', { class: 'pane', id: `pane-${cbId}` });
  const metrics = Object.entries(info.metrics).filter(([, v]) => typeof v === 'number').slice(0, 6).map(([k, v]) => `${k} ${fmt(v as number, 4)}`).join(' · ');
  pane.append(el('h2', {}, `${info.name} `, el('span', { class: 'k', 'data-k': String(info.K) }, `K = ${info.K.toLocaleString('en-US')}`)), el('div', { class: 'caption' }, `${String(info.build.method ?? '')} ${metrics}`));
  const useSort = info.sorts.includes(sort) ? sort : 'id';
  pane.dataset.sort = useSort;
  const order = useSort === 'id' ? null : await int32(`/api/codebook/${cbId}/order/${useSort}`);
  const grid = new CodeGrid(cbId, info.K, useSort, order, (id) => void showCode(cbId, id, details));
  pane.append(grid.root);
  const hist = el('div', { class: 'hist' });
  pane.append(hist);
  requestAnimationFrame(() => grid.render());
  // The statistics (4·K floats) only feed the histogram: fetched after the grid's first paint.
  void float32(`/api/codebook/${cbId}/stats`).then((stats) => histogram(hist, stats.subarray(0, info.K)));
  return pane;
}

async function showCode(cbId: number, id: number, details: HTMLElement): Promise<void> {
  details.replaceChildren(el('div', { class: 'caption' }, `code ${id}…`));
  const d = await json<CodeDetails>(`/api/codebook/${cbId}/code/${id}`);
  const nearest = el('div', { class: 'nearest' });
  for (const n of d.nearest) {
    const t = codeThumb(cbId, n.id);
    t.title = `code ${n.id}: distance² ${n.distSq.toExponential(2)} per element`;
    t.addEventListener('click', () => void showCode(cbId, n.id, details));
    nearest.append(t);
  }
  const rows: [string, string, string][] = [
    ['count', String(d.count), 'training members (codebook file)'],
    ['brightness', fmt(d.brightness, 3), 'mean pixel value'],
  ];
  if (d.members !== null) rows.push(['members', String(d.members), 'patches of --patches assigned to it'], ['radius', fmt(d.radius, 3), 'max ‖p − c‖₂ of those patches']);
  details.replaceChildren(
    el('h3', {}, `code `, el('span', { id: 'code-id' }, String(id))),
    codeThumb(cbId, id, 4),
    el('table', {}, ...rows.map(([k, v, title]) => el('tr', { title }, el('th', {}, k), el('td', { id: `code-${k}`, 'data-value': v }, v)))),
    el('div', { class: 'caption' }, 'nearest codes (pixel space)'),
    nearest,
  );
  if (d.members !== null && d.members > 0) {
    details.append(el('div', { class: 'caption' }, 'patches assigned to it'), el('img', { class: 'members', src: url(`/api/codebook/${cbId}/code/${id}/patches`), alt: `patches of code ${id}` }));
  }
}

export async function codebookPage(main: HTMLElement, cfg: Config): Promise<void> {
  if (cfg.codebooks.length === 0) {
    main.append(el('p', {}, 'No codebook: start uvu serve with --codebook FILE.'));
    return;
  }
  const state = { a: 0, b: -1, sort: 'id' };
  const pick = (id: string, withNone: boolean) =>
    el('select', { id }, ...(withNone ? [el('option', { value: '-1' }, '—')] : []), ...cfg.codebooks.map((c) => el('option', { value: String(c.id) }, `${c.name} (K = ${c.K})`)));
  const a = pick('cb-a', false);
  const b = pick('cb-b', true);
  const sort = el('select', { id: 'sort' }, ...['id', 'count', ...(cfg.patches ? ['radius'] : []), 'brightness'].map((s) => el('option', { value: s }, s)));
  const panes = el('div', { class: 'panes' });
  const details = el('aside', { class: 'details' }, el('div', { class: 'caption' }, 'click a code'));
  main.append(el('div', { class: 'toolbar' }, 'codebook ', a, ' side by side with ', b, ' sort by ', sort), el('div', { class: 'codebook-layout' }, panes, details));
  const draw = async (): Promise<void> => {
    state.a = Number(a.value);
    state.b = Number(b.value);
    state.sort = sort.value;
    const ids = [state.a, ...(state.b >= 0 && state.b !== state.a ? [state.b] : [])];
    panes.replaceChildren(...(await Promise.all(ids.map((id) => codebookPane(id, state.sort, details)))));
  };
  for (const s of [a, b, sort]) s.addEventListener('change', () => void draw());
  await draw();
}
