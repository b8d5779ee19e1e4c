/**
 * StyleCLIP's latent mappers (mapper/latent_mappers.py) as engine graphs.
 *
 *   Mapper        = PixelNorm (over axis 1!) then 4 × EqualLinear(D, D, lr_mul 0.01, fused leaky ReLU)
 *   LevelsMapper  = coarse Mapper on W+ rows [0, 4), medium on [4, 8), fine on [8, L); a part switched off
 *                   (--no-coarse/medium/fine) gives zeros
 *   SingleMapper  = one Mapper on all of W+
 *   StyleSpace    = one Mapper per non-toRGB StyleSpace layer (WithoutToRGBStyleSpaceMapper), zeros on toRGB
 *
 * The edit is w + 0.1·M(w) (s + 0.1·M(s) in StyleSpace). Parameters are kept as stored by torch (weight =
 * randn / lr_mul, bias); the equalized-lr scale lr_mul/√D and bias·lr_mul are applied inside the graph, so
 * the gradient of a trainable parameter is the gradient of the stored tensor, as in PyTorch.
 *
 * Two quirks of the reference are reproduced on purpose: PixelNorm normalises over axis 1, which for the
 * [B, rows, 512] input of a W+ mapper is the *row* axis (not the features); and the fused leaky ReLU adds
 * the bias along the last axis (StyleCLIP's own fused_act.py for 3-d inputs).
 */
import type { Graph, Value } from '../../graph/graph.js';
import { fastNormal } from '../../models/stylegan2/weights.js';
import {
  add,
  concat,
  expand,
  leakyRelu,
  matmul,
  mean,
  mT,
  mul,
  powConst,
  sliceAxis,
} from '../../ops/index.js';

export type MapperType = 'LevelsMapper' | 'SingleMapper' | 'StyleSpaceMapper';

/** The official Mapper's depth and learning-rate multiplier (fixed in latent_mappers.py). */
export const MAPPER_LAYERS = 4;
export const LR_MUL = 0.01;
/** The reference's fixed edit step: w_hat = w + 0.1·M(w). */
export const EDIT_SCALE = 0.1;

export class MapperError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MapperError';
  }
}

export interface MapperSpec {
  type: MapperType;
  /** LevelsMapper parts switched off (their delta is zero). */
  noCoarse: boolean;
  noMedium: boolean;
  noFine: boolean;
  /** Feature width of the W+ mappers (512). */
  latentDim: number;
  /** StyleSpace mappers: the width of each StyleSpace layer's mapper, null on toRGB layers. */
  styleDims?: (number | null)[];
}

export interface HostParam {
  shape: number[];
  data: Float32Array;
}

/** A mapper: its architecture and its parameters under the official state-dict keys (no `mapper.` prefix). */
export interface MapperWeights {
  spec: MapperSpec;
  params: Map<string, HostParam>;
}

/** One residual MLP of the mapper: its key prefix, input width and what it reads. */
export interface SubMapper {
  /** e.g. `course_mapping` (sic, the reference's spelling), `mapping`, `mapper_3`. */
  prefix: string;
  dim: number;
}

/** The sub-mappers a spec has, in state-dict order. */
export function subMappers(spec: MapperSpec): SubMapper[] {
  const d = spec.latentDim;
  switch (spec.type) {
    case 'SingleMapper':
      return [{ prefix: 'mapping', dim: d }];
    case 'LevelsMapper':
      return [
        ...(spec.noCoarse ? [] : [{ prefix: 'course_mapping', dim: d }]),
        ...(spec.noMedium ? [] : [{ prefix: 'medium_mapping', dim: d }]),
        ...(spec.noFine ? [] : [{ prefix: 'fine_mapping', dim: d }]),
      ];
    case 'StyleSpaceMapper':
      return (spec.styleDims ?? []).flatMap((c, i) =>
        c === null ? [] : [{ prefix: `mapper_${i}`, dim: c }],
      );
  }
}

/** The official key names of a spec's parameters, in state-dict order, with their shapes. */
export function parameterShapes(spec: MapperSpec): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const m of subMappers(spec))
    for (let l = 1; l <= MAPPER_LAYERS; l++) {
      out.push([`${m.prefix}.mapping.${l}.weight`, [m.dim, m.dim]]);
      out.push([`${m.prefix}.mapping.${l}.bias`, [m.dim]]);
    }
  return out;
}

