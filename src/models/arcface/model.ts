/**
 * ArcFace IR-SE backbone (TreB1eN's InsightFace_Pytorch, as vendored by StyleCLIP in
 * models/facial_recognition/model_irse.py), from the weights of `model_ir_se50.pth`, inference mode.
 *
 *   input_layer: conv3x3(3→C0) · BN · PReLU
 *   body: bottleneck_IR_SE units; a stage's first unit has stride 2
 *     res      = BN · conv3x3(in→d) · PReLU · conv3x3(d→d, stride) · BN · SE(d, 16)
 *     shortcut = MaxPool2d(1, stride) when in = d, else conv1x1(in→d, stride) · BN
 *   output_layer: BN2d · (Dropout) · flatten · Linear · BN1d, then L2 normalization
 */
import { type Graph, ShapeError, type Value } from '../../graph/graph.js';
import { type Tensor, toFloat32 } from '../../io/tensor.js';
import { batchNorm, linear, prelu } from '../../ops/composite/nn.js';
import { conv2d } from '../../ops/conv.js';
import { add, div, mul, relu, sigmoid, sqrt } from '../../ops/elementwise.js';
import { mean, sum } from '../../ops/reduce.js';
import { reshape, slice } from '../../ops/shape.js';

export type StateDict = ReadonlyMap<string, Tensor>;

export class ArcFaceWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArcFaceWeightsError';
  }
}

export interface ArcFaceUnit {
  inChannels: number;
  depth: number;
  stride: 1 | 2;
}

export interface ArcFaceConfig {
  /** Input side; the released IR-SE50 takes 112×112 faces. */
  inputSize: number;
  /** Channels after the input layer (64 in IR-SE50). */
  stemChannels: number;
  /** Depth of each stage (64, 128, 256, 512 in IR-SE50). */
  stageWidths: number[];
  /** Units per stage (3, 4, 14, 3 in IR-SE50). */
  stageUnits: number[];
  units: ArcFaceUnit[];
  /** Embedding size (512). */
  embedDim: number;
  /** SE bottleneck reduction (16). */
  seReduction: number;
}

/** get_blocks(num_layers) of helpers.py: units per stage for the published depths. */
const KNOWN_UNITS: Record<number, number[]> = {
  24: [3, 4, 14, 3], // IR(-SE)-50
  49: [3, 13, 30, 3], // IR(-SE)-100
  50: [3, 8, 36, 3], // IR(-SE)-152
};

function shapeOf(sd: StateDict, key: string): number[] {
  const t = sd.get(key);
  if (!t) throw new ArcFaceWeightsError(`not an IR-SE backbone state dict: missing "${key}"`);
  return t.shape;
}

export interface ArcFaceOptions {
  /**
   * Units per stage. Only needed when the weights cannot tell: a stage whose width equals the previous
   * one starts without a shortcut conv, so its first unit looks like any other (the fixture's
   * (16, 16, 32, 32) widths need (1, 1, 2, 1) here). Real IR-SE 50/100/152 checkpoints are inferred.
   */
  stageUnits?: number[];
}

/**
 * Reads the architecture from the weights: unit count and widths from `body.*`, stage starts from
 * the shortcut convs (or the published unit table), the input size from the Linear layer's width.
 */
export function inferArcFaceConfig(sd: StateDict, options: ArcFaceOptions = {}): ArcFaceConfig {
  const body = inferIrSeBody(sd, options);
  const n = body.units.length;
  const lin = shapeOf(sd, 'output_layer.3.weight'); // [E, C·s·s]
  const cLast = body.units[n - 1].depth;
  const side = Math.round(Math.sqrt(lin[1] / cLast));
  if (side * side * cLast !== lin[1])
    throw new ArcFaceWeightsError(`output Linear takes ${lin[1]} features, not ${cLast}·s² for any s`);
  return { ...body, inputSize: side * 2 ** body.stageUnits.length, embedDim: lin[0] };
}

/** The IR-SE body's layout (input layer and units) from its weights; shared by ArcFace and e4e's encoder. */
export type IrSeBodyConfig = Omit<ArcFaceConfig, 'inputSize' | 'embedDim'>;

