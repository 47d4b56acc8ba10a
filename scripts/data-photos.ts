/**
 * `npm run data:photos`: builds a set of real photographs from Debian packages (wallpapers,
 * GCompris activity pictures inside Qt .rcc files, Tux Paint photo templates).
 *
 *   node dist/scripts/data-photos.js [--out data/photos] [--val-fraction 0.15] [--seed 0]
 *        [--packages a,b] [--cache data/.debs] [--json] [--review-sheets DIR [--review-all]]
 *
 * Steps: `apt-get download` each package into the cache (never installed), `dpkg-deb -x` it,
 * list candidate images (jpg/jpeg/png/webp files and the same inside .rcc files), drop images
 * smaller than MIN_SIDE and exact duplicates (same sha256), then keep exactly the images listed
 * under "keep" in scripts/photos-reviewed.json (decisions made by looking at every candidate).
 * Candidates the list does not mention are reported as unreviewed, with an automatic proposal
 * (photo-like pixel statistics); `--review-sheets` renders numbered contact sheets of them.
 *
 * Output: <out>/train/*, <out>/val/* (original bytes, split by a seeded hash of the image key)
 * and <out>/manifest.json. Rerunning with everything in place writes nothing.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { parseRcc } from './rcc.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { UsageError, UvuError, warnOnce } from '../src/util/errors.js';
import { info, progress, setQuiet } from '../src/util/progress.js';

const DEFAULT_PACKAGES = ['gcompris-qt-data', 'lomiri-wallpapers-16.04', 'mate-backgrounds', 'lxqt-themes', 'tuxpaint-data'];
/** Both sides must be at least this many pixels (64 patches of 32×32 at the minimum). */
const MIN_SIDE = 256;
const PATCH = 32;
/** Longest side of the resized variant for which patch counts are also reported. */
const RESIZE_MAX = 512;
const IMAGE_EXT = /\.(jpe?g|png|webp)$/i;
const REVIEWED_PATH = fileURLToPath(new URL('../../scripts/photos-reviewed.json', import.meta.url));

interface Options {
  out: string;
  cache: string;
  valFraction: number;
  seed: number;
  packages: string[];
  json: boolean;
  reviewSheets: string | null;
  reviewAll: boolean;
}

/** One image found in a package, bytes loaded on demand. */
interface Candidate {
  /** `package:path`; for .rcc members `package:path/of/file.rcc!/resource/path`. */
  key: string;
  package: string;
  packageVersion: string;
  sourcePath: string;
  license: string;
  load: () => Buffer;
}

interface Measured extends Candidate {
  bytes: Buffer;
  sha256: string;
  width: number;
  height: number;
  /** Other candidate keys with identical bytes (this one has the smallest key). */
  duplicates: string[];
}

interface Reviewed {
  keep: string[];
  drop: { file: string; reason: string }[];
}

interface ManifestImage {
  file: string;
  split: 'train' | 'val';
  package: string;
  packageVersion: string;
  sourcePath: string;
  license: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
}

