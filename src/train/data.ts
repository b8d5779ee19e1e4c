/**
 * Training images for `train gan`: one small interface (`ImageDataset`) that a folder of image files and
 * a generated dataset (the world's procedurally drawn faces) both implement, and the batch loader that
 * draws from it like rosinality's DataLoader (a fresh random order every epoch, the last partial batch
 * dropped, optional horizontal flips), one batch ahead of the training step.
 */
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { RandomState } from '../util/random.js';

/**
 * A dataset of square RGB images. `get(i)` resolves to the image as 3·size·size float32 values, channel
 * planes in RGB order (CHW), in [-1, 1] (the generator's range: -1 is black, 1 is white).
 */
export interface ImageDataset {
  readonly size: number;
  readonly length: number;
  get(i: number): Promise<Float32Array>;
}

export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataError';
  }
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

export interface FolderOptions {
  /** Keep decoded images (as bytes, 3·size² each) in memory up to this many bytes; default 1 GiB. */
  cacheBytes?: number;
  /** Look into subfolders too (default true). */
  recursive?: boolean;
}

/** Image files (PNG/JPEG/WebP) in a folder, resized (short side to `size`) and center-cropped. */
export class ImageFolder implements ImageDataset {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly cacheLimit: number;

  private constructor(
    readonly size: number,
    readonly files: readonly string[],
    /** Files with an image extension that could not be read, with the reason. */
    readonly skipped: readonly { file: string; reason: string }[],
    options: FolderOptions,
  ) {
    this.cacheLimit = Math.floor((options.cacheBytes ?? 2 ** 30) / (3 * size * size));
  }

  /**
   * Lists the folder and reads every image's header; unreadable files are listed in `skipped` and left out.
   * A folder without a single readable image is an error that says what was found.
   */
  static async open(dir: string, size: number, options: FolderOptions = {}): Promise<ImageFolder> {
    if (!Number.isInteger(size) || size < 4)
      throw new DataError(`image size must be an integer >= 4, got ${size}`);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(dir);
    } catch {
      throw new DataError(`no such folder: ${dir}`);
    }
    if (!st.isDirectory()) throw new DataError(`not a folder: ${dir}`);
    const candidates = listImages(dir, options.recursive ?? true);
    const files: string[] = [];
    const skipped: { file: string; reason: string }[] = [];
    for (const file of candidates) {
      try {
        const m = await sharp(file).metadata();
        if (!m.width || !m.height) throw new Error('no image size in the header');
        files.push(file);
      } catch (e) {
        skipped.push({ file, reason: (e as Error).message.split('\n')[0] });
      }
    }
    if (files.length === 0)
      throw new DataError(
        candidates.length === 0
          ? `no images in ${dir} (looked for ${[...IMAGE_EXTENSIONS].join(', ')} files)`
          : `none of the ${candidates.length} image files in ${dir} could be read (first: ${skipped[0].file}: ${skipped[0].reason})`,
      );
    return new ImageFolder(size, files, skipped, options);
  }

  get length(): number {
    return this.files.length;
  }

  async get(i: number): Promise<Float32Array> {
    if (!(i >= 0 && i < this.files.length))
      throw new RangeError(`image index ${i} out of [0, ${this.length})`);
    let bytes = this.cache.get(i);
    if (!bytes) {
      bytes = await decodeSquare(this.files[i], this.size);
      if (this.cache.size < this.cacheLimit) this.cache.set(i, bytes);
    }
    return bytesToSigned(bytes, this.size);
  }
}

