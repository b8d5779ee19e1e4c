/**
 * FFHQ alignment, as `align_face` in e4e's and StyleCLIP's utils/alignment.py computes it from the 68
 * landmarks: an oriented square from the eye and mouth centres, then shrink (Lanczos, when the square is
 * over twice the output), crop (with a border), pad (reflect, blurred and faded towards the median
 * colour, when the square leaves the photo) and the quad warp (PIL's QUAD transform, bilinear) to
 * size×size. The output size is the generator's (e4e uses 256, FFHQ itself 1024).
 */
import sharp from 'sharp';
import type { RgbImage } from './image.js';

export type Point = [number, number];

export interface AlignQuad {
  /** Corners NW, SW, SE, NE in photo pixels. */
  quad: [Point, Point, Point, Point];
  /** Side of the square (np.hypot(*x) * 2). */
  qsize: number;
}

const meanOf = (pts: readonly Point[]): Point => {
  let x = 0;
  let y = 0;
  for (const p of pts) {
    x += p[0];
    y += p[1];
  }
  return [x / pts.length, y / pts.length];
};

/** The oriented crop square ("Choose oriented crop rectangle" of align_face). */
export function alignQuad(lm: readonly Point[]): AlignQuad {
  if (lm.length !== 68) throw new Error(`alignment needs 68 landmarks, got ${lm.length}`);
  const eyeLeft = meanOf(lm.slice(36, 42));
  const eyeRight = meanOf(lm.slice(42, 48));
  const eyeAvg: Point = [(eyeLeft[0] + eyeRight[0]) / 2, (eyeLeft[1] + eyeRight[1]) / 2];
  const eyeToEye: Point = [eyeRight[0] - eyeLeft[0], eyeRight[1] - eyeLeft[1]];
  const mouthAvg: Point = [(lm[48][0] + lm[54][0]) / 2, (lm[48][1] + lm[54][1]) / 2];
  const eyeToMouth: Point = [mouthAvg[0] - eyeAvg[0], mouthAvg[1] - eyeAvg[1]];
  // x = eye_to_eye − flipud(eye_to_mouth)·[−1, 1]: the eye line, corrected by the face's vertical axis.
  let x: Point = [eyeToEye[0] + eyeToMouth[1], eyeToEye[1] - eyeToMouth[0]];
  const len = Math.hypot(...x);
  const scale = Math.max(Math.hypot(...eyeToEye) * 2, Math.hypot(...eyeToMouth) * 1.8);
  x = [(x[0] / len) * scale, (x[1] / len) * scale];
  const y: Point = [-x[1], x[0]]; // flipud(x)·[−1, 1]
  const c: Point = [eyeAvg[0] + eyeToMouth[0] * 0.1, eyeAvg[1] + eyeToMouth[1] * 0.1];
  const quad: [Point, Point, Point, Point] = [
    [c[0] - x[0] - y[0], c[1] - x[1] - y[1]],
    [c[0] - x[0] + y[0], c[1] - x[1] + y[1]],
    [c[0] + x[0] + y[0], c[1] + x[1] + y[1]],
    [c[0] + x[0] - y[0], c[1] + x[1] - y[1]],
  ];
  return { quad, qsize: Math.hypot(...x) * 2 };
}

/** numpy's rint: round half to even. */
function rint(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function crop(img: RgbImage, x0: number, y0: number, x1: number, y1: number): RgbImage {
  const w = x1 - x0;
  const h = y1 - y0;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    out.set(img.data.subarray(((y + y0) * img.width + x0) * 3, ((y + y0) * img.width + x1) * 3), y * w * 3);
  return { data: out, width: w, height: h };
}

/** numpy's 'reflect' index (mirror without repeating the edge sample). */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let k = i % period;
  if (k < 0) k += period;
  return k < n ? k : period - k;
}

