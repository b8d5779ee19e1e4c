/**
 * Image–caption pairs for CLIP training. Any source that can hand out CLIP-normalized images and their
 * captions by index is a `ClipDataset`: a JSON-lines file of `{"image": "path", "caption": "…"}` here,
 * or a generated dataset (the procedural world in src/world/) that renders its samples on demand.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { CLIP_MEAN, CLIP_STD, preprocessImageFile } from '../models/clip/preprocess.js';

export interface ClipSample {
  /** [3, R, R] float32, CLIP-preprocessed (resized, center-cropped, normalized with CLIP's mean/std). */
  image: Float32Array;
  caption: string;
}

/**
 * What the CLIP trainer reads: `length` pairs, each fetched by index (any order, possibly concurrently).
 * `epoch` lets a generated dataset vary a caption's wording from one pass to the next; files ignore it.
 */
export interface ClipDataset {
  readonly length: number;
  get(i: number, epoch: number): Promise<ClipSample>;
}

/**
 * CLIP's normalization of an image already at the model's resolution, given as [3, R, R] floats in
 * [-1, 1] (a generator's or the world's range): (x + 1)/2, then (· − mean)/std per channel, in place.
 */
export function normalizeSigned(image: Float32Array): Float32Array {
  const px = image.length / 3;
  for (let c = 0; c < 3; c++) {
    const mean = CLIP_MEAN[c];
    const std = CLIP_STD[c];
    for (let p = c * px; p < (c + 1) * px; p++) image[p] = ((image[p] + 1) / 2 - mean) / std;
  }
  return image;
}

/** A dataset of images in [-1, 1] at the model's resolution, seen as CLIP-normalized pairs. */
export function fromSignedImages(inner: {
  readonly length: number;
  get(i: number, epoch: number): Promise<{ image: Float32Array; caption: string }>;
}): ClipDataset {
  return {
    get length() {
      return inner.length;
    },
    async get(i, epoch) {
      const s = await inner.get(i, epoch);
      return { image: normalizeSigned(Float32Array.from(s.image)), caption: s.caption };
    },
  };
}

export class ClipDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClipDataError';
  }
}

export interface JsonlEntry {
  /** Absolute path of the image. */
  image: string;
  caption: string;
}

/**
 * Reads a JSON-lines file of `{image, caption}` objects (image paths relative to the file's folder).
 * Blank lines are skipped; a malformed line, a missing field or a missing image file is an error that
 * names the line, so a bad dataset fails before training starts rather than hours in.
 */
export function readJsonlPairs(file: string): JsonlEntry[] {
  if (!existsSync(file)) throw new ClipDataError(`${file}: no such file`);
  if (statSync(file).isDirectory())
    throw new ClipDataError(`${file} is a folder; give a JSON-lines file of {"image", "caption"} objects`);
  const base = dirname(resolve(file));
  const out: JsonlEntry[] = [];
  const problems: string[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, k) => {
      if (!line.trim() || problems.length >= 10) return;
      const where = `${file}:${k + 1}`;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        problems.push(`${where}: not a JSON object`);
        return;
      }
      const o = v as { image?: unknown; caption?: unknown };
      if (
        typeof o !== 'object' ||
        o === null ||
        typeof o.image !== 'string' ||
        typeof o.caption !== 'string'
      ) {
        problems.push(`${where}: needs string fields "image" and "caption"`);
        return;
      }
      if (!o.caption.trim()) {
        problems.push(`${where}: empty caption`);
        return;
      }
      const image = isAbsolute(o.image) ? o.image : resolve(base, o.image);
      if (!existsSync(image)) {
        problems.push(`${where}: image ${o.image} not found (paths are relative to the file's folder)`);
        return;
      }
      out.push({ image, caption: o.caption });
    });
  if (problems.length) throw new ClipDataError(problems.join('\n'));
  if (out.length === 0) throw new ClipDataError(`${file} holds no {"image", "caption"} pairs`);
  return out;
}

/** A JSON-lines dataset: images decoded and preprocessed (CLIP's resize and crop) to `resolution` on demand. */
export class JsonlClipDataset implements ClipDataset {
  readonly entries: readonly JsonlEntry[];

  constructor(
    file: string,
    readonly resolution: number,
  ) {
    this.entries = readJsonlPairs(file);
  }

  get length(): number {
    return this.entries.length;
  }

  async get(i: number): Promise<ClipSample> {
    const e = this.entries[i];
    if (!e) throw new RangeError(`sample ${i} of ${this.length}`);
    try {
      return { image: await preprocessImageFile(e.image, this.resolution), caption: e.caption };
    } catch (err) {
      throw new ClipDataError(`${e.image}: cannot read the image (${(err as Error).message})`);
    }
  }
}

/**
 * Keeps fetched samples in memory up to a byte budget (first come, kept), so that epochs after the
 * first skip decoding and resizing. Beyond the budget samples are fetched every time. For datasets whose
 * samples do not depend on the epoch (files); generated ones cache their own drawings.
 */
export class CachedDataset implements ClipDataset {
  private readonly cache = new Map<number, ClipSample>();
  private bytes = 0;

  constructor(
    readonly inner: ClipDataset,
    readonly budgetBytes: number,
  ) {}

  get length(): number {
    return this.inner.length;
  }

  async get(i: number, epoch: number): Promise<ClipSample> {
    const hit = this.cache.get(i);
    if (hit) return hit;
    const s = await this.inner.get(i, epoch);
    const size = s.image.byteLength + 2 * s.caption.length + 64;
    if (this.bytes + size <= this.budgetBytes) {
      this.cache.set(i, s);
      this.bytes += size;
    }
    return s;
  }
}
