/**
 * Full-size random-weight files in the exact on-disk layouts of the published models, written during the
 * test run (CI has no torch). Each writer uses the project's own writers where they can produce the layout
 * (saveTorch, saveMapper, saveSafetensors, writeNpy) and test/fullsize/pickler.ts where they cannot
 * (legacy torch.save, NVIDIA snapshot pickles). The TorchScript archive takes its module tree, class names,
 * code and constants from test/fixtures/clip/clip.pt (made by torch.jit.trace of OpenAI's CLIP) and its
 * tensor shapes from torch's own full-size listing, test/fixtures/fullsize/manifest.json.
 */
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { rosinalityStateDict, saveMapper } from '../../src/edit/mapper/checkpoint.js';
import { initMapperWeights, wplusSpec } from '../../src/edit/mapper/model.js';
import { unpickle } from '../../src/io/pickle.js';
import { saveSafetensors } from '../../src/io/safetensors.js';
import { FileSource } from '../../src/io/source.js';
import type { DType, Tensor } from '../../src/io/tensor.js';
import { loadTorch } from '../../src/io/torch.js';
import { saveTorch } from '../../src/io/torch-write.js';
import { ZipReader } from '../../src/io/zip.js';
import { openAIToHF } from '../../src/models/clip/hf.js';
import {
  configFChannels,
  fastNormal,
  type GeneratorWeights,
  randomGeneratorWeights,
} from '../../src/models/stylegan2/weights.js';
import {
  Call,
  legacySave,
  legacyStorageBytes,
  Ordered,
  Pickler,
  PySet,
  rebuildTensor,
  Tuple,
  writeChunks,
} from './pickler.js';

export const MANIFEST_FILE = 'test/fixtures/fullsize/manifest.json';

export interface ManifestTensor {
  key: string;
  shape: number[];
  stride: number[];
  dtype: DType;
  storage_offset: number;
  storage_numel: number;
}
export interface ManifestValue {
  key: string;
  python: string;
  value: unknown;
}
export interface ManifestFile {
  what: string;
  bytes: number;
  archive_entries: number;
  entries_sample: string[];
  tensors: (ManifestTensor | ManifestValue)[];
}

export function manifest(): Record<string, ManifestFile> {
  return JSON.parse(readFileSync(MANIFEST_FILE, 'utf8'));
}

export const manifestTensors = (m: ManifestFile) =>
  m.tensors.filter((t): t is ManifestTensor => 'dtype' in t);

const stem = (file: string) => basename(file, extname(file));
const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'float32', shape, data });
const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Small random float16 values (|x| in [2^-7, 2^-3)), fast enough for 150M of them. */
function halves(shape: number[], seed: number): Tensor {
  const n = numel(shape);
  const data = new Uint16Array(n + (n & 1));
  const words = new Uint32Array(data.buffer);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = ((s >>> 0) & 0x83ff83ff) | 0x20002000;
  }
  return { dtype: 'float16', shape, data: data.subarray(0, n) };
}

/**
 * Seeded uniform values with the variance of `scale`-sized normals (xorshift32): random weights for
 * the writers below at a fraction of Box-Muller's cost on 50M values.
 */
function uniform(seed: number): (out: Float32Array, scale?: number) => Float32Array {
  let s = seed >>> 0 || 1;
  return (out, scale = 1) => {
    const a = (2 * Math.sqrt(3) * scale) / 2 ** 32;
    const b = Math.sqrt(3) * scale;
    for (let i = 0; i < out.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      out[i] = (s >>> 0) * a - b;
    }
    return out;
  };
}

// --- rosinality generators and StyleCLIP mappers ---------------------------------------------------------

/** A random config-f generator (FFHQ 1024 by default: n_mlp 8, channel multiplier 2). */
export function randomGenerator(size = 1024, seed = 1): GeneratorWeights {
  return randomGeneratorWeights({ size, nMlp: 8, channels: configFChannels(size), seed });
}

/**
 * rosinality's Generator state dict in torch's key order (module registration order: style, input, conv1,
 * to_rgb1, convs, to_rgbs, noises; within a layer, own parameters before submodules). The 1024 listing is a
 * superset of every smaller size's keys, so it orders those too.
 */
