/**
 * rosinality's StyleGAN2 Discriminator (Karras et al. 2020, fig. 7b, the residual D): a 1x1 ConvLayer from
 * RGB, one ResBlock per resolution down to 4² (two 3x3 convs, the second blurred and strided, plus a
 * blurred strided 1x1 skip, summed and scaled by 1/sqrt 2), minibatch standard deviation over groups of 4,
 * a 3x3 ConvLayer, and two EqualLinear layers. The architecture is read from the state dict's shapes;
 * parameters are graph values (inputs when training, so gradients reach them).
 */
import { type Graph, ShapeError, type Value } from '../../graph/graph.js';
import { CheckpointError } from '../../io/errors.js';
import {
  add,
  concat,
  conv2d,
  expand,
  leakyRelu,
  linear,
  mean,
  mul,
  reshape,
  sqrt,
  sub,
} from '../../ops/index.js';
import { blurKernel, type StateDict, type TensorSpec } from './trainable.js';
import { fastNormal } from './weights.js';

export interface DiscriminatorArch {
  /** Input resolution (a power of two). */
  size: number;
  /** Feature channels per resolution, 4..size. */
  channels: Record<number, number>;
  /** Minibatch standard deviation group size (rosinality: 4) and features (1). */
  stddevGroup: number;
}

/** The state dict layout of Discriminator(size) with a channel table, in torch's order. */
export function discriminatorSpecs(arch: DiscriminatorArch): TensorSpec[] {
  const { size, channels: ch } = arch;
  const out: TensorSpec[] = [];
  const p = (name: string, shape: number[]) => out.push({ name, shape, buffer: false });
  const b = (name: string, shape: number[]) => out.push({ name, shape, buffer: true });
  p('convs.0.0.weight', [ch[size], 3, 1, 1]);
  p('convs.0.1.bias', [ch[size]]);
  for (let r = size, k = 1; r > 4; r /= 2, k++) {
    const [inC, outC] = [ch[r], ch[r / 2]];
    p(`convs.${k}.conv1.0.weight`, [inC, inC, 3, 3]);
    p(`convs.${k}.conv1.1.bias`, [inC]);
    b(`convs.${k}.conv2.0.kernel`, [4, 4]);
    p(`convs.${k}.conv2.1.weight`, [outC, inC, 3, 3]);
    p(`convs.${k}.conv2.2.bias`, [outC]);
    b(`convs.${k}.skip.0.kernel`, [4, 4]);
    p(`convs.${k}.skip.1.weight`, [outC, inC, 1, 1]);
  }
  p('final_conv.0.weight', [ch[4], ch[4] + 1, 3, 3]);
  p('final_conv.1.bias', [ch[4]]);
  p('final_linear.0.weight', [ch[4], ch[4] * 16]);
  p('final_linear.0.bias', [ch[4]]);
  p('final_linear.1.weight', [1, ch[4]]);
  p('final_linear.1.bias', [1]);
  return out;
}

/** The architecture of a rosinality discriminator state dict; strict: every key read, shapes checked. */
export function discriminatorArch(sd: StateDict, file = '<state dict>'): DiscriminatorArch {
  const first = sd.get('convs.0.0.weight');
  if (first?.shape.length !== 4 || first.shape[1] !== 3)
    throw new CheckpointError(
      file,
      "a rosinality discriminator ('convs.0.0.weight' [C, 3, 1, 1])",
      'other keys',
    );
  let blocks = 0;
  while (sd.has(`convs.${blocks + 1}.conv1.0.weight`)) blocks++;
  const size = 4 * 2 ** blocks;
  const channels: Record<number, number> = { [size]: first.shape[0] };
  for (let k = 1, r = size; k <= blocks; k++, r /= 2) {
    const w = sd.get(`convs.${k}.conv2.1.weight`);
    if (!w) throw new CheckpointError(file, `'convs.${k}.conv2.1.weight'`, 'no such key (missing)');
    channels[r / 2] = w.shape[0];
  }
  const arch = { size, channels, stddevGroup: 4 };
  const specs = discriminatorSpecs(arch);
  for (const s of specs) {
    const t = sd.get(s.name);
    if (!t) throw new CheckpointError(file, `a tensor '${s.name}'`, 'no such key (missing)');
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i]))
      throw new CheckpointError(file, `'${s.name}' of shape [${s.shape}]`, `shape [${t.shape}]`);
  }
  const known = new Set(specs.map((s) => s.name));
  const extra = [...sd.keys()].filter((k) => !known.has(k));
  if (extra.length)
    throw new CheckpointError(
      file,
      'only rosinality discriminator keys',
      `${extra.length} unexpected key(s): ${extra.slice(0, 5).join(', ')}`,
    );
  return arch;
}

/** A fresh discriminator state dict initialised as rosinality's constructor does (seeded). */
export function initDiscriminator(arch: DiscriminatorArch, seed = 0): StateDict {
  const randn = fastNormal(seed);
  const sd: StateDict = new Map();
  for (const s of discriminatorSpecs(arch)) {
    const n = s.shape.reduce((a, c) => a * c, 1);
    let data: Float32Array;
    if (s.buffer) data = blurKernel(1);
    else if (s.name.endsWith('weight')) data = randn(new Float32Array(n));
    else data = new Float32Array(n);
    sd.set(s.name, { dtype: 'float32', shape: s.shape, data });
  }
  return sd;
}