function listImages(dir: string, recursive: boolean): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (recursive) walk(p);
      } else if (IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Decodes, resizes the short side to `size` and center-crops: interleaved RGB bytes [size, size, 3]. */
async function decodeSquare(file: string, size: number): Promise<Uint8Array> {
  try {
    const buf = await sharp(file)
      .removeAlpha()
      .toColourspace('srgb')
      .resize(size, size, { fit: 'cover', position: 'centre' })
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const { width, height, channels } = buf.info;
    if (width !== size || height !== size) throw new Error(`decoded to ${width}x${height}`);
    if (channels === 3) return new Uint8Array(buf.data);
    const out = new Uint8Array(size * size * 3);
    for (let p = 0; p < size * size; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = buf.data[p * channels];
    return out;
  } catch (e) {
    throw new DataError(`cannot read ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** [H, W, 3] bytes → CHW float32 in [-1, 1] (torchvision's ToTensor then Normalize(0.5, 0.5)). */
function bytesToSigned(b: Uint8Array, size: number): Float32Array {
  const px = size * size;
  const out = new Float32Array(3 * px);
  for (let p = 0; p < px; p++) for (let c = 0; c < 3; c++) out[c * px + p] = (b[p * 3 + c] / 255 - 0.5) / 0.5;
  return out;
}

/** Mirrors one CHW image left-right in place. */
export function flipHorizontal(img: Float32Array, size: number): void {
  for (let row = 0; row < 3 * size; row++) {
    const o = row * size;
    for (let x = 0; x < size >> 1; x++) {
      const t = img[o + x];
      img[o + x] = img[o + size - 1 - x];
      img[o + size - 1 - x] = t;
    }
  }
}

/** Where the loader is in its stream, so a resumed run draws the same batches. */
export interface LoaderState {
  seed: number;
  /** Batches drawn so far. */
  batches: number;
}

/**
 * Batches [B, 3, S, S] from a dataset: each epoch a new permutation (seeded), the last partial batch
 * dropped, each image flipped with probability 1/2 when `flip` is on. The stream is a pure function of
 * (seed, batch index), so `skipTo` resumes it exactly. The next batch is decoded while the caller trains.
 */
export class BatchLoader {
  private readonly perEpoch: number;
  private order: Uint32Array | null = null;
  private orderEpoch = -1;
  private drawn: number;
  private pending: Promise<Float32Array> | null = null;

  constructor(
    readonly data: ImageDataset,
    readonly batch: number,
    readonly seed: number,
    readonly flip: boolean,
    start = 0,
  ) {
    if (data.length < batch)
      throw new DataError(`the dataset has ${data.length} images, fewer than one batch of ${batch}`);
    this.perEpoch = Math.floor(data.length / batch);
    this.drawn = start;
  }

  get state(): LoaderState {
    return { seed: this.seed, batches: this.drawn };
  }

  private permutation(epoch: number): Uint32Array {
    if (this.orderEpoch !== epoch || !this.order) {
      const rs = new RandomState((this.seed + epoch * 7919) >>> 0);
      const p = Uint32Array.from({ length: this.data.length }, (_, i) => i);
      for (let i = p.length - 1; i > 0; i--) {
        const j = Math.floor(rs.nextDouble() * (i + 1));
        const t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
      this.order = p;
      this.orderEpoch = epoch;
    }
    return this.order;
  }

  private async load(k: number): Promise<Float32Array> {
    const S = this.data.size;
    const n = 3 * S * S;
    const epoch = Math.floor(k / this.perEpoch);
    const within = k % this.perEpoch;
    const perm = this.permutation(epoch);
    const flips = new RandomState((this.seed ^ 0x5bd1e995 ^ k) >>> 0);
    const out = new Float32Array(this.batch * n);
    const imgs = await Promise.all(
      Array.from({ length: this.batch }, (_, b) => this.data.get(perm[within * this.batch + b])),
    );
    imgs.forEach((img, b) => {
      if (img.length !== n)
        throw new DataError(`dataset image ${b} has ${img.length} values, expected 3·${S}·${S} = ${n}`);
      const dst = out.subarray(b * n, (b + 1) * n);
      dst.set(img);
      if (this.flip && flips.nextDouble() < 0.5) flipHorizontal(dst, S);
    });
    return out;
  }

  /** The next batch [B·3·S·S]; starts decoding the one after it. */
  async next(): Promise<Float32Array> {
    const cur = this.pending ?? this.load(this.drawn);
    this.drawn++;
    this.pending = this.load(this.drawn);
    this.pending.catch(() => {}); // surfaced when awaited
    return cur;
  }
}
