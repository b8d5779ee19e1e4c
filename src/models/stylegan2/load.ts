/**
 * Key maps from the published checkpoint formats onto the internal generator (weights.ts):
 * rosinality `g_ema` (+ `latent_avg`), the `decoder.*` half of a StyleCLIP mapper checkpoint, and NVIDIA
 * stylegan2-ada-pytorch `G_ema`. Every map is strict: it reads each expected key once, checks its shape,
 * and fails naming the first missing, misshapen or left-over key.
 */
import { CheckpointError } from '../../io/errors.js';
import { type Tensor, toFloat32 } from '../../io/tensor.js';
import { isPlainPickleFile, loadNvidiaPkl, loadTorch } from '../../io/torch.js';
import {
  type GeneratorSource,
  type GeneratorWeights,
  type MappingLayerWeights,
  type ModConvWeights,
  makeConfig,
  type StyledConvWeights,
  scaled,
  type ToRGBWeights,
  transposedScaled,
} from './weights.js';

/** Reads tensors under a prefix, each at most once, with shape checks; `finish` rejects left-overs. */
class KeyReader {
  private readonly used = new Set<string>();
  constructor(
    private readonly file: string,
    private readonly tensors: Map<string, Tensor>,
    private readonly prefix: string,
  ) {}

  has(key: string): boolean {
    return this.tensors.has(this.prefix + key);
  }

  shape(key: string): number[] {
    return this.get(key, undefined, false).shape;
  }

  /** float32 data of `key`, which must have exactly `shape` (use -1 for "any"). */
  take(key: string, shape?: readonly number[]): Float32Array {
    return toFloat32(this.get(key, shape, true)).data;
  }

  private get(key: string, shape: readonly number[] | undefined, consume: boolean): Tensor {
    const full = this.prefix + key;
    const t = this.tensors.get(full);
    if (!t) throw new CheckpointError(this.file, `a tensor '${full}'`, 'no such key (missing)');
    if (
      shape &&
      (t.shape.length !== shape.length || t.shape.some((d, i) => shape[i] !== -1 && d !== shape[i]))
    )
      throw new CheckpointError(this.file, `'${full}' of shape [${shape}]`, `shape [${t.shape}]`);
    if (consume) {
      if (this.used.has(full)) throw new Error(`internal: '${full}' read twice`);
      this.used.add(full);
    }
    return t;
  }

  /** Fails on any key under the prefix that the map did not read (ignoring `allowed` patterns). */
  finish(allowed: readonly RegExp[] = []): void {
    const extra = [...this.tensors.keys()].filter(
      (k) =>
        k.startsWith(this.prefix) &&
        !this.used.has(k) &&
        !allowed.some((re) => re.test(k.slice(this.prefix.length))),
    );
    if (extra.length > 0)
      throw new CheckpointError(
        this.file,
        `only StyleGAN2 generator keys under '${this.prefix}'`,
        `${extra.length} unexpected key(s): ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`,
      );
  }
}

function countIndexed(tensors: Map<string, Tensor>, re: RegExp): number {
  const seen = new Set<number>();
  for (const k of tensors.keys()) {
    const m = re.exec(k);
    if (m) seen.add(Number(m[1]));
  }
  const n = seen.size;
  for (let i = 0; i < n; i++) if (!seen.has(i)) return i; // a gap: count up to it, the strict map reports it
  return n;
}

function checkBlur(file: string, key: string, k: Float32Array, gain: number): Float32Array {
  const taps = [1, 3, 3, 1];
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < 4; j++)
      if (Math.abs(k[i * 4 + j] - (gain * taps[i] * taps[j]) / 64) > 1e-6)
        throw new CheckpointError(file, `'${key}' to be the [1,3,3,1] blur`, `a different filter`);
  return k;
}

export interface RosinalityOptions {
  /** Key prefix of the generator: 'g_ema.' (default) or 'decoder.' for StyleCLIP mapper checkpoints. */
  prefix?: string;
  /** Mapping learning-rate multiplier the model was trained with (rosinality's default 0.01). */
  lrMlp?: number;
  source?: GeneratorSource;
  /** Key of the mean latent, relative to the file's top level; null to ignore. */
  latentAvgKey?: string | null;
}

