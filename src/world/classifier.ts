/**
 * The attribute classifier: a small CNN with one softmax head per attribute family. It only measures
 * edits (the semantic benchmark); no editing method ever sees it.
 *
 *   x [N, 3, 64, 64] in [-1, 1]
 *   convs.0  3×3 stride 1, then convs.1..4 3×3 stride 2 (64 → 32 → 16 → 8 → 4), each + bias, LeakyReLU 0.2
 *   flatten [N, C·4·4] → fc 128, LeakyReLU → heads [N, Σ values]; family f reads its own slice
 *
 * Loss: the sum over families of the mean cross-entropy; a family that cannot be seen on a face (eyes
 * behind sunglasses) is masked out of both loss and accuracy. Parameters are graph inputs, so one run gives
 * the loss and every gradient; Adam updates them on the host.
 *
 * File: safetensors, weights in float16 (widened on load), config in the metadata (families and their
 * values); the channels are read from the weight shapes.
 */
import { grad } from '../autodiff/grad.js';
import { Graph, type Value } from '../graph/graph.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import { float32ToHalf, type Tensor } from '../io/tensor.js';
import {
  add,
  conv2d,
  exp,
  leakyRelu,
  linear,
  log,
  max,
  mul,
  reshape,
  sliceAxis,
  stopGradient,
  sub,
  sum,
} from '../ops/index.js';
import { compile, type Executable } from '../runtime/session.js';
import { seededNormal } from '../util/random.js';
import { FAMILIES, FAMILY_NAMES, type Family, type Labels, labelIndices, visible } from './attributes.js';

export class ClassifierError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClassifierError';
  }
}

export interface Param {
  shape: number[];
  data: Float32Array;
}
export type ClassifierParams = Map<string, Param>;

export interface ClassifierConfig {
  size: number;
  channels: number[];
  hidden: number;
  /** Families in head order, with their values. */
  families: { name: Family; values: string[] }[];
}

export const DEFAULT_CLASSIFIER: ClassifierConfig = {
  size: 64,
  channels: [16, 32, 64, 64, 64],
  hidden: 128,
  families: FAMILY_NAMES.map((name) => ({ name, values: [...FAMILIES[name]] })),
};

const headWidth = (c: ClassifierConfig) => c.families.reduce((a, f) => a + f.values.length, 0);

/** He-normal weights (std √(2/fan_in)) from one seed, zero biases. */
export function initClassifier(config: ClassifierConfig = DEFAULT_CLASSIFIER, seed = 0): ClassifierParams {
  const p: ClassifierParams = new Map();
  let s = seed * 1000;
  const he = (shape: number[], fanIn: number): Param => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = seededNormal(s++, n);
    const std = Math.sqrt(2 / fanIn);
    for (let i = 0; i < n; i++) data[i] *= std;
    return { shape, data };
  };
  const zeros = (n: number): Param => ({ shape: [n], data: new Float32Array(n) });
  let cin = 3;
  config.channels.forEach((c, i) => {
    p.set(`convs.${i}.weight`, he([c, cin, 3, 3], cin * 9));
    p.set(`convs.${i}.bias`, zeros(c));
    cin = c;
  });
  const side = config.size >> (config.channels.length - 1);
  const flat = cin * side * side;
  p.set('fc.weight', he([config.hidden, flat], flat));
  p.set('fc.bias', zeros(config.hidden));
  p.set('heads.weight', he([headWidth(config), config.hidden], config.hidden));
  p.set('heads.bias', zeros(headWidth(config)));
  return p;
}

/** The network on graph values (inputs when training, constants when measuring). */
export class ClassifierNet {
  constructor(
    readonly config: ClassifierConfig,
    readonly p: (name: string) => Value,
  ) {}

  logits(x: Value): Value {
    const n = x.shape[0];
    let h = x;
    this.config.channels.forEach((c, i) => {
      const y = conv2d(h, this.p(`convs.${i}.weight`), { stride: i === 0 ? 1 : 2, pads: 1 });
      h = leakyRelu(add(y, reshape(this.p(`convs.${i}.bias`), [1, c, 1, 1])), 0.2);
    });
    h = reshape(h, [n, h.size / n]); // [N, C, 4, 4] -> [N, C·16]
    h = leakyRelu(linear(h, this.p('fc.weight'), this.p('fc.bias')), 0.2);
    return linear(h, this.p('heads.weight'), this.p('heads.bias')); // [N, Σ values]
  }

  /** Each family's slice of the logits, [N, k]. */
  familyLogits(logits: Value): Value[] {
    let o = 0;
    return this.config.families.map((f) => {
      const l = sliceAxis(logits, 1, o, o + f.values.length);
      o += f.values.length;
      return l;
    });
  }
}

/** log Σ exp over axis 1 of [N, k], shifted by the row maximum (a constant to the gradient). */
function logSumExp(l: Value): Value {
  let m = sliceAxis(l, 1, 0, 1);
  for (let j = 1; j < l.shape[1]; j++) m = max(m, sliceAxis(l, 1, j, j + 1));
  m = stopGradient(m); // [N, 1]
  return add(log(sum(exp(sub(l, m)), 1, true)), m);
}

