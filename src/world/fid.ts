/**
 * Generator quality on the world: the Fréchet distance between generated faces and held-out world faces in
 * the image-feature space of the world's CLIP (FID with CLIP in place of Inception).
 *
 * - Generated image i: z = RandomState(seed + i).randn(1, D), mapped, truncated by ψ, rendered with seeded
 *   random noise (RandomState(seed + i) per layer, as `styleclip generate --seed S --noise random` draws
 *   image i), so the noise varies as it did in training. It is clamped and rounded to 8 bits as a saved PNG is
 *   (the dataset faces are 8-bit too, so neither side has precision the other lacks).
 * - Dataset image i: the world face of seed WORLD_HELD_OUT_BASE + dataSeed + i (2,000,000,000 + …, the CLIP
 *   trainer's held-out range, far from the GAN's training seeds 0 …), drawn at the generator's size.
 * - Both as the CLIP loss sees a generator image (`clipInput`): resampled to the CLIP's resolution, then
 *   normalized with CLIP's mean/std when the CLIP file asks for it (the world's does: it was trained so).
 * - Features: the raw `encode_image` embedding (not L2-normalized), as FID uses raw pooled features.
 * - Distance: src/util/frechet.ts, float64, covariances divided by n − 1.
 */
import { clipInput } from '../edit/losses.js';
import { Graph } from '../graph/graph.js';
import { toUint8 } from '../io/image.js';
import type { ClipModel } from '../models/clip/model.js';
import { type StyleGAN2, seededZ } from '../models/stylegan2/index.js';
import { compile, type Executable } from '../runtime/session.js';
import { type FrechetResult, frechetDistanceOfFeatures } from '../util/frechet.js';
import { RandomState } from '../util/random.js';
import { WORLD_HELD_OUT_BASE, WorldImages } from './dataset.js';
import { toSignedNCHW } from './render.js';

export interface WorldFidOptions {
  /** Images on each side (default 2000). */
  count?: number;
  /** Generated image i uses seed + i (default 0). */
  seed?: number;
  /** ψ (default 1: none). */
  truncation?: number;
  /** Dataset image i is the face of seed WORLD_HELD_OUT_BASE + dataSeed + i (default 0). */
  dataSeed?: number;
  /** Images per generator / CLIP call (default 64). */
  batch?: number;
  /** Called after each batch, with images done out of 2·count. */
  onProgress?: (done: number, total: number) => void;
}

export interface WorldFidResult extends FrechetResult {
  /** The Fréchet distance (= distance). */
  fid: number;
  count: number;
  seed: number;
  truncation: number;
  /** World seeds of the dataset images: [first, last]. */
  dataSeeds: [number, number];
  /** Generator image side. */
  size: number;
  /** CLIP input side (images are resampled to it). */
  clipResolution: number;
  /** CLIP embedding size (the features' dimension). */
  featureDim: number;
  /** Wall time: generating + encoding fakes, drawing + encoding dataset faces, the distance, and in all. */
  seconds: { generated: number; dataset: number; distance: number; total: number };
}

export class WorldFidError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorldFidError';
  }
}

const MAX_SEED = 2 ** 32;

/** The options with defaults, checked before anything slow happens. */
export function fidSettings(o: WorldFidOptions = {}): Required<Omit<WorldFidOptions, 'onProgress'>> {
  const s = {
    count: o.count ?? 2000,
    seed: o.seed ?? 0,
    truncation: o.truncation ?? 1,
    dataSeed: o.dataSeed ?? 0,
    batch: o.batch ?? 64,
  };
  if (!Number.isInteger(s.count) || s.count < 2)
    throw new WorldFidError(`count must be a whole number ≥ 2 (a covariance needs 2 images), got ${s.count}`);
  if (!Number.isInteger(s.batch) || s.batch < 1) throw new WorldFidError(`batch must be ≥ 1, got ${s.batch}`);
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed + s.count > MAX_SEED)
    throw new WorldFidError(`seed + count must stay within [0, 2^32), got seed ${s.seed}, count ${s.count}`);
  const maxData = MAX_SEED - WORLD_HELD_OUT_BASE;
  if (!Number.isInteger(s.dataSeed) || s.dataSeed < 0 || s.dataSeed + s.count > maxData)
    throw new WorldFidError(
      `data seed + count must stay within [0, ${maxData}] (world seeds below 2^32), got ${s.dataSeed} + ${s.count}`,
    );
  if (!Number.isFinite(s.truncation))
    throw new WorldFidError(`truncation must be a number, got ${s.truncation}`);
  return s;
}

/** CLIP image features of [B, S, S] images in [-1, 1], preprocessed as the CLIP loss does; one graph per B. */
export class ClipImageFeatures {
  private readonly sessions = new Map<number, Promise<Executable>>();

  constructor(
    readonly clip: ClipModel,
    readonly size: number,
  ) {}

