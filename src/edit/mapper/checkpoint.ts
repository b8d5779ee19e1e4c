/**
 * StyleCLIP mapper checkpoints: `{'state_dict': mapper.* + decoder.*, 'opts': vars(opts)}` as written by
 * mapper/training/coach.py and loaded by mapper/styleclip_mapper.py (get_keys + load_state_dict strict).
 *
 * Loading reads the architecture from `opts` (mapper_type, no_*_mapper, work_in_stylespace) and checks it
 * against the key set; the decoder half, when present, is a rosinality generator. Saving writes the same
 * layout (so the official code loads our mappers) or a mapper-only file (no decoder; ~12.6 MB for a full
 * LevelsMapper), optionally with our training state for resuming.
 */
import { CheckpointError } from '../../io/errors.js';
import { type Tensor, toFloat32 } from '../../io/tensor.js';
import { loadTorch } from '../../io/torch.js';
import { saveTorch } from '../../io/torch-write.js';
import { fromRosinality } from '../../models/stylegan2/load.js';
import type { GeneratorWeights } from '../../models/stylegan2/weights.js';
import {
  type HostParam,
  MapperError,
  type MapperSpec,
  type MapperType,
  type MapperWeights,
  parameterShapes,
} from './model.js';

export type Opts = Record<string, unknown>;

export interface LoadedMapper {
  file: string;
  weights: MapperWeights;
  /** The checkpoint's training options, as stored. */
  opts: Opts;
  /** The `decoder.*` generator, or null for a mapper-only file. */
  decoder: GeneratorWeights | null;
  /** Our training state, when the file was written by `styleclip mapper train`. */
  trainState: unknown;
}

const bool = (v: unknown) => v === true || v === 1;

function unwrapOpts(v: unknown): Opts {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    if (v instanceof Map) return Object.fromEntries(v) as Opts;
    const o = v as Opts;
    // argparse.Namespace pickles as an object whose fields live in its state dict.
    if (o.__class__ && o.__dict__ && typeof o.__dict__ === 'object') return o.__dict__ as Opts;
    return o;
  }
  return {};
}

/** Finds the mapper's parameters (`state_dict.mapper.*`, or `mapper.*` at the top level). */
function mapperTensors(tensors: Map<string, Tensor>): { prefix: string; keys: string[] } {
  for (const prefix of ['state_dict.mapper.', 'mapper.']) {
    const keys = [...tensors.keys()].filter((k) => k.startsWith(prefix));
    if (keys.length) return { prefix, keys: keys.map((k) => k.slice(prefix.length)) };
  }
  return { prefix: '', keys: [] };
}

/** The architecture implied by opts and the key set; contradictions are errors. */
export function inferSpec(
  file: string,
  opts: Opts,
  keys: readonly string[],
  shapeOf: (k: string) => number[],
) {
  const has = (p: string) => keys.some((k) => k.startsWith(`${p}.`));
  let type: MapperType;
  if (bool(opts.work_in_stylespace) || keys.some((k) => /^mapper_\d+\./.test(k))) type = 'StyleSpaceMapper';
  else if (opts.mapper_type === 'SingleMapper' || (opts.mapper_type === undefined && has('mapping')))
    type = 'SingleMapper';
  else if (opts.mapper_type === undefined || opts.mapper_type === 'LevelsMapper') type = 'LevelsMapper';
  else
    throw new CheckpointError(
      file,
      "opts.mapper_type 'LevelsMapper' or 'SingleMapper'",
      `'${String(opts.mapper_type)}'`,
    );
  const spec: MapperSpec = {
    type,
    noCoarse: false,
    noMedium: false,
    noFine: false,
    latentDim: 512,
  };
  if (type === 'LevelsMapper') {
    const parts: [keyof MapperSpec & ('noCoarse' | 'noMedium' | 'noFine'), string, string][] = [
      ['noCoarse', 'no_coarse_mapper', 'course_mapping'],
      ['noMedium', 'no_medium_mapper', 'medium_mapping'],
      ['noFine', 'no_fine_mapper', 'fine_mapping'],
    ];
    for (const [field, opt, prefix] of parts) {
      const off = opts[opt] === undefined ? !has(prefix) : bool(opts[opt]);
      if (off === has(prefix))
        throw new CheckpointError(
          file,
          `${prefix}.* keys ${off ? 'absent' : 'present'} (opts.${opt} = ${String(opts[opt])})`,
          `them ${has(prefix) ? 'present' : 'absent'}`,
        );
      spec[field] = off;
    }
    const first = ['course_mapping', 'medium_mapping', 'fine_mapping'].find(has);
    if (!first) throw new CheckpointError(file, 'at least one of the LevelsMapper parts', 'none');
    spec.latentDim = shapeOf(`${first}.mapping.1.weight`)[1];
  } else if (type === 'SingleMapper') {
    spec.latentDim = shapeOf('mapping.mapping.1.weight')[1];
  } else {
    const ids = keys.flatMap((k) => {
      const m = /^mapper_(\d+)\.mapping\.1\.weight$/.exec(k);
      return m ? [Number(m[1])] : [];
    });
    if (!ids.length) throw new CheckpointError(file, 'StyleSpace mapper keys mapper_N.*', 'none');
    const n = Math.max(...ids) + 1;
    // toRGB layers (1, 4, 7, …) have no mapper; the last StyleSpace layer is a toRGB.
    const layers = n + 1;
    const dims: (number | null)[] = Array.from({ length: layers }, () => null);
    for (const i of ids) dims[i] = shapeOf(`mapper_${i}.mapping.1.weight`)[1];
    spec.styleDims = dims;
    spec.latentDim = Math.max(...ids.map((i) => dims[i] as number));
  }
  return spec;
}

