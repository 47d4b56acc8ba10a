/**
 * `uvu serve`: a read-only web explorer over the folders it is given (fastify). The page (the
 * bundle built from web/ into dist/web) asks these endpoints for data:
 *
 *   GET  /api/config                              codebooks, runs, evaluations, whether images/bench/patches were given
 *   GET  /api/codebook/:cb                         K, build and metrics of codebook cb
 *   GET  /api/codebook/:cb/stats                   f32 [2, K]: counts, brightness
 *   GET  /api/codebook/:cb/order/:sort             i32 [K]: code ids in that order
 *   GET  /api/codebook/:cb/sheet/:sort/:n          PNG sprite sheet n of that order (cached under --cache)
 *   GET  /api/codebook/:cb/code/:id                count, brightness, nearest codes and store members and radius of one code
 *   GET  /api/codebook/:cb/code/:id/patches        PNG of store patches assigned to it
 *   GET  /api/images                               image files under --images
 *   GET  /api/roundtrip?cb=&image=                 round trip of an --images file (the code `uvu roundtrip` runs)
 *   POST /api/roundtrip?cb=                        the same for an uploaded image (bytes capped, kept in memory only)
 *   GET  /api/roundtrip/:key/:which                PNG original | recon | heat of a round trip
 *   GET  /api/runs/:run/log?from=                  log.jsonl lines from a byte offset
 *   GET  /api/runs/:run/events?from=               the same, then every appended line (server-sent events)
 *   GET  /api/evals/:ev                            one evaluation report with items and true boxes
 *   GET  /files/images/*, /files/bench/*           files under --images / --bench (see roots.ts: anything else is 404)
 *
 * Security: it binds 127.0.0.1 by default; on a loopback address it answers only requests whose
 * Host is a loopback name (no DNS rebinding); on any other address every request must carry the
 * token printed at start (?token= or the x-uvu-token header). Nothing is written outside the cache
 * folder and nothing is run.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { encodePng, readImageSize } from '../image/io.js';
import { patchify } from '../patches/patchify.js';
import { readBenchItems, readEvalReport, type SavedEvalReport } from '../perception/eval.js';
import { roundtrip } from '../tokens/roundtrip.js';
import { DEFAULT_MAX_PIXELS } from '../util/defaults.js';
import { UvuError } from '../util/errors.js';
import { CodebookView, SORTS, type Sort } from './codebook-view.js';
import { Root } from './roots.js';
import { findRuns, readLog, type RunFolder } from './runs.js';

/** Largest upload accepted, bytes. */
export const MAX_UPLOAD_BYTES = 16 * 2 ** 20;
/** Largest upload accepted, pixels its header declares (it is then resized to --max-pixels like any image). */
export const MAX_UPLOAD_PIXELS = 64 * 2 ** 20;
/** Round trips kept in memory (their PNGs), most recent first. */
const ROUNDTRIP_CACHE = 16;
/** Image files listed from --images, at most. */
const MAX_IMAGES = 5000;
const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff']);
/** How often a followed log is checked for new lines, ms. */
const LOG_POLL_MS = 250;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp', '.gif': 'image/gif', '.tif': 'image/tiff', '.tiff': 'image/tiff',
  '.json': 'application/json',
};
/** The page's files, built by scripts/build-web.ts. */
const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));

export interface ServeOptions {
  codebooks: string[];
  patches?: string;
  runs: string[];
  bench?: string;
  images?: string;
  host: string;
  port: number;
  /** Folder of cached sprite sheets. */
  cache: string;
  /** Resize policy of round trips (as `uvu roundtrip --max-pixels`). */
  maxPixels?: number;
}

interface RoundtripResult {
  json: Record<string, unknown>;
  png: Record<'original' | 'recon' | 'heat', Buffer>;
}

interface EvalEntry {
  name: string;
  path: string;
}