/** rosinality stylegan2-pytorch `Generator` state dict (as `g_ema` in its checkpoints). */
export function fromRosinality(
  file: string,
  tensors: Map<string, Tensor>,
  options: RosinalityOptions = {},
): GeneratorWeights {
  const prefix = options.prefix ?? 'g_ema.';
  const lrMlp = options.lrMlp ?? 0.01;
  const r = new KeyReader(file, tensors, prefix);
  const esc = prefix.replace(/[.]/g, '\\.');
  const nConvs = countIndexed(tensors, new RegExp(`^${esc}convs\\.(\\d+)\\.conv\\.weight$`));
  const nMlp = [...tensors.keys()].filter((k) => new RegExp(`^${esc}style\\.\\d+\\.weight$`).test(k)).length;
  if (!r.has('input.input') || nConvs < 2 || nConvs % 2 !== 0 || nMlp < 1)
    throw new CheckpointError(
      file,
      `a rosinality StyleGAN2 generator under '${prefix}' (input.input, convs.N, style.N)`,
      `${tensors.size} keys, ${nConvs} convs, ${nMlp} mapping layers`,
    );
  const styleDim = r.shape('style.1.weight')[1];
  const logSize = nConvs / 2 + 2;
  const size = 2 ** logSize;
  const channels: Record<number, number> = { 4: r.shape('input.input')[1] };
  for (let k = 0; k < nConvs; k += 2) channels[2 ** (k / 2 + 3)] = r.shape(`convs.${k}.conv.weight`)[1];
  const config = makeConfig(size, styleDim, nMlp, channels);

  const mapping: MappingLayerWeights[] = [];
  for (let l = 1; l <= nMlp; l++) {
    const w = r.take(`style.${l}.weight`, [styleDim, styleDim]);
    const b = r.take(`style.${l}.bias`, [styleDim]);
    mapping.push({
      weight: transposedScaled(w, styleDim, styleDim, lrMlp / Math.sqrt(styleDim)),
      bias: scaled(b, lrMlp),
      inFeatures: styleDim,
      outFeatures: styleDim,
    });
  }

  const modConv = (key: string, inC: number, outC: number, k: number, demod: boolean, up: boolean) => {
    const w = r.take(`${key}.weight`, [1, outC, inC, k, k]);
    const mw = r.take(`${key}.modulation.weight`, [inC, styleDim]);
    const mb = r.take(`${key}.modulation.bias`, [inC]);
    if (up) checkBlur(file, `${prefix}${key}.blur.kernel`, r.take(`${key}.blur.kernel`, [4, 4]), 4);
    const conv: ModConvWeights = {
      inChannels: inC,
      outChannels: outC,
      kernel: k,
      affineWeight: transposedScaled(mw, inC, styleDim, 1 / Math.sqrt(styleDim)),
      affineBias: mb,
      weight: scaled(w, 1 / Math.sqrt(inC * k * k)),
      demodulate: demod,
      upsample: up,
    };
    return conv;
  };
  const styled = (key: string, inC: number, outC: number, res: number, up: boolean, noiseIdx: number) => {
    const s: StyledConvWeights = {
      conv: modConv(`${key}.conv`, inC, outC, 3, true, up),
      resolution: res,
      noiseStrength: r.take(`${key}.noise.weight`, [1])[0],
      noiseConst: r.take(`noises.noise_${noiseIdx}`, [1, 1, res, res]),
      bias: r.take(`${key}.activate.bias`, [outC]),
      clamp: null,
    };
    return s;
  };
  const toRGB = (key: string, inC: number, up: boolean): ToRGBWeights => {
    if (up) checkBlur(file, `${prefix}${key}.upsample.kernel`, r.take(`${key}.upsample.kernel`, [4, 4]), 4);
    return {
      conv: modConv(`${key}.conv`, inC, 3, 1, false, false),
      bias: r.take(`${key}.bias`, [1, 3, 1, 1]),
      clamp: null,
    };
  };

  const constInput = r.take('input.input', [1, channels[4], 4, 4]);
  const convs = [styled('conv1', channels[4], channels[4], 4, false, 0)];
  const toRGBs = [toRGB('to_rgb1', channels[4], false)];
  for (let res = 8, k = 0; res <= size; res *= 2, k += 2) {
    convs.push(styled(`convs.${k}`, channels[res / 2], channels[res], res, true, k + 1));
    convs.push(styled(`convs.${k + 1}`, channels[res], channels[res], res, false, k + 2));
    toRGBs.push(toRGB(`to_rgbs.${k / 2}`, channels[res], true));
  }
  r.finish();

  let latentAvg: Float32Array | null = null;
  const avgKey = options.latentAvgKey === undefined ? 'latent_avg' : options.latentAvgKey;
  if (avgKey !== null && tensors.has(avgKey)) {
    const t = tensors.get(avgKey)!;
    const data = toFloat32(t).data;
    // e4e checkpoints store it repeated per W+ row, [18, 512]: one row when every row is the same.
    const rows = data.length / styleDim;
    const repeated =
      Number.isInteger(rows) && t.shape.at(-1) === styleDim && data.every((v, i) => v === data[i % styleDim]);
    if (data.length !== styleDim && !repeated)
      throw new CheckpointError(
        file,
        `'${avgKey}' with ${styleDim} values (or W+ rows that are all the same)`,
        `shape [${t.shape}]`,
      );
    latentAvg = data.slice(0, styleDim);
  }
  return {
    config,
    source: options.source ?? 'rosinality',
    mapping,
    constInput,
    convs,
    toRGBs,
    blurKernel:
      toRGBs.length > 1 ? defaultKernelFrom(tensors, `${prefix}convs.0.conv.blur.kernel`) : unitBlur(),
    latentAvg,
  };
}

