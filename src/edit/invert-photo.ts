/**
 * A photo to a W+ latent, the whole way: decode, align (FFHQ crop at the generator's size, or just the
 * centre square scaled), encode with e4e and/or refine by optimization, then measure the reconstruction.
 * `styleclip invert` and the web app's upload both run this.
 */
import sharp from 'sharp';
import { alignPhoto, type RgbImage, readPhoto, rgbToSigned } from '../align/index.js';
import { Graph } from '../graph/graph.js';
import type { ArcFaceModel } from '../models/arcface/model.js';
import type { ClipModel } from '../models/clip/model.js';
import { type E4eCheckpoint, encodeE4e } from '../models/e4e/load.js';
import { StyleGAN2 } from '../models/stylegan2/generator.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { mul } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { compile } from '../runtime/session.js';
import { type InvertConfig, Inverter, type InvertStep, psnr, runInversion } from './invert.js';
import { idFeatures } from './losses.js';

/** e4e's input side (its training transform resizes to 256×256). */
export const E4E_INPUT = 256;

export interface InvertPhotoOptions {
  generator: GeneratorWeights;
  /** Detect and FFHQ-align the face; otherwise the photo's centre square is scaled to the generator's size. */
  align?: boolean;
  /** Which face (1-based, left to right) in a photo with several. */
  face?: number;
  /** Start from e4e's W+ (its W+ shape must be the generator's). */
  encoder?: E4eCheckpoint;
  clip?: ClipModel;
  /** For the identity similarity of the reconstruction. */
  arcface?: ArcFaceModel;
  /** Optimization settings; `steps` 0 keeps the encoder's W+ as it is. */
  invert?: InvertConfig;
  onStage?: (stage: 'align' | 'encode' | 'optimize' | 'render', detail?: string) => void;
  onStep?: (r: InvertStep) => void | Promise<void>;
  shouldStop?: () => boolean;
  /** Runs each engine call (see InvertHooks.engine). */
  engine?: <T>(fn: () => Promise<T>) => Promise<T>;
}

export interface InvertPhotoResult {
  /** The generator-sized crop that was inverted. */
  aligned: RgbImage;
  /** W+ [1, L, D]. */
  wplus: Float32Array;
  /** G(W+) [1, 3, S, S] in [−1, 1] (with the optimized noise maps when those were optimized). */
  image: Float32Array;
  psnr: number;
  /** Cosine of the ArcFace embeddings of the crop and the reconstruction (with `arcface`). */
  idSimilarity?: number;
  steps: number;
  stopped: boolean;
  faceCount?: number;
}

async function resized(img: RgbImage, size: number, fit: 'cover' | 'fill'): Promise<RgbImage> {
  if (img.width === size && img.height === size) return img;
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(size, size, { fit, kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(buf.buffer, buf.byteOffset, buf.length), width: size, height: size };
}

/** ⟨f(a), f(b)⟩ of the ID loss's ArcFace features (extract_feats) for two [1, 3, S, S] images. */
export async function idSimilarity(
  arcface: ArcFaceModel,
  a: Float32Array,
  b: Float32Array,
  size: number,
): Promise<number> {
  const g = new Graph();
  const shape = [1, 3, size, size];
  const exe = await compile({
    cos: sum(mul(idFeatures(arcface, g.input('a', shape)), idFeatures(arcface, g.input('b', shape)))),
  });
  const r = await exe.run({ a: { shape, data: a }, b: { shape, data: b } });
  await exe.release();
  return (r.cos.data as Float32Array)[0];
}

export async function invertPhoto(
  photo: string | Uint8Array,
  o: InvertPhotoOptions,
): Promise<InvertPhotoResult> {
  const engine = o.engine ?? (<T>(fn: () => Promise<T>) => fn());
  const W = o.generator;
  const { size: S, nLatent: L, styleDim: D } = W.config;
  const img = await readPhoto(photo);
  let aligned: RgbImage;
  let faceCount: number | undefined;
  if (o.align) {
    o.onStage?.('align');
    const a = await engine(() => alignPhoto(img, S, { face: o.face }));
    aligned = a.image;
    faceCount = a.faceCount;
  } else aligned = await resized(img, S, 'cover');
  const target = rgbToSigned(aligned);

  let init: Float32Array | undefined;
  if (o.encoder) {
    const { styleCount, styleDim } = o.encoder.encoder.config;
    if (styleCount !== L || styleDim !== D)
      throw new RangeError(
        `the encoder gives W+ [${styleCount}, ${styleDim}], the generator takes [${L}, ${D}]`,
      );
    o.onStage?.('encode');
    const x = rgbToSigned(await resized(aligned, E4E_INPUT, 'fill'));
    init = await engine(() => encodeE4e(o.encoder!, x, E4E_INPUT));
  }
  const steps = o.invert?.steps ?? (o.encoder ? 0 : 300);
  if (steps === 0 && !init) throw new RangeError('nothing to invert with: give an encoder, or steps > 0');
  let wplus: Float32Array;
  let image: Float32Array;
  let stopped = false;
  let done = 0;
  if (steps > 0) {
    o.onStage?.('optimize', `${steps} steps`);
    const inv = await engine(() =>
      Inverter.create(
        { generator: W, clip: o.clip },
        { ...o.invert, steps, clipLambda: o.clip ? o.invert?.clipLambda : 0 },
      ),
    );
    try {
      const res = await runInversion(await inv.start(target, init), {
        onStep: o.onStep,
        shouldStop: o.shouldStop,
      });
      wplus = res.wplus;
      image = res.final.image;
      stopped = res.stopped;
      done = res.steps;
    } finally {
      await inv.release();
    }
  } else {
    o.onStage?.('render');
    wplus = init!;
    const w = wplus;
    image = (await engine(() => new StyleGAN2(W).synthesize(w))).data as Float32Array;
  }
  const result: InvertPhotoResult = {
    aligned,
    wplus,
    image,
    psnr: psnr(image, target),
    steps: done,
    stopped,
    faceCount,
  };
  const arcface = o.arcface;
  if (arcface) result.idSimilarity = await engine(() => idSimilarity(arcface, target, image, S));
  return result;
}