/** A freshly initialised mapper as EqualLinear does it: weight = randn / lr_mul, bias = 0 (seeded). */
export function initMapperWeights(spec: MapperSpec, seed = 0): MapperWeights {
  const randn = fastNormal(seed);
  const params = new Map<string, HostParam>();
  for (const [key, shape] of parameterShapes(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = key.endsWith('.weight') ? randn(new Float32Array(n), 1 / LR_MUL) : new Float32Array(n);
    params.set(key, { shape, data });
  }
  return { spec, params };
}

/** The total number of scalars (3 × 4 × (512² + 512) = 3.15 M for the full LevelsMapper). */
export function parameterCount(w: MapperWeights): number {
  let n = 0;
  for (const p of w.params.values()) n += p.data.length;
  return n;
}

/** How the graph sees the parameters: as trainable inputs or frozen constants. */
export type ParamMode = 'input' | 'const';

/** Binds one mapper to one graph; each parameter becomes one graph value. */
export class MapperGraph {
  /** Graph inputs by official key (only in 'input' mode), in state-dict order. */
  readonly inputs = new Map<string, Value>();
  private readonly layers = new Map<string, { w: Value; b: Value; transposed: boolean }>();

  constructor(
    readonly g: Graph,
    readonly weights: MapperWeights,
    readonly mode: ParamMode = 'const',
  ) {
    for (const m of subMappers(weights.spec))
      for (let l = 1; l <= MAPPER_LAYERS; l++) {
        const key = `${m.prefix}.mapping.${l}`;
        const wp = this.param(`${key}.weight`, [m.dim, m.dim]);
        const bp = this.param(`${key}.bias`, [m.dim]);
        const scale = LR_MUL / Math.sqrt(m.dim);
        if (mode === 'input') {
          const w = g.input(`mapper.${key}.weight`, wp.shape);
          const b = g.input(`mapper.${key}.bias`, bp.shape);
          this.inputs.set(`${key}.weight`, w);
          this.inputs.set(`${key}.bias`, b);
          // weight · scale and bias · lr_mul in float32, as EqualLinear.forward computes them.
          this.layers.set(key, { w: mul(w, scale), b: mul(b, LR_MUL), transposed: false });
        } else {
          const wt = transposeScaled(wp.data, m.dim, m.dim, Math.fround(scale));
          const bs = bp.data.map((v) => Math.fround(v * Math.fround(LR_MUL)));
          const [w, b] = g.scope('mapper', () =>
            g.scope(key, () => [g.const(wt, [m.dim, m.dim], 'weight_t'), g.const(bs, [m.dim], 'bias')]),
          );
          this.layers.set(key, { w, b, transposed: true });
        }
      }
  }

  private param(key: string, shape: number[]): HostParam {
    const p = this.weights.params.get(key);
    if (!p) throw new MapperError(`mapper parameter '${key}' is missing`);
    if (p.shape.length !== shape.length || p.shape.some((d, i) => d !== shape[i]))
      throw new MapperError(`mapper parameter '${key}' has shape [${p.shape}], expected [${shape}]`);
    return p;
  }

  /** One Mapper: PixelNorm over axis 1, then 4 × (linear, + bias·lr_mul, leaky ReLU 0.2, × √2). */
  mlp(prefix: string, x: Value): Value {
    let h = mul(x, powConst(add(mean(mul(x, x), 1, true), 1e-8), -0.5));
    for (let l = 1; l <= MAPPER_LAYERS; l++) {
      const L = this.layers.get(`${prefix}.mapping.${l}`);
      if (!L) throw new MapperError(`this mapper has no '${prefix}'`);
      const y = matmul(h, L.transposed ? L.w : mT(L.w)); // [..., D] @ [D, D]
      h = mul(leakyRelu(add(y, L.b), 0.2), Math.SQRT2);
    }
    return h;
  }

  /** M(w) for W+ [B, L, D] (Levels or Single mapper). */
  delta(wplus: Value): Value {
    const spec = this.weights.spec;
    if (spec.type === 'StyleSpaceMapper') throw new MapperError('a StyleSpace mapper edits StyleSpace codes');
    const [b, L, d] = wplus.shape;
    if (wplus.rank !== 3 || d !== spec.latentDim)
      throw new MapperError(`the mapper takes W+ [B, L, ${spec.latentDim}], got [${wplus.shape}]`);
    if (spec.type === 'SingleMapper') return this.mlp('mapping', wplus);
    const parts: [string, boolean, number, number][] = [
      ['course_mapping', spec.noCoarse, 0, Math.min(4, L)],
      ['medium_mapping', spec.noMedium, Math.min(4, L), Math.min(8, L)],
      ['fine_mapping', spec.noFine, Math.min(8, L), L],
    ];
    const outs: Value[] = [];
    for (const [prefix, off, s, e] of parts) {
      if (e <= s) continue;
      if (off) outs.push(expand(this.g.scalar(0), [b, e - s, d]));
      else outs.push(this.mlp(prefix, sliceAxis(wplus, 1, s, e)));
    }
    return concat(outs, 1); // [B, L, D]
  }

  /** w + 0.1·k·M(w). */
  edit(wplus: Value, strength = 1): Value {
    return add(wplus, mul(this.delta(wplus), Math.fround(EDIT_SCALE * strength)));
  }

  /** M(s) per StyleSpace layer (null on the toRGB layers, whose delta is zero). */
  styleDeltas(styles: readonly Value[]): (Value | null)[] {
    const dims = this.weights.spec.styleDims;
    if (this.weights.spec.type !== 'StyleSpaceMapper' || !dims)
      throw new MapperError('a W+ mapper edits W+ latents, not StyleSpace codes');
    if (styles.length !== dims.length)
      throw new MapperError(
        `this StyleSpace mapper was made for ${dims.length} StyleSpace layers, the generator has ${styles.length}`,
      );
    return styles.map((s, i) => {
      const c = dims[i];
      if (c === null) return null;
      if (s.shape[1] !== c)
        throw new MapperError(`StyleSpace layer ${i} has ${s.shape[1]} channels, the mapper expects ${c}`);
      return this.mlp(`mapper_${i}`, s);
    });
  }

  /** s + 0.1·k·M(s) for every StyleSpace layer. */
  editStyles(styles: readonly Value[], strength = 1): Value[] {
    const k = Math.fround(EDIT_SCALE * strength);
    return this.styleDeltas(styles).map((d, i) => (d ? add(styles[i], mul(d, k)) : styles[i]));
  }
}

function transposeScaled(w: Float32Array, out: number, inn: number, scale: number): Float32Array {
  const r = new Float32Array(w.length);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) r[i * out + o] = Math.fround(w[o * inn + i] * scale);
  return r;
}

