/**
 * Drawing a face: the attributes become an SVG on a 64×64 canvas (bold shapes, so that every attribute is
 * legible at 64²), and sharp (librsvg) rasterizes it at any size. The SVG text depends on the face alone, so
 * the pixels are the same on every run of the same sharp build.
 *
 * Layers, back to front: background, shoulders, then the head group (moved, tilted and scaled by the
 * jitter): hair behind the head, ears, face, beard, hair in front, eyebrows, eyes, nose, mouth, glasses.
 */
import sharp from 'sharp';
import type { Face, Labels } from './attributes.js';

const HAIR: Record<Labels['hairColor'], string> = {
  black: '#1c1c1c',
  brown: '#6e3f1c',
  blonde: '#f2d35e',
  red: '#d4431c',
  grey: '#a9a9a9',
  purple: '#8d3cc8',
  blue: '#2e63da',
};

const SKIN: Record<Labels['skinTone'], string> = {
  light: '#f7d8c0',
  tan: '#e0aa78',
  brown: '#a66a40',
  dark: '#5c3822',
};

const BACKGROUND: Record<Labels['background'], string> = {
  white: '#f5f5f5',
  blue: '#a6cbef',
  green: '#afdfab',
  yellow: '#f4e49b',
  pink: '#f5b9d0',
  orange: '#f7c290',
};