/**
 * Σ_f mean_n mask[n, f]·CE(logits_f[n], target_f[n]). `onehot` [N, Σ values] holds every family's one-hot
 * target side by side; `mask` [N, F] is 1 where the family is visible.
 */
export function classifierLoss(net: ClassifierNet, logits: Value, onehot: Value, mask: Value): Value {
  const n = logits.shape[0];
  let o = 0;
  let total: Value | null = null;
  net.familyLogits(logits).forEach((l, f) => {
    const k = l.shape[1];
    const t = sliceAxis(onehot, 1, o, o + k);
    o += k;
    const ce = sub(logSumExp(l), sum(mul(l, t), 1, true)); // [N, 1]
    const lf = mul(sum(mul(ce, sliceAxis(mask, 1, f, f + 1))), 1 / n);
    total = total ? add(total, lf) : lf;
  });
  return total!;
}

/** Targets for a batch: one-hot [N, Σ values] and visibility mask [N, F]. */
export function targetsOf(
  config: ClassifierConfig,
  labels: readonly Labels[],
): { onehot: Float32Array; mask: Float32Array } {
  const width = headWidth(config);
  const F = config.families.length;
  const onehot = new Float32Array(labels.length * width);
  const mask = new Float32Array(labels.length * F);
  labels.forEach((L, n) => {
    const idx = labelIndices(L);
    let o = 0;
    config.families.forEach((f, j) => {
      onehot[n * width + o + idx[FAMILY_NAMES.indexOf(f.name)]] = 1;
      mask[n * F + j] = visible(L, f.name) ? 1 : 0;
      o += f.values.length;
    });
  });
  return { onehot, mask };
}

/** The training graph: loss, logits and every parameter's gradient from one run. */
export class ClassifierStep {
  private constructor(
    readonly config: ClassifierConfig,
    readonly batch: number,
    private readonly exe: Executable,
    private readonly names: string[],
  ) {}

  static async create(
    config: ClassifierConfig,
    params: ClassifierParams,
    batch: number,
    threads?: number,
  ): Promise<ClassifierStep> {
    const g = new Graph();
    const names = [...params.keys()];
    const inputs = new Map(names.map((k) => [k, g.input(`p.${k}`, params.get(k)!.shape)]));
    const net = new ClassifierNet(config, (k) => {
      const v = inputs.get(k);
      if (!v) throw new ClassifierError(`no parameter ${k}`);
      return v;
    });
    const x = g.input('x', [batch, 3, config.size, config.size]);
    const onehot = g.input('onehot', [batch, headWidth(config)]);
    const mask = g.input('mask', [batch, config.families.length]);
    const logits = net.logits(x);
    const loss = classifierLoss(net, logits, onehot, mask);
    const grads = grad(
      loss,
      names.map((k) => inputs.get(k)!),
    );
    const outputs: Record<string, Value> = { loss, logits };
    names.forEach((k, i) => {
      outputs[`grad.${k}`] = grads[i];
    });
    const exe = await compile(outputs, { threads });
    return new ClassifierStep(config, batch, exe, names);
  }

  /** Loss, logits, and gradients by parameter name. */
  async run(
    params: ClassifierParams,
    x: Float32Array,
    labels: readonly Labels[],
  ): Promise<{ loss: number; logits: Float32Array; grads: Map<string, Float32Array> }> {
    const { onehot, mask } = targetsOf(this.config, labels);
    const s = this.config.size;
    const feeds: Record<string, { shape: number[]; data: Float32Array }> = {
      x: { shape: [this.batch, 3, s, s], data: x },
      onehot: { shape: [this.batch, onehot.length / this.batch], data: onehot },
      mask: { shape: [this.batch, this.config.families.length], data: mask },
    };
    for (const k of this.names) {
      const p = params.get(k)!;
      feeds[`p.${k}`] = { shape: p.shape, data: p.data };
    }
    const out = await this.exe.run(feeds);
    const grads = new Map(this.names.map((k) => [k, out[`grad.${k}`].data as Float32Array]));
    return { loss: (out.loss.data as Float32Array)[0], logits: out.logits.data as Float32Array, grads };
  }
}

/** Argmax per family of logits [N, Σ values] -> labels (and each family's top probability). */
export function decodeLogits(
  config: ClassifierConfig,
  logits: Float32Array,
  n: number,
): { labels: Labels[]; confidence: number[][] } {
  const width = headWidth(config);
  const labels: Labels[] = [];
  const confidence: number[][] = [];
  for (let i = 0; i < n; i++) {
    const L = {} as Record<string, string>;
    const conf: number[] = [];
    let o = 0;
    for (const f of config.families) {
      const row = logits.subarray(i * width + o, i * width + o + f.values.length);
      let best = 0;
      for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
      let z = 0;
      for (const v of row) z += Math.exp(v - row[best]);
      L[f.name] = f.values[best];
      conf.push(1 / z);
      o += f.values.length;
    }
    labels.push(L as Labels);
    confidence.push(conf);
  }
  return { labels, confidence };
}