export interface Explorer {
  app: FastifyInstance;
  url: string;
  /** Required in every request when not on loopback; null on loopback. */
  token: string | null;
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** eval-*.json reports in the run folders (what `uvu eval` writes beside a checkpoint's run). */
function findEvals(runs: RunFolder[], runRoots: string[]): EvalEntry[] {
  const dirs = new Map<string, string>();
  for (const r of runs) dirs.set(r.dir, r.name);
  for (const root of runRoots) if (!dirs.has(root)) dirs.set(root, basename(root));
  const found: EvalEntry[] = [];
  for (const [dir, name] of dirs) {
    for (const f of readdirSync(dir).sort()) if (/^eval-.*\.json$/.test(f)) found.push({ name: `${name}/${f}`, path: join(dir, f) });
  }
  return found;
}

/** Image files under a root (recursive, sorted, at most MAX_IMAGES), as root-relative paths. */
function listImages(root: Root): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (out.length >= MAX_IMAGES) return;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()) && root.resolve(relative(root.real, p)) !== null) out.push(relative(root.real, p));
    }
  };
  walk(root.real);
  return out;
}

function notFound(reply: FastifyReply): FastifyReply {
  return reply.code(404).type('text/plain').send('not found');
}

/** An integer route parameter in [0, n), or null. */
function indexParam(value: string | undefined, n: number): number | null {
  if (value === undefined || !/^\d{1,9}$/.test(value)) return null;
  const v = Number(value);
  return v < n ? v : null;
}