/** The StyleSpace mapper spec for a generator's layer widths (toRGB layers get no mapper). */
export function styleSpaceSpec(styleDims: readonly number[], isToRGB: readonly boolean[]): MapperSpec {
  return {
    type: 'StyleSpaceMapper',
    noCoarse: false,
    noMedium: false,
    noFine: false,
    latentDim: Math.max(...styleDims),
    styleDims: styleDims.map((c, i) => (isToRGB[i] ? null : c)),
  };
}

/** The W+ mapper spec (LevelsMapper by default). */
export function wplusSpec(
  options: Partial<Pick<MapperSpec, 'type' | 'noCoarse' | 'noMedium' | 'noFine' | 'latentDim'>> = {},
): MapperSpec {
  const spec: MapperSpec = {
    type: options.type ?? 'LevelsMapper',
    noCoarse: options.noCoarse ?? false,
    noMedium: options.noMedium ?? false,
    noFine: options.noFine ?? false,
    latentDim: options.latentDim ?? 512,
  };
  if (spec.type === 'StyleSpaceMapper') throw new MapperError('use styleSpaceSpec for a StyleSpace mapper');
  if (spec.type === 'LevelsMapper' && spec.noCoarse && spec.noMedium && spec.noFine)
    throw new MapperError('all three parts of the LevelsMapper are switched off: nothing to train');
  return spec;
}
