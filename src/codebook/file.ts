/**
 * The codebook file (DESIGN.md §3): safetensors with
 *   centers_pixel  f32 [K, D]  pixel-space centres in [0,1], used to reconstruct (required)
 *   centers_assign f32 [K, D]  assignment-space centres (only when positional encoding is on)
 *   counts         f32 [K]     training members per centre
 * and __metadata__ { format: "uvu-codebook", version, patch_size, pe, build, data, metrics }.
 * Loading validates shapes, dtypes, finiteness and metadata and says exactly what is wrong.
 */
import { z } from 'zod';
import { metadataJson, readSafetensors, writeSafetensors, type Tensor } from '../io/safetensors.js';
import { UvuError } from '../util/errors.js';
import { parseOrFail } from '../util/fsio.js';
import { PATCH, PATCH_DIM } from '../patches/patchify.js';
import { PosEncSchema, isIdentity, type PosEnc } from './posenc.js';

export const CODEBOOK_FORMAT = 'uvu-codebook';
export const CODEBOOK_VERSION = 1;

export interface Codebook {
  /** Number of codewords. */
  K: number;
  /** Patch vector length, 3·patchSize². */
  D: number;
  patchSize: number;
  /** [K, D] pixel-space centres (values in [0, 1]); reconstruction uses these. */
  centersPixel: Float32Array;
  /** [K, D] assignment-space centres, or null when pe is the identity (then centersPixel is used). */
  centersAssign: Float32Array | null;
  /** [K] number of training members of each centre. */
  counts: Float32Array;
  /** Positional encoding applied to a patch before assignment. */
  pe: PosEnc;
  /** Method and every build parameter. */
  build: Record<string, unknown>;
  /** Fingerprint of the patch store it was built from. */
  data: string;
  /** Metrics measured at build time. */
  metrics: Record<string, unknown>;
}

/** Centres used to choose a token: assignment-space when PE is on, else pixel-space. */
export function assignmentCenters(cb: Codebook): Float32Array {
  return cb.centersAssign ?? cb.centersPixel;
}

export function saveCodebook(path: string, cb: Codebook): void {
  const tensors: Record<string, Tensor> = {
    centers_pixel: { dtype: 'F32', shape: [cb.K, cb.D], data: cb.centersPixel },
  };
  if (cb.centersAssign) tensors.centers_assign = { dtype: 'F32', shape: [cb.K, cb.D], data: cb.centersAssign };
  tensors.counts = { dtype: 'F32', shape: [cb.K], data: cb.counts };
  writeSafetensors(path, tensors, {
    format: CODEBOOK_FORMAT,
    version: String(CODEBOOK_VERSION),
    patch_size: String(cb.patchSize),
    pe: JSON.stringify(cb.pe),
    build: JSON.stringify(cb.build),
    data: cb.data,
    metrics: JSON.stringify(cb.metrics),
  });
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
  return -1;
}

/** "build" and "metrics" metadata: JSON objects (what they hold is informational). */
const InfoObjectSchema = z.record(z.string(), z.unknown());

/** Load and validate a codebook file; every problem is reported as one line naming the file. */
export function loadCodebook(path: string): Codebook {
  const { tensors, metadata } = readSafetensors(path);
  const fail = (what: string): never => {
    throw new UvuError(`${path}: invalid codebook: ${what}`);
  };
  if (metadata.format !== CODEBOOK_FORMAT) fail(`metadata "format" is ${JSON.stringify(metadata.format)}, expected "${CODEBOOK_FORMAT}"`);
  const version = Number(metadata.version);
  if (version !== CODEBOOK_VERSION) fail(`unsupported version ${JSON.stringify(metadata.version)} (this uvu reads version ${CODEBOOK_VERSION})`);
  const patchSize = Number(metadata.patch_size);
  if (patchSize !== PATCH) fail(`patch_size is ${JSON.stringify(metadata.patch_size)}, this uvu uses ${PATCH}`);

  const pixel = tensors.centers_pixel ?? fail('missing tensor "centers_pixel"');
  if (pixel.dtype !== 'F32') fail(`centers_pixel has dtype ${pixel.dtype}, expected F32`);
  if (pixel.shape.length !== 2) fail(`centers_pixel has shape ${JSON.stringify(pixel.shape)}, expected [K, ${PATCH_DIM}]`);
  const [K, D] = pixel.shape as [number, number];
  if (D !== PATCH_DIM) fail(`centers_pixel has dimension ${D}, expected ${PATCH_DIM} (32×32×3)`);
  if (K < 1) fail('codebook has no entries (K = 0)');
  const centersPixel = pixel.data as Float32Array;
  const badPixel = firstNonFinite(centersPixel);
  if (badPixel >= 0) fail(`centers_pixel has a non-finite value (${centersPixel[badPixel]}) at entry ${Math.floor(badPixel / D)}, dim ${badPixel % D}`);

  const pe = parseOrFail(PosEncSchema, metadataJson(metadata, 'pe', `${path}: invalid codebook`), `${path}: invalid codebook: metadata "pe"`, { all: true });

  let centersAssign: Float32Array | null = null;
  const assign = tensors.centers_assign;
  if (assign) {
    if (assign.dtype !== 'F32') fail(`centers_assign has dtype ${assign.dtype}, expected F32`);
    if (assign.shape[0] !== K || assign.shape[1] !== D || assign.shape.length !== 2) fail(`centers_assign has shape ${JSON.stringify(assign.shape)}, expected [${K}, ${D}] like centers_pixel`);
    centersAssign = assign.data as Float32Array;
    const badAssign = firstNonFinite(centersAssign);
    if (badAssign >= 0) fail(`centers_assign has a non-finite value at entry ${Math.floor(badAssign / D)}`);
  } else if (!isIdentity(pe)) {
    fail(`positional encoding ${pe.type} is on but tensor "centers_assign" is missing`);
  }

  const countsT = tensors.counts ?? fail('missing tensor "counts"');
  if (countsT.shape.length !== 1 || countsT.shape[0] !== K) fail(`counts has shape ${JSON.stringify(countsT.shape)}, expected [${K}]`);
  let counts: Float32Array;
  if (countsT.dtype === 'F32') counts = countsT.data as Float32Array;
  else if (countsT.dtype === 'I64') counts = Float32Array.from(countsT.data as BigInt64Array, (v) => Number(v));
  else return fail(`counts has dtype ${countsT.dtype}, expected F32 or I64`);
  for (let k = 0; k < K; k++) if (!(counts[k]! >= 0 && Number.isFinite(counts[k]!))) fail(`counts has an invalid value (${counts[k]}) at entry ${k}, expected a finite count ≥ 0`);
  const build = parseOrFail(InfoObjectSchema, metadataJson(metadata, 'build', `${path}: invalid codebook`), `${path}: invalid codebook: metadata "build"`);
  const metrics = parseOrFail(InfoObjectSchema, metadataJson(metadata, 'metrics', `${path}: invalid codebook`), `${path}: invalid codebook: metadata "metrics"`);

  return {
    K,
    D,
    patchSize,
    centersPixel,
    centersAssign,
    counts,
    pe: pe,
    build,
    data: metadata.data ?? '',
    metrics,
  };
}