export function rosinalityTorchOrder(G: GeneratorWeights): Map<string, Tensor> {
  const sd = rosinalityStateDict(G);
  const order = manifestTensors(manifest()['ffhq1024.pt'])
    .map((t) => t.key.slice('g_ema.'.length))
    .filter((k) => sd.has(k));
  if (order.length !== sd.size) throw new Error('rosinality keys outside the 1024 listing');
  return new Map(order.map((k) => [k, sd.get(k)!]));
}

/** `stylegan2-ffhq-config-f.pt`: torch.save({'g_ema': state_dict, 'latent_avg': [512]}). */
export function writeRosinality(file: string, G: GeneratorWeights): void {
  const latentAvg = G.latentAvg ?? fastNormal(9)(new Float32Array(G.config.styleDim), 0.1);
  saveTorch(
    file,
    { g_ema: rosinalityTorchOrder(G), latent_avg: f32([G.config.styleDim], latentAvg) },
    { root: stem(file) },
  );
}

/** A StyleCLIP LevelsMapper checkpoint `{state_dict: mapper.* [+ decoder.*], opts}` (purple_hair.pt etc.). */
export function writeMapper(file: string, decoder: GeneratorWeights | null, seed = 3): void {
  const w = initMapperWeights(wplusSpec(), seed);
  saveMapper(file, w, {
    decoder: decoder ? rosinalityTorchOrder(decoder) : undefined,
    opts: {
      no_coarse_mapper: false,
      no_medium_mapper: false,
      no_fine_mapper: false,
      mapper_type: 'LevelsMapper',
      work_in_stylespace: false,
      stylegan_size: 1024,
      description: 'purple hair',
      checkpoint_path: null,
    },
  });
}

// --- NVIDIA stylegan2-ada-pytorch snapshot ----------------------------------------------------------------