/** The normalised (sum 1) version of a stored ×4 blur kernel. */
function defaultKernelFrom(tensors: Map<string, Tensor>, key: string): Float32Array {
  return scaled(toFloat32(tensors.get(key)!).data, 1 / 4);
}
function unitBlur(): Float32Array {
  const taps = [1, 3, 3, 1];
  return Float32Array.from({ length: 16 }, (_, i) => (taps[i >> 2] * taps[i & 3]) / 64);
}

export interface NvidiaOptions {
  /** Mapping lr multiplier; defaults to the snapshot's mapping_kwargs.lr_multiplier, else 0.01. */
  lrMultiplier?: number;
  /** conv_clamp; defaults to the snapshot's synthesis_kwargs.conv_clamp (null = none). */
  convClamp?: number | null;
}

/** NVIDIA stylegan2-ada-pytorch `Generator` (G_ema) parameters and buffers. */
export function fromNvidia(
  file: string,
  tensors: Map<string, Tensor>,
  initKwargs: Record<string, unknown> = {},
  options: NvidiaOptions = {},
): GeneratorWeights {
  const r = new KeyReader(file, tensors, '');
  const mk = (initKwargs.mapping_kwargs ?? {}) as Record<string, unknown>;
  const sk = (initKwargs.synthesis_kwargs ?? {}) as Record<string, unknown>;
  const lrMul = options.lrMultiplier ?? (typeof mk.lr_multiplier === 'number' ? mk.lr_multiplier : 0.01);
  const clamp =
    options.convClamp !== undefined
      ? options.convClamp
      : typeof sk.conv_clamp === 'number'
        ? sk.conv_clamp
        : null;
  if (!r.has('synthesis.b4.const') || !r.has('mapping.fc0.weight'))
    throw new CheckpointError(
      file,
      'an NVIDIA StyleGAN2 generator (synthesis.b4.const, mapping.fc0)',
      'other keys',
    );
  if (r.has('mapping.embed.weight'))
    throw new CheckpointError(file, 'an unconditional generator', 'a class-conditional one (mapping.embed)');
  const nMlp = countIndexed(tensors, /^mapping\.fc(\d+)\.weight$/);
  const [wDim, zDim] = [r.shape(`mapping.fc${nMlp - 1}.weight`)[0], r.shape('mapping.fc0.weight')[1]];
  if (zDim !== wDim) throw new CheckpointError(file, `z_dim equal to w_dim`, `z_dim ${zDim}, w_dim ${wDim}`);
  const channels: Record<number, number> = { 4: r.shape('synthesis.b4.const')[0] };
  let size = 4;
  while (r.has(`synthesis.b${size * 2}.conv0.weight`)) {
    size *= 2;
    channels[size] = r.shape(`synthesis.b${size}.conv0.weight`)[0];
  }
  const config = makeConfig(size, wDim, nMlp, channels);

  const mapping: MappingLayerWeights[] = [];
  for (let l = 0; l < nMlp; l++) {
    const [outF, inF] = r.shape(`mapping.fc${l}.weight`);
    mapping.push({
      weight: transposedScaled(
        r.take(`mapping.fc${l}.weight`, [outF, inF]),
        outF,
        inF,
        lrMul / Math.sqrt(inF),
      ),
      bias: scaled(r.take(`mapping.fc${l}.bias`, [outF]), lrMul),
      inFeatures: inF,
      outFeatures: outF,
    });
  }
  const latentAvg = r.take('mapping.w_avg', [wDim]);

  let blur: Float32Array | null = null;
  const filter = (key: string) => {
    const k = checkBlur(file, key, r.take(key, [4, 4]), 1);
    blur ??= k;
  };
  const modConv = (key: string, inC: number, outC: number, k: number, demod: boolean, up: boolean) => {
    const gain = demod ? 1 : 1 / Math.sqrt(inC * k * k); // ToRGBLayer.weight_gain (styles × gain)
    const conv: ModConvWeights = {
      inChannels: inC,
      outChannels: outC,
      kernel: k,
      affineWeight: transposedScaled(
        r.take(`${key}.affine.weight`, [inC, wDim]),
        inC,
        wDim,
        1 / Math.sqrt(wDim),
      ),
      affineBias: r.take(`${key}.affine.bias`, [inC]),
      weight: scaled(r.take(`${key}.weight`, [outC, inC, k, k]), gain),
      demodulate: demod,
      upsample: up,
    };
    return conv;
  };
  const layer = (key: string, inC: number, outC: number, res: number, up: boolean): StyledConvWeights => {
    filter(`${key}.resample_filter`);
    return {
      conv: modConv(key, inC, outC, 3, true, up),
      resolution: res,
      noiseStrength: r.take(`${key}.noise_strength`, [])[0],
      noiseConst: r.take(`${key}.noise_const`, [res, res]),
      bias: r.take(`${key}.bias`, [outC]),
      clamp,
    };
  };
  const torgb = (key: string, inC: number): ToRGBWeights => ({
    conv: modConv(key, inC, 3, 1, false, false),
    bias: r.take(`${key}.bias`, [3]),
    clamp,
  });

  const constInput = r.take('synthesis.b4.const', [channels[4], 4, 4]);
  filter('synthesis.b4.resample_filter');
  const convs = [layer('synthesis.b4.conv1', channels[4], channels[4], 4, false)];
  const toRGBs = [torgb('synthesis.b4.torgb', channels[4])];
  for (let res = 8; res <= size; res *= 2) {
    filter(`synthesis.b${res}.resample_filter`);
    convs.push(layer(`synthesis.b${res}.conv0`, channels[res / 2], channels[res], res, true));
    convs.push(layer(`synthesis.b${res}.conv1`, channels[res], channels[res], res, false));
    toRGBs.push(torgb(`synthesis.b${res}.torgb`, channels[res]));
  }
  r.finish();
  return {
    config,
    source: 'nvidia',
    mapping,
    constInput,
    convs,
    toRGBs,
    blurKernel: blur ?? unitBlur(),
    latentAvg,
  };
}

