/** Requests to the uvu serve API: every URL carries the page's token (when the server requires one). */
const token = new URLSearchParams(location.search).get('token');

/** `path` with the token appended. */
export function url(path: string): string {
  if (!token) return path;
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

async function get(path: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(url(path), init);
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res;
}

export async function json<T>(path: string, init?: RequestInit): Promise<T> {
  return (await get(path, init)).json() as Promise<T>;
}

export async function float32(path: string): Promise<Float32Array> {
  return new Float32Array(await (await get(path)).arrayBuffer());
}

export async function int32(path: string): Promise<Int32Array> {
  return new Int32Array(await (await get(path)).arrayBuffer());
}

export interface Config {
  codebooks: { id: number; name: string; K: number }[];
  patches: boolean;
  images: boolean;
  bench: boolean;
  runs: { id: number; name: string }[];
  evals: { id: number; name: string }[];
  maxUploadBytes: number;
  maxPixels: number;
}

/** An element with attributes and children. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** x with `digits` decimals, or "—" when it is not a finite number. */
export function fmt(x: number | null | undefined, digits = 4): string {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '—';
}