function binary(reply: FastifyReply, a: Float32Array | Int32Array): FastifyReply {
  return reply.type('application/octet-stream').send(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
}

export async function startExplorer(opts: ServeOptions): Promise<Explorer> {
  for (const [flag, dir] of [['--patches', opts.patches], ['--bench', opts.bench], ['--images', opts.images], ...opts.runs.map((r) => ['--runs', r])] as const) {
    if (dir !== undefined && !existsSync(dir)) throw new UvuError(`${dir}: ${flag}: no such folder`);
  }
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const codebooks = opts.codebooks.map((p) => CodebookView.open(p, opts.cache, opts.patches ?? null));
  // Assign the store's patches in the background (a failure is reported by the requests that need it).
  for (const v of codebooks) if (v.storeDir) v.storeAssignment().catch(() => undefined);
  const images = opts.images ? new Root(opts.images) : null;
  const bench = opts.bench ? new Root(opts.bench) : null;
  const runs = findRuns(opts.runs);
  const evals = findEvals(runs, opts.runs);
  const loopback = isLoopback(opts.host);
  const token = loopback ? null : randomBytes(16).toString('hex');
  const web = new Map(['index.html', 'app.js', 'app.css'].map((f) => [f, readFileSync(join(WEB_DIR, f))]));

  const app = Fastify({ logger: false, bodyLimit: MAX_UPLOAD_BYTES, forceCloseConnections: true });
  app.addContentTypeParser(/^image\//, { parseAs: 'buffer', bodyLimit: MAX_UPLOAD_BYTES }, (_req, body, done) => done(null, body));

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (token === null) {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      if (!LOOPBACK_HOSTS.has(host)) return reply.code(403).type('text/plain').send('forbidden host');
    } else {
      const given = String((req.query as Record<string, unknown>).token ?? req.headers['x-uvu-token'] ?? '');
      const a = Buffer.from(given);
      const b = Buffer.from(token);
      if (a.length !== b.length || !timingSafeEqual(a, b)) return reply.code(401).type('text/plain').send('token required: open the URL uvu serve printed');
    }
    return undefined;
  });
  app.setNotFoundHandler((_req, reply) => notFound(reply));
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof UvuError) return reply.code(422).type('text/plain').send(err.message);
    if (err.statusCode === 413) return reply.code(413).type('text/plain').send(`upload too large: at most ${MAX_UPLOAD_BYTES} bytes`);
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).type('text/plain').send(err.message);
    return reply.code(500).type('text/plain').send(String(err.message).split('\n')[0]);
  });

  for (const [file, body] of web) {
    const route = file === 'index.html' ? '/' : `/${file}`;
    app.get(route, (_req, reply) => reply.type(CONTENT_TYPES[extname(file)]!).header('cache-control', 'no-cache').send(body));
  }

  app.get('/api/config', async () => ({
    codebooks: codebooks.map((v, i) => ({ id: i, name: v.name, K: v.cb.K })),
    patches: opts.patches !== undefined,
    images: images !== null,
    bench: bench !== null,
    runs: runs.map((r, i) => ({ id: i, name: r.name })),
    evals: evals.map((e, i) => ({ id: i, name: e.name })),
    maxUploadBytes: MAX_UPLOAD_BYTES,
    maxUploadPixels: MAX_UPLOAD_PIXELS,
    maxPixels,
  }));

  const view = (req: FastifyRequest): CodebookView | null => {
    const i = indexParam((req.params as Record<string, string>).cb, codebooks.length);
    return i === null ? null : codebooks[i]!;
  };
  const sortParam = (req: FastifyRequest, v: CodebookView): Sort | null => {
    const s = (req.params as Record<string, string>).sort as Sort;
    if (!SORTS.includes(s) || (s === 'radius' && !v.storeDir)) return null;
    return s;
  };

  app.get('/api/codebook/:cb', async (req, reply) => {
    const v = view(req);
    if (!v) return notFound(reply);
    return { name: v.name, K: v.cb.K, build: v.cb.build, metrics: v.cb.metrics, pe: v.cb.pe.type, sheets: v.sheetCount, sorts: SORTS.filter((s) => s !== 'radius' || v.storeDir) };
  });
  app.get('/api/codebook/:cb/stats', async (req, reply) => {
    const v = view(req);
    if (!v) return notFound(reply);
    const out = new Float32Array(2 * v.cb.K);
    out.set(v.cb.counts, 0);
    out.set(v.brightness, v.cb.K);
    return binary(reply, out);
  });
  app.get('/api/codebook/:cb/order/:sort', async (req, reply) => {
    const v = view(req);
    const sort = v && sortParam(req, v);
    if (!v || !sort) return notFound(reply);
    return binary(reply, await v.order(sort));
  });
  app.get('/api/codebook/:cb/sheet/:sort/:n', async (req, reply) => {
    const v = view(req);
    const sort = v && sortParam(req, v);
    const n = v && indexParam((req.params as Record<string, string>).n, v.sheetCount);
    if (!v || !sort || n === null) return notFound(reply);
    return reply.type('image/png').header('cache-control', 'private, max-age=600').send(readFileSync(await v.sheet(sort, n)));
  });
  app.get('/api/codebook/:cb/code/:id', async (req, reply) => {
    const v = view(req);
    const id = v && indexParam((req.params as Record<string, string>).id, v.cb.K);
    if (!v || id === null) return notFound(reply);
    // The store's assignment runs in the background from the start: answered without it until it is done.
    const a = v.assigned;
    const store = v.storeDir ? (a ? { assigned: a.assigned, total: a.total, members: a.members[id], radius: a.radius[id] } : 'pending') : null;
    return { id, count: v.cb.counts[id], brightness: v.brightness[id], store, nearest: v.nearest(id) };
  });
  app.get('/api/codebook/:cb/code/:id/patches', async (req, reply) => {
    const v = view(req);
    const id = v && indexParam((req.params as Record<string, string>).id, v.cb.K);
    if (!v || id === null || !v.storeDir) return notFound(reply);
    const png = await v.memberSheet(id);
    return png ? reply.type('image/png').send(png) : notFound(reply);
  });

  // ---------------------------------------------------------------- round trips
  const roundtrips = new Map<string, RoundtripResult>();
  const remember = (key: string, r: RoundtripResult): void => {
    roundtrips.delete(key);
    roundtrips.set(key, r);
    while (roundtrips.size > ROUNDTRIP_CACHE) roundtrips.delete(roundtrips.keys().next().value!);
  };
  const runRoundtrip = async (v: CodebookView, cbIndex: number, input: string | Buffer, source: string, key: string): Promise<Record<string, unknown>> => {
    const cached = roundtrips.get(key);
    if (cached) return cached.json;
    const r = await roundtrip(input, v.cb, maxPixels, source);
    const errors = v.patchErrors(patchify(r.original).patches, r.tokens.ids);
    const json = {
      key, cb: cbIndex, source, prp: r.metrics.prp, psnr: r.metrics.psnr, mse: r.metrics.mse, k_active: r.metrics.k_active,
      width: r.tokens.width, height: r.tokens.height, rows: r.tokens.rows, cols: r.tokens.cols, ids: r.tokens.ids, patchMse: Array.from(errors),
    };
    remember(key, { json, png: { original: await encodePng(r.original, source), recon: await encodePng(r.recon, source), heat: await encodePng(r.heat, source) } });
    return json;
  };
  app.get('/api/images', async () => (images ? listImages(images) : []));
  app.get('/api/roundtrip', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const cbIndex = indexParam(q.cb, codebooks.length);
    const file = images && q.image !== undefined ? images.resolve(q.image) : null;
    if (cbIndex === null || !file) return notFound(reply);
    return runRoundtrip(codebooks[cbIndex]!, cbIndex, file, q.image!, `${cbIndex}:${q.image}`);
  });
  app.post('/api/roundtrip', async (req, reply) => {
    const cbIndex = indexParam((req.query as Record<string, string | undefined>).cb, codebooks.length);
    if (cbIndex === null) return notFound(reply);
    if (!Buffer.isBuffer(req.body) || req.body.length === 0) return reply.code(415).type('text/plain').send('send the image bytes with an image/* content type');
    const { width, height } = await readImageSize(req.body);
    if (width * height > MAX_UPLOAD_PIXELS) return reply.code(413).type('text/plain').send(`upload: ${width}×${height} = ${width * height} pixels, at most ${MAX_UPLOAD_PIXELS} are accepted`);
    return runRoundtrip(codebooks[cbIndex]!, cbIndex, req.body, 'upload', `${cbIndex}:upload:${randomBytes(8).toString('hex')}`);
  });
  app.get('/api/roundtrip/:key/:which', async (req, reply) => {
    const { key, which } = req.params as { key: string; which: string };
    const r = roundtrips.get(key);
    if (!r || !['original', 'recon', 'heat'].includes(which)) return notFound(reply);
    return reply.type('image/png').send(r.png[which as 'original']);
  });

  // ---------------------------------------------------------------- runs
  const run = (req: FastifyRequest): RunFolder | null => {
    const i = indexParam((req.params as Record<string, string>).run, runs.length);
    return i === null ? null : runs[i]!;
  };
  const fromParam = (req: FastifyRequest): number => {
    const v = Number((req.query as Record<string, string | undefined>).from ?? 0);
    return Number.isSafeInteger(v) && v >= 0 ? v : 0;
  };
  app.get('/api/runs/:run/log', async (req, reply) => {
    const r = run(req);
    if (!r) return notFound(reply);
    return readLog(r.dir, fromParam(req));
  });
  app.get('/api/runs/:run/events', (req, reply) => {
    const r = run(req);
    if (!r) return notFound(reply);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    let from = fromParam(req);
    const send = (): void => {
      try {
        const got = readLog(r.dir, from);
        from = got.next;
        if (got.lines.length > 0 || got.reset) res.write(`data: ${JSON.stringify(got)}\n\n`);
      } catch (err) {
        res.write(`event: failure\ndata: ${JSON.stringify(String((err as Error).message))}\n\n`);
      }
    };
    send();
    const timer = setInterval(send, LOG_POLL_MS);
    req.raw.on('close', () => clearInterval(timer));
    return reply;
  });

  // ---------------------------------------------------------------- evaluations
  app.get('/api/evals/:ev', async (req, reply) => {
    const i = indexParam((req.params as Record<string, string>).ev, evals.length);
    if (i === null) return notFound(reply);
    const report: SavedEvalReport = readEvalReport(evals[i]!.path);
    // True boxes come from the benchmark's items (the report holds the predicted ones).
    const truth = new Map<string, { boxes: number[][]; size: number }>();
    if (bench) for (const it of readBenchItems(bench.dir, report.split)) truth.set(it.id, { boxes: it.boxes, size: it.size });
    return { ...report, name: evals[i]!.name, items: report.items.map((it) => ({ ...it, boxes: [], ...truth.get(it.id) })) };
  });

  // ---------------------------------------------------------------- files under the roots
  for (const [prefix, root] of [['images', images], ['bench', bench]] as const) {
    app.get(`/files/${prefix}/*`, async (req, reply) => {
      const file = root ? root.resolve((req.params as Record<string, string>)['*']!) : null;
      if (!file) return notFound(reply);
      return reply.type(CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream').send(readFileSync(file));
    });
  }

  await app.listen({ host: opts.host, port: opts.port });
  const port = (app.server.address() as { port: number }).port;
  const hostInUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${hostInUrl}:${port}/${token ? `?token=${token}` : ''}`;
  return { app, url, token, close: () => app.close() };
}
