/**
 * The round-trip page: an image from --images (or an upload) tokenized and reconstructed by the
 * server with the code `uvu roundtrip` runs; original | reconstruction | error heat-map side by
 * side or as a wipe with a slider; hovering a patch shows its code, its error and the code.
 */
import { el, fmt, json, url, type Config } from './api.js';
import { codeThumb } from './codebook.js';

interface Roundtrip {
  key: string;
  cb: number;
  source: string;
  prp: number;
  psnr: number;
  mse: number;
  k_active: number;
  width: number;
  height: number;
  rows: number;
  cols: number;
  ids: number[];
  /** Per patch: mean squared error per element, [0, 1] pixels. */
  patchMse: number[];
}

function metric(id: string, label: string, value: number, text: string): HTMLElement {
  return el('span', { class: 'metric' }, `${label} `, el('b', { id, 'data-value': String(value) }, text));
}

function showResult(target: HTMLElement, r: Roundtrip, mode: string): void {
  const tip = el('div', { class: 'tip', hidden: '' });
  const img = (which: string, label: string) => {
    const figure = el('figure', {}, el('img', { src: url(`/api/roundtrip/${r.key}/${which}`), alt: label, 'data-which': which }), el('figcaption', {}, label));
    return figure;
  };
  let figures: HTMLElement;
  if (mode === 'wipe') {
    const over = el('img', { class: 'over', src: url(`/api/roundtrip/${r.key}/recon`), alt: 'reconstruction' });
    const slider = el('input', { type: 'range', min: '0', max: '100', value: '50', id: 'wipe' });
    const setClip = () => (over.style.clipPath = `inset(0 0 0 ${slider.value}%)`);
    slider.addEventListener('input', setClip);
    setClip();
    figures = el('div', { class: 'figures' }, el('figure', {}, el('div', { class: 'wipe' }, el('img', { src: url(`/api/roundtrip/${r.key}/original`), alt: 'original' }), over), el('figcaption', {}, 'original ◀ ', slider, ' ▶ reconstruction')));
  } else {
    figures = el('div', { class: 'figures' }, img('original', 'original'), img('recon', 'reconstruction'), img('heat', 'error heat-map (white = mean error ≥ 64/255)'));
  }
  figures.addEventListener('mousemove', (e) => {
    const t = e.target as HTMLElement;
    if (!(t instanceof HTMLImageElement)) return void (tip.hidden = true);
    const box = t.getBoundingClientRect();
    const col = Math.floor(((e.clientX - box.left) / box.width) * r.cols);
    const row = Math.floor(((e.clientY - box.top) / box.height) * r.rows);
    if (col < 0 || row < 0 || col >= r.cols || row >= r.rows) return void (tip.hidden = true);
    const p = row * r.cols + col;
    const mse = r.patchMse[p]!;
    tip.replaceChildren(codeThumb(r.cb, r.ids[p]!, 2), el('div', {}, `patch (${row}, ${col}) → code ${r.ids[p]}`), el('div', {}, `MSE ${mse.toExponential(2)} · PSNR ${fmt(10 * Math.log10(1 / mse), 1)} dB`));
    tip.hidden = false;
    tip.style.left = `${e.pageX + 14}px`;
    tip.style.top = `${e.pageY + 14}px`;
  });
  figures.addEventListener('mouseleave', () => (tip.hidden = true));
  target.replaceChildren(
    el('div', { class: 'metrics', id: 'rt-metrics' },
      metric('rt-prp', 'PRP', r.prp, fmt(r.prp, 4)),
      metric('rt-psnr', 'PSNR', r.psnr, `${fmt(r.psnr, 2)} dB`),
      metric('rt-mse', 'MSE', r.mse, r.mse.toExponential(3)),
      el('span', { class: 'metric' }, `${r.rows}×${r.cols} patches (${r.width}×${r.height} px), ${r.k_active} distinct codes`),
    ),
    figures,
    tip,
  );
}

export async function roundtripPage(main: HTMLElement, cfg: Config): Promise<void> {
  if (cfg.codebooks.length === 0) {
    main.append(el('p', {}, 'No codebook: start uvu serve with --codebook FILE.'));
    return;
  }
  const images = await json<string[]>('/api/images');
  const cb = el('select', { id: 'rt-cb' }, ...cfg.codebooks.map((c) => el('option', { value: String(c.id) }, `${c.name} (K = ${c.K})`)));
  const image = el('select', { id: 'rt-image' }, el('option', { value: '' }, images.length ? 'pick an image' : '(no --images)'), ...images.map((p) => el('option', { value: p }, p)));
  const upload = el('input', { type: 'file', id: 'rt-upload', accept: 'image/*' });
  const mode = el('select', { id: 'rt-mode' }, el('option', { value: 'side' }, 'side by side'), el('option', { value: 'wipe' }, 'wipe'));
  const out = el('div', { class: 'roundtrip' });
  const status = el('span', { class: 'caption', id: 'rt-status' });
  main.append(el('div', { class: 'toolbar' }, 'codebook ', cb, ' image ', image, ' or upload ', upload, ' view ', mode, ' ', status), out);
  let last: Roundtrip | null = null;
  const run = async (request: () => Promise<Roundtrip>): Promise<void> => {
    status.textContent = 'tokenizing…';
    try {
      last = await request();
      status.textContent = `${last.source}, resized so that w·h ≤ ${cfg.maxPixels}`;
      showResult(out, last, mode.value);
    } catch (err) {
      status.textContent = String((err as Error).message);
    }
  };
  const fromList = () => image.value && run(() => json<Roundtrip>(`/api/roundtrip?cb=${cb.value}&image=${encodeURIComponent(image.value)}`));
  image.addEventListener('change', () => void fromList());
  cb.addEventListener('change', () => void fromList());
  mode.addEventListener('change', () => last && showResult(out, last, mode.value));
  upload.addEventListener('change', () => {
    const file = upload.files?.[0];
    if (!file) return;
    if (file.size > cfg.maxUploadBytes) return void (status.textContent = `${file.name}: ${file.size} bytes, the limit is ${cfg.maxUploadBytes}`);
    void run(() => json<Roundtrip>(`/api/roundtrip?cb=${cb.value}`, { method: 'POST', body: file, headers: { 'content-type': file.type || 'image/octet-stream' } }));
  });
  const wanted = new URLSearchParams(location.hash.split('?')[1] ?? '').get('image');
  if (wanted && images.includes(wanted)) image.value = wanted;
  else if (images.length) image.value = images[0]!;
  await fromList();
}
