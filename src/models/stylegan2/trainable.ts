/**
 * The generator as rosinality's `Generator` module holds it, for training: its state dict (parameters and
 * buffers, in torch's order), the initialisation of its constructor, and a WeightSource that turns the raw
 * parameters (graph inputs) into the effective weights StyleGAN2Graph reads, with the equalized-learning-rate
 * scales of EqualLinear / ModulatedConv2d applied in the graph so that gradients are the raw parameters'.
 */
import type { Graph, Value } from '../../graph/graph.js';
import type { Tensor } from '../../io/tensor.js';
import { mT, mul, reshape, sum, transpose } from '../../ops/index.js';
import { fromRosinality } from './load.js';
import type { WeightSource } from './model.js';
import { fastNormal, type GeneratorWeights, makeConfig, type StyleGAN2Config } from './weights.js';

/** One tensor of a module's state dict: a parameter (trained) or a buffer (kept as it is). */
export interface TensorSpec {
  name: string;
  shape: number[];
  buffer: boolean;
}

/** A state dict in torch's order, float32. */
export type StateDict = Map<string, Tensor>;

const blurTaps = [1, 3, 3, 1];
/** make_kernel([1, 3, 3, 1]) × gain: the normalised 4x4 blur. */
export function blurKernel(gain: number): Float32Array {
  return Float32Array.from({ length: 16 }, (_, i) => (gain * blurTaps[i >> 2] * blurTaps[i & 3]) / 64);
}

/** The generator's state dict layout (rosinality Generator(size, style_dim, n_mlp) with a channel table). */
export function generatorSpecs(config: StyleGAN2Config): TensorSpec[] {
  const { styleDim: D, channels: ch, size } = config;
  const out: TensorSpec[] = [];
  const p = (name: string, shape: number[]) => out.push({ name, shape, buffer: false });
  const b = (name: string, shape: number[]) => out.push({ name, shape, buffer: true });
  for (let l = 1; l <= config.nMlp; l++) {
    p(`style.${l}.weight`, [D, D]);
    p(`style.${l}.bias`, [D]);
  }
  p('input.input', [1, ch[4], 4, 4]);
  const styled = (key: string, inC: number, outC: number, up: boolean) => {
    p(`${key}.conv.weight`, [1, outC, inC, 3, 3]);
    if (up) b(`${key}.conv.blur.kernel`, [4, 4]);
    p(`${key}.conv.modulation.weight`, [inC, D]);
    p(`${key}.conv.modulation.bias`, [inC]);
    p(`${key}.noise.weight`, [1]);
    p(`${key}.activate.bias`, [outC]);
  };
  const toRGB = (key: string, inC: number, up: boolean) => {
    p(`${key}.bias`, [1, 3, 1, 1]);
    if (up) b(`${key}.upsample.kernel`, [4, 4]);
    p(`${key}.conv.weight`, [1, 3, inC, 1, 1]);
    p(`${key}.conv.modulation.weight`, [inC, D]);
    p(`${key}.conv.modulation.bias`, [inC]);
  };
  styled('conv1', ch[4], ch[4], false);
  toRGB('to_rgb1', ch[4], false);
  for (let r = 8, k = 0; r <= size; r *= 2, k += 2) {
    styled(`convs.${k}`, ch[r / 2], ch[r], true);
    styled(`convs.${k + 1}`, ch[r], ch[r], false);
  }
  for (let r = 8, k = 0; r <= size; r *= 2, k++) toRGB(`to_rgbs.${k}`, ch[r], true);
  for (let i = 0; i < config.numLayers; i++) {
    const r = 2 ** (((i + 1) >> 1) + 2);
    b(`noises.noise_${i}`, [1, 1, r, r]);
  }
  return out;
}

/** A fresh generator state dict initialised as rosinality's constructor does (seeded, not torch's stream). */
export function initGenerator(
  size: number,
  channels: Record<number, number>,
  options: { styleDim?: number; nMlp?: number; lrMlp?: number; seed?: number } = {},
): StateDict {
  const config = makeConfig(size, options.styleDim ?? 512, options.nMlp ?? 8, channels);
  const randn = fastNormal(options.seed ?? 0);
  const lrMlp = options.lrMlp ?? 0.01;
  const sd: StateDict = new Map();
  for (const s of generatorSpecs(config)) {
    const n = s.shape.reduce((a, c) => a * c, 1);
    let data: Float32Array;
    if (s.name.endsWith('kernel')) data = blurKernel(4);
    else if (/^style\.\d+\.weight$/.test(s.name))
      data = randn(new Float32Array(n), 1 / lrMlp); // randn / lr_mul
    else if (s.name.endsWith('modulation.bias'))
      data = new Float32Array(n).fill(1); // bias_init=1
    else if (/(^input\.input|conv\.weight|modulation\.weight|^noises\.)/.test(s.name))
      data = randn(new Float32Array(n));
    else data = new Float32Array(n); // biases, noise strengths
    sd.set(s.name, { dtype: 'float32', shape: s.shape, data });
  }
  return sd;
}

