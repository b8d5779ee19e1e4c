/**
 * Face detection and 68 landmarks as face-api does them (TinyFaceDetector.locateFaces, then
 * FaceLandmark68Net.detectLandmarks on each box), on the nets of ./nets.ts.
 */
import sharp from 'sharp';
import type { RgbImage } from './image.js';
import { type FaceNets, faceNets, LANDMARK_INPUT, TINY_FACE_DETECTOR } from './nets.js';

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Face {
  box: Box;
  score: number;
  /** 68 (x, y) points in image pixels, dlib/iBUG order (jaw 0-16, brows, nose, eyes 36-47, mouth 48-67). */
  landmarks: [number, number][];
}

export interface DetectOptions {
  /** Detector input side, a multiple of 32 (face-api's default 416; larger finds smaller faces). */
  inputSize?: number;
  /** Objectness above which a box counts (face-api's default 0.5). */
  scoreThreshold?: number;
  nets?: FaceNets;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Raw interleaved RGB → planar float [1, 3, h, w] in 0..255 (what face-api's nets take). */
function planar(data: Uint8Array | Buffer, w: number, h: number): Float32Array {
  const px = w * h;
  const out = new Float32Array(3 * px);
  for (let i = 0; i < px; i++) for (let c = 0; c < 3; c++) out[c * px + i] = data[3 * i + c];
  return out;
}

const raw = (img: RgbImage) =>
  sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });

function iou(a: Box, b: Box): number {
  const w = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const h = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = w * h;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

/** Greedy non-maximum suppression (face-api's ops/nonMaxSuppression): best first, drop overlaps > iou. */
export function nonMaxSuppression(
  boxes: readonly Box[],
  scores: readonly number[],
  threshold: number,
): number[] {
  let order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const pick: number[] = [];
  while (order.length) {
    const cur = order[0];
    pick.push(cur);
    order = order.slice(1).filter((i) => iou(boxes[cur], boxes[i]) <= threshold);
  }
  return pick;
}

/**
 * TinyFaceDetector: the photo padded to a square at the bottom/right (toBatchTensor(size, false)), scaled
 * to S×S, then each cell's 5 anchor boxes decoded as YOLOv2 does and the overlaps suppressed.
 */
export async function detectBoxes(
  img: RgbImage,
  opts: DetectOptions = {},
): Promise<{ box: Box; score: number }[]> {
  const S = opts.inputSize ?? 416;
  const threshold = opts.scoreThreshold ?? 0.5;
  const side = Math.max(img.width, img.height);
  // Scaled first, then padded: the same picture as padding then scaling, without a full-size square.
  const w = Math.max(1, Math.round((img.width * S) / side));
  const h = Math.max(1, Math.round((img.height * S) / side));
  const input = await raw(img)
    .resize(w, h, { kernel: 'linear', fit: 'fill' })
    .extend({ right: S - w, bottom: S - h, background: { r: 0, g: 0, b: 0 } })
    .raw()
    .toBuffer();
  const net = await (opts.nets ?? faceNets()).detector(S);
  const { boxes: out } = await net.run({ image: { shape: [1, 3, S, S], data: planar(input, S, S) } });
  const n = out.shape[2]; // [1, 5·5, n, n]: channel = anchor·5 + (tx, ty, tw, th, objectness)
  const d = out.data as Float32Array;
  const at = (a: number, k: number, row: number, col: number) => d[((a * 5 + k) * n + row) * n + col];
  const boxes: Box[] = [];
  const scores: number[] = [];
  const anchors = TINY_FACE_DETECTOR.anchors;
  for (let row = 0; row < n; row++)
    for (let col = 0; col < n; col++)
      for (let a = 0; a < anchors.length; a++) {
        const score = sigmoid(at(a, 4, row, col));
        if (score <= threshold) continue;
        // Cell-relative centre and anchor-scaled size, as fractions of the padded square.
        const cx = (col + sigmoid(at(a, 0, row, col))) / n;
        const cy = (row + sigmoid(at(a, 1, row, col))) / n;
        const bw = (Math.exp(at(a, 2, row, col)) * anchors[a][0]) / n;
        const bh = (Math.exp(at(a, 3, row, col)) * anchors[a][1]) / n;
        boxes.push({ x: (cx - bw / 2) * side, y: (cy - bh / 2) * side, width: bw * side, height: bh * side });
        scores.push(score);
      }
  return nonMaxSuppression(boxes, scores, TINY_FACE_DETECTOR.iouThreshold).map((i) => ({
    box: boxes[i],
    score: scores[i],
  }));
}

/**
 * FaceLandmark68Net on one box: the box (clipped to the image) cut out, padded to a centred square
 * (toBatchTensor(112, true)), scaled to 112², and the 136 outputs mapped back as face-api's postProcess does.
 */
export async function detectLandmarks(
  img: RgbImage,
  box: Box,
  nets: FaceNets = faceNets(),
): Promise<[number, number][]> {
  const x0 = Math.max(0, Math.round(box.x));
  const y0 = Math.max(0, Math.round(box.y));
  const x1 = Math.min(img.width, Math.round(box.x + box.width));
  const y1 = Math.min(img.height, Math.round(box.y + box.height));
  const w = x1 - x0;
  const h = y1 - y0;
  if (w < 1 || h < 1) return [];
  const diff = Math.abs(w - h);
  const after = Math.round(diff * 0.5);
  const before = diff - after;
  const side = Math.max(w, h);
  const crop = await raw(img)
    .extract({ left: x0, top: y0, width: w, height: h })
    .extend(
      w < h
        ? { left: before, right: after, background: { r: 0, g: 0, b: 0 } }
        : { top: before, bottom: after, background: { r: 0, g: 0, b: 0 } },
    )
    .raw()
    .toBuffer();
  const S = LANDMARK_INPUT;
  const input = await sharp(crop, { raw: { width: side, height: side, channels: 3 } })
    .resize(S, S, { kernel: 'linear', fit: 'fill' })
    .raw()
    .toBuffer();
  const net = await nets.landmarks();
  const { landmarks } = await net.run({ face: { shape: [1, 3, S, S], data: planar(input, S, S) } });
  const p = landmarks.data as Float32Array;
  // Outputs are fractions of the padded square; face-api takes the padding as |w − h|/2 on the short side.
  const padX = w < h ? diff / 2 : 0;
  const padY = h < w ? diff / 2 : 0;
  return Array.from({ length: 68 }, (_, i) => [p[2 * i] * side - padX + x0, p[2 * i + 1] * side - padY + y0]);
}

/** Every face in the photo, left to right, with its landmarks. */
export async function detectFaces(img: RgbImage, opts: DetectOptions = {}): Promise<Face[]> {
  const nets = opts.nets ?? faceNets();
  const found = await detectBoxes(img, { ...opts, nets });
  found.sort((a, b) => a.box.x - b.box.x);
  const faces: Face[] = [];
  for (const f of found) faces.push({ ...f, landmarks: await detectLandmarks(img, f.box, nets) });
  return faces;
}
