/**
 * Photo → FFHQ-aligned face crop: detect the faces (TinyFaceDetector), find the 68 landmarks of the chosen
 * one (FaceLandmark68Net), then align it as e4e's align_face does, to the generator's size.
 */
import { type DetectOptions, detectFaces, type Face } from './detect.js';
import { type AlignQuad, alignImage, alignQuad } from './ffhq.js';
import { ImageError, type RgbImage } from './image.js';

export { type Box, type DetectOptions, detectFaces, type Face } from './detect.js';
export { type AlignQuad, alignImage, alignQuad, quadWarp } from './ffhq.js';
export { ImageError, MAX_SIDE, type RgbImage, readPhoto, rgbToSigned } from './image.js';

/** Smallest face box accepted: below it the 68-point net sees mostly upscaled blur. */
export const MIN_FACE = 40;

export interface AlignOptions extends DetectOptions {
  /** Which face (1-based, left to right) when the photo has several; required then. */
  face?: number;
  /** Smallest face box side in pixels (default MIN_FACE). */
  minFace?: number;
}

export interface Aligned {
  image: RgbImage;
  face: Face;
  quad: AlignQuad;
  /** How many faces the photo holds. */
  faceCount: number;
}

const where = (f: Face) =>
  `at (${Math.round(f.box.x)}, ${Math.round(f.box.y)}), ${Math.round(f.box.width)} px wide`;

/** The face to align, or an ImageError that says why there is none. */
export function chooseFace(faces: readonly Face[], opts: AlignOptions = {}): Face {
  if (faces.length === 0)
    throw new ImageError(
      'no face found in the photo; use a photo with one face, seen roughly from the front, at least ' +
        `${opts.minFace ?? MIN_FACE} pixels wide (an image that already is the generator's crop, such as a world face, ` +
        'needs no alignment: leave it off)',
    );
  let face: Face;
  if (opts.face !== undefined) {
    if (!Number.isInteger(opts.face) || opts.face < 1 || opts.face > faces.length)
      throw new ImageError(
        `face ${opts.face} asked for, but the photo has ${faces.length} (numbered 1 to ${faces.length}, left to right)`,
      );
    face = faces[opts.face - 1];
  } else if (faces.length > 1) {
    throw new ImageError(
      `${faces.length} faces found (${faces.map((f, i) => `${i + 1}: ${where(f)}`).join('; ')}); ` +
        'choose one (--face N, numbered left to right) or crop the photo to one face',
    );
  } else face = faces[0];
  const min = opts.minFace ?? MIN_FACE;
  const side = Math.min(face.box.width, face.box.height);
  if (side < min)
    throw new ImageError(
      `the face is only ${Math.round(side)} pixels wide; at least ${min} are needed for reliable landmarks ` +
        '(use a larger or closer photo)',
    );
  return face;
}

/** Detects, chooses and aligns one face of `photo` to size×size. */
export async function alignPhoto(photo: RgbImage, size: number, opts: AlignOptions = {}): Promise<Aligned> {
  const faces = await detectFaces(photo, opts);
  const face = chooseFace(faces, opts);
  const quad = alignQuad(face.landmarks);
  return { image: await alignImage(photo, quad, size), face, quad, faceCount: faces.length };
}