  private session(b: number): Promise<Executable> {
    let s = this.sessions.get(b);
    if (!s) {
      const g = new Graph();
      const x = g.input('image', [b, 3, this.size, this.size]);
      s = compile({ features: this.clip.encodeImage(clipInput(this.clip, x)) });
      this.sessions.set(b, s);
    }
    return s;
  }

  /** `images` [b, 3, S, S] in [-1, 1] → raw embeddings [b, E]. */
  async run(images: Float32Array, b: number): Promise<Float32Array> {
    const per = 3 * this.size * this.size;
    if (images.length !== b * per) throw new WorldFidError(`expected ${b} images of ${per} values`);
    const exe = await this.session(b);
    const out = await exe.run({ image: { shape: [b, 3, this.size, this.size], data: images } });
    return out.features.data as Float32Array;
  }
}

/**
 * Generated images [b, 3, S, S] for seeds first … first + b − 1, 8-bit quantized and back in [-1, 1]:
 * image i as `styleclip generate --seed first+i --noise random --truncation ψ` writes it.
 */
export async function generatedImages(
  G: StyleGAN2,
  first: number,
  b: number,
  truncation = 1,
): Promise<Float32Array> {
  const { styleDim: D, size: S } = G.config;
  const z = new Float32Array(b * D);
  for (let i = 0; i < b; i++) z.set(seededZ(first + i, 1, D), i * D);
  const wplus = await G.toWPlus(await G.mapping(z), [b, D], { psi: truncation });
  // Per image, the draws of StyleGAN2.synthesize(…, { seed }) for a batch of one, stacked into batch arrays.
  const noise = G.weights.convs.map((L) => new Float32Array(b * L.resolution ** 2));
  for (let i = 0; i < b; i++) {
    const rs = new RandomState(first + i);
    G.weights.convs.forEach((L, k) => {
      const n = L.resolution ** 2;
      noise[k].set(rs.randn(n), i * n);
    });
  }
  const img = await G.synthesize(wplus, noise);
  const t = { dtype: 'float32' as const, shape: [b, 3, S, S], data: img.data as Float32Array };
  const bytes = new Uint8Array(b * S * S * 3);
  for (let i = 0; i < b; i++) bytes.set(toUint8(t, i).data, i * S * S * 3);
  return toSignedNCHW(bytes, b, S);
}

/** Dataset images [b, 3, S, S] in [-1, 1]: faces first … first + b − 1 of `world`. */
async function datasetImages(world: WorldImages, first: number, b: number): Promise<Float32Array> {
  const per = 3 * world.size * world.size;
  const out = new Float32Array(b * per);
  const faces = await Promise.all(Array.from({ length: b }, (_, i) => world.get(first + i)));
  for (let i = 0; i < b; i++) out.set(faces[i], i * per);
  return out;
}

/** Features [count, E] of `count` images drawn `batch` at a time by `draw(first, b)`. */
async function featuresOf(
  enc: ClipImageFeatures,
  count: number,
  batch: number,
  draw: (first: number, b: number) => Promise<Float32Array>,
  progress: (b: number) => void,
): Promise<Float32Array> {
  const e = enc.clip.config.embedDim;
  const out = new Float32Array(count * e);
  for (let first = 0; first < count; first += batch) {
    const b = Math.min(batch, count - first);
    out.set(await enc.run(await draw(first, b), b), first * e);
    progress(b);
  }
  return out;
}

/** FID of generator `G` against held-out world faces in `clip`'s image-feature space. */
export async function worldFid(
  G: StyleGAN2,
  clip: ClipModel,
  options: WorldFidOptions = {},
): Promise<WorldFidResult> {
  const o = fidSettings(options);
  const S = G.config.size;
  const r = clip.config.imageResolution;
  const t0 = performance.now();
  const enc = new ClipImageFeatures(clip, S);
  let done = 0;
  const progress = (b: number) => {
    done += b;
    options.onProgress?.(done, 2 * o.count);
  };
  const fake = await featuresOf(
    enc,
    o.count,
    o.batch,
    (first, b) => generatedImages(G, o.seed + first, b, o.truncation),
    progress,
  );
  const t1 = performance.now();
  const world = new WorldImages(o.count, { size: S, base: WORLD_HELD_OUT_BASE + o.dataSeed, cacheBytes: 0 });
  const real = await featuresOf(
    enc,
    o.count,
    o.batch,
    (first, b) => datasetImages(world, first, b),
    progress,
  );
  const t2 = performance.now();
  const e = clip.config.embedDim;
  const d = frechetDistanceOfFeatures(fake, o.count, real, o.count, e);
  const t3 = performance.now();
  return {
    fid: d.distance,
    ...d,
    count: o.count,
    seed: o.seed,
    truncation: o.truncation,
    dataSeeds: [world.base, world.base + o.count - 1],
    size: S,
    clipResolution: r,
    featureDim: e,
    seconds: {
      generated: (t1 - t0) / 1000,
      dataset: (t2 - t1) / 1000,
      distance: (t3 - t2) / 1000,
      total: (t3 - t0) / 1000,
    },
  };
}