/** The structure (config, layer table) of a generator state dict, through the strict rosinality key map. */
export function generatorStructure(sd: StateDict, file = '<state dict>', lrMlp = 0.01): GeneratorWeights {
  return fromRosinality(file, sd, { prefix: '', lrMlp, latentAvgKey: null });
}

/** StyleGAN2Graph's layer indices → rosinality module names. */
const convModule = (i: number) => (i === 0 ? 'conv1' : `convs.${i - 1}`);
const rgbModule = (j: number) => (j === 0 ? 'to_rgb1' : `to_rgbs.${j - 1}`);
function styleModule(i: number): string {
  if (i === 0) return 'conv1.conv';
  if (i === 1) return 'to_rgb1.conv';
  const block = Math.floor((i - 2) / 3);
  const k = (i - 2) % 3;
  return k === 2 ? `to_rgbs.${block}.conv` : `convs.${2 * block + k}.conv`;
}

/**
 * Effective weights from raw parameters (`raw(name)` gives the graph value of a state-dict parameter):
 * EqualLinear's W·lr_mul/sqrt(in) and b·lr_mul, ModulatedConv2d's W/sqrt(fan_in), FusedLeakyReLU's bias and
 * the noise gain with the sqrt 2 that StyleGAN2Graph folds into them. Buffers stay constants.
 */
export class TrainableWeights implements WeightSource {
  private readonly convWeights = new Map<number, Value>();

  constructor(
    readonly g: Graph,
    readonly structure: GeneratorWeights,
    readonly raw: (name: string) => Value,
    readonly lrMlp = 0.01,
  ) {}

  /** W/sqrt(fan_in) of styled conv i as [out, in, k, k], made once per graph. */
  private convWeight(i: number): Value {
    let v = this.convWeights.get(i);
    if (!v) {
      const m = this.structure.convs[i].conv;
      const w = this.raw(`${convModule(i)}.conv.weight`); // [1, out, in, k, k]
      const k = m.kernel;
      v = mul(reshape(w, [m.outChannels, m.inChannels, k, k]), 1 / Math.sqrt(m.inChannels * k * k));
      this.convWeights.set(i, v);
    }
    return v;
  }

  value(key: string): Value | undefined {
    const parts = key.split('/');
    const D = this.structure.config.styleDim;
    const n = Number(parts[1]);
    switch (parts[0]) {
      case 'input':
        return this.raw('input.input');
      case 'mapping': {
        const name = `style.${n + 1}`;
        if (parts[2] === 'weight') return mT(mul(this.raw(`${name}.weight`), this.lrMlp / Math.sqrt(D))); // [in, out]
        return mul(this.raw(`${name}.bias`), this.lrMlp);
      }
      case 'style': {
        const mod = `${styleModule(n)}.modulation`;
        if (parts[2] === 'affine_weight') return mT(mul(this.raw(`${mod}.weight`), 1 / Math.sqrt(D))); // [D, in]
        return this.raw(`${mod}.bias`);
      }
      case 'convs': {
        const leaf = parts[2];
        if (leaf === 'weight') return this.convWeight(n);
        if (leaf === 'weight_t') return transpose(this.convWeight(n), [1, 0, 2, 3]); // [in, out, 3, 3]
        if (leaf === 'weight_sq_t') {
          const w = this.convWeight(n);
          return mT(sum(mul(w, w), [2, 3])); // Σ_k W[o, i, k]² as [in, out]
        }
        if (leaf === 'bias') {
          const c = this.structure.convs[n].conv.outChannels;
          return mul(reshape(this.raw(`${convModule(n)}.activate.bias`), [1, c]), Math.SQRT2);
        }
        throw new RangeError(`no trainable form for ${key}`);
      }
      case 'to_rgbs': {
        const m = this.structure.toRGBs[n].conv;
        const mod = rgbModule(n);
        if (parts[2] === 'weight')
          return mul(
            reshape(this.raw(`${mod}.conv.weight`), [1, 3, m.inChannels]),
            1 / Math.sqrt(m.inChannels),
          );
        return this.raw(`${mod}.bias`);
      }
      default:
        return undefined; // blur kernels: constants
    }
  }

  noiseStrength(i: number): Value {
    return mul(this.raw(`${convModule(i)}.noise.weight`), Math.SQRT2);
  }
}
