/**
 * uvu library API. The pipeline, in order: image → patches → patch store → codebook → tokens.
 */
export { loadImage, decodeRgb, targetSize, resizeRgb, writePng, type RgbImage, type LoadedImage, type DecodeOptions } from './image/io.js';
export { PATCH, PATCH_DIM, patchify, unpatchify, patchesToFloat, floatToPatchesU8, U8_TO_UNIT } from './patches/patchify.js';
export { buildPatchStore, type BuildOptions, type BuildResult } from './patches/build.js';
export { PatchStore, type PatchMetaArrays, type PatchStoreManifest } from './patches/store.js';
export { writeNpyF32, readNpyF32, exportSample } from './patches/npy.js';
export { sgemm, blasInfo, setBlasThreads, type BlasInfo } from './linalg/blas.js';
export { FlatIndex, bruteForceNearest, type SearchResult } from './codebook/search.js';
export { kmeans, assignPoints, computeCentroids, splitClusters, KmeansConfigSchema, type KmeansConfig, type KmeansIterStats, type KmeansResult } from './codebook/kmeans.js';
export { PatchPoints, type PatchPositions } from './codebook/points.js';
export { PosEncoder, encodingVector, PosEncSchema, NO_POSENC, type PosEnc } from './codebook/posenc.js';
export { MetricsAccumulator, type CodebookMetrics } from './codebook/metrics.js';
export { loadCodebook, saveCodebook, assignmentCenters, type Codebook } from './codebook/file.js';
export { buildKmeansCodebook, KmeansBuildSchema, type KmeansBuildOptions } from './codebook/build.js';
export { tokenizeImage, reconstructImage, readTokenFile, gridPositions, TokenFileSchema, type TokenFile } from './tokens/tokenize.js';
export { errorHeatmap, sideBySide } from './tokens/roundtrip.js';
export { readSafetensors, writeSafetensors, type Tensor } from './io/safetensors.js';
export { BUNDLED_PHOTOS, bundledPhotoPath } from './data/bundled.js';
export { UvuError, UsageError } from './util/errors.js';
export { Rng } from './util/rng.js';