/** np.median over the pixels of one channel. */
function median(values: Float32Array): number {
  const s = Float32Array.from(values).sort();
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** The "Pad" step: reflect-pad, blend towards a blur near the edges, then towards the median colour. */
async function padReflect(
  img: RgbImage,
  pad: [number, number, number, number],
  qsize: number,
): Promise<RgbImage> {
  const [pl, pt, pr, pb] = pad;
  const w = img.width + pl + pr;
  const h = img.height + pt + pb;
  const padded = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = reflect(y - pt, img.height);
    for (let x = 0; x < w; x++) {
      const s = (sy * img.width + reflect(x - pl, img.width)) * 3;
      const d = (y * w + x) * 3;
      padded[d] = img.data[s];
      padded[d + 1] = img.data[s + 1];
      padded[d + 2] = img.data[s + 2];
    }
  }
  // scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) (truncated at 4σ, amplitude e⁻⁸): libvips' Gaussian
  // blur in float precision, cut at sharp's smallest amplitude 0.001 (3.7σ; the tails hold < 0.03 %).
  const sigma = qsize * 0.02;
  const blurred = new Float32Array(w * h * 3);
  if (sigma >= 0.3) {
    const buf = await sharp(padded, { raw: { width: w, height: h, channels: 3 } })
      .blur({ sigma, precision: 'float', minAmplitude: 0.001 })
      .raw({ depth: 'float' })
      .toBuffer();
    blurred.set(new Float32Array(buf.buffer, buf.byteOffset, w * h * 3));
  } else for (let i = 0; i < padded.length; i++) blurred[i] = padded[i];
  const out = new Uint8Array(w * h * 3);
  const med = [0, 1, 2].map(() => new Float32Array(w * h)); // the median is of the blurred-blend, per channel
  const blend = new Float32Array(w * h * 3);
  const masks = new Float32Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const mask = Math.max(1 - Math.min(x / pl, (w - 1 - x) / pr), 1 - Math.min(y / pt, (h - 1 - y) / pb));
      const i = y * w + x;
      masks[i] = mask;
      const a = Math.min(Math.max(mask * 3 + 1, 0), 1);
      for (let c = 0; c < 3; c++) {
        const v = padded[i * 3 + c];
        const b = v + (blurred[i * 3 + c] - v) * a;
        blend[i * 3 + c] = b;
        med[c][i] = b;
      }
    }
  const medians = med.map(median);
  for (let i = 0; i < w * h; i++) {
    const a = Math.min(Math.max(masks[i], 0), 1);
    for (let c = 0; c < 3; c++) {
      const v = blend[i * 3 + c];
      out[i * 3 + c] = Math.min(Math.max(rint(v + (medians[c] - v) * a), 0), 255);
    }
  }
  return { data: out, width: w, height: h };
}

/**
 * PIL's Image.transform(size, QUAD, quad + 0.5, BILINEAR): output pixel centre (u + ½, v + ½) maps
 * bilinearly onto the quad (NW, SW, SE, NE); samples outside the photo are black; PIL truncates the
 * interpolated value to 8 bits (with it the reference fixture matches exactly).
 */
