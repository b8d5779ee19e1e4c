/**
 * CLIP's image preprocessing, `clip._transform(224)`: Resize(224, BICUBIC) of the short side, CenterCrop(224),
 * ToTensor, Normalize. torchvision hands PIL images to Pillow's `Image.resize`, whose bicubic filter
 * antialiases when shrinking and works in 22-bit fixed point with a uint8 rounding between its horizontal and
 * vertical passes. We reproduce Pillow's libImaging/Resample.c arithmetic exactly, so the output matches
 * the reference bit for bit rather than only approximately.
 */
import sharp from 'sharp';
import { CLIP_MEAN, CLIP_STD } from './model.js';

export { CLIP_MEAN, CLIP_STD };
export const CLIP_INPUT_SIZE = 224;

/** Interleaved 8-bit RGB, row-major (HWC). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, first input index and int weights. */
function coefficients(
  inSize: number,
  outSize: number,
): { ksize: number; bounds: Int32Array; kk: Int32Array } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * ONE : 0.5 + k * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : Math.min(v, 255);
}

/**
 * `Image.resize((outW, outH), Image.BICUBIC)` for 8-bit images with `channels` interleaved bands, exactly as
 * Pillow computes it (horizontal pass, uint8 clip, vertical pass).
 */
export function resizeBicubicPil(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  outW: number,
  outH: number,
): Uint8Array {
  if (src.length !== width * height * channels)
    throw new RangeError(`image data has ${src.length} bytes, expected ${width}x${height}x${channels}`);
  let img = src;
  let w = width;
  if (outW !== width) {
    const { ksize, bounds, kk } = coefficients(width, outW);
    const out = new Uint8Array(outW * height * channels);
    for (let y = 0; y < height; y++) {
      const row = y * width * channels;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        for (let c = 0; c < channels; c++) {
          let ss = ONE / 2;
          for (let x = 0; x < xmax; x++) ss += img[row + (x + xmin) * channels + c] * kk[xx * ksize + x];
          out[(y * outW + xx) * channels + c] = clip8(ss);
        }
      }
    }
    img = out;
    w = outW;
  }
  if (outH !== height) {
    const { ksize, bounds, kk } = coefficients(height, outH);
    const out = new Uint8Array(w * outH * channels);
    const stride = w * channels;
    for (let yy = 0; yy < outH; yy++) {
      const ymin = bounds[yy * 2];
      const ymax = bounds[yy * 2 + 1];
      for (let i = 0; i < stride; i++) {
        let ss = ONE / 2;
        for (let y = 0; y < ymax; y++) ss += img[(y + ymin) * stride + i] * kk[yy * ksize + y];
        out[yy * stride + i] = clip8(ss);
      }
    }
    img = out;
  }
  return img === src ? src.slice() : img;
}

/** torchvision's size rule for Resize(int): the short side becomes `size`, the long side int(size*long/short). */
export function resizedSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

/** Python's round() on .5 ties goes to the even neighbour; CenterCrop relies on it for odd margins. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * CLIP preprocessing of an RGB image: Float32Array NCHW [1, 3, size, size], normalized with CLIP's mean/std.
 * Takes raw uint8 HWC RGB so callers with rendered images need no file round trip.
 */
export function preprocessRgb(image: RgbImage, size = CLIP_INPUT_SIZE): Float32Array {
  const { data, width, height } = image;
  if (!(width > 0 && height > 0) || data.length !== width * height * 3)
    throw new RangeError(`expected ${width}x${height} RGB bytes (${width * height * 3}), got ${data.length}`);
  // torchvision returns the image untouched when the short side already has the target size.
  const [rw, rh] =
    (width <= height && width === size) || (height <= width && height === size)
      ? [width, height]
      : resizedSize(width, height, size);
  const resized = rw === width && rh === height ? data : resizeBicubicPil(data, width, height, 3, rw, rh);
  if (rw < size || rh < size)
    throw new RangeError(`resized image ${rw}x${rh} is smaller than the crop ${size}`);
  const top = roundHalfEven((rh - size) / 2);
  const left = roundHalfEven((rw - size) / 2);
  const out = new Float32Array(3 * size * size);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const mean = f(CLIP_MEAN[c]);
    const std = f(CLIP_STD[c]);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const v = f(resized[((y + top) * rw + x + left) * 3 + c] / 255);
        out[(c * size + y) * size + x] = f(f(v - mean) / std);
      }
  }
  return out;
}

/** Decodes any image sharp reads (PNG, JPEG, WebP, …) to 8-bit sRGB without alpha. */
export async function loadRgb(file: string | Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({
    resolveWithObject: true,
  });
  if (info.channels !== 3) throw new Error(`expected 3 channels after decoding, got ${info.channels}`);
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
  };
}

/** `preprocess(Image.open(file))` of OpenAI's CLIP: Float32Array [1, 3, 224, 224]. */
export async function preprocessImageFile(
  file: string | Uint8Array,
  size = CLIP_INPUT_SIZE,
): Promise<Float32Array> {
  return preprocessRgb(await loadRgb(file), size);
}
