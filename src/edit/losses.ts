/**
 * StyleCLIP's two image losses as graph-building functions, so that latent optimization and mapper
 * training can put them in one graph with the generator and differentiate the whole thing; plus compiled
 * wrappers that return a loss and its gradient with respect to the image.
 *
 * - CLIP loss (criteria/clip_loss.py): ×7 nearest upsample, AvgPool2d(size // 32), then
 *   1 − logits_per_image / 100. No mean/std normalization, exactly as the reference.
 * - ID loss (criteria/id_loss.py): both images through extract_feats (adaptive pool to 256 unless 256,
 *   crop [35:223, 32:220], adaptive pool to 112, IR-SE backbone); the target's features are detached;
 *   the loss is mean over the batch of 1 − ⟨f(y_hat), f(y)⟩ (the first element of the reference's tuple).
 */
import { grad } from '../autodiff/grad.js';
import { Graph, ShapeError, type Value } from '../graph/graph.js';
import type { ArcFaceModel } from '../models/arcface/model.js';
import type { ClipModel } from '../models/clip/model.js';
import { adaptiveAvgPool2d } from '../ops/composite/nn.js';
import { add, mul, sub } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { mean, sum } from '../ops/reduce.js';
import { slice, stopGradient } from '../ops/shape.js';
import { compile, type Executable, type HostTensor } from '../runtime/session.js';

/**
 * The [out, n] matrix of nearest ×`up` upsampling followed by average pooling with kernel = stride = `k`,
 * along one axis: row i averages upsampled samples [i·k, i·k + k), each of which is input ⌊p / up⌋.
 */
export function upsamplePoolMatrix(n: number, up: number, k: number): Float32Array {
  const out = Math.floor((n * up) / k);
  const m = new Float32Array(out * n);
  for (let i = 0; i < out; i++)
    for (let p = i * k; p < i * k + k; p++) m[i * n + Math.floor(p / up)] += 1 / k;
  return m;
}

/**
 * `avg_pool(upsample(image))` of StyleCLIP's CLIPLoss as one separable linear map, Ph · x · Pwᵀ. It is the
 * same function as the reference's, but never builds the 7× image (7168² per channel at 1024²).
 * The reference upsamples ×7 and pools with kernel `stylegan_size // 32`, which takes any side that is a
 * multiple of 32 to 224. That is ×(224 / g) then pooling by (side / g) with g = gcd(side, 224); the same
 * rule with another CLIP's `resolution` in place of 224 takes the image to that CLIP's input size (a 64²
 * world image to a 64² CLIP: the identity; a 1024² one: 16×16 means).
 */
