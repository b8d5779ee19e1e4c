/**
 * The internal StyleGAN2 generator: one format-neutral set of *effective* weights (equalized-learning-rate
 * scales and gains already applied), which the rosinality, StyleCLIP-mapper and NVIDIA key maps all fill.
 *
 * Layer order follows the paper's synthesis network: `conv1` at 4², then per resolution 8²..size² an
 * upsampling conv and a plain conv; one toRGB after `conv1` and one after each resolution's second conv.
 */

/** One modulated convolution: style s = w·A + b, weight modulated per input channel, optional demod. */
export interface ModConvWeights {
  inChannels: number;
  outChannels: number;
  kernel: number;
  /** Affine (rosinality `modulation`, NVIDIA `affine`) as a matmul operand: [styleDim, inChannels]. */
  affineWeight: Float32Array;
  /** [inChannels]; StyleGAN initialises it to 1. */
  affineBias: Float32Array;
  /** Effective conv weight [out, in, k, k] (rosinality's 1/sqrt(fan_in), NVIDIA toRGB's weight_gain applied). */
  weight: Float32Array;
  demodulate: boolean;
  /** Transposed conv stride 2 followed by the 4x4 blur. */
  upsample: boolean;
}

/** A StyledConv / SynthesisLayer: modulated conv, noise, bias, leaky ReLU × sqrt 2, optional clamp. */
export interface StyledConvWeights {
  conv: ModConvWeights;
  /** Output resolution (noise is [res, res]). */
  resolution: number;
  /** rosinality `noise.weight`, NVIDIA `noise_strength`. */
  noiseStrength: number;
  /** The fixed noise buffer [res*res] used by constant-noise generation. */
  noiseConst: Float32Array;
  /** [outChannels] */
  bias: Float32Array;
  /** NVIDIA conv_clamp (applied after the gain); null for none. */
  clamp: number | null;
}

export interface ToRGBWeights {
  conv: ModConvWeights;
  /** [3] (image channels) */
  bias: Float32Array;
  clamp: number | null;
}

export interface MappingLayerWeights {
  /** Effective weight as a matmul operand [in, out] (lr multiplier and 1/sqrt(in) applied). */
  weight: Float32Array;
  /** Effective bias [out] (lr multiplier applied). */
  bias: Float32Array;
  inFeatures: number;
  outFeatures: number;
}

export type GeneratorSource = 'rosinality' | 'styleclip-mapper' | 'nvidia' | 'random';

export interface StyleGAN2Config {
  /** Output resolution (a power of two). */
  size: number;
  /** Dimension of z and w. */
  styleDim: number;
  /** Mapping network depth. */
  nMlp: number;
  /** Feature channels per resolution, 4..size. */
  channels: Record<number, number>;
  /** Number of W+ rows: 2*log2(size) - 2. */
  nLatent: number;
  /** Number of styled convs (= noise inputs): 2*log2(size) - 3. */
  numLayers: number;
  /** Image channels (3). */
  imgChannels: number;
  /** Channels of each StyleSpace layer, in StyleCLIP's order (conv1, to_rgb1, then conv, conv, to_rgb). */
  styleDims: number[];
  /** Which StyleSpace layers feed a toRGB (indices 1, 4, 7, ...). */
  styleIsToRGB: boolean[];
  /** The W+ row each StyleSpace layer reads. */
  styleWIndex: number[];
}

export interface GeneratorWeights {
  config: StyleGAN2Config;
  source: GeneratorSource;
  mapping: MappingLayerWeights[];
  /** Learned constant [C4 * 4 * 4]. */
  constInput: Float32Array;
  /** Styled convs in order: conv1, then (up conv, conv) per resolution. */
  convs: StyledConvWeights[];
  /** toRGBs in order: to_rgb1, then one per resolution. */
  toRGBs: ToRGBWeights[];
  /** Normalised 4x4 FIR filter (outer product of [1,3,3,1], sum 1). */
  blurKernel: Float32Array;
  /** Mean w (rosinality `latent_avg`, NVIDIA `w_avg`), or null when the checkpoint has none. */
  latentAvg: Float32Array | null;
}

/** The config implied by the channel table; every other number follows from size. */
export function makeConfig(size: number, styleDim: number, nMlp: number, channels: Record<number, number>) {
  const logSize = Math.log2(size);
  if (!Number.isInteger(logSize) || logSize < 2) throw new Error(`size ${size} is not a power of two >= 4`);
  const styleDims: number[] = [channels[4], channels[4]];
  const styleIsToRGB = [false, true];
  const styleWIndex = [0, 1];
  for (let r = 3; r <= logSize; r++) {
    const i = 2 * (r - 3) + 1; // W+ row of this resolution's upsampling conv
    styleDims.push(channels[2 ** (r - 1)], channels[2 ** r], channels[2 ** r]);
    styleIsToRGB.push(false, false, true);
    styleWIndex.push(i, i + 1, i + 2);
  }
  const config: StyleGAN2Config = {
    size,
    styleDim,
    nMlp,
    channels: Object.fromEntries(
      Array.from({ length: logSize - 1 }, (_, k) => 2 ** (k + 2)).map((r) => [r, channels[r]]),
    ),
    nLatent: 2 * logSize - 2,
    numLayers: 2 * logSize - 3,
    imgChannels: 3,
    styleDims,
    styleIsToRGB,
    styleWIndex,
  };
  return config;
}

