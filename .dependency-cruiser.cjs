/**
 * The layers of src/, bottom to top: a module may import from its own folder and from the
 * folders below it, never from one above. `npm run check:layers` (part of `npm test`) fails on
 * any import that runs back up, on any cycle, and on src/ importing tests, benchmarks or scripts.
 *
 *   foundations  util → io → linalg → engine → optim
 *   pipeline     image → patches → codebook → vq → tokens → text → data → model → train → infer → perception
 *   cluster      Redis + BullMQ coordinator and workers of a distributed codebook build: it plugs
 *                an assignment backend into codebook/ (which never imports it)
 *   explorer     serve (`uvu serve`: reads codebooks, patch stores, runs and evaluations; above
 *                perception and cluster, below the command line)
 *   entry        cli, and src/index.ts (the library API) over everything
 *
 * vq/ (the VQ-VAE of the AR+VQ baseline) sits beside codebook/: both turn patches into codes, and
 * tokens/ wraps either one as an image coder (tokens/coder.ts registry).
 */
const LAYERS = ['util', 'io', 'linalg', 'engine', 'optim', 'image', 'patches', 'codebook', 'vq', 'tokens', 'text', 'data', 'model', 'train', 'infer', 'perception', 'cluster', 'serve', 'cli'];

const upwardRules = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `${layer}-imports-upward`,
  comment: `src/${layer}/ may import only from ${LAYERS.slice(0, i).join(', ') || 'no other layer'} (and itself)`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(${LAYERS.slice(i + 1).join('|')})/` },
}));

module.exports = {
  forbidden: [
    ...upwardRules,
    {
      name: 'no-circular',
      comment: 'modules import each other in a circle',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'src-imports-outside',
      comment: 'library code never imports tests, benchmarks or scripts',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
    {
      name: 'unknown-layer',
      comment: 'every folder of src/ is a layer listed in .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/[^/]+/', pathNot: `^src/(${LAYERS.join('|')})/` },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
