/**
 * Photos as interleaved 8-bit RGB, with the checks a user's file needs before it is decoded: it must be an
 * image, and not so large that decoding it would take gigabytes.
 */
import sharp from 'sharp';
import type { RgbImage } from '../models/clip/preprocess.js';

export type { RgbImage };

/** A photo that cannot be aligned, with what to do about it; reported without a stack trace. */
export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

/** Longest side accepted (libvips' WebP limit; 268 MP of RGB is 0.8 GB decoded). */
export const MAX_SIDE = 16384;

/** Reads a photo (anything sharp decodes: JPEG, PNG, WebP, TIFF, …), EXIF orientation applied. */
export async function readPhoto(file: string | Uint8Array): Promise<RgbImage> {
  const name = typeof file === 'string' ? file : 'the uploaded file';
  let meta: Awaited<ReturnType<ReturnType<typeof sharp>['metadata']>>;
  try {
    meta = await sharp(file).metadata();
  } catch {
    throw new ImageError(`${name} is not an image (expected a JPEG, PNG or WebP photo)`);
  }
  const w = meta.autoOrient?.width ?? meta.width ?? 0;
  const h = meta.autoOrient?.height ?? meta.height ?? 0;
  if (!w || !h) throw new ImageError(`${name}: cannot tell the image's size`);
  if (w > MAX_SIDE || h > MAX_SIDE)
    throw new ImageError(
      `${name} is ${w}×${h} pixels; photos up to ${MAX_SIDE} pixels on a side are accepted (scale it down first)`,
    );
  try {
    const { data, info } = await sharp(file, { limitInputPixels: MAX_SIDE * MAX_SIDE })
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`${info.channels} channels after decoding`);
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
    };
  } catch (e) {
    throw new ImageError(`${name} could not be decoded: ${(e as Error).message}`);
  }
}

/** An RgbImage as a [1, 3, H, W] float32 tensor in the generator's [-1, 1]. */
export function rgbToSigned(img: RgbImage): Float32Array {
  const px = img.width * img.height;
  const out = new Float32Array(3 * px);
  for (let i = 0; i < px; i++)
    for (let c = 0; c < 3; c++) out[c * px + i] = (img.data[3 * i + c] / 255) * 2 - 1;
  return out;
}

/** Encodes an RgbImage as PNG. */
export function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toBuffer();
}