export function inferIrSeBody(sd: StateDict, options: ArcFaceOptions = {}): IrSeBodyConfig {
  const stem = shapeOf(sd, 'input_layer.0.weight'); // [C0, 3, 3, 3]
  const ids = new Set<number>();
  for (const k of sd.keys()) {
    const m = /^body\.(\d+)\./.exec(k);
    if (m) ids.add(Number(m[1]));
  }
  const n = ids.size;
  if (n === 0) throw new ArcFaceWeightsError('no "body.*" units in the state dict');
  const depths: number[] = [];
  const ins: number[] = [];
  const hasShortcutConv: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const w = shapeOf(sd, `body.${i}.res_layer.1.weight`); // [d, in, 3, 3]
    depths.push(w[0]);
    ins.push(w[1]);
    hasShortcutConv.push(sd.has(`body.${i}.shortcut_layer.0.weight`));
    if (hasShortcutConv[i] === (w[0] === w[1]))
      throw new ArcFaceWeightsError(`body.${i}: a shortcut conv exists exactly when the width changes`);
  }
  let stageUnits = options.stageUnits;
  if (!stageUnits) {
    const starts = [0, ...hasShortcutConv.flatMap((c, i) => (c && i > 0 ? [i] : []))];
    const byChannels = starts.map((s, j) => (starts[j + 1] ?? n) - s);
    if (byChannels.length === 4) stageUnits = byChannels;
    else if (KNOWN_UNITS[n]) stageUnits = KNOWN_UNITS[n];
    else
      throw new ArcFaceWeightsError(
        `cannot tell the stages of ${n} units from the weights (widths ${depths.join(',')}); pass stageUnits`,
      );
  }
  if (stageUnits.reduce((a, b) => a + b, 0) !== n)
    throw new ArcFaceWeightsError(`stage units ${stageUnits.join(',')} do not add up to ${n} units`);
  const units: ArcFaceUnit[] = [];
  const stageWidths: number[] = [];
  let i = 0;
  for (const count of stageUnits) {
    stageWidths.push(depths[i]);
    for (let k = 0; k < count; k++, i++) {
      if (depths[i] !== stageWidths[stageWidths.length - 1] || (k > 0 && ins[i] !== depths[i]))
        throw new ArcFaceWeightsError(
          `body.${i}: width ${ins[i]}→${depths[i]} does not fit stage units ${stageUnits}`,
        );
      units.push({ inChannels: ins[i], depth: depths[i], stride: k === 0 ? 2 : 1 });
    }
  }
  const fc1 = shapeOf(sd, 'body.0.res_layer.5.fc1.weight'); // [d/r, d, 1, 1]
  return {
    stemChannels: stem[0],
    stageWidths,
    stageUnits: [...stageUnits],
    units,
    seReduction: depths[0] / fc1[0],
  };
}

interface HostWeight {
  shape: number[];
  data: Float32Array;
}

function hostWeights(sd: StateDict): Map<string, HostWeight> {
  const weights = new Map<string, HostWeight>();
  for (const [k, t] of sd) {
    if (k.endsWith('num_batches_tracked')) continue;
    weights.set(k, { shape: [...t.shape], data: toFloat32(t).data });
  }
  return weights;
}

/** IR-SE body weights in float32 and the graph builder for the input layer and the units. */
export class IrSeBody {
  private readonly graphConsts = new WeakMap<Graph, Map<string, Value>>();

  protected constructor(
    readonly body: IrSeBodyConfig,
    private readonly weights: Map<string, HostWeight>,
    /** Prefix of the graph constants' names. */
    private readonly constPrefix = 'arcface',
  ) {}

  /** The body alone (e4e's encoder has no output layer); `sd` holds input_layer.* and body.*. */
  static bodyFromStateDict(sd: StateDict, options: ArcFaceOptions & { constPrefix?: string } = {}): IrSeBody {
    return new IrSeBody(inferIrSeBody(sd, options), hostWeights(sd), options.constPrefix);
  }

  protected weight(g: Graph, key: string): Value {
    let consts = this.graphConsts.get(g);
    if (!consts) this.graphConsts.set(g, (consts = new Map()));
    let v = consts.get(key);
    if (!v) {
      const w = this.weights.get(key);
      if (!w) throw new ArcFaceWeightsError(`missing "${key}"`);
      v = g.const(w.data, w.shape, `${this.constPrefix}.${key}`);
      consts.set(key, v);
    }
    return v;
  }