/** Per-family accuracy of predictions against truth, counting only visible families. */
export function accuracy(
  predicted: readonly Labels[],
  truth: readonly Labels[],
): Record<Family, { correct: number; total: number }> {
  const acc = Object.fromEntries(FAMILY_NAMES.map((f) => [f, { correct: 0, total: 0 }])) as Record<
    Family,
    { correct: number; total: number }
  >;
  truth.forEach((t, i) => {
    for (const f of FAMILY_NAMES) {
      if (!visible(t, f)) continue;
      acc[f].total++;
      if (predicted[i][f] === t[f]) acc[f].correct++;
    }
  });
  return acc;
}

/** Writes the classifier as float16 safetensors with its config in the metadata. */
export function saveClassifier(
  file: string,
  config: ClassifierConfig,
  params: ClassifierParams,
  meta: Record<string, string> = {},
): void {
  const tensors = new Map<string, Tensor>();
  for (const [k, p] of params) {
    const half = new Uint16Array(p.data.length);
    for (let i = 0; i < half.length; i++) half[i] = float32ToHalf(p.data[i]);
    tensors.set(k, { dtype: 'float16', shape: p.shape, data: half });
  }
  saveSafetensors(file, tensors, {
    ...meta,
    format: 'styleclip-ts/world-classifier/1',
    size: String(config.size),
    hidden: String(config.hidden),
    families: JSON.stringify(config.families),
  });
}

/** Reads a classifier file: config from the metadata and the shapes, every key checked. */
export function loadClassifier(file: string): { config: ClassifierConfig; params: ClassifierParams } {
  const { tensors, metadata } = loadSafetensors(file);
  if (metadata.format !== 'styleclip-ts/world-classifier/1')
    throw new ClassifierError(`${file} is not a world classifier (metadata format "${metadata.format}")`);
  let families: ClassifierConfig['families'];
  try {
    families = JSON.parse(metadata.families);
  } catch {
    throw new ClassifierError(`${file}: unreadable families metadata`);
  }
  const channels: number[] = [];
  while (tensors.has(`convs.${channels.length}.weight`))
    channels.push(tensors.get(`convs.${channels.length}.weight`)!.shape[0]);
  const fc = tensors.get('fc.weight');
  if (!fc || channels.length === 0) throw new ClassifierError(`${file}: missing convs.0.weight or fc.weight`);
  const config: ClassifierConfig = { size: Number(metadata.size), channels, hidden: fc.shape[0], families };
  const want = initClassifier(config, 0);
  const missing = [...want.keys()].filter((k) => !tensors.has(k));
  const extra = [...tensors.keys()].filter((k) => !want.has(k));
  if (missing.length || extra.length)
    throw new ClassifierError(
      `${file}: ${missing.length ? `missing ${missing.join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `unexpected ${extra.join(', ')}` : ''}`,
    );
  const params: ClassifierParams = new Map();
  for (const [k, w] of want) {
    const t = tensors.get(k)!;
    if (t.shape.join() !== w.shape.join())
      throw new ClassifierError(`${file}: ${k} has shape [${t.shape}], the config needs [${w.shape}]`);
    params.set(k, { shape: w.shape, data: t.data as Float32Array });
  }
  return { config, params };
}

/** The frozen classifier for measuring: images in, labels (and per-family probabilities) out. */
export class AttributeClassifier {
  private readonly exes = new Map<number, Promise<Executable>>();
  constructor(
    readonly config: ClassifierConfig,
    readonly params: ClassifierParams,
    private readonly threads?: number,
  ) {}

  static load(file: string, threads?: number): AttributeClassifier {
    const { config, params } = loadClassifier(file);
    return new AttributeClassifier(config, params, threads);
  }

  private exe(batch: number): Promise<Executable> {
    let e = this.exes.get(batch);
    if (!e) {
      const g = new Graph();
      const consts = new Map<string, Value>();
      const net = new ClassifierNet(this.config, (k) => {
        let v = consts.get(k);
        if (!v) {
          const p = this.params.get(k)!;
          v = g.const(p.data, p.shape, k);
          consts.set(k, v);
        }
        return v;
      });
      const s = this.config.size;
      const x = g.input('x', [batch, 3, s, s]);
      const logits = net.logits(x); // argmax and probabilities on the host (decodeLogits)
      e = compile({ logits }, { threads: this.threads });
      this.exes.set(batch, e);
    }
    return e;
  }

  /** `images` [n, 3, size, size] in [-1, 1] (generator images are resized by the caller). */
  async predict(images: Float32Array, n: number): Promise<{ labels: Labels[]; confidence: number[][] }> {
    const s = this.config.size;
    if (images.length !== n * 3 * s * s)
      throw new ClassifierError(
        `the classifier takes [n, 3, ${s}, ${s}] images; got ${images.length} values for n = ${n}`,
      );
    const exe = await this.exe(n);
    const out = await exe.run({ x: { shape: [n, 3, s, s], data: images } });
    return decodeLogits(this.config, out.logits.data as Float32Array, n);
  }
}