/** Mixes a #rrggbb colour toward white (t > 0) or black (t < 0) by |t|. */
function shade(hex: string, t: number): string {
  const n = Number.parseInt(hex.slice(1), 16);
  const ch = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((c) =>
    Math.round(t >= 0 ? c + (255 - c) * t : c * (1 + t)),
  );
  return `#${ch.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

/** Two decimals keep the SVG short and its text stable. */
const r2 = (x: number) => Math.round(x * 100) / 100;

/** The SVG of a face on a 64×64 viewBox, drawn at `size`² pixels. */
export function faceSvg(face: Face, size = 64): string {
  const { labels: L, jitter: J } = face;
  const hair = shade(HAIR[L.hairColor], 0.1 * J.hairShade);
  const skin = shade(SKIN[L.skinTone], 0.06 * J.skinShade);
  const skinDark = shade(SKIN[L.skinTone], -0.25);
  const bg = shade(BACKGROUND[L.background], 0.05 * J.backgroundShade);
  const shirt = `hsl(${r2(J.shirtHue)},45%,${r2(28 + 35 * J.shirtLight)}%)`;
  const ink = '#1a1a1a';

  const cx = 32;
  const cy = 34;
  const rx = r2(12.5 * J.faceWidth);
  const ry = 16;
  const top = cy - ry;
  const turn = J.yaw * 2.2; // features slide with the head turn
  const eyeDx = 5.6 * J.eyeSpacing;
  const eyeY = 32;
  const eyeL = r2(cx - eyeDx + turn);
  const eyeR = r2(cx + eyeDx + turn);

  const back: string[] = [];
  const front: string[] = [];
  const hairPath = (d: string) => `<path d="${d}" fill="${hair}"/>`;
  // The hair cap over the skull down to a hairline at y = hl (curved for short/long, straight for bob).
  const cap = (hl: number, curve: number) =>
    hairPath(
      `M${r2(cx - rx - 1)} ${cy - 2} C${r2(cx - rx - 1)} ${top - 6} ${r2(cx + rx + 1)} ${top - 6} ${r2(cx + rx + 1)} ${cy - 2} ` +
        `L${r2(cx + rx - 1.5)} ${hl} Q${cx} ${hl - curve} ${r2(cx - rx + 1.5)} ${hl} Z`,
    );
  switch (L.hairstyle) {
    case 'bald':
      // Tufts above the ears keep the hair colour visible.
      for (const s of [-1, 1])
        front.push(
          `<ellipse cx="${r2(cx + s * (rx - 0.5))}" cy="${cy - 3}" rx="2.6" ry="5" fill="${hair}"/>`,
        );
      break;
    case 'short':
      front.push(cap(cy - 9, 6));
      break;
    case 'long':
      back.push(
        `<rect x="${r2(cx - rx - 4)}" y="${top - 2}" width="${r2(2 * rx + 8)}" height="${66 - top}" rx="8" fill="${hair}"/>`,
      );
      front.push(cap(cy - 9, 6));
      break;
    case 'bob cut':
      // Straight fringe and straight sides that stop at the jaw, over the ears.
      front.push(
        hairPath(
          `M${r2(cx - rx - 3.5)} ${cy + 9} L${r2(cx - rx - 3.5)} ${cy - 4} C${r2(cx - rx - 3.5)} ${top - 8} ${r2(cx + rx + 3.5)} ${top - 8} ${r2(cx + rx + 3.5)} ${cy - 4} ` +
            `L${r2(cx + rx + 3.5)} ${cy + 9} L${r2(cx + rx - 1)} ${cy + 9} L${r2(cx + rx - 1)} ${cy - 6} ` +
            `L${r2(cx - rx + 1)} ${cy - 6} L${r2(cx - rx + 1)} ${cy + 9} Z`,
        ),
      );
      break;
    case 'mohawk':
      front.push(
        hairPath(
          `M${cx - 4} ${top + 5} L${cx - 4.5} ${top - 3} Q${cx} ${top - 13} ${cx + 4.5} ${top - 3} L${cx + 4} ${top + 5} Z`,
        ),
      );
      break;
    case 'afro': {
      // A puffy cloud of circles around the head.
      const n = 11;
      for (let k = 0; k < n; k++) {
        const a = Math.PI * (0.9 + (1.2 * k) / (n - 1));
        back.push(
          `<circle cx="${r2(cx + 17 * Math.cos(a))}" cy="${r2(cy - 4 + 17 * Math.sin(a))}" r="6.5" fill="${hair}"/>`,
        );
      }
      back.push(`<circle cx="${cx}" cy="${cy - 5}" r="17" fill="${hair}"/>`);
      front.push(cap(cy - 9, 4));
      break;
    }
  }

  const beard =
    L.beard === 'beard'
      ? `<path d="M${r2(cx - rx + 0.5)} ${cy + 1} Q${r2(cx - rx + 1)} ${cy + ry + 5} ${cx} ${cy + ry + 4} Q${r2(cx + rx - 1)} ${cy + ry + 5} ${r2(cx + rx - 0.5)} ${cy + 1} ` +
        `Q${cx} ${cy + 5} ${r2(cx - rx + 0.5)} ${cy + 1} Z" fill="${hair}"/>` +
        `<ellipse cx="${r2(cx + turn * 0.8)}" cy="${cy + 9.5}" rx="${r2(6 * J.mouthWidth)}" ry="4" fill="${skin}"/>`
      : '';

  // Eyebrows: raised when surprised, slanted down toward the nose when frowning.
  const browY = L.expression === 'surprised' ? eyeY - 8 : eyeY - 5.5;
  const slant = L.expression === 'frowning' ? 2.2 : 0;
  const brows = [-1, 1]
    .map((s) => {
      const ex = s < 0 ? eyeL : eyeR;
      return `<path d="M${r2(ex - 3.2 * s)} ${r2(browY - slant * 0.3)} L${r2(ex + 3.2 * s)} ${r2(browY + slant)}" stroke="${hair}" stroke-width="2.2" stroke-linecap="round"/>`;
    })
    .join('');

  const pupil = r2(J.yaw * 0.8);
  const eyes =
    L.glasses === 'sunglasses'
      ? ''
      : [eyeL, eyeR]
          .map((ex) =>
            L.eyes === 'open'
              ? `<ellipse cx="${ex}" cy="${eyeY}" rx="3.1" ry="3.3" fill="#ffffff" stroke="${ink}" stroke-width="0.6"/>` +
                `<circle cx="${r2(ex + pupil)}" cy="${eyeY + 0.3}" r="1.8" fill="${ink}"/>`
              : `<path d="M${r2(ex - 3)} ${eyeY} Q${ex} ${eyeY + 3} ${r2(ex + 3)} ${eyeY}" stroke="${ink}" stroke-width="1.5" fill="none" stroke-linecap="round"/>`,
          )
          .join('');

  const nose = `<path d="M${r2(cx + turn * 1.3)} ${cy} L${r2(cx + turn * 1.3 - 1.6)} ${cy + 4.2} L${r2(cx + turn * 1.3 + 0.6)} ${cy + 4.2}" stroke="${skinDark}" stroke-width="1.2" fill="none" stroke-linejoin="round"/>`;

  const mx = r2(cx + turn);
  const my = cy + 9.5;
  const mw = r2(4.6 * J.mouthWidth);
  let mouth: string;
  switch (L.expression) {
    case 'smiling':
      mouth = `<path d="M${r2(mx - mw)} ${my - 1.5} Q${mx} ${my + 6} ${r2(mx + mw)} ${my - 1.5} Z" fill="#8c1c1c" stroke="#8c1c1c" stroke-width="0.8" stroke-linejoin="round"/>`;
      break;
    case 'frowning':
      mouth = `<path d="M${r2(mx - mw)} ${my + 2.2} Q${mx} ${my - 3.2} ${r2(mx + mw)} ${my + 2.2}" stroke="#8c1c1c" stroke-width="1.9" fill="none" stroke-linecap="round"/>`;
      break;
    case 'surprised':
      mouth = `<ellipse cx="${mx}" cy="${my + 0.5}" rx="2.6" ry="3.4" fill="#5a1010"/>`;
      break;
    default:
      mouth = `<path d="M${r2(mx - mw * 0.8)} ${my} L${r2(mx + mw * 0.8)} ${my}" stroke="#8c1c1c" stroke-width="1.7" stroke-linecap="round"/>`;
  }

  let glasses = '';
  if (L.glasses !== 'none') {
    const bridge = `<path d="M${r2(eyeL + 3.6)} ${eyeY - 0.5} L${r2(eyeR - 3.6)} ${eyeY - 0.5}" stroke="${ink}" stroke-width="1.5"/>`;
    const arms = `<path d="M${r2(eyeL - 4.3)} ${eyeY - 1} L${r2(cx - rx)} ${eyeY - 2} M${r2(eyeR + 4.3)} ${eyeY - 1} L${r2(cx + rx)} ${eyeY - 2}" stroke="${ink}" stroke-width="1.3"/>`;
    glasses =
      L.glasses === 'glasses'
        ? [eyeL, eyeR]
            .map(
              (ex) =>
                `<circle cx="${ex}" cy="${eyeY}" r="4.4" fill="none" stroke="${ink}" stroke-width="1.6"/>`,
            )
            .join('') +
          bridge +
          arms
        : [eyeL, eyeR]
            .map(
              (ex) =>
                `<rect x="${r2(ex - 4.6)}" y="${eyeY - 3.6}" width="9.2" height="7" rx="2.6" fill="#0b0b0b"/>`,
            )
            .join('') +
          bridge +
          arms;
  }

  const head =
    back.join('') +
    [-1, 1]
      .map((s) => `<ellipse cx="${r2(cx + s * rx)}" cy="${cy + 1}" rx="2.6" ry="3.8" fill="${skin}"/>`)
      .join('') +
    `<ellipse cx="${cx}" cy="${cy}" rx="${rx}" ry="${ry}" fill="${skin}"/>` +
    beard +
    front.join('') +
    brows +
    eyes +
    nose +
    mouth +
    glasses;

  const pivot = `${cx} ${cy + 4}`;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 64 64">` +
    `<rect width="64" height="64" fill="${bg}"/>` +
    `<g transform="translate(${r2(J.dx)} ${r2(J.dy)})">` +
    `<ellipse cx="32" cy="71" rx="25" ry="16" fill="${shirt}"/>` +
    `<rect x="28" y="${cy + 10}" width="8" height="12" fill="${skin}"/>` +
    `<g transform="rotate(${r2(J.tilt)} ${pivot}) translate(${pivot}) scale(${r2(J.scale)}) translate(${-cx} ${-(cy + 4)})">${head}</g>` +
    '</g></svg>'
  );
}

