/**
 * The VQ-VAE file: safetensors with every parameter as F32 (names and shapes in model.ts
 * PARAM_NAMES/paramShapes; dense weights [in, out]) and
 *   __metadata__ { format: "uvu-vq", version, patch_size, K, code_dim, config (JSON of VqConfig),
 *                  data (patch store fingerprint), metrics (JSON) }.
 * Loading checks the container (readSafetensors), then format, version, config, and every
 * tensor's dtype, shape and finiteness against the config, and says exactly what is wrong.
 */
import { z } from 'zod';
import { metadataJson, readSafetensors, writeSafetensors, type Tensor } from '../io/safetensors.js';
import { UvuError } from '../util/errors.js';
import { parseOrFail } from '../util/fsio.js';
import { PATCH } from '../patches/patchify.js';
import { VqConfigSchema } from './config.js';
import { PARAM_NAMES, paramShapes, VqModel, type VqWeights } from './model.js';

/** Metadata "format" tag of a VQ-VAE file. */
export const VQ_FORMAT = 'uvu-vq';
export const VQ_VERSION = 1;

/** Write the model atomically (writeSafetensors goes through writeFileAtomic). */
export function saveVq(path: string, model: VqModel): void {
  const shapes = paramShapes(model.config);
  const weights = model.weights();
  const tensors: Record<string, Tensor> = {};
  for (const name of PARAM_NAMES) tensors[name] = { dtype: 'F32', shape: shapes[name], data: weights[name] };
  writeSafetensors(path, tensors, {
    format: VQ_FORMAT,
    version: String(VQ_VERSION),
    patch_size: String(PATCH),
    K: String(model.K),
    code_dim: String(model.codeDim),
    config: JSON.stringify(model.config),
    data: model.meta.data,
    metrics: JSON.stringify(model.meta.metrics),
  });
}

/** Load and validate a VQ-VAE file; every problem is one UvuError line naming the file. */
export function loadVq(path: string): VqModel {
  const { tensors, metadata } = readSafetensors(path);
  const fail = (what: string): never => {
    throw new UvuError(`${path}: invalid VQ model: ${what}`);
  };
  if (metadata.format !== VQ_FORMAT) fail(`metadata "format" is ${JSON.stringify(metadata.format)}, expected "${VQ_FORMAT}"`);
  if (Number(metadata.version) !== VQ_VERSION) fail(`unsupported version ${JSON.stringify(metadata.version)} (this uvu reads version ${VQ_VERSION})`);
  if (Number(metadata.patch_size) !== PATCH) fail(`patch_size is ${JSON.stringify(metadata.patch_size)}, this uvu uses ${PATCH}`);

  const config = parseOrFail(VqConfigSchema, metadataJson(metadata, 'config', `${path}: invalid VQ model`), `${path}: invalid VQ model: metadata "config"`);
  if (Number(metadata.K) !== config.K) fail(`metadata K = ${JSON.stringify(metadata.K)} disagrees with config K = ${config.K}`);
  if (Number(metadata.code_dim) !== config.codeDim) fail(`metadata code_dim = ${JSON.stringify(metadata.code_dim)} disagrees with config codeDim = ${config.codeDim}`);

  const shapes = paramShapes(config);
  const weights = {} as VqWeights;
  for (const name of PARAM_NAMES) {
    const t = tensors[name] ?? fail(`missing tensor "${name}"`);
    if (t.dtype !== 'F32') fail(`${name} has dtype ${t.dtype}, expected F32`);
    const want = shapes[name];
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) fail(`${name} has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(want)}`);
    const data = t.data as Float32Array;
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) fail(`${name} has a non-finite value (${data[i]}) at element ${i}`);
    weights[name] = data;
  }
  const metrics = parseOrFail(z.record(z.string(), z.unknown()), metadataJson(metadata, 'metrics', `${path}: invalid VQ model`, '{}'), `${path}: invalid VQ model: metadata "metrics"`);
  const model = new VqModel(config, weights);
  model.meta = { data: metadata.data ?? '', metrics };
  return model;
}