/**
 * Loads an official (or our) mapper checkpoint. The decoder half is read when present; pass
 * `withDecoder: false` to skip it when another generator will be used.
 */
export function loadMapper(file: string, options: { withDecoder?: boolean } = {}): LoadedMapper {
  const ck = loadTorch(file);
  const value = (ck.value ?? {}) as Opts;
  const opts = unwrapOpts(value.opts);
  const { prefix, keys } = mapperTensors(ck.tensors);
  if (!keys.length)
    throw new CheckpointError(
      file,
      "a StyleCLIP mapper checkpoint ({'state_dict': mapper.* + decoder.*, 'opts'})",
      `no mapper.* tensors (first keys: ${[...ck.tensors.keys()].slice(0, 3).join(', ') || 'none'})`,
    );
  const tensor = (k: string) => ck.tensors.get(prefix + k)!;
  const spec = inferSpec(file, opts, keys, (k) => {
    const t = ck.tensors.get(prefix + k);
    if (!t) throw new CheckpointError(file, `a tensor '${prefix}${k}'`, 'no such key');
    return t.shape;
  });
  const params = new Map<string, HostParam>();
  const expected = parameterShapes(spec);
  for (const [k, shape] of expected) {
    const t = ck.tensors.get(prefix + k);
    if (!t) throw new CheckpointError(file, `a tensor '${prefix}${k}'`, 'no such key (missing)');
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new CheckpointError(file, `'${prefix}${k}' of shape [${shape}]`, `shape [${t.shape}]`);
    params.set(k, { shape: [...shape], data: toFloat32(tensor(k)).data.slice() });
  }
  const extra = keys.filter((k) => !params.has(k));
  if (extra.length)
    throw new CheckpointError(
      file,
      `only ${spec.type} keys under '${prefix}'`,
      `${extra.length} unexpected key(s): ${extra.slice(0, 3).join(', ')}`,
    );
  let decoder: GeneratorWeights | null = null;
  if (options.withDecoder !== false) {
    const dp = prefix === 'state_dict.mapper.' ? 'state_dict.decoder.' : 'decoder.';
    if (ck.tensors.has(`${dp}input.input`))
      decoder = fromRosinality(file, ck.tensors, {
        prefix: dp,
        source: 'styleclip-mapper',
        latentAvgKey: ck.tensors.has('latent_avg') ? 'latent_avg' : null,
      });
  }
  return { file, weights: { spec, params }, opts, decoder, trainState: value.train_state ?? null };
}

/** The `opts` dict the official code expects (train_options.py's names), with our values filled in. */
export function officialOpts(spec: MapperSpec, opts: Opts = {}): Opts {
  return {
    exp_dir: '',
    mapper_type: spec.type === 'SingleMapper' ? 'SingleMapper' : 'LevelsMapper',
    no_coarse_mapper: spec.noCoarse,
    no_medium_mapper: spec.noMedium,
    no_fine_mapper: spec.noFine,
    latents_train_path: null,
    latents_test_path: null,
    train_dataset_size: 5000,
    test_dataset_size: 1000,
    work_in_stylespace: spec.type === 'StyleSpaceMapper',
    batch_size: 2,
    test_batch_size: 1,
    workers: 4,
    test_workers: 2,
    learning_rate: 0.5,
    optim_name: 'ranger',
    id_lambda: 0.1,
    clip_lambda: 1.0,
    latent_l2_lambda: 0.8,
    stylegan_weights: '',
    stylegan_size: 1024,
    ir_se50_weights: '',
    checkpoint_path: null,
    max_steps: 50000,
    image_interval: 100,
    board_interval: 50,
    val_interval: 2000,
    save_interval: 2000,
    description: '',
    ...opts,
  };
}

const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'float32', shape, data });