/**
 * Loads a generator from any supported file: a rosinality checkpoint (`g_ema`, `latent_avg`), a StyleCLIP
 * mapper checkpoint (`state_dict.decoder.*`), a bare generator state dict, or an NVIDIA `.pkl` snapshot.
 */
export function loadGenerator(file: string): GeneratorWeights {
  // An NVIDIA snapshot also holds G and D: read only G_ema's tensors, in one pass over the pickle.
  if (isPlainPickleFile(file)) {
    const net = loadNvidiaPkl(file);
    return fromNvidia(file, net.tensors, net.initKwargs);
  }
  const t = loadTorch(file).tensors;
  if (t.has('g_ema.input.input')) return fromRosinality(file, t, { prefix: 'g_ema.' });
  if (t.has('state_dict.decoder.input.input'))
    return fromRosinality(file, t, {
      prefix: 'state_dict.decoder.',
      source: 'styleclip-mapper',
      latentAvgKey: 'latent_avg',
    });
  if (t.has('decoder.input.input'))
    return fromRosinality(file, t, {
      prefix: 'decoder.',
      source: 'styleclip-mapper',
      latentAvgKey: 'latent_avg',
    });
  if (t.has('input.input')) return fromRosinality(file, t, { prefix: '' });
  throw new CheckpointError(
    file,
    'a StyleGAN2 generator (rosinality g_ema.*, StyleCLIP decoder.*, or an NVIDIA .pkl with G_ema)',
    `${t.size} tensors, none of them a generator's (first: ${[...t.keys()].slice(0, 3).join(', ')})`,
  );
}