export function quadWarp(img: RgbImage, quad: readonly Point[], size: number): RgbImage {
  const [nw, sw, se, ne] = quad.map(([x, y]) => [x + 0.5, y + 0.5]);
  const As = 1 / size;
  const a = [nw[0], (ne[0] - nw[0]) * As, (sw[0] - nw[0]) * As, (se[0] - sw[0] - ne[0] + nw[0]) * As * As];
  const b = [nw[1], (ne[1] - nw[1]) * As, (sw[1] - nw[1]) * As, (se[1] - sw[1] - ne[1] + nw[1]) * As * As];
  const { width: W, height: H, data } = img;
  const out = new Uint8Array(size * size * 3);
  for (let v = 0; v < size; v++) {
    const yo = v + 0.5;
    for (let u = 0; u < size; u++) {
      const xo = u + 0.5;
      let xin = a[0] + a[1] * xo + a[2] * yo + a[3] * xo * yo; // PIL's order of operations, for equal bits
      let yin = b[0] + b[1] * xo + b[2] * yo + b[3] * xo * yo;
      if (xin < 0 || xin >= W || yin < 0 || yin >= H) continue;
      xin -= 0.5;
      yin -= 0.5;
      const x = Math.floor(xin);
      const y = Math.floor(yin);
      const dx = xin - x;
      const dy = yin - y;
      // Neighbours clamped at the edges (PIL's XCLIP/YCLIP).
      const x0 = Math.max(x, 0);
      const x1 = Math.min(x + 1, W - 1);
      const r0 = Math.max(y, 0) * W;
      const r1 = Math.min(y + 1, H - 1) * W;
      const i00 = (r0 + x0) * 3;
      const i01 = (r0 + x1) * 3;
      const i10 = (r1 + x0) * 3;
      const i11 = (r1 + x1) * 3;
      const o = (v * size + u) * 3;
      for (let c = 0; c < 3; c++) {
        const top = data[i00 + c] + (data[i01 + c] - data[i00 + c]) * dx;
        const bottom = data[i10 + c] + (data[i11 + c] - data[i10 + c]) * dx;
        out[o + c] = top + (bottom - top) * dy; // a Uint8Array store truncates, as PIL's cast does
      }
    }
  }
  return { data: out, width: size, height: size };
}

/** align_face's image steps for a quad: the aligned size×size crop. */
export async function alignImage(photo: RgbImage, aq: AlignQuad, size: number): Promise<RgbImage> {
  let img = photo;
  let quad = aq.quad.map((p) => [...p] as Point);
  let qsize = aq.qsize;

  // Shrink.
  const shrink = Math.floor((qsize / size) * 0.5);
  if (shrink > 1) {
    const rw = rint(img.width / shrink);
    const rh = rint(img.height / shrink);
    const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
      .resize(rw, rh, { kernel: 'lanczos3', fit: 'fill' })
      .raw()
      .toBuffer();
    img = { data: new Uint8Array(buf.buffer, buf.byteOffset, buf.length), width: rw, height: rh };
    quad = quad.map(([x, y]) => [x / shrink, y / shrink]);
    qsize /= shrink;
  }

  // Crop.
  const border = Math.max(rint(qsize * 0.1), 3);
  const bbox = () => [
    Math.floor(Math.min(...quad.map((p) => p[0]))),
    Math.floor(Math.min(...quad.map((p) => p[1]))),
    Math.ceil(Math.max(...quad.map((p) => p[0]))),
    Math.ceil(Math.max(...quad.map((p) => p[1]))),
  ];
  let [c0, c1, c2, c3] = bbox();
  c0 = Math.max(c0 - border, 0);
  c1 = Math.max(c1 - border, 0);
  c2 = Math.min(c2 + border, img.width);
  c3 = Math.min(c3 + border, img.height);
  if (c2 <= c0 || c3 <= c1) return quadWarp(img, quad, size); // the square lies outside the photo
  if (c2 - c0 < img.width || c3 - c1 < img.height) {
    img = crop(img, c0, c1, c2, c3);
    quad = quad.map(([x, y]) => [x - c0, y - c1]);
  }

  // Pad.
  const [p0, p1, p2, p3] = bbox();
  let pad: [number, number, number, number] = [
    Math.max(-p0 + border, 0),
    Math.max(-p1 + border, 0),
    Math.max(p2 - img.width + border, 0),
    Math.max(p3 - img.height + border, 0),
  ];
  if (Math.max(...pad) > border - 4) {
    const least = rint(qsize * 0.3);
    pad = pad.map((p) => Math.max(p, least)) as typeof pad;
    img = await padReflect(img, pad, qsize);
    quad = quad.map(([x, y]) => [x + pad[0], y + pad[1]]);
  }

  // Transform.
  return quadWarp(img, quad, size);
}
