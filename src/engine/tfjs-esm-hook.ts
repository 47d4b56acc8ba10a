/**
 * Module resolve hook (installed with node:module `register` by ./gradients.ts) that lets
 * Node load tfjs-core's per-file ES modules under `@tensorflow/tfjs-core/dist/`. They are
 * written for bundlers: relative imports omit the `.js` extension ('../ops/mul') and the
 * package has no "type": "module", so plain Node can neither resolve nor classify them.
 * Only imports of that folder's files are touched; the package's CommonJS bundle (`main`)
 * and every other module resolve as usual.
 */
import { existsSync } from 'node:fs';
import type { ResolveHook } from 'node:module';
import { fileURLToPath } from 'node:url';

const DIST_SUBPATH = '@tensorflow/tfjs-core/dist/';

export const resolve: ResolveHook = async (specifier, context, nextResolve) => {
  const parent = context.parentURL;
  if (specifier.startsWith(DIST_SUBPATH)) {
    return { ...(await nextResolve(specifier, context)), format: 'module' };
  }
  const relative = specifier.startsWith('./') || specifier.startsWith('../');
  if (!relative || !parent || !parent.includes(`/${DIST_SUBPATH}`)) return nextResolve(specifier, context);
  // '../gradients' names both gradients.js and a gradients/ folder: the file is meant.
  let url = new URL(specifier.endsWith('.js') ? specifier : `${specifier}.js`, parent);
  if (!existsSync(fileURLToPath(url))) url = new URL(`${specifier}/index.js`, parent);
  return { url: url.href, format: 'module', shortCircuit: true };
};