/** `ffhq.pkl` of stylegan2-ada-pytorch at 1024: {training_set_kwargs, G, D, G_ema, augment_pipe}. */
export function writeNvidiaPkl(file: string, size = 1024, seed = 5): void {
  const randn = uniform(seed);
  let storageKey = 0;
  const tensor = (shape: number[], data: Float32Array, param: boolean) => {
    const t = f32(shape, data);
    const v = rebuildTensor(
      new Call('torch.storage._load_from_bytes', [legacyStorageBytes(t, String(storageKey++))]),
      t,
    );
    return param ? new Call('torch._utils._rebuild_parameter', [v, true, new Ordered([])]) : v;
  };
  const normal = (shape: number[], scale = 1) =>
    tensor(shape, randn(new Float32Array(numel(shape)), scale), true);
  const filled = (shape: number[], value: number, param = true) =>
    tensor(shape, new Float32Array(numel(shape)).fill(value), param);
  const filter = () => {
    const k = [1, 3, 3, 1];
    const data = new Float32Array(16);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) data[i * 4 + j] = (k[i] * k[j]) / 64;
    return tensor([4, 4], data, false);
  };
  const module = (
    cls: string,
    parts: { params?: [string, unknown][]; buffers?: [string, unknown][]; modules?: [string, unknown][] },
    attrs: Record<string, unknown> = {},
  ) =>
    new Call('torch_utils.persistence._reconstruct_persistent_obj', [
      {
        type: 'class',
        version: 6,
        module_src: '# stylegan2-ada-pytorch training/networks.py (never run by the loader)\n',
        class_name: cls,
        state: {
          training: false,
          _parameters: new Ordered(parts.params ?? []),
          _buffers: new Ordered(parts.buffers ?? []),
          _non_persistent_buffers_set: new PySet([]),
          _backward_hooks: new Ordered([]),
          _forward_hooks: new Ordered([]),
          _forward_pre_hooks: new Ordered([]),
          _state_dict_hooks: new Ordered([]),
          _load_state_dict_pre_hooks: new Ordered([]),
          _modules: new Ordered(parts.modules ?? []),
          ...attrs,
        },
      },
    ]);
  const W = 512;
  const fc = (inF: number, outF: number, lrMul: number, biasInit: number) =>
    module(
      'FullyConnectedLayer',
      {
        params: [
          ['weight', normal([outF, inF], 1 / lrMul)],
          ['bias', filled([outF], biasInit / lrMul)],
        ],
      },
      { activation: 'linear', lr_multiplier: lrMul, weight_gain: lrMul / Math.sqrt(inF), bias_gain: lrMul },
    );
  const layer = (inC: number, outC: number, res: number, up: boolean) =>
    module(
      'SynthesisLayer',
      {
        params: [
          ['weight', normal([outC, inC, 3, 3])],
          ['noise_strength', filled([], 0.1)],
          ['bias', filled([outC], 0)],
        ],
        buffers: [
          ['resample_filter', filter()],
          ['noise_const', tensor([res, res], randn(new Float32Array(res * res)), false)],
        ],
        modules: [['affine', fc(W, inC, 1, 1)]],
      },
      { resolution: res, up: up ? 2 : 1, use_noise: true, activation: 'lrelu', conv_clamp: 256 },
    );
  const torgb = (inC: number) =>
    module(
      'ToRGBLayer',
      {
        params: [
          ['weight', normal([3, inC, 1, 1])],
          ['bias', filled([3], 0)],
        ],
        modules: [['affine', fc(W, inC, 1, 1)]],
      },
      { conv_clamp: 256, weight_gain: 1 / Math.sqrt(inC) },
    );
  const ch = configFChannels(size);
  const blocks: [string, unknown][] = [];
  for (let res = 4; res <= size; res *= 2) {
    const modules: [string, unknown][] = [];
    if (res > 4) modules.push(['conv0', layer(ch[res / 2], ch[res], res, true)]);
    modules.push(['conv1', layer(ch[res], ch[res], res, false)]);
    modules.push(['torgb', torgb(ch[res])]);
    blocks.push([
      `b${res}`,
      module(
        'SynthesisBlock',
        {
          params: res === 4 ? [['const', normal([ch[4], 4, 4])]] : [],
          buffers: [['resample_filter', filter()]],
          modules,
        },
        { resolution: res, architecture: 'skip', is_last: res === size },
      ),
    ]);
  }
  const mapping = module(
    'MappingNetwork',
    {
      buffers: [['w_avg', tensor([W], randn(new Float32Array(W), 0.1), false)]],
      modules: Array.from({ length: 8 }, (_, i): [string, unknown] => [`fc${i}`, fc(W, W, 0.01, 0)]),
    },
    { z_dim: W, c_dim: 0, w_dim: W, num_ws: 2 * Math.log2(size) - 2, num_layers: 8, w_avg_beta: 0.995 },
  );
  const initKwargs = {
    z_dim: W,
    c_dim: 0,
    w_dim: W,
    img_resolution: size,
    img_channels: 3,
    mapping_kwargs: new Call('dnnlib.util.EasyDict', []),
    synthesis_kwargs: { channel_base: 32768, channel_max: 512, num_fp16_res: 4, conv_clamp: 256 },
  };
  const generator = () =>
    module(
      'Generator',
      {
        modules: [
          [
            'synthesis',
            module(
              'SynthesisNetwork',
              { modules: blocks },
              { img_resolution: size, num_ws: 2 * Math.log2(size) - 2 },
            ),
          ],
          ['mapping', mapping],
        ],
      },
      {
        z_dim: W,
        c_dim: 0,
        w_dim: W,
        img_resolution: size,
        img_channels: 3,
        _init_args: new Tuple([]),
        _init_kwargs: initKwargs,
      },
    );
  // G and G_ema are separate networks in a real snapshot (same weights here); D is left out (None), as in
  // the fixture snapshot, to keep the file at the size of the two generators.
  const snapshot = {
    training_set_kwargs: { resolution: size },
    G: generator(),
    D: null,
    G_ema: generator(),
    augment_pipe: null,
  };
  writeChunks(file, new Pickler(4).value(snapshot).finish());
}

// --- ArcFace IR-SE50 ---------------------------------------------------------------------------------------