interface PackageReport {
  name: string;
  status: 'ok' | 'missing';
  note?: string;
  version?: string;
  debBytes?: number;
  downloaded?: boolean;
  candidates: number;
  tooSmall: number;
  duplicates: number;
  zstdSkipped: number;
  kept: number;
  dropped: number;
  unreviewed: number;
  unreviewedProposed: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string', default: 'data/photos' },
      cache: { type: 'string', default: 'data/.debs' },
      'val-fraction': { type: 'string', default: '0.15' },
      seed: { type: 'string', default: '0' },
      packages: { type: 'string' },
      json: { type: 'boolean', default: false },
      'review-sheets': { type: 'string' },
      'review-all': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const valFraction = Number(values['val-fraction']);
  if (!(valFraction >= 0 && valFraction < 1)) throw new UsageError(`--val-fraction must be in [0, 1), got ${values['val-fraction']}`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer, got ${values.seed}`);
  const packages = values.packages ? values.packages.split(',').map((p) => p.trim()).filter(Boolean) : DEFAULT_PACKAGES;
  for (const p of packages) if (!/^[a-z0-9][a-z0-9.+-]+$/.test(p)) throw new UsageError(`--packages: "${p}" is not a Debian package name`);
  return {
    out: values.out!,
    cache: values.cache!,
    valFraction,
    seed,
    packages,
    json: values.json!,
    reviewSheets: values['review-sheets'] ?? null,
    reviewAll: values['review-all']!,
  };
}

// ---------------------------------------------------------------- packages

/** Candidate version from `apt-cache policy`, or null when apt does not know the package. */
function aptCandidate(pkg: string): string | null {
  let text: string;
  try {
    text = execFileSync('apt-cache', ['policy', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
  const m = /Candidate:\s*(\S+)/.exec(text);
  return m && m[1] !== '(none)' ? m[1]! : null;
}

/** Cached .deb for `pkg` (the candidate version, or the newest cached one when apt is unavailable). */
function fetchDeb(pkg: string, cache: string): { deb: string; downloaded: boolean } | { note: string } {
  mkdirSync(cache, { recursive: true });
  const cached = readdirSync(cache).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb')).sort();
  const version = aptCandidate(pkg);
  if (version === null) {
    if (cached.length > 0) return { deb: join(cache, cached[cached.length - 1]!), downloaded: false };
    return { note: 'not known to apt (apt-cache policy has no candidate) and not in the cache' };
  }
  const prefix = `${pkg}_${version.replace(/:/g, '%3a')}_`;
  const hit = cached.find((f) => f.startsWith(prefix));
  if (hit) return { deb: join(cache, hit), downloaded: false };
  info(`data:photos: downloading ${pkg} ${version}`);
  try {
    execFileSync('apt-get', ['download', `${pkg}=${version}`], { cwd: cache, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    return { note: `apt-get download failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim().split('\n').pop()}` };
  }
  const got = readdirSync(cache).find((f) => f.startsWith(prefix) && f.endsWith('.deb'));
  if (!got) return { note: `apt-get download produced no ${prefix}*.deb` };
  return { deb: join(cache, got), downloaded: true };
}

/** Extract a .deb once into `<cache>/extract/<deb name>/` (temp dir + rename, so a crash leaves no half tree). */
function extractDeb(deb: string, cache: string): string {
  const dest = join(cache, 'extract', basename(deb, '.deb'));
  if (existsSync(dest)) return dest;
  const tmp = `${dest}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync('dpkg-deb', ['-x', deb, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
  renameSync(tmp, dest);
  return dest;
}

function debVersion(deb: string): string {
  return execFileSync('dpkg-deb', ['-f', deb, 'Version'], { encoding: 'utf8' }).trim();
}

// ---------------------------------------------------------------- licenses

interface CopyrightStanza {
  /** `exactName`: the file name when the pattern names one file (no wildcards), else null. */
  patterns: { re: RegExp; exactName: string | null }[];
  license: string;
}

/**
 * Files/License stanzas of a machine-readable debian/copyright. Patterns are relative to the
 * source tree, so they are matched against path suffixes of the installed path (see licenseFor).
 */
function readCopyright(root: string, pkg: string): CopyrightStanza[] {
  const file = join(root, 'usr/share/doc', pkg, 'copyright');
  if (!existsSync(file)) return [];
  const stanzas: CopyrightStanza[] = [];
  for (const para of readFileSync(file, 'utf8').split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const line of para.split('\n')) {
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) fields.set((last = m[1]!.toLowerCase()), m[2]!);
      else if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)}\n${line.trim()}`);
    }
    const files = fields.get('files')?.replace(/\n/g, ' ');
    const license = fields.get('license');
    if (files === undefined || license === undefined) continue;
    // The first line of License: is the short name; continuation lines hold the full text.
    const licenseName = license.split('\n')[0]!.trim();
    stanzas.push({ patterns: files.split(/\s+/).filter(Boolean).map((g) => ({
      re: globToRegExp(g),
      exactName: /[*?]/.test(g) ? null : g.split('/').pop()!,
    })), license: licenseName });
  }
  return stanzas;
}

/** DEP-5 glob: `*` matches anything (including '/'), `?` one character. */
function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/^\.\//, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * License of an installed file: the last stanza (DEP-5 precedence) one of whose patterns matches
 * a '/'-suffix of `path`, or, for patterns naming one exact file, its basename (upstream trees
 * often keep wallpapers in directories that are renamed on install).
 */
function licenseFor(stanzas: CopyrightStanza[], path: string, pkg: string): string {
  const parts = path.split('/');
  const suffixes = parts.map((_, i) => parts.slice(i).join('/'));
  const name = parts[parts.length - 1]!;
  let found: string | null = null;
  for (const s of stanzas) {
    if (s.patterns.some((p) => suffixes.some((suf) => p.re.test(suf)) || p.exactName === name)) found = s.license;
  }
  return found ?? `unknown (see /usr/share/doc/${pkg}/copyright)`;
}

// ---------------------------------------------------------------- candidates

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Images in an extracted package, including those inside .rcc resource files. Returns the zstd-skip count too. */
function listCandidates(pkg: string, version: string, root: string, stanzas: CopyrightStanza[]): { candidates: Candidate[]; zstdSkipped: number } {
  const candidates: Candidate[] = [];
  let zstdSkipped = 0;
  for (const abs of walk(root)) {
    const rel = relative(root, abs);
    if (IMAGE_EXT.test(rel)) {
      candidates.push({
        key: `${pkg}:${rel}`, package: pkg, packageVersion: version, sourcePath: rel,
        license: licenseFor(stanzas, rel, pkg), load: () => readFileSync(abs),
      });
    } else if (rel.endsWith('.rcc')) {
      for (const entry of parseRcc(readFileSync(abs), abs)) {
        if (!IMAGE_EXT.test(entry.path)) continue;
        if (entry.data === null) {
          zstdSkipped++;
          continue;
        }
        const data = entry.data;
        const sourcePath = `${rel}!/${entry.path}`;
        candidates.push({
          key: `${pkg}:${sourcePath}`, package: pkg, packageVersion: version, sourcePath,
          license: licenseFor(stanzas, entry.path, pkg), load: () => data,
        });
      }
    }
  }
  return { candidates, zstdSkipped };
}

// ---------------------------------------------------------------- photo proposal

interface PhotoStats {
  /** Pixels (on a ≤512 px nearest-neighbour sample) whose RGB equals the right neighbour's: high for flat drawings. */
  flatFraction: number;
  /** Distinct colours at 6 bits per channel in the sample: low for clip-art and gradients. */
  distinctColours: number;
  /** Some pixel is not fully opaque: typical of clip-art / sprites. */
  transparent: boolean;
  proposed: boolean;
}

/** Pixel statistics that separate photographs from drawings/renders (a proposal; review decides). */
async function photoStats(bytes: Buffer): Promise<PhotoStats> {
  const img = sharp(bytes);
  const stats = await img.stats();
  const transparent = stats.channels.length === 4 && stats.channels[3]!.min < 255;
  const { data, info: meta } = await sharp(bytes)
    .removeAlpha()
    .resize({ width: 512, height: 512, fit: 'inside', withoutEnlargement: true, kernel: 'nearest' })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width: w, height: h } = meta;
  if (meta.channels !== 3) throw new UvuError(`photoStats: expected 3 channels after sRGB conversion, got ${meta.channels}`);
  let flat = 0;
  const seen = new Uint8Array(1 << 18);
  let distinct = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const bin = ((data[i]! >> 2) << 12) | ((data[i + 1]! >> 2) << 6) | (data[i + 2]! >> 2);
      if (!seen[bin]) {
        seen[bin] = 1;
        distinct++;
      }
      if (x + 1 < w && data[i] === data[i + 3] && data[i + 1] === data[i + 4] && data[i + 2] === data[i + 5]) flat++;
    }
  }
  const flatFraction = flat / Math.max(1, (w - 1) * h);
  // Thresholds tuned for recall on the reviewed candidates (review of 447 candidates: 194 of 202 photos
  // proposed; most of the 31 false proposals are photographed paintings, which only a look can tell).
  return { flatFraction, distinctColours: distinct, transparent, proposed: !transparent && flatFraction < 0.65 && distinct >= 1000 };
}

// ---------------------------------------------------------------- review list

function readReviewed(): Reviewed {
  if (!existsSync(REVIEWED_PATH)) return { keep: [], drop: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(REVIEWED_PATH, 'utf8'));
  } catch (err) {
    throw new UvuError(`${REVIEWED_PATH}: not valid JSON (${(err as Error).message})`);
  }
  const r = parsed as Partial<Reviewed>;
  if (!Array.isArray(r.keep) || !Array.isArray(r.drop) || !r.keep.every((k) => typeof k === 'string') ||
      !r.drop.every((d) => typeof d?.file === 'string' && typeof d?.reason === 'string')) {
    throw new UvuError(`${REVIEWED_PATH}: expected { "keep": string[], "drop": { "file", "reason" }[] }`);
  }
  const both = r.keep.filter((k) => r.drop!.some((d) => d.file === k));
  if (both.length > 0) throw new UvuError(`${REVIEWED_PATH}: ${both[0]} is both kept and dropped`);
  return r as Reviewed;
}

// ---------------------------------------------------------------- output

/** `<package>__<path with '/' and odd characters as '_'>.<ext>`, dropping the uninformative usr/share/ prefix. */
function outputName(c: Candidate): string {
  const ext = c.sourcePath.match(IMAGE_EXT)![1]!.toLowerCase().replace('jpeg', 'jpg');
  const stem = c.sourcePath.replace(IMAGE_EXT, '').replace(/^usr\/share\//, '').replace(/[^A-Za-z0-9._-]+/g, '_');
  return `${c.package}__${stem}.${ext}`;
}

/** Split by image from a seeded hash of its key: stable under any change of discovery order. */
function splitOf(key: string, seed: number, valFraction: number): 'train' | 'val' {
  const h = createHash('sha256').update(`${seed}\0${key}`).digest();
  return h.readUInt32BE(0) / 2 ** 32 < valFraction ? 'val' : 'train';
}

function patchCounts(w: number, h: number): { native: number; resized: number } {
  const s = Math.min(1, RESIZE_MAX / Math.max(w, h));
  const rw = Math.round(w * s);
  const rh = Math.round(h * s);
  return { native: Math.floor(w / PATCH) * Math.floor(h / PATCH), resized: Math.floor(rw / PATCH) * Math.floor(rh / PATCH) };
}

function sha256File(path: string): string | null {
  if (!existsSync(path)) return null;
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Numbered contact sheets (6×5 thumbnails) of `items` plus an index JSON, for reviewing by eye. */
async function writeReviewSheets(dir: string, items: { m: Measured; stats: PhotoStats }[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const cols = 6, rows = 5, cell = 220, thumb = 200, perSheet = cols * rows;
  const index: object[] = [];
  for (let s = 0; s * perSheet < items.length; s++) {
    const page = items.slice(s * perSheet, (s + 1) * perSheet);
    const layers: { input: Buffer; left: number; top: number }[] = [];
    for (let j = 0; j < page.length; j++) {
      const n = s * perSheet + j;
      const { m, stats } = page[j]!;
      const left = (j % cols) * cell, top = Math.floor(j / cols) * cell;
      const input = await sharp(m.bytes).flatten({ background: '#ff00ff' })
        .resize(thumb, thumb, { fit: 'contain', background: '#202020' }).png().toBuffer();
      layers.push({ input, left: left + 10, top: top + 4 });
      const colour = stats.proposed ? '#40ff40' : '#ff5050';
      const label = Buffer.from(`<svg width="${cell}" height="18"><text x="10" y="14" font-size="13" font-family="sans-serif" fill="${colour}">#${n} ${m.width}x${m.height} f${stats.flatFraction.toFixed(2)} c${stats.distinctColours}</text></svg>`);
      layers.push({ input: label, left, top: top + thumb + 2 });
      index.push({ n, sheet: s, key: m.key, width: m.width, height: m.height, ...stats });
    }
    await sharp({ create: { width: cols * cell, height: rows * cell, channels: 3, background: '#000000' } })
      .composite(layers).png().toFile(join(dir, `sheet-${String(s).padStart(3, '0')}.png`));
  }
  writeFileAtomic(join(dir, 'index.json'), `${JSON.stringify(index, null, 1)}\n`);
  info(`data:photos: ${items.length} images on ${Math.ceil(items.length / perSheet)} contact sheets in ${dir}`);
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = Date.now();
  const opts = parseOptions(process.argv.slice(2));
  if (opts.json) setQuiet(true);
  const reviewed = readReviewed();
  const keepSet = new Set(reviewed.keep);
  const dropReason = new Map(reviewed.drop.map((d) => [d.file, d.reason]));

  const reports = new Map<string, PackageReport>();
  const candidates: Candidate[] = [];
  let downloadBytes = 0;
  for (const pkg of opts.packages) {
    const report: PackageReport = { name: pkg, status: 'missing', candidates: 0, tooSmall: 0, duplicates: 0, zstdSkipped: 0, kept: 0, dropped: 0, unreviewed: 0, unreviewedProposed: 0 };
    reports.set(pkg, report);
    const got = fetchDeb(pkg, opts.cache);
    if ('note' in got) {
      report.note = got.note;
      warnOnce(`missing-${pkg}`, `data:photos: skipping ${pkg}: ${got.note}`);
      continue;
    }
    const debBytes = statSync(got.deb).size;
    if (got.downloaded) downloadBytes += debBytes;
    const root = extractDeb(got.deb, opts.cache);
    const version = debVersion(got.deb);
    const found = listCandidates(pkg, version, root, readCopyright(root, pkg));
    Object.assign(report, { status: 'ok', version, debBytes, downloaded: got.downloaded, candidates: found.candidates.length, zstdSkipped: found.zstdSkipped });
    if (found.zstdSkipped > 0) warnOnce(`zstd-${pkg}`, `data:photos: ${pkg}: skipped ${found.zstdSkipped} zstd-compressed rcc images (Node 20 has no zstd)`);
    info(`data:photos: ${pkg} ${version}: ${found.candidates.length} candidate images`);
    candidates.push(...found.candidates);
  }

  // Measure, drop small ones, collapse exact duplicates onto the smallest key.
  candidates.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const bySha = new Map<string, Measured>();
  const bar = progress('measure', candidates.length, 'images');
  for (const c of candidates) {
    bar.tick();
    const bytes = c.load();
    let width = 0, height = 0;
    try {
      const meta = await sharp(bytes).metadata();
      width = meta.width ?? 0;
      height = meta.height ?? 0;
    } catch (err) {
      warnOnce(`decode-${c.key}`, `data:photos: ${c.key}: cannot decode (${(err as Error).message}); skipped`);
    }
    const report = reports.get(c.package)!;
    if (Math.min(width, height) < MIN_SIDE) {
      report.tooSmall++;
      continue;
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const first = bySha.get(sha256);
    if (first) {
      first.duplicates.push(c.key);
      report.duplicates++;
      continue;
    }
    bySha.set(sha256, { ...c, bytes, sha256, width, height, duplicates: [] });
  }
  bar.stop();

  const kept: Measured[] = [];
  const toReview: { m: Measured; stats: PhotoStats }[] = [];
  const sheetsFor = async (m: Measured): Promise<void> => {
    if (opts.reviewSheets !== null) toReview.push({ m, stats: await photoStats(m.bytes) });
  };
  for (const m of bySha.values()) {
    const report = reports.get(m.package)!;
    // A duplicate's decision counts for the group (the list may name any member).
    const names = [m.key, ...m.duplicates];
    if (names.some((k) => keepSet.has(k))) {
      kept.push(m);
      report.kept++;
      if (opts.reviewAll) await sheetsFor(m);
    } else if (names.some((k) => dropReason.has(k))) {
      report.dropped++;
      if (opts.reviewAll) await sheetsFor(m);
    } else {
      report.unreviewed++;
      const stats = await photoStats(m.bytes);
      if (stats.proposed) report.unreviewedProposed++;
      if (opts.reviewSheets !== null) toReview.push({ m, stats });
    }
  }
  const unreviewed = [...reports.values()].reduce((s, r) => s + r.unreviewed, 0);
  if (unreviewed > 0) {
    warnOnce('unreviewed', `data:photos: ${unreviewed} candidate images are not in ${basename(REVIEWED_PATH)} and were left out; ` +
      'render them with --review-sheets DIR and record a decision for each');
  }
  const listedMissing = reviewed.keep.filter((k) => !candidates.some((c) => c.key === k) && opts.packages.includes(k.split(':')[0]!));
  if (listedMissing.length > 0) warnOnce('keep-missing', `data:photos: ${listedMissing.length} kept images no longer exist in the packages (first: ${listedMissing[0]})`);
  if (opts.reviewSheets !== null) await writeReviewSheets(opts.reviewSheets, toReview);

  // Write train/val files (original bytes) and the manifest.
  const images: ManifestImage[] = [];
  let written = 0, unchanged = 0;
  for (const m of kept) {
    const split = splitOf(m.key, opts.seed, opts.valFraction);
    const file = `${split}/${outputName(m)}`;
    const dest = join(opts.out, file);
    if (sha256File(dest) === m.sha256) unchanged++;
    else {
      mkdirSync(dirname(dest), { recursive: true });
      writeFileAtomic(dest, m.bytes);
      written++;
    }
    images.push({ file, split, package: m.package, packageVersion: m.packageVersion, sourcePath: m.sourcePath, license: m.license,
      width: m.width, height: m.height, bytes: m.bytes.length, sha256: m.sha256 });
  }
  images.sort((a, b) => (a.file < b.file ? -1 : 1));
  // Files from an earlier run with another seed/list would otherwise leak between splits.
  const wanted = new Set(images.map((i) => i.file));
  let removed = 0;
  for (const split of ['train', 'val']) {
    const dir = join(opts.out, split);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) {
      if (!wanted.has(`${split}/${f}`)) {
        rmSync(join(dir, f));
        removed++;
      }
    }
  }

  const totals = { images: images.length, train: splitTotals(images, 'train'), val: splitTotals(images, 'val'), all: splitTotals(images, null) };
  const manifest = {
    description: 'Real photographs from Debian packages, selected by scripts/photos-reviewed.json (npm run data:photos)',
    seed: opts.seed, valFraction: opts.valFraction, patchSide: PATCH, resizeMax: RESIZE_MAX, totals, images,
  };
  const manifestPath = join(opts.out, 'manifest.json');
  const manifestText = `${JSON.stringify(manifest, null, 1)}\n`;
  mkdirSync(opts.out, { recursive: true });
  const manifestChanged = !existsSync(manifestPath) || readFileSync(manifestPath, 'utf8') !== manifestText;
  if (manifestChanged) writeFileAtomic(manifestPath, manifestText);

  const summary = {
    out: opts.out, manifest: manifestPath, packages: [...reports.values()], totals,
    written, unchanged, removed, manifestChanged, downloadBytes, unreviewed, seconds: (Date.now() - started) / 1000,
  };
  info(`data:photos: ${images.length} photos (train ${totals.train.images}, val ${totals.val.images}); ` +
    `32×32 patches native ${totals.all.patchesNative}, ≤${RESIZE_MAX}px ${totals.all.patchesResized}; ` +
    `${written} written, ${unchanged} unchanged, ${removed} removed`);
  if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
}

function splitTotals(images: ManifestImage[], split: 'train' | 'val' | null) {
  let n = 0, bytes = 0, patchesNative = 0, patchesResized = 0;
  for (const i of images) {
    if (split !== null && i.split !== split) continue;
    const p = patchCounts(i.width, i.height);
    n++;
    bytes += i.bytes;
    patchesNative += p.native;
    patchesResized += p.resized;
  }
  return { images: n, bytes, patchesNative, patchesResized };
}

main().catch((err: unknown) => {
  if (err instanceof UvuError) {
    process.stderr.write(`uvu: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  if (err instanceof Error && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`uvu: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
});
