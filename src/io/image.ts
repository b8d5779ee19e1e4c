import { extname } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from './atomic.js';
import { CheckpointError } from './errors.js';
import type { Tensor } from './tensor.js';

/**
 * Images as NCHW float32 tensors. Two value conventions meet here: [0, 1] (what a decoder gives, and CLIP's
 * input before normalization) and the generator's [-1, 1]. Writing follows what StyleCLIP does to save
 * results, torchvision's `save_image(img, normalize=True, range=(-1, 1))`: clamp to [-1, 1], map to [0, 1],
 * then `floor(v * 255 + 0.5)`, i.e. round half up. (Global directions' fs3 pipeline truncates instead,
 * `(x + 1) * 127.5` cast to uint8; `toUint8(..., { rounding: 'truncate' })` reproduces that.)
 */

export type ImageTensor = Tensor & { dtype: 'float32'; data: Float32Array };
export type Range = '0,1' | '-1,1';

export interface ReadImageOptions {
  /** Value range of the result (default [0, 1]). */
  range?: Range;
  /** Apply the EXIF orientation. Off by default, like PIL's Image.open, so results match the reference. */
  autoOrient?: boolean;
}

/** Decodes PNG/JPEG/WebP (or anything sharp reads) to a [1, 3, H, W] float32 RGB tensor. */
export async function readImage(
  file: string | Uint8Array,
  opts: ReadImageOptions = {},
): Promise<ImageTensor> {
  const name = typeof file === 'string' ? file : '<image bytes>';
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    let img = sharp(file, { limitInputPixels: 2 ** 28 });
    if (opts.autoOrient) img = img.rotate();
    raw = await img
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new CheckpointError(name, 'a PNG, JPEG or WebP image', (e as Error).message);
  }
  const { width: w, height: h, channels: c } = raw.info;
  const px = w * h;
  const out = new Float32Array(3 * px);
  const [scale, shift] = opts.range === '-1,1' ? [2 / 255, -1] : [1 / 255, 0];
  const src = raw.data;
  for (let i = 0; i < px; i++)
    for (let ch = 0; ch < 3; ch++) out[ch * px + i] = src[i * c + (c >= 3 ? ch : 0)] * scale + shift;
  return { dtype: 'float32', shape: [1, 3, h, w], data: out };
}

/** [0, 1] → [-1, 1] (the generator's convention). */
export function unitToSigned(t: ImageTensor): ImageTensor {
  return { dtype: 'float32', shape: t.shape.slice(), data: t.data.map((x) => x * 2 - 1) };
}

/** [-1, 1] → [0, 1]. */
export function signedToUnit(t: ImageTensor): ImageTensor {
  return { dtype: 'float32', shape: t.shape.slice(), data: t.data.map((x) => (x + 1) / 2) };
}

function dims(t: Tensor): [number, number, number, number] {
  if (t.shape.length !== 4 || t.dtype !== 'float32')
    throw new RangeError(`expected an NCHW float32 tensor, got ${t.dtype} [${t.shape}]`);
  const [n, c, h, w] = t.shape;
  if (c !== 1 && c !== 3) throw new RangeError(`expected 1 or 3 channels, got ${c}`);
  return [n, c, h, w];
}

export interface Uint8Options {
  range?: Range;
  /** 'round' (torchvision save_image, the default) or 'truncate' (StyleCLIP's fs3 pipeline). */
  rounding?: 'round' | 'truncate';
}

/** Image `index` of an NCHW tensor as interleaved 8-bit RGB (HWC). */
export function toUint8(
  t: Tensor,
  index = 0,
  opts: Uint8Options = {},
): { width: number; height: number; channels: number; data: Uint8Array } {
  const [n, c, h, w] = dims(t);
  if (index < 0 || index >= n) throw new RangeError(`image ${index} of ${n}`);
  const d = t.data as Float32Array;
  const px = h * w;
  const base = index * c * px;
  const out = new Uint8Array(px * c);
  const signed = (opts.range ?? '-1,1') === '-1,1';
  const trunc = opts.rounding === 'truncate';
  for (let ch = 0; ch < c; ch++)
    for (let i = 0; i < px; i++) {
      let v = d[base + ch * px + i];
      if (trunc) {
        v = signed ? (v + 1) * 127.5 : v * 255;
        out[i * c + ch] = v <= 0 || Number.isNaN(v) ? 0 : v >= 255 ? 255 : Math.trunc(v);
      } else {
        const u = signed ? (Math.min(Math.max(v, -1), 1) + 1) / 2 : Math.min(Math.max(v, 0), 1);
        out[i * c + ch] = Number.isNaN(u) ? 0 : Math.floor(u * 255 + 0.5);
      }
    }
  return { width: w, height: h, channels: c, data: out };
}