/** model_ir_se50.pth's state dict: IR-SE50 (units 3, 4, 14, 3; widths 64, 128, 256, 512), in torch's key order. */
export function irse50StateDict(seed = 11): Map<string, Tensor> {
  const randn = uniform(seed);
  const sd = new Map<string, Tensor>();
  const conv = (key: string, out: number, inn: number, k: number) =>
    sd.set(
      key,
      f32([out, inn, k, k], randn(new Float32Array(out * inn * k * k), Math.sqrt(1 / (inn * k * k)))),
    );
  const bn = (key: string, c: number) => {
    sd.set(`${key}.weight`, f32([c], new Float32Array(c).fill(1)));
    sd.set(`${key}.bias`, f32([c], randn(new Float32Array(c), 0.01)));
    sd.set(`${key}.running_mean`, f32([c], randn(new Float32Array(c), 0.01)));
    sd.set(`${key}.running_var`, f32([c], new Float32Array(c).fill(1)));
    sd.set(`${key}.num_batches_tracked`, { dtype: 'int64', shape: [], data: BigInt64Array.of(0n) });
  };
  const prelu = (key: string, c: number) => sd.set(`${key}.weight`, f32([c], new Float32Array(c).fill(0.25)));
  conv('input_layer.0.weight', 64, 3, 3);
  bn('input_layer.1', 64);
  prelu('input_layer.2', 64);
  bn('output_layer.0', 512);
  sd.set(
    'output_layer.3.weight',
    f32([512, 512 * 49], randn(new Float32Array(512 * 512 * 49), 1 / Math.sqrt(512 * 49))),
  );
  sd.set('output_layer.3.bias', f32([512], new Float32Array(512)));
  bn('output_layer.4', 512);
  let i = 0;
  let inC = 64;
  for (const [depth, units] of [
    [64, 3],
    [128, 4],
    [256, 14],
    [512, 3],
  ]) {
    for (let u = 0; u < units; u++, i++) {
      const b = `body.${i}`;
      if (inC !== depth) {
        conv(`${b}.shortcut_layer.0.weight`, depth, inC, 1);
        bn(`${b}.shortcut_layer.1`, depth);
      }
      bn(`${b}.res_layer.0`, inC);
      conv(`${b}.res_layer.1.weight`, depth, inC, 3);
      prelu(`${b}.res_layer.2`, depth);
      conv(`${b}.res_layer.3.weight`, depth, depth, 3);
      bn(`${b}.res_layer.4`, depth);
      conv(`${b}.res_layer.5.fc1.weight`, depth / 16, depth, 1);
      conv(`${b}.res_layer.5.fc2.weight`, depth, depth / 16, 1);
      inC = depth;
    }
  }
  return sd;
}

/** model_ir_se50.pth in torch's legacy format (as published) or the zip format (torch ≥ 1.6 re-saves). */
export function writeIrse50(file: string, format: 'legacy' | 'zip'): void {
  const sd = irse50StateDict();
  if (format === 'legacy') legacySave(file, sd);
  else saveTorch(file, sd, { root: stem(file) });
}

// --- CLIP ViT-B/32: OpenAI TorchScript archive and Hugging Face safetensors ------------------------------

const CLIP_FIXTURE = 'test/fixtures/clip/clip.pt';

/**
 * `ViT-B-32.pt`: the fixture archive's module tree grown to 12 residual blocks per tower (blocks 2..11 reuse
 * block 1's mangled classes), every tensor replaced by a random float16 one of the shape torch wrote at full
 * size, and the fixture's code/ and constants records copied as they are.
 */