  protected bn(x: Value, key: string, eps = 1e-5): Value {
    const w = (s: string) => this.weight(x.graph, `${key}.${s}`);
    return batchNorm(x, w('weight'), w('bias'), w('running_mean'), w('running_var'), eps);
  }

  /** Squeeze-and-excitation: x · σ(fc2(relu(fc1(mean_hw(x))))). */
  private se(x: Value, key: string): Value {
    const [b, c] = x.shape;
    const fc1 = this.weight(x.graph, `${key}.fc1.weight`); // [c/r, c, 1, 1]
    const fc2 = this.weight(x.graph, `${key}.fc2.weight`); // [c, c/r, 1, 1]
    const s = mean(x, [2, 3]); // [B, C]
    // The 1x1 convs as linears: fc1 [c/r, c, 1, 1] -> [c/r, c], fc2 [c, c/r, 1, 1] -> [c, c/r].
    const h = relu(linear(s, reshape(fc1, [fc1.shape[0], c]))); // [B, c/r]
    const gate = sigmoid(linear(h, reshape(fc2, [c, fc1.shape[0]]))); // [B, C]
    return mul(x, reshape(gate, [b, c, 1, 1])); // gate [B, C] -> [B, C, 1, 1]
  }

  private unit(x: Value, i: number, u: ArcFaceUnit): Value {
    const k = `body.${i}`;
    const w = (s: string) => this.weight(x.graph, `${k}.${s}`);
    let shortcut: Value;
    if (u.inChannels === u.depth) {
      const [b, c, h, wd] = x.shape; // MaxPool2d(1, stride) keeps every stride-th pixel
      shortcut = slice(x, [0, 0, 0, 0], [b, c, h, wd], [1, 1, u.stride, u.stride]);
    } else {
      shortcut = this.bn(
        conv2d(x, w('shortcut_layer.0.weight'), { stride: u.stride }),
        `${k}.shortcut_layer.1`,
      );
    }
    let r = this.bn(x, `${k}.res_layer.0`);
    r = conv2d(r, w('res_layer.1.weight'), { pads: 1 });
    r = prelu(r, w('res_layer.2.weight'));
    r = conv2d(r, w('res_layer.3.weight'), { stride: u.stride, pads: 1 });
    r = this.se(this.bn(r, `${k}.res_layer.4`), `${k}.res_layer.5`);
    return add(r, shortcut);
  }

  /** input_layer, then every unit: the output of each unit ([B, depth, H/2^stage, W/2^stage]). */
  units(x: Value): Value[] {
    if (x.rank !== 4 || x.shape[1] !== 3)
      throw new ShapeError(`IR-SE body needs [B, 3, H, W], got [${x.shape}]`);
    const g = x.graph;
    let y = conv2d(x, this.weight(g, 'input_layer.0.weight'), { pads: 1 });
    y = prelu(this.bn(y, 'input_layer.1'), this.weight(g, 'input_layer.2.weight'));
    return this.body.units.map((u, i) => {
      y = this.unit(y, i, u);
      return y;
    });
  }
}

/** ArcFace: the IR-SE body, then the output layer and L2 normalization. */
export class ArcFaceModel extends IrSeBody {
  private constructor(
    readonly config: ArcFaceConfig,
    weights: Map<string, HostWeight>,
  ) {
    super(config, weights);
  }

  static fromStateDict(sd: StateDict, options: ArcFaceOptions = {}): ArcFaceModel {
    return new ArcFaceModel(inferArcFaceConfig(sd, options), hostWeights(sd));
  }

  /** Backbone.forward: [B, 3, S, S] faces (S = inputSize) → L2-normalized [B, embed]. */
  forward(x: Value): Value {
    const s = this.config.inputSize;
    if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== s || x.shape[3] !== s)
      throw new ShapeError(`IR-SE backbone needs [B, 3, ${s}, ${s}], got [${x.shape}]`);
    const g = x.graph;
    const feats = this.units(x);
    let y = this.bn(feats[feats.length - 1], 'output_layer.0');
    y = reshape(y, [y.shape[0], -1]); // [B, C·7·7], C-major like torch's view
    y = linear(y, this.weight(g, 'output_layer.3.weight'), this.weight(g, 'output_layer.3.bias'));
    y = this.bn(y, 'output_layer.4');
    return div(y, sqrt(sum(mul(y, y), 1, true)));
  }
}
