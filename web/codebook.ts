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
  /** Without --patches: null; 'pending' while the server assigns the store's patches. */
  store: { assigned: number; total: number; members: number; radius: number } | 'pending' | null;
  nearest: { id: number; distSq: number }[];
}

/** Sprite sheets as loaded images, for the thumbnails of the details panel and tooltips. */
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

/** Sheets as decoded bitmaps (decoded off the main thread by createImageBitmap), by URL. */
const sheetBitmaps = new Map<string, ImageBitmap | Promise<void>>();

/**
 * The virtualised grid of one codebook in one order: a scroll container whose height is that of
 * all rows, holding one canvas the size of the view (sticky at its top) on which the visible
 * codes are drawn from their sprite sheets. Nothing per code exists in the DOM, so a jump
 * anywhere in K = 200,000 codes costs one redraw of the visible ones.
 *
 * For tests and benchmarks the grid element reports data-cols, data-drawn (codes drawn with
 * their thumbnail in the last redraw) and data-last-drawn="1" once the last code was drawn.
 */
class CodeGrid {
  readonly root = el('div', { class: 'grid' });
  private readonly canvas = el('canvas', { class: 'codes' });
  private readonly spacer = el('div', { class: 'spacer' });
  private readonly ctx = this.canvas.getContext('2d')!;
  private cols = 1;
  private frame = 0;
  private selected = -1;

  constructor(
    private readonly cb: number,
    private readonly K: number,
    private readonly sort: string,
    /** Code id at each position (null: the id order). */
    private readonly order: Int32Array | null,
    private readonly onSelect: (id: number) => void,
  ) {
    this.root.append(this.canvas, this.spacer);
    this.root.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(this.root);
    this.canvas.addEventListener('click', (e) => {
      const box = this.canvas.getBoundingClientRect();
      const col = Math.floor((e.clientX - box.left) / CELL);
      const row = Math.floor((e.clientY - box.top + this.root.scrollTop) / CELL);
      const i = row * this.cols + col;
      if (col >= this.cols || i < 0 || i >= this.K) return;
      this.selected = i;
      this.schedule();
      this.onSelect(this.idAt(i));
    });
  }

  private idAt(i: number): number {
    return this.order ? this.order[i]! : i;
  }

  schedule(): void {
    if (!this.frame) this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** The bitmap of sheet `n`, or null while it loads (the grid redraws when it arrives). */
  private sheet(n: number): ImageBitmap | null {
    const src = sheetUrl(this.cb, this.sort, n);
    const got = sheetBitmaps.get(src);
    if (got instanceof ImageBitmap) return got;
    if (!got) {
      sheetBitmaps.set(src, fetch(src)
        .then((r) => r.blob())
        .then((b) => createImageBitmap(b))
        .then((bitmap) => {
          sheetBitmaps.set(src, bitmap);
          this.schedule();
        }));
    }
    return null;
  }

  /** Draw the codes in view. */
  render(): void {
    const width = this.root.clientWidth;
    const height = this.root.clientHeight;
    const cols = Math.max(1, Math.floor(width / CELL));
    this.cols = cols;
    const rows = Math.ceil(this.K / cols);
    this.spacer.style.height = `${Math.max(0, rows * CELL - height)}px`;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, width, height);
    const top = this.root.scrollTop;
    const firstRow = Math.floor(top / CELL);
    const lastRow = Math.min(rows - 1, Math.floor((top + height) / CELL));
    let drawn = 0;
    let lastDrawn = false;
    for (let r = firstRow; r <= lastRow; r++) {
      const y = r * CELL - top;
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        if (i >= this.K) break;
        const bitmap = this.sheet(Math.floor(i / CODES_PER_SHEET));
        const x = c * CELL;
        if (bitmap) {
          const pos = i % CODES_PER_SHEET;
          ctx.drawImage(bitmap, (pos % SHEET_SIDE) * THUMB, Math.floor(pos / SHEET_SIDE) * THUMB, THUMB, THUMB, x, y, THUMB, THUMB);
          drawn++;
          if (i === this.K - 1) lastDrawn = true;
        } else {
          ctx.fillStyle = '#eee';
          ctx.fillRect(x, y, THUMB, THUMB);
        }
        if (i === this.selected) {
          ctx.strokeStyle = '#e6550d';
          ctx.lineWidth = 2;
          ctx.strokeRect(x - 1, y - 1, THUMB + 2, THUMB + 2);
        }
      }
    }
    this.root.dataset.cols = String(cols);
    this.root.dataset.drawn = String(drawn);
    if (drawn > 0 && performance.getEntriesByName('uvu:first-draw').length === 0) performance.mark('uvu:first-draw');
    if (lastDrawn) this.root.dataset.lastDrawn = '1';
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
  performance.mark('uvu:codebook-info');
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
  grid.schedule();
  // The statistics (2·K floats) only feed the histogram: fetched after the grid's first paint.
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
  const st = d.store;
  const of = st && st !== 'pending' ? (st.assigned === st.total ? `of the ${st.total} patches of --patches` : `of a sample of ${st.assigned} of the ${st.total} patches of --patches`) : '';
  if (st === 'pending') rows.push(['members', '…', 'the server is still assigning the patches of --patches; click again in a moment']);
  else if (st) rows.push(['members', String(st.members), `patches assigned to it, ${of}`], ['radius', fmt(st.radius, 3), `max ‖p − c‖₂ of those patches (assignment space)`]);
  details.replaceChildren(
    el('h3', {}, `code `, el('span', { id: 'code-id' }, String(id))),
    codeThumb(cbId, id, 4),
    el('table', {}, ...rows.map(([k, v, title]) => el('tr', { title }, el('th', {}, k), el('td', { id: `code-${k}`, 'data-value': v }, v)))),
    el('div', { class: 'caption' }, 'nearest codes (pixel space)'),
    nearest,
  );
  if (st && st !== 'pending' && st.members > 0) {
    details.append(el('div', { class: 'caption' }, `patches assigned to it (${of})`), el('img', { class: 'members', src: url(`/api/codebook/${cbId}/code/${id}/patches`), alt: `patches of code ${id}` }));
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
