/**
 * The world as training data: image i of a dataset is the face of seed `base + i`, drawn when asked (about
 * 400-500 faces/s on one core at 64², far faster than either trainer consumes them), with an optional
 * in-memory cache of the drawn bytes.
 *
 * - `WorldImages` implements the GAN trainer's `ImageDataset` (src/train/data.ts): 3·S·S floats in [-1, 1].
 * - `WorldCaptions` gives image–caption pairs for CLIP training: the same images, and caption k of face i
 *   for epoch k, so every epoch pairs an image with a new wording.
 *
 * Seed ranges: datasets start at seed 0 by default; the classifier trains on seeds from 100,000,000 and is
 * measured on seeds from 4,000,000,000 (src/world/train-classifier.ts), so none of them overlap in practice.
 * Held-out faces for CLIP's zero-shot evaluation and the inversion benchmark start at WORLD_HELD_OUT_BASE.
 */
import type { ImageDataset } from '../train/data.js';
import { type Face, type Labels, sampleFace } from './attributes.js';
import { caption } from './captions.js';
import { renderFace } from './render.js';

/**
 * First seed of the world's held-out faces (CLIP's zero-shot evaluation, the inversion benchmark): far from
 * the training faces (seeds 0 ..) and the classifier's (100,000,000 ..).
 */
export const WORLD_HELD_OUT_BASE = 2_000_000_000;

export interface WorldDataOptions {
  /** Image side in pixels (default 64). */
  size?: number;
  /** Seed of image 0 (default 0). */
  base?: number;
  /** Keep drawn images (3·S² bytes each) up to this many bytes; default 256 MiB. */
  cacheBytes?: number;
}

export class WorldImages implements ImageDataset {
  readonly size: number;
  readonly base: number;
  private readonly cache = new Map<number, Uint8Array>();
  private readonly cacheLimit: number;

  constructor(
    readonly length: number,
    options: WorldDataOptions = {},
  ) {
    this.size = options.size ?? 64;
    this.base = options.base ?? 0;
    if (!Number.isInteger(length) || length < 1)
      throw new RangeError(`a world dataset needs at least 1 image, got ${length}`);
    if (this.base + length > 2 ** 32)
      throw new RangeError('the seeds of a world dataset must stay below 2^32');
    this.cacheLimit = Math.floor((options.cacheBytes ?? 2 ** 28) / (3 * this.size * this.size));
  }

  face(i: number): Face {
    if (!(Number.isInteger(i) && i >= 0 && i < this.length))
      throw new RangeError(`world image index ${i} out of [0, ${this.length})`);
    return sampleFace(this.base + i);
  }

  labels(i: number): Labels {
    return this.face(i).labels;
  }

  /** The face's RGB bytes [S, S, 3]. */
  async bytes(i: number): Promise<Uint8Array> {
    let b = this.cache.get(i);
    if (!b) {
      b = await renderFace(this.face(i), this.size);
      if (this.cache.size < this.cacheLimit) this.cache.set(i, b);
    }
    return b;
  }

  async get(i: number): Promise<Float32Array> {
    const b = await this.bytes(i);
    const px = this.size * this.size;
    const out = new Float32Array(3 * px);
    for (let p = 0; p < px; p++) for (let c = 0; c < 3; c++) out[c * px + p] = b[p * 3 + c] / 127.5 - 1;
    return out;
  }
}

/** One CLIP training example. */
export interface CaptionedImage {
  /** 3·S·S floats in [-1, 1], CHW. */
  image: Float32Array;
  caption: string;
  labels: Labels;
}

/** Image–caption pairs over a `WorldImages`; `get(i, epoch)` varies the caption's wording by epoch. */
export class WorldCaptions {
  readonly images: WorldImages;
  constructor(length: number, options: WorldDataOptions = {}) {
    this.images = new WorldImages(length, options);
  }
  get size(): number {
    return this.images.size;
  }
  get length(): number {
    return this.images.length;
  }
  caption(i: number, epoch = 0): string {
    return caption(this.images.labels(i), this.images.base + i, epoch);
  }
  async get(i: number, epoch = 0): Promise<CaptionedImage> {
    return {
      image: await this.images.get(i),
      caption: this.caption(i, epoch),
      labels: this.images.labels(i),
    };
  }
}