/** A face as RGB bytes, [size, size, 3] row-major. */
export async function renderFace(face: Face, size = 64): Promise<Uint8Array> {
  const buf = await sharp(Buffer.from(faceSvg(face, size)))
    .removeAlpha()
    .raw()
    .toBuffer();
  if (buf.length !== size * size * 3)
    throw new Error(`sharp rendered ${buf.length} bytes for a ${size}² RGB face`);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/** Several faces into one buffer [n, size, size, 3], `parallel` renders in flight at a time. */
export async function renderFaces(faces: readonly Face[], size = 64, parallel = 4): Promise<Uint8Array> {
  const px = size * size * 3;
  const out = new Uint8Array(faces.length * px);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < faces.length; i = next++) out.set(await renderFace(faces[i], size), i * px);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, faces.length) }, worker));
  return out;
}

/** HWC bytes -> NCHW floats in [-1, 1] (the generator's and the classifier's range). */
export function toSignedNCHW(rgb: Uint8Array, n: number, size: number): Float32Array {
  const hw = size * size;
  const out = new Float32Array(n * 3 * hw);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < hw; p++)
      for (let c = 0; c < 3; c++) out[i * 3 * hw + c * hw + p] = rgb[(i * hw + p) * 3 + c] / 127.5 - 1;
  return out;
}
