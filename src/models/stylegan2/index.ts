/** StyleGAN2 generator: weights and configs, checkpoint key maps, graph builder, host runner. */
export {
  type NoiseChoice,
  StyleGAN2,
  type StyleStats,
  seededZ,
  type TruncationOptions,
} from './generator.js';
export {
  fromNvidia,
  fromRosinality,
  loadGenerator,
  type NvidiaOptions,
  type RosinalityOptions,
} from './load.js';
export { clamp, type NoiseSpec, pixelNorm, StyleGAN2Graph, truncate } from './model.js';
export {
  configFChannels,
  type GeneratorSource,
  type GeneratorWeights,
  makeConfig,
  type RandomGeneratorOptions,
  randomGeneratorWeights,
  type StyleGAN2Config,
} from './weights.js';