/** StyleCLIP's decoder.* (rosinality Generator) state dict from the internal generator weights. */
export function rosinalityStateDict(G: GeneratorWeights): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const D = G.config.styleDim;
  if ([...G.convs, ...G.toRGBs].some((l) => l.clamp !== null))
    throw new MapperError(
      'this generator clamps its activations (NVIDIA conv_clamp), which a rosinality decoder cannot express; ' +
        'save a mapper-only file instead',
    );
  const unscale = (a: Float32Array, s: number) => a.map((v) => Math.fround(v / s));
  const transposeUnscale = (a: Float32Array, rows: number, cols: number, s: number) => {
    // a is [rows, cols] (matmul operand, in→out); torch stores [cols, rows].
    const r = new Float32Array(a.length);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) r[j * rows + i] = Math.fround(a[i * cols + j] / s);
    return r;
  };
  G.mapping.forEach((m, l) => {
    out.set(
      `style.${l + 1}.weight`,
      f32(
        [m.outFeatures, m.inFeatures],
        transposeUnscale(m.weight, m.inFeatures, m.outFeatures, 0.01 / Math.sqrt(m.inFeatures)),
      ),
    );
    out.set(`style.${l + 1}.bias`, f32([m.outFeatures], unscale(m.bias, 0.01)));
  });
  const c4 = G.config.channels[4];
  out.set('input.input', f32([1, c4, 4, 4], G.constInput.slice()));
  const blur4 = G.blurKernel.map((v) => Math.fround(v * 4));
  const modConv = (key: string, c: GeneratorWeights['convs'][number]['conv']) => {
    const k = c.kernel;
    out.set(
      `${key}.weight`,
      f32([1, c.outChannels, c.inChannels, k, k], unscale(c.weight, 1 / Math.sqrt(c.inChannels * k * k))),
    );
    out.set(
      `${key}.modulation.weight`,
      f32([c.inChannels, D], transposeUnscale(c.affineWeight, D, c.inChannels, 1 / Math.sqrt(D))),
    );
    out.set(`${key}.modulation.bias`, f32([c.inChannels], c.affineBias.slice()));
    if (c.upsample) out.set(`${key}.blur.kernel`, f32([4, 4], blur4.slice()));
  };
  const styled = (key: string, i: number) => {
    const L = G.convs[i];
    modConv(`${key}.conv`, L.conv);
    out.set(`${key}.noise.weight`, f32([1], Float32Array.of(L.noiseStrength)));
    out.set(`${key}.activate.bias`, f32([L.conv.outChannels], L.bias.slice()));
  };
  const toRGB = (key: string, j: number) => {
    const T = G.toRGBs[j];
    if (j > 0) out.set(`${key}.upsample.kernel`, f32([4, 4], blur4.slice()));
    modConv(`${key}.conv`, T.conv);
    out.set(`${key}.bias`, f32([1, 3, 1, 1], T.bias.slice()));
  };
  styled('conv1', 0);
  toRGB('to_rgb1', 0);
  for (let k = 0; k < G.convs.length - 1; k++) styled(`convs.${k}`, k + 1);
  for (let j = 1; j < G.toRGBs.length; j++) toRGB(`to_rgbs.${j - 1}`, j);
  G.convs.forEach((L, i) => {
    out.set(`noises.noise_${i}`, f32([1, 1, L.resolution, L.resolution], L.noiseConst.slice()));
  });
  return out;
}

export interface SaveOptions {
  /** Training options (official names); missing ones get train_options.py's defaults. */
  opts?: Opts;
  /**
   * The decoder half: a generator (written as a rosinality state dict), or its tensors already in
   * rosinality layout (copied as they are). Omit for a mapper-only file.
   */
  decoder?: GeneratorWeights | Map<string, Tensor>;
  /** Our resume state, stored under a top-level `train_state` key that the official code ignores. */
  trainState?: unknown;
}

/** Writes `{'state_dict': OrderedDict(mapper.* [+ decoder.*]), 'opts': {...}}` with torch.save's zip format. */
export function saveMapper(file: string, weights: MapperWeights, options: SaveOptions = {}): void {
  const sd = new Map<string, Tensor>();
  for (const [k] of parameterShapes(weights.spec)) {
    const p = weights.params.get(k);
    if (!p) throw new MapperError(`mapper parameter '${k}' is missing`);
    sd.set(`mapper.${k}`, f32([...p.shape], p.data));
  }
  if (options.decoder) {
    const dec = options.decoder instanceof Map ? options.decoder : rosinalityStateDict(options.decoder);
    for (const [k, t] of dec) sd.set(`decoder.${k}`, t);
  }
  const value: Record<string, unknown> = { state_dict: sd, opts: officialOpts(weights.spec, options.opts) };
  if (options.trainState !== undefined) value.train_state = options.trainState;
  saveTorch(file, value);
}

/**
 * The generator tensors of a rosinality-layout file (g_ema.*, state_dict.decoder.*, decoder.*), keyed
 * without the prefix, to copy into a saved mapper bit for bit; null for other formats.
 */
export function rosinalityTensorsOf(file: string): Map<string, Tensor> | null {
  let tensors: Map<string, Tensor>;
  try {
    const ck = loadTorch(file);
    if (ck.format === 'pickle') return null;
    tensors = ck.tensors;
  } catch {
    return null;
  }
  for (const prefix of ['g_ema.', 'state_dict.decoder.', 'decoder.', '']) {
    if (!tensors.has(`${prefix}input.input`)) continue;
    const out = new Map<string, Tensor>();
    for (const [k, t] of tensors)
      if (k.startsWith(prefix) && (prefix || !k.includes('mapper.'))) out.set(k.slice(prefix.length), t);
    return out;
  }
  return null;
}