export function writeClipScript(file: string): void {
  const full = manifest()['ViT-B-32.pt'];
  const shapes = new Map(manifestTensors(full).map((t) => [t.key, t.shape]));
  const tree = loadTorch(CLIP_FIXTURE, { widen: false }).value as Record<string, unknown>;
  let seed = 1;
  const grow = (node: Record<string, unknown>, prefix: string): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      const key = prefix + k;
      if (v && typeof v === 'object' && 'dtype' in v) {
        const shape = shapes.get(key);
        if (!shape) throw new Error(`fixture tensor ${key} is not in the full-size manifest`);
        out[k] =
          key === 'logit_scale'
            ? { dtype: 'float16', shape, data: Uint16Array.of(0x4498) }
            : halves(shape, seed++);
      } else if (v && typeof v === 'object' && !Array.isArray(v)) {
        const child = v as Record<string, unknown>;
        if (k === 'resblocks') {
          const grown: Record<string, unknown> = { __class__: child.__class__ };
          for (let i = 0; i < 12; i++)
            grown[String(i)] = grow(child[String(Math.min(i, 1))] as Record<string, unknown>, `${key}.${i}.`);
          for (const [a, x] of Object.entries(child)) if (!/^\d+$/.test(a) && a !== '__class__') grown[a] = x;
          out[k] = grown;
        } else out[k] = grow(child, `${key}.`);
      } else out[k] = v;
    }
    return out;
  };
  const model = grow(tree, '');
  const zip = new ZipReader(new FileSource(CLIP_FIXTURE));
  const records: Record<string, Uint8Array> = {};
  for (const name of zip.entries.keys()) {
    const rel = name.slice(name.indexOf('/') + 1);
    if (rel.startsWith('code/') || rel.startsWith('constants')) records[rel] = zip.read(name);
  }
  saveTorch(file, model, { root: stem(file), records });
}

/** Hugging Face `openai/clip-vit-base-patch32` model.safetensors (float32), from an OpenAI state dict. */
export function writeHfClip(file: string, openAI: Map<string, Tensor>): void {
  saveSafetensors(file, openAIToHF(openAI), { format: 'pt' });
}

// --- layout check: what torch's pickle says about each tensor --------------------------------------------

export interface TensorRecord {
  shape: number[];
  stride: number[];
  dtype: string;
  storage_offset: number;
  storage_numel: number;
}

const STORAGE_DTYPE: Record<string, string> = {
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  LongStorage: 'int64',
};

/**
 * Every tensor of a zip-format torch file as its data.pkl records it (shape, stride, storage dtype, offset
 * and size), keyed by dotted path. Read independently of the loader under test: the pickle VM only, with
 * each global a recorder.
 */
export function describeArchive(file: string): Map<string, TensorRecord> {
  const zip = new ZipReader(new FileSource(file));
  const pkl = [...zip.entries.keys()].find((n) => n.endsWith('/data.pkl'))!;
  const marker = Symbol('tensor');
  const value = unpickle(zip.read(pkl), {
    file,
    persistentLoad: (pid) => {
      const [, type, , , n] = pid as [string, { qualname: string }, string, string, number];
      return { dtype: STORAGE_DTYPE[type.qualname.split('.').pop()!], numel: n };
    },
    resolveGlobal: (module, name) => ({
      kind: 'global',
      qualname: `${module}.${name}`,
      call: (args) => {
        if (name === '_rebuild_tensor_v2') {
          const [st, offset, shape, stride] = args as [
            { dtype: string; numel: number },
            number,
            number[],
            number[],
          ];
          return {
            [marker]: true,
            shape: [...shape],
            stride: [...stride],
            dtype: st.dtype,
            storage_offset: offset,
            storage_numel: st.numel,
          };
        }
        return new Map();
      },
      construct: () => ({
        __object__: true,
        state: undefined as unknown,
        setState(this: { state: unknown }, st: unknown) {
          this.state = st;
        },
      }),
    }),
  }).value;
  const out = new Map<string, TensorRecord>();
  const walk = (v: unknown, prefix: string) => {
    if (!v || typeof v !== 'object') return;
    if ((v as Record<symbol, unknown>)[marker]) {
      const { shape, stride, dtype, storage_offset, storage_numel } = v as TensorRecord;
      out.set(prefix.slice(0, -1), { shape, stride, dtype, storage_offset, storage_numel });
      return;
    }
    if (v instanceof Map) for (const [k, x] of v) walk(x, `${prefix}${k}.`);
    else if ((v as { __object__?: boolean }).__object__) walk((v as { state: unknown }).state, prefix);
    else if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, `${prefix}${i}.`);
  };
  walk(value, '');
  return out;
}