export function clipResample(image: Value, resolution = 224): Value {
  if (image.rank !== 4) throw new ShapeError(`CLIP loss needs an NCHW image, got [${image.shape}]`);
  const [, , h, w] = image.shape;
  if (h !== w) throw new ShapeError(`CLIP loss needs a square image, got ${h}×${w}`);
  const g = gcd(h, resolution);
  const up = resolution / g;
  const k = h / g;
  if (up === 1 && k === 1) return image;
  const graph = image.graph;
  const ph = graph.const(
    upsamplePoolMatrix(h, up, k),
    [resolution, h],
    `clip_loss.resample_${h}_${resolution}`,
  );
  const pwT = graph.const(
    transpose2d(upsamplePoolMatrix(w, up, k), resolution, w),
    [w, resolution],
    `clip_loss.resample_t_${w}_${resolution}`,
  );
  return matmul(ph, matmul(image, pwT)); // [B, C, H, W] → [B, C, H, r] → [B, C, r, r]
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

/**
 * A generator image [B, 3, S, S] in [-1, 1] as the CLIP loss shows it to `clip`: `clipResample` to its
 * resolution, then its own pixel normalization when the file carries one (ClipModel.inputNormalization: a
 * CLIP trained here); OpenAI's CLIP gets the [-1, 1] pixels as StyleCLIP's CLIPLoss gives them.
 */
export function clipInput(clip: ClipModel, image: Value): Value {
  const x = clipResample(image, clip.config.imageResolution); // [B, 3, r, r]
  const n = clip.inputNormalization;
  if (!n) return x;
  // ((x + 1) / 2 − mean) / std per channel = x · scale + shift
  const g = x.graph;
  const scale = g.const(
    Float32Array.from(n.std, (s) => 1 / (2 * s)),
    [1, 3, 1, 1],
    'clip_input.scale',
  );
  const shift = g.const(
    Float32Array.from(n.std, (s, c) => (0.5 - n.mean[c]) / s),
    [1, 3, 1, 1],
    'clip_input.shift',
  );
  return add(mul(x, scale), shift);
}

/**
 * CLIPLoss(image, text): 1 − logits_per_image / 100, [B, T]. `textFeatures` [T, E] are encode_text
 * outputs (normalized or not: the logits normalize them); usually a constant of the graph.
 */
export function clipLoss(clip: ClipModel, image: Value, textFeatures: Value): Value {
  const logits = clip.logitsPerImage(clip.encodeImage(clipInput(clip, image)), textFeatures);
  return sub(1, mul(logits, 1 / 100));
}

/** IDLoss.extract_feats: pool to 256 (unless 256 high), crop [35:223, 32:220], pool to the backbone's size. */
export function idFeatures(arcface: ArcFaceModel, x: Value): Value {
  if (x.rank !== 4) throw new ShapeError(`ID loss needs an NCHW image, got [${x.shape}]`);
  if (x.shape[2] !== 256) x = adaptiveAvgPool2d(x, 256);
  const [b, c, h, w] = x.shape;
  x = slice(x, [0, 0, 35, 32], [b, c, Math.min(h, 223), Math.min(w, 220)]);
  return arcface.forward(adaptiveAvgPool2d(x, arcface.config.inputSize));
}

/** mean_i (1 − ⟨f(y_hat)_i, target_i⟩) against fixed target features [B, D] (a scalar). */
export function idLossToFeatures(arcface: ArcFaceModel, yHat: Value, target: Value): Value {
  const f = idFeatures(arcface, yHat);
  return mean(sub(1, sum(mul(f, target), 1)));
}

/** IDLoss(y_hat, y)[0]: the target's features are detached, as the reference does. */
export function idLoss(arcface: ArcFaceModel, yHat: Value, y: Value): Value {
  return idLossToFeatures(arcface, yHat, stopGradient(idFeatures(arcface, y)));
}

export interface LossAndGrad {
  loss: Float32Array;
  /** d sum(loss) / d image, in the image's layout. */
  grad: Float32Array;
}

const f32 = (t: HostTensor) => t.data as Float32Array;

/** CLIP loss and d sum(loss)/d image for images of one shape, compiled once. */
export class ClipLossFunction {
  private constructor(
    private readonly exe: Executable,
    readonly imageShape: readonly number[],
  ) {}

  /** `textFeatures` [T, E] from ClipEncoder (or any encode_text output). */
  static async create(
    clip: ClipModel,
    textFeatures: Float32Array,
    imageShape: readonly number[],
  ): Promise<ClipLossFunction> {
    const g = new Graph();
    const image = g.input('image', imageShape);
    const e = clip.config.embedDim;
    const text = g.const(textFeatures, [textFeatures.length / e, e], 'clip_loss.text_features');
    const loss = clipLoss(clip, image, text);
    const [gi] = grad(sum(loss), [image]);
    return new ClipLossFunction(await compile({ loss, grad: gi }), imageShape);
  }

  async run(image: Float32Array): Promise<LossAndGrad> {
    const out = await this.exe.run({ image: { shape: [...this.imageShape], data: image } });
    return { loss: f32(out.loss), grad: f32(out.grad) };
  }
}

/**
 * ID loss and its gradient with respect to y_hat, compiled once per image shape. `run(yHat, y)` is the
 * reference's IDLoss(y_hat, y) with both images through the backbone; when y stays fixed (the original
 * image during latent optimization), `setTarget(y)` once and `runToTarget(yHat)` skip its forward pass.
 */
export class IdLossFunction {
  private target?: Float32Array;
  private toTarget?: Promise<Executable>;
  private features?: Promise<Executable>;

  private constructor(
    private readonly arcface: ArcFaceModel,
    private readonly exe: Executable,
    readonly imageShape: readonly number[],
  ) {}

  static async create(arcface: ArcFaceModel, imageShape: readonly number[]): Promise<IdLossFunction> {
    const g = new Graph();
    const yHat = g.input('y_hat', imageShape);
    const y = g.input('y', imageShape);
    const loss = idLoss(arcface, yHat, y);
    const [gi] = grad(loss, [yHat]);
    return new IdLossFunction(arcface, await compile({ loss, grad: gi }), imageShape);
  }

  async run(yHat: Float32Array, y: Float32Array): Promise<LossAndGrad> {
    const shape = [...this.imageShape];
    const out = await this.exe.run({ y_hat: { shape, data: yHat }, y: { shape, data: y } });
    return { loss: f32(out.loss), grad: f32(out.grad) };
  }

  /** extract_feats(y) [B, D], e.g. to keep as the fixed target. */
  async extractFeatures(y: Float32Array): Promise<Float32Array> {
    this.features ??= (() => {
      const g = new Graph();
      return compile({ feats: idFeatures(this.arcface, g.input('y', this.imageShape)) });
    })();
    const out = await (await this.features).run({ y: { shape: [...this.imageShape], data: y } });
    return f32(out.feats);
  }

  async setTarget(y: Float32Array): Promise<void> {
    this.target = await this.extractFeatures(y);
  }

  /** IDLoss(y_hat, y) for the y given to `setTarget`, with its features reused. */
  async runToTarget(yHat: Float32Array): Promise<LossAndGrad> {
    if (!this.target) throw new Error('IdLossFunction.runToTarget: call setTarget(y) first');
    const b = this.imageShape[0];
    const d = this.arcface.config.embedDim;
    this.toTarget ??= (() => {
      const g = new Graph();
      const yHatV = g.input('y_hat', this.imageShape);
      const loss = idLossToFeatures(this.arcface, yHatV, g.input('target', [b, d]));
      const [gi] = grad(loss, [yHatV]);
      return compile({ loss, grad: gi });
    })();
    const out = await (await this.toTarget).run({
      y_hat: { shape: [...this.imageShape], data: yHat },
      target: { shape: [b, d], data: this.target },
    });
    return { loss: f32(out.loss), grad: f32(out.grad) };
  }
}
