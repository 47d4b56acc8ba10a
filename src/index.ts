/**
 * uvu library API. The pipeline, in order: image → patches → patch store → codebook (or the VQ-VAE)
 * → tokens → sequences (data) → model → train → inference → perception benchmark. Call
 * `await initEngine()` once before anything that runs the model or the VQ-VAE.
 */
export { loadImage, decodeRgb, loadRgba, readImageSize, targetSize, resizeRgb, writePng, type RgbImage, type RgbaImage, type LoadedImage, type DecodeOptions } from './image/io.js';
export { PATCH, PATCH_DIM, patchify, unpatchify, patchesToFloat, floatToPatchesU8, U8_TO_UNIT } from './patches/patchify.js';
export { buildPatchStore, type BuildOptions, type BuildResult } from './patches/build.js';
export { PatchStore, type PatchMetaArrays, type PatchStoreManifest } from './patches/store.js';
export { writeNpyF32, readNpyF32, exportSample } from './patches/npy.js';
export { sgemm, blasInfo, setBlasThreads, withBlasThreads, type BlasInfo } from './linalg/blas.js';
export { FlatIndex, bruteForceNearest, type SearchResult } from './codebook/search.js';
export { kmeans, assignPoints, computeCentroids, splitClusters, KmeansConfigSchema, type KmeansConfig, type KmeansIterStats, type KmeansResult } from './codebook/kmeans.js';
export { PatchPoints, gridPositions, type PatchPositions } from './codebook/points.js';
export { PosEncoder, encodingVector, PosEncSchema, NO_POSENC, type PosEnc } from './codebook/posenc.js';
export { MetricsAccumulator, type CodebookMetrics } from './codebook/metrics.js';
export { loadCodebook, saveCodebook, assignmentCenters, type Codebook } from './codebook/file.js';
export { buildKmeansCodebook, KmeansBuildSchema, type KmeansBuildOptions } from './codebook/build.js';
export { evalCodebookOnStore, evalCodebookOnImages, tokenChanges } from './codebook/eval.js';
export { tokenizeImage, reconstructImage, readTokenFile, TokenFileSchema, type TokenFile } from './tokens/tokenize.js';
export { errorHeatmap, sideBySide, roundtripImage } from './tokens/roundtrip.js';
export { readSafetensors, writeSafetensors, type Tensor } from './io/safetensors.js';
export { BUNDLED_PHOTOS, bundledPhotoPath } from './data/bundled.js';
export { UvuError, UsageError } from './util/errors.js';
export { sha256File } from './util/fsio.js';
export { DEFAULT_MAX_PIXELS, DEFAULT_PE_SCALE, DEFAULT_CODEBOOK_SEED } from './util/defaults.js';
export { Rng } from './util/rng.js';
export { CodebookCoder, loadImageCoder, IMAGE_CODER_REGISTRY, type ImageCoder } from './tokens/coder.js';
export { VqCoder, loadVqCoder } from './vq/coder.js';
export { trainVq } from './vq/train.js';
export { evalVqOnStore, type VqMetrics } from './vq/eval.js';
export { ByteBpeTokenizer } from './text/bpe.js';
export { publicDomainTexts } from './text/corpus.js';
export { buildSequence, questionPrompt, FLAG_VISUAL, FLAG_LOSS_PRETRAIN, FLAG_LOSS_SFT, FLAG_SAMPLE_START, type Sequence } from './data/sequence.js';
export { sampleStarts } from './data/pack.js';
export { buildDataset, type DataBuildOptions } from './data/build.js';
export { SeqDataset, type Batch } from './data/dataset.js';
export { buildTargets } from './data/targets.js';
export { balanceImageTargets, codeProbabilities } from './data/balance.js';
export { describePhoto } from './data/captions.js';
export { tf, initEngine, activeEngine, requireEngine, profileKernels, type EngineName } from './engine/tf.js';
export { Vocab, SPECIAL_TOKENS, LOC_BINS } from './tokens/vocab.js';
export { ModelConfigSchema, type ModelConfig } from './model/config.js';
export { UvuModel, type ModelInputs, type ImageInput } from './model/model.js';
export { generate } from './infer/generate.js';
export { ModelSession } from './infer/session.js';
export { TrainConfigSchema, loadTrainConfig, parseTrainConfig, type TrainConfig } from './train/config.js';
export { train, type TrainSummary, type StepLog } from './train/train.js';
export { loadCheckpoint, saveCheckpoint } from './train/checkpoint.js';
export { gradientAngle } from './train/grads.js';
export { buildBench } from './perception/build.js';
export { evaluateBench } from './perception/eval.js';