/** StyleGAN2 config-f channel table: 512 up to 32², then 256·m, 128·m, ... with channel multiplier m = 2. */
export function configFChannels(size: number, channelMultiplier = 2): Record<number, number> {
  const table: Record<number, number> = {
    4: 512,
    8: 512,
    16: 512,
    32: 512,
    64: 256 * channelMultiplier,
    128: 128 * channelMultiplier,
    256: 64 * channelMultiplier,
    512: 32 * channelMultiplier,
    1024: 16 * channelMultiplier,
  };
  const out: Record<number, number> = {};
  for (let r = 4; r <= size; r *= 2) out[r] = table[r];
  return out;
}

/** a · s, rounded to float32. */
export function scaled(a: Float32Array, s: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * s;
  return out;
}

/** `n` copies of `a` end to end. */
export function tiled(a: Float32Array, n: number): Float32Array {
  const out = new Float32Array(a.length * n);
  for (let i = 0; i < n; i++) out.set(a, i * a.length);
  return out;
}

/** W [out, in] × scale → [in, out] (a matmul operand for row vectors). */
export function transposedScaled(w: Float32Array, out: number, inn: number, scale: number): Float32Array {
  const r = new Float32Array(w.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) r[i * out + o] = w[o * inn + i] * scale;
  return r;
}

/** The [1,3,3,1] blur of StyleGAN2 as a normalised 4x4 kernel. */
function defaultBlurKernel(): Float32Array {
  const k = [1, 3, 3, 1];
  const out = new Float32Array(16);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) out[i * 4 + j] = (k[i] * k[j]) / 64;
  return out;
}

/** Summed squares of each output channel's filter taps [out, in]: the demodulation matrix. */
export function squaredWeightSums(c: ModConvWeights): Float32Array {
  const kk = c.kernel * c.kernel;
  const out = new Float32Array(c.outChannels * c.inChannels);
  for (let o = 0; o < c.outChannels; o++)
    for (let i = 0; i < c.inChannels; i++) {
      let s = 0;
      const base = (o * c.inChannels + i) * kk;
      for (let t = 0; t < kk; t++) s += c.weight[base + t] * c.weight[base + t];
      out[o * c.inChannels + i] = s;
    }
  return out;
}

/** A fast seeded normal generator (xorshift128+ and Box-Muller) for random-weight models; not numpy's. */
export function fastNormal(seed: number): (out: Float32Array, scale?: number) => Float32Array {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let s1 = (seed * 0x85ebca6b) >>> 0 || 2;
  const next = () => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    s1 = x >>> 0;
    return ((s0 + s1) >>> 0) / 4294967296;
  };
  return (out, scale = 1) => {
    for (let i = 0; i < out.length; i += 2) {
      const u = 1 - next();
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u)) * scale;
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  };
}

export interface RandomGeneratorOptions {
  size?: number;
  styleDim?: number;
  nMlp?: number;
  channels?: Record<number, number>;
  seed?: number;
}

/**
 * A random-weight generator with the initialisation of rosinality's code (randn weights, affine bias 1),
 * by default FFHQ config-f 1024: ~30M parameters, ~120 MB of float32, built in about a second.
 */
export function randomGeneratorWeights(options: RandomGeneratorOptions = {}): GeneratorWeights {
  const size = options.size ?? 1024;
  const styleDim = options.styleDim ?? 512;
  const nMlp = options.nMlp ?? 8;
  const config = makeConfig(size, styleDim, nMlp, options.channels ?? configFChannels(size));
  const randn = fastNormal(options.seed ?? 0);
  const ones = (n: number) => new Float32Array(n).fill(1);

  const mapping: MappingLayerWeights[] = [];
  for (let l = 0; l < nMlp; l++) {
    // EqualLinear(lr_mul): stored randn / lr_mul, used × lr_mul / sqrt(in): effective randn / sqrt(in).
    mapping.push({
      weight: randn(new Float32Array(styleDim * styleDim), 1 / Math.sqrt(styleDim)),
      bias: new Float32Array(styleDim),
      inFeatures: styleDim,
      outFeatures: styleDim,
    });
  }
  const modConv = (inC: number, outC: number, k: number, demodulate: boolean, upsample: boolean) => ({
    inChannels: inC,
    outChannels: outC,
    kernel: k,
    affineWeight: randn(new Float32Array(styleDim * inC), 1 / Math.sqrt(styleDim)),
    affineBias: ones(inC),
    weight: randn(new Float32Array(outC * inC * k * k), 1 / Math.sqrt(inC * k * k)),
    demodulate,
    upsample,
  });
  const styled = (inC: number, outC: number, res: number, up: boolean): StyledConvWeights => ({
    conv: modConv(inC, outC, 3, true, up),
    resolution: res,
    noiseStrength: 0.1,
    noiseConst: randn(new Float32Array(res * res)),
    bias: new Float32Array(outC),
    clamp: null,
  });
  const toRGB = (inC: number): ToRGBWeights => ({
    conv: modConv(inC, 3, 1, false, false),
    bias: new Float32Array(3),
    clamp: null,
  });
  const ch = config.channels;
  const convs = [styled(ch[4], ch[4], 4, false)];
  const toRGBs = [toRGB(ch[4])];
  for (let r = 8; r <= size; r *= 2) {
    convs.push(styled(ch[r / 2], ch[r], r, true), styled(ch[r], ch[r], r, false));
    toRGBs.push(toRGB(ch[r]));
  }
  return {
    config,
    source: 'random',
    mapping,
    constInput: randn(new Float32Array(ch[4] * 16)),
    convs,
    toRGBs,
    blurKernel: defaultBlurKernel(),
    latentAvg: null,
  };
}