export interface GridOptions {
  /** Images per row (torchvision's nrow; default 8). */
  cols?: number;
  /** Pixels between and around images (default 2; none when there is only one image). */
  padding?: number;
  /** Fill value, in the images' own units (default -1: black for generator images). */
  padValue?: number;
}

/** Lays images out in rows like torchvision's make_grid; the input is one NCHW tensor or several. */
export function imageGrid(images: Tensor | Tensor[], opts: GridOptions = {}): ImageTensor {
  const list = Array.isArray(images) ? images : [images];
  if (list.length === 0) throw new RangeError('imageGrid: no images');
  const [, c, h, w] = dims(list[0]);
  const tiles: Float32Array[] = [];
  for (const t of list) {
    const [n, c2, h2, w2] = dims(t);
    if (c2 !== c || h2 !== h || w2 !== w)
      throw new RangeError(`imageGrid: [${t.shape}] differs from [${list[0].shape}]`);
    for (let i = 0; i < n; i++)
      tiles.push((t.data as Float32Array).subarray(i * c * h * w, (i + 1) * c * h * w));
  }
  if (tiles.length === 1) return { dtype: 'float32', shape: [1, c, h, w], data: tiles[0].slice() };
  const pad = opts.padding ?? 2;
  const xmaps = Math.min(opts.cols ?? 8, tiles.length);
  const ymaps = Math.ceil(tiles.length / xmaps);
  const H = ymaps * (h + pad) + pad;
  const W = xmaps * (w + pad) + pad;
  const out = new Float32Array(c * H * W).fill(opts.padValue ?? -1);
  tiles.forEach((tile, k) => {
    const y0 = Math.floor(k / xmaps) * (h + pad) + pad;
    const x0 = (k % xmaps) * (w + pad) + pad;
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        out.set(tile.subarray(ch * h * w + y * w, ch * h * w + (y + 1) * w), ch * H * W + (y0 + y) * W + x0);
  });
  return { dtype: 'float32', shape: [1, c, H, W], data: out };
}

export interface WriteImageOptions extends Uint8Options, GridOptions {
  /** JPEG quality (default 75, PIL's default, which torchvision's save_image uses). */
  quality?: number;
}

/**
 * Writes an NCHW tensor (default range [-1, 1]) as PNG or JPEG, chosen by extension, atomically. Several
 * images become a grid, as save_image does.
 */
export async function writeImage(file: string, t: Tensor, opts: WriteImageOptions = {}): Promise<void> {
  const signed = (opts.range ?? '-1,1') === '-1,1';
  const grid = t.shape[0] === 1 ? t : imageGrid(t, { ...opts, padValue: opts.padValue ?? (signed ? -1 : 0) });
  const { width, height, channels, data } = toUint8(grid, 0, opts);
  const img = sharp(data, { raw: { width, height, channels: channels as 1 | 3 } });
  const ext = extname(file).toLowerCase();
  let buf: Buffer;
  if (ext === '.png') buf = await img.png().toBuffer();
  else if (ext === '.jpg' || ext === '.jpeg')
    buf = await img.jpeg({ quality: opts.quality ?? 75 }).toBuffer();
  else if (ext === '.webp') buf = await img.webp({ quality: opts.quality ?? 75 }).toBuffer();
  else throw new CheckpointError(file, 'an image file name ending .png, .jpg, .jpeg or .webp', `'${ext}'`);
  writeFileAtomic(file, buf);
}
