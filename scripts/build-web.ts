/**
 * `npm run build` step 2: bundle the explorer's page (web/, TypeScript + CSS, uPlot) with esbuild
 * into dist/web/{index.html, app.js, app.css}, which `uvu serve` sends. Nothing is fetched at run time.
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT = join(ROOT, 'dist', 'web');
mkdirSync(OUT, { recursive: true });
await build({
  entryPoints: { app: join(ROOT, 'web', 'app.ts') },
  outdir: OUT,
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2022',
  logLevel: 'warning',
});
copyFileSync(join(ROOT, 'web', 'index.html'), join(OUT, 'index.html'));
