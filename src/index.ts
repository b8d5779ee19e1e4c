/**
 * The library entry point: the engine, the file readers, the three models and the three StyleCLIP
 * methods. Everything here is what the CLI and the web app are built from.
 */

export { alignPhoto, detectFaces, ImageError, readPhoto } from './align/index.js';
// --- the engine: graphs, reverse-mode autodiff, ONNX, ONNX Runtime ----------------------------------------
export { grad } from './autodiff/grad.js';
// --- method 3: global directions ------------------------------------------------------------------------
export { precomputeFs3 } from './edit/fs3.js';
export {
  type Boundary,
  GlobalEditor,
  releaseGeneratorSessions,
  renderStyles,
  sampleStyleStats,
  stylesFromWplus,
  wplusFromSeed,
} from './edit/global.js';
export { loadFs3, loadStyleStats, saveStyleStats } from './edit/global-io.js';
export { type InvertConfig, Inverter, runInversion } from './edit/invert.js';
export { invertPhoto } from './edit/invert-photo.js';
// --- method 2: the latent mapper ------------------------------------------------------------------------
export { MapperApplier } from './edit/mapper/apply.js';
export { loadMapper, saveMapper } from './edit/mapper/checkpoint.js';
export { MapperTrainer, type TrainOptions } from './edit/mapper/train.js';
// --- method 1: latent optimization ----------------------------------------------------------------------
export {
  LatentOptimizer,
  meanWPlus,
  OptimizationRun,
  type OptimizeConfig,
  type OptimizeResult,
  promptFeatures,
  runOptimization,
  seedLatent,
} from './edit/optimize.js';
export { type DType, Graph, ShapeError, Value } from './graph/graph.js';
// --- files ----------------------------------------------------------------------------------------------
export {
  CheckpointError,
  ForbiddenGlobalError,
  imageGrid,
  loadNvidiaPkl,
  loadSafetensors,
  loadTorch,
  readImage,
  readNpy,
  readNpyF32,
  saveSafetensors,
  saveTorch,
  type Tensor,
  writeImage,
  writeNpy,
} from './io/index.js';
// --- models ---------------------------------------------------------------------------------------------
export { loadArcFace } from './models/arcface/load.js';
export type { ArcFaceModel } from './models/arcface/model.js';
export { ClipEncoder, ZeroDirectionError } from './models/clip/encoder.js';
export { loadClip } from './models/clip/load.js';
export type { ClipModel } from './models/clip/model.js';
export { tokenize } from './models/clip/tokenizer.js';
export { encodeE4e, loadE4e } from './models/e4e/load.js';
export {
  type GeneratorWeights,
  loadGenerator,
  randomGeneratorWeights,
  StyleGAN2,
  type StyleGAN2Config,
  StyleGAN2Graph,
} from './models/stylegan2/index.js';
export { LatentSet, readLatents } from './models/stylegan2/latents.js';
export { serialize } from './onnx/writer.js';
export * as ops from './ops/index.js';
export { CUDA_INSTALL_COMMAND, DeviceError, type ExecutionProvider, parseDevice } from './runtime/device.js';
export {
  activeProvider,
  compile,
  configureRuntime,
  Executable,
  type HostTensor,
  RuntimeError,
  setDevice,
} from './runtime/session.js';
// --- CLIP training ----------------------------------------------------------------------------------------
export { ClipTrainer, type ClipTrainOptions, clampLogitScale } from './train/clip.js';
export { type ClipDataset, type ClipSample, fromSignedImages, JsonlClipDataset } from './train/clip-data.js';
export { type ClipArchitecture, clipConfig, initClipStateDict } from './train/clip-init.js';
export { contrastiveLoss } from './train/clip-loss.js';
export { AdamW, warmupCosineLr } from './train/clip-optim.js';
// --- the world: generator quality (FID in the world CLIP's image features) ------------------------------
export {
  fitGaussian,
  frechetDistance,
  frechetDistanceOfFeatures,
  type Gaussian,
  symmetricEigen,
} from './util/frechet.js';
export { type WorldFidOptions, type WorldFidResult, worldFid } from './world/fid.js';
