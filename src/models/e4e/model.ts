/**
 * Encoder4Editing (Tov et al., "Designing an Encoder for StyleGAN Image Manipulation", 2021), as
 * models/encoders/psp_encoders.py of omertov/encoder4editing builds it, inference mode:
 *
 *   IR-SE body (the ArcFace backbone's units, src/models/arcface) with taps at the end of stages 2, 3, 4:
 *     c1 [B, C2, H/4, W/4], c2 [B, C3, H/8, W/8], c3 [B, C4, H/16, W/16]
 *   feature pyramid: p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1)   (bilinear, align_corners)
 *   w0 = style_0(c3); W+ layer i = w0 + style_i(features_i), features c3 for i < 3, p2 for i < 7, p1 after
 *   style_i (GradualStyleBlock): log2(spatial) × [conv3x3 stride 2 · leaky(0.01)] · EqualLinear
 *
 * The encoder gives offsets from the mean latent: pSp.forward adds latent_avg before the decoder.
 */
import { ShapeError, type Value } from '../../graph/graph.js';
import type { Tensor } from '../../io/tensor.js';
import { toFloat32 } from '../../io/tensor.js';
import { conv2d } from '../../ops/conv.js';
import { add, leakyRelu, mul } from '../../ops/elementwise.js';
import { linear, matmul, mT } from '../../ops/matmul.js';
import { concat, reshape } from '../../ops/shape.js';
import { type ArcFaceOptions, IrSeBody, type IrSeBodyConfig, inferIrSeBody } from '../arcface/model.js';

export type StateDict = ReadonlyMap<string, Tensor>;

export class E4eWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError'; // reported like any bad checkpoint
  }
}

export interface E4eConfig {
  body: IrSeBodyConfig;
  /** W+ layers = style blocks (18 for a 1024² generator). */
  styleCount: number;
  /** Width of w (512). */
  styleDim: number;
  /** Stride-2 convs of each style block (log2 of the spatial size it was built for: 4, 5 or 6). */
  styleConvs: number[];
  /** Body units whose outputs are c1, c2, c3 (6, 20, 23 in IR-SE50: the ends of stages 2, 3, 4). */
  taps: [number, number, number];
  /** First layers fed by p2 and by p1 (psp_encoders' coarse_ind 3 and middle_ind 7). */
  coarseEnd: number;
  middleEnd: number;
}

function need(sd: StateDict, key: string): number[] {
  const t = sd.get(key);
  if (!t) throw new E4eWeightsError(`not an Encoder4Editing state dict: missing "encoder.${key}"`);
  return t.shape;
}

/** Reads the layout from the encoder's weights (keys without the `encoder.` prefix). */
export function inferE4eConfig(sd: StateDict, options: ArcFaceOptions = {}): E4eConfig {
  const body = inferIrSeBody(sd, options);
  if (body.stageUnits.length !== 4)
    throw new E4eWeightsError(`the e4e body needs 4 stages, these weights have ${body.stageUnits.length}`);
  let styleCount = 0;
  while (sd.has(`styles.${styleCount}.linear.weight`)) styleCount++;
  if (styleCount < 1)
    throw new E4eWeightsError('not an Encoder4Editing state dict: no "encoder.styles.N" blocks');
  const styleDim = need(sd, 'styles.0.linear.weight')[0];
  const styleConvs: number[] = [];
  for (let i = 0; i < styleCount; i++) {
    let k = 0;
    while (sd.has(`styles.${i}.convs.${2 * k}.weight`)) k++; // convs.{0,2,4,…}: conv, LeakyReLU, conv, …
    if (k < 1) throw new E4eWeightsError(`encoder.styles.${i} has no convs`);
    styleConvs.push(k);
  }
  const ends = body.stageUnits.map((_, s) => body.stageUnits.slice(0, s + 1).reduce((a, b) => a + b, 0) - 1);
  const c4 = body.units[ends[3]].depth;
  const lat1 = need(sd, 'latlayer1.weight'); // [D, C3, 1, 1]
  const lat2 = need(sd, 'latlayer2.weight'); // [D, C2, 1, 1]
  if (c4 !== styleDim || lat1[0] !== styleDim || lat2[0] !== styleDim)
    throw new E4eWeightsError(
      `the pyramid needs c3 (${c4}), latlayer outputs (${lat1[0]}, ${lat2[0]}) and w (${styleDim}) equally wide`,
    );
  return {
    body,
    styleCount,
    styleDim,
    styleConvs,
    taps: [ends[1], ends[2], ends[3]],
    coarseEnd: 3,
    middleEnd: 7,
  };
}

/** The keys an Encoder4Editing state dict must have, exactly (for a strict load). */
export function expectedE4eKeys(c: E4eConfig): Set<string> {
  const keys = new Set<string>();
  const bn = (k: string) => {
    for (const s of ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'])
      keys.add(`${k}.${s}`);
  };
  keys.add('input_layer.0.weight');
  bn('input_layer.1');
  keys.add('input_layer.2.weight');
  c.body.units.forEach((u, i) => {
    const k = `body.${i}`;
    if (u.inChannels !== u.depth) {
      keys.add(`${k}.shortcut_layer.0.weight`);
      bn(`${k}.shortcut_layer.1`);
    }
    bn(`${k}.res_layer.0`);
    keys.add(`${k}.res_layer.1.weight`);
    keys.add(`${k}.res_layer.2.weight`);
    keys.add(`${k}.res_layer.3.weight`);
    bn(`${k}.res_layer.4`);
    keys.add(`${k}.res_layer.5.fc1.weight`);
    keys.add(`${k}.res_layer.5.fc2.weight`);
  });
  c.styleConvs.forEach((n, i) => {
    for (let k = 0; k < n; k++)
      for (const s of ['weight', 'bias']) keys.add(`styles.${i}.convs.${2 * k}.${s}`);
    keys.add(`styles.${i}.linear.weight`);
    keys.add(`styles.${i}.linear.bias`);
  });
  for (const s of ['latlayer1', 'latlayer2']) for (const p of ['weight', 'bias']) keys.add(`${s}.${p}`);
  return keys;
}

/**
 * torch's F.interpolate(x, size, mode='bilinear', align_corners=True) along one axis, as an [n, m] matrix:
 * output i samples input position i·(m−1)/(n−1).
 */
export function alignCornersMatrix(m: number, n: number): Float32Array {
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    const src = n > 1 ? (i * (m - 1)) / (n - 1) : 0;
    const i0 = Math.min(Math.floor(src), m - 1);
    const i1 = Math.min(i0 + 1, m - 1);
    const f = src - i0;
    out[i * m + i0] += 1 - f;
    out[i * m + i1] += f;
  }
  return out;
}