/** rosinality's channel table for a discriminator (the generator's, config-f with channel multiplier). */
export function defaultDiscriminatorArch(size: number, channels: Record<number, number>): DiscriminatorArch {
  const ch: Record<number, number> = {};
  for (let r = 4; r <= size; r *= 2) {
    if (!(channels[r] > 0)) throw new ShapeError(`the channel table has no entry for ${r}`);
    ch[r] = channels[r];
  }
  return { size, channels: ch, stddevGroup: 4 };
}

/** The discriminator on one graph; `param(name)` gives the value of a state-dict parameter. */
export class DiscriminatorGraph {
  private readonly blurs = new Map<number, Value>();

  constructor(
    readonly g: Graph,
    readonly arch: DiscriminatorArch,
    readonly param: (name: string) => Value,
  ) {}

  /** EqualConv2d: conv with W/sqrt(fan_in). */
  private conv(x: Value, name: string, stride = 1, pad = 0): Value {
    const w = this.param(name);
    const [, inC, k] = w.shape;
    return conv2d(x, mul(w, 1 / Math.sqrt(inC * k * k)), { stride, pads: pad });
  }

  /** FusedLeakyReLU: leaky ReLU(x + b, 0.2) · sqrt 2. */
  private fusedLrelu(x: Value, biasName: string): Value {
    const b = this.param(biasName);
    const view = x.rank === 4 ? [1, b.size, 1, 1] : [1, b.size];
    return mul(leakyRelu(add(x, reshape(b, view)), 0.2), Math.SQRT2);
  }

  /** Blur(kernel, pad) = upfirdn2d with the normalised [1,3,3,1] kernel: a depthwise 4x4 conv. */
  private blur(x: Value, pad: number): Value {
    const c = x.shape[1];
    let k = this.blurs.get(c);
    if (!k) {
      const one = blurKernel(1);
      const data = new Float32Array(16 * c);
      for (let i = 0; i < c; i++) data.set(one, 16 * i);
      k = this.g.scope('discriminator', () => this.g.const(data, [c, 1, 4, 4], `blur_${c}`));
      this.blurs.set(c, k);
    }
    return conv2d(x, k, { pads: pad, groups: c });
  }

  /** ResBlock k: (conv2(conv1(x)) + skip(x)) / sqrt 2, half the resolution. */
  private resBlock(x: Value, k: number): Value {
    const key = `convs.${k}`;
    let h = this.fusedLrelu(this.conv(x, `${key}.conv1.0.weight`, 1, 1), `${key}.conv1.1.bias`);
    h = this.fusedLrelu(this.conv(this.blur(h, 2), `${key}.conv2.1.weight`, 2), `${key}.conv2.2.bias`);
    const skip = this.conv(this.blur(x, 1), `${key}.skip.1.weight`, 2);
    return mul(add(h, skip), Math.SQRT1_2);
  }

  /**
   * Minibatch standard deviation: sample b = g·M + m of a batch viewed as [G, M] (G = min(batch, 4)) gets
   * one more channel holding the mean over features and pixels of the std over its group (the G samples
   * with the same m). `parts` independent batches stacked along the batch axis get their own groups, so
   * one call on [fake; real] equals two calls.
   */
  private minibatchStddev(x: Value, parts: number): Value {
    const [B, C, H, W] = x.shape;
    const n = B / parts;
    const G = Math.min(n, this.arch.stddevGroup);
    if (!Number.isInteger(n) || n % G !== 0)
      throw new ShapeError(`batch ${n} must be a multiple of the stddev group ${G}`);
    const M = n / G;
    const y = reshape(x, [parts, G, M, C, H, W]); // [P, G, M, C, H, W]
    const mu = mean(y, 1, true);
    const d = sub(y, mu);
    const std = sqrt(add(mean(mul(d, d), 1), 1e-8)); // [P, M, C, H, W], biased variance
    const s = mean(std, [2, 3, 4], true); // [P, M, 1, 1, 1]
    const rep = expand(reshape(s, [parts, 1, M, 1, 1, 1]), [parts, G, M, 1, H, W]); // [P, G, M, 1, H, W]
    return concat([x, reshape(rep, [B, 1, H, W])], 1); // [B, C + 1, H, W]
  }

  /** D(x) for images [B, 3, S, S] → scores [B, 1]. */
  forward(x: Value, parts = 1): Value {
    const { size, channels: ch } = this.arch;
    if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== size || x.shape[3] !== size)
      throw new ShapeError(`the discriminator takes [B, 3, ${size}, ${size}] images, got [${x.shape}]`);
    return this.g.scope('discriminator', () => {
      let h = this.fusedLrelu(this.conv(x, 'convs.0.0.weight'), 'convs.0.1.bias');
      for (let k = 1, r = size; r > 4; k++, r /= 2) h = this.g.scope(`b${r}`, () => this.resBlock(h, k));
      h = this.minibatchStddev(h, parts);
      h = this.fusedLrelu(this.conv(h, 'final_conv.0.weight', 1, 1), 'final_conv.1.bias');
      const B = x.shape[0];
      h = reshape(h, [B, ch[4] * 16]); // [B, C, 4, 4] -> [B, C·16]
      const l0 = this.param('final_linear.0.weight');
      h = linear(h, mul(l0, 1 / Math.sqrt(l0.shape[1])));
      h = this.fusedLrelu(h, 'final_linear.0.bias');
      const l1 = this.param('final_linear.1.weight');
      return linear(h, mul(l1, 1 / Math.sqrt(l1.shape[1])), this.param('final_linear.1.bias')); // [B, 1]
    });
  }
}