export class E4eEncoder extends IrSeBody {
  private constructor(
    readonly config: E4eConfig,
    sd: StateDict,
  ) {
    const weights = new Map(
      [...sd]
        .filter(([k]) => !k.endsWith('num_batches_tracked'))
        .map(([k, t]) => [k, { shape: [...t.shape], data: toFloat32(t).data }]),
    );
    super(config.body, weights, 'e4e.encoder');
  }

  /** `sd`: the encoder's state dict without the `encoder.` prefix. Strict: names what is missing or extra. */
  static fromStateDict(sd: StateDict, options: ArcFaceOptions = {}): E4eEncoder {
    const config = inferE4eConfig(sd, options);
    const want = expectedE4eKeys(config);
    const missing = [...want].filter((k) => !sd.has(k) && !k.endsWith('num_batches_tracked'));
    const extra = [...sd.keys()].filter((k) => !want.has(k));
    if (missing.length || extra.length)
      throw new E4eWeightsError(
        `Encoder4Editing weights do not match the layout they imply:` +
          `${
            missing.length
              ? ` missing ${missing
                  .slice(0, 5)
                  .map((k) => `encoder.${k}`)
                  .join(', ')}${missing.length > 5 ? ` (+${missing.length - 5})` : ''}`
              : ''
          }` +
          `${
            extra.length
              ? ` unexpected ${extra
                  .slice(0, 5)
                  .map((k) => `encoder.${k}`)
                  .join(', ')}${extra.length > 5 ? ` (+${extra.length - 5})` : ''}`
              : ''
          }`,
      );
    return new E4eEncoder(config, sd);
  }

  /** GradualStyleBlock: stride-2 convs with leaky ReLU down to 1×1, then EqualLinear (scale 1/√D). */
  private styleBlock(x: Value, i: number): Value {
    const g = x.graph;
    const d = this.config.styleDim;
    let y = x;
    for (let k = 0; k < this.config.styleConvs[i]; k++) {
      const key = `styles.${i}.convs.${2 * k}`;
      const b = this.weight(g, `${key}.bias`);
      y = conv2d(y, this.weight(g, `${key}.weight`), { stride: 2, pads: 1 });
      y = leakyRelu(add(y, reshape(b, [1, d, 1, 1])), 0.01); // bias [D] -> [1, D, 1, 1]
    }
    if (y.shape[2] !== 1 || y.shape[3] !== 1)
      throw new ShapeError(
        `e4e style block ${i} ends at ${y.shape[2]}×${y.shape[3]}, not 1×1: the input is too large`,
      );
    y = reshape(y, [y.shape[0], d]); // x.view(-1, out_c)
    const w = mul(this.weight(g, `styles.${i}.linear.weight`), 1 / Math.sqrt(d));
    return linear(y, w, this.weight(g, `styles.${i}.linear.bias`));
  }

  /** _upsample_add: bilinear (align_corners) upsampling of x to y's size, plus y. */
  private upsampleAdd(x: Value, y: Value): Value {
    const g = x.graph;
    const [, , h, w] = x.shape;
    const [, , H, W] = y.shape;
    const mh = g.const(alignCornersMatrix(h, H), [H, h], `e4e.up_${h}_to_${H}`);
    const mw = g.const(alignCornersMatrix(w, W), [W, w], `e4e.up_${w}_to_${W}`);
    return add(matmul(mh, matmul(x, mT(mw))), y); // [B, C, h, W] -> [B, C, H, W]
  }

  private lateral(x: Value, key: string): Value {
    const g = x.graph;
    const b = this.weight(g, `${key}.bias`);
    return add(conv2d(x, this.weight(g, `${key}.weight`)), reshape(b, [1, b.shape[0], 1, 1]));
  }

  /** Encoder4Editing.forward: [B, 3, H, W] in [−1, 1] → W+ offsets from the mean latent [B, L, D]. */
  forward(x: Value): Value {
    const c = this.config;
    const feats = this.units(x);
    const [c1, c2, c3] = c.taps.map((t) => feats[t]);
    const w0 = this.styleBlock(c3, 0); // [B, D]
    const rows: Value[] = [w0];
    let features = c3;
    let p2: Value | undefined;
    for (let i = 1; i < c.styleCount; i++) {
      if (i === c.coarseEnd) {
        p2 = this.upsampleAdd(c3, this.lateral(c2, 'latlayer1'));
        features = p2;
      } else if (i === c.middleEnd) {
        features = this.upsampleAdd(p2!, this.lateral(c1, 'latlayer2'));
      }
      rows.push(add(w0, this.styleBlock(features, i)));
    }
    const b = x.shape[0];
    return concat(
      rows.map((r) => reshape(r, [b, 1, c.styleDim])),
      1,
    ); // L × [B, D] -> [B, L, D]
  }
}
