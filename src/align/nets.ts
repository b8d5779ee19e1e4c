/**
 * The two face-api nets that alignment needs, rebuilt as graphs on our engine from the weight files that
 * ship in `@vladmandic/face-api/model/` (architectures as in vladmandic/face-api's src/tinyYolov2 and
 * src/faceFeatureExtractor):
 *
 *   TinyFaceDetector (a Tiny-YOLOv2 with separable convs), input [1, 3, S, S] (S a multiple of 32):
 *     (x − meanRgb)/255 · conv3x3 valid · leaky(0.1) · maxpool2/2
 *     · 4 × [sepconv3x3 · leaky · maxpool2/2] · sepconv · leaky · maxpool2/1 · conv1x1 → [1, 5·5, S/32, S/32]
 *     (5 anchors × (tx, ty, tw, th, objectness); every pool and conv padded as TF's 'same')
 *   FaceLandmark68Net, input [N, 3, 112, 112]:
 *     (x − meanRgb)/255 · 4 dense blocks (stride 2 each; 4 convs whose outputs are summed densely)
 *     · avgpool 7 · fc → [N, 136] (x, y of 68 points, relative to the padded square input)
 */

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Graph, type Value } from '../graph/graph.js';
import { CheckpointError } from '../io/errors.js';
import { conv2d } from '../ops/conv.js';
import { add, div, leakyRelu, max, relu, sub } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { mean } from '../ops/reduce.js';
import { pad, reshape, slice } from '../ops/shape.js';
import { compile, type Executable } from '../runtime/session.js';
import { depthwiseToOihw, type HostWeight, hwioToOihw, readTfjsWeights } from './tfjs-weights.js';

/** Where the package keeps its weights; resolved from node_modules, never downloaded. */
export function faceApiModelDir(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve('@vladmandic/face-api/package.json');
  } catch {
    throw new CheckpointError(
      '@vladmandic/face-api',
      'the npm package (a dependency of styleclip)',
      'not installed',
    );
  }
  return join(pkg, '..', 'model');
}

/** TF's 'same' padding for one axis: [before, after]. */
function samePads(n: number, k: number, s: number): [number, number] {
  const out = Math.ceil(n / s);
  const total = Math.max((out - 1) * s + k - n, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

function sameConvPads(x: Value, k: number, s: number): [number, number, number, number] {
  const [t, b] = samePads(x.shape[2], k, s);
  const [l, r] = samePads(x.shape[3], k, s);
  return [t, l, b, r];
}

/** TF's maxPool([2, 2], stride, 'same'): the padding never wins (−inf), so it is the max of 4 shifted views. */
function maxPool2Same(x: Value, stride: 1 | 2): Value {
  const [n, c, h, w] = x.shape;
  const [, pb] = samePads(h, 2, stride);
  const [, pr] = samePads(w, 2, stride);
  const xp = pad(x, [0, 0, 0, 0, 0, 0, pb, pr], -3.4e38);
  const oh = Math.ceil(h / stride);
  const ow = Math.ceil(w / stride);
  const view = (dy: number, dx: number) =>
    slice(
      xp,
      [0, 0, dy, dx],
      [n, c, dy + (oh - 1) * stride + 1, dx + (ow - 1) * stride + 1],
      [1, 1, stride, stride],
    );
  return max(max(view(0, 0), view(0, 1)), max(view(1, 0), view(1, 1)));
}

const normalizeRgb = (x: Value, meanRgb: readonly number[]): Value =>
  div(sub(x, x.graph.const(Float32Array.from(meanRgb), [1, 3, 1, 1], 'mean_rgb')), 255);

/** Weights of one face-api net as graph constants, named by their TF.js names. */
class Weights {
  constructor(
    private readonly g: Graph,
    private readonly w: Map<string, HostWeight>,
    private readonly file: string,
  ) {}
  private get(name: string): HostWeight {
    const t = this.w.get(name);
    if (!t) throw new CheckpointError(this.file, `a weight "${name}"`, 'none');
    return t;
  }
  conv(name: string): Value {
    const t = hwioToOihw(this.get(name));
    return this.g.const(t.data, t.shape, name);
  }
  depthwise(name: string): Value {
    const t = depthwiseToOihw(this.get(name));
    return this.g.const(t.data, t.shape, name);
  }
  bias(name: string): Value {
    const t = this.get(name);
    return this.g.const(t.data, [1, t.shape[0], 1, 1], name); // [C] -> [1, C, 1, 1]
  }
  raw(name: string): Value {
    const t = this.get(name);
    return this.g.const(t.data, t.shape, name);
  }
}

/** tf.separableConv2d(x, depthwise, pointwise, stride, pads) + bias. */
function separableConv(
  x: Value,
  W: Weights,
  key: string,
  stride: 1 | 2,
  pads: [number, number, number, number],
): Value {
  const c = x.shape[1];
  const dw = conv2d(x, W.depthwise(`${key}/depthwise_filter`), { stride, pads, groups: c });
  return add(conv2d(dw, W.conv(`${key}/pointwise_filter`)), W.bias(`${key}/bias`));
}

export const TINY_FACE_DETECTOR = {
  anchors: [
    [1.603231, 2.094468],
    [6.041143, 7.080126],
    [2.882459, 3.518061],
    [4.266906, 5.178857],
    [9.041765, 10.66308],
  ] as const,
  meanRgb: [117.001, 114.697, 97.404] as const,
  iouThreshold: 0.4,
};

/** TinyFaceDetector.runMobilenet on an S×S RGB input in 0..255 → the raw box encodings [1, 25, S/32, S/32]. */
export function tinyFaceDetectorGraph(
  weights: Map<string, HostWeight>,
  size: number,
  file = 'tiny_face_detector',
): Value {
  const g = new Graph();
  const W = new Weights(g, weights, file);
  const leaky = (x: Value) => leakyRelu(x, 0.1);
  const x = normalizeRgb(g.input('image', [1, 3, size, size]), TINY_FACE_DETECTOR.meanRgb);
  let y = leaky(add(conv2d(x, W.conv('conv0/filters')), W.bias('conv0/bias')));
  for (let i = 1; i <= 5; i++) {
    y = maxPool2Same(y, 2);
    y = leaky(separableConv(y, W, `conv${i}`, 1, [1, 1, 1, 1]));
  }
  y = maxPool2Same(y, 1);
  return add(conv2d(y, W.conv('conv8/filters')), W.bias('conv8/bias'));
}

export const LANDMARK_INPUT = 112;
const LANDMARK_MEAN = [122.782, 117.001, 104.298] as const;

/** FaceLandmark68Net on [N, 3, 112, 112] RGB in 0..255 → [N, 136] relative (x, y) pairs. */
export function landmarkGraph(
  weights: Map<string, HostWeight>,
  batch: number,
  file = 'face_landmark_68',
): Value {
  const g = new Graph();
  const W = new Weights(g, weights, file);
  const x = normalizeRgb(g.input('face', [batch, 3, LANDMARK_INPUT, LANDMARK_INPUT]), LANDMARK_MEAN);
  const sep = (y: Value, key: string, stride: 1 | 2) =>
    separableConv(y, W, key, stride, sameConvPads(y, 3, stride));
  const denseBlock = (y: Value, key: string, first: boolean): Value => {
    const out1 = relu(
      first
        ? add(
            conv2d(y, W.conv(`${key}/conv0/filters`), { stride: 2, pads: sameConvPads(y, 3, 2) }),
            W.bias(`${key}/conv0/bias`),
          )
        : sep(y, `${key}/conv0`, 2),
    );
    const out2 = sep(out1, `${key}/conv1`, 1);
    const out3 = sep(relu(add(out1, out2)), `${key}/conv2`, 1);
    const out4 = sep(relu(add(out1, add(out2, out3))), `${key}/conv3`, 1);
    return relu(add(out1, add(out2, add(out3, out4))));
  };
  let y = denseBlock(x, 'dense0', true);
  y = denseBlock(y, 'dense1', false);
  y = denseBlock(y, 'dense2', false);
  y = denseBlock(y, 'dense3', false); // [N, 256, 7, 7]
  const feat = reshape(mean(y, [2, 3]), [batch, y.shape[1]]); // avgPool 7 (valid) of a 7×7 map
  return add(matmul(feat, W.raw('fc/weights')), W.raw('fc/bias')); // fc/weights is [in, out]: x·W
}

export interface FaceNets {
  detector(size: number): Promise<Executable>;
  landmarks(): Promise<Executable>;
}

let shared: FaceNets | undefined;

/** The two nets, compiled once per process (per detector input size). */
export function faceNets(modelDir = faceApiModelDir()): FaceNets {
  if (shared && modelDir === faceApiModelDir()) return shared;
  let det: Map<string, HostWeight> | undefined;
  let lm: Map<string, HostWeight> | undefined;
  const detectors = new Map<number, Promise<Executable>>();
  let landmarks: Promise<Executable> | undefined;
  const nets: FaceNets = {
    detector(size) {
      let e = detectors.get(size);
      if (!e) {
        const file = join(modelDir, 'tiny_face_detector_model-weights_manifest.json');
        det ??= readTfjsWeights(file);
        e = compile({ boxes: tinyFaceDetectorGraph(det, size, file) });
        detectors.set(size, e);
      }
      return e;
    },
    landmarks() {
      if (!landmarks) {
        const file = join(modelDir, 'face_landmark_68_model-weights_manifest.json');
        lm ??= readTfjsWeights(file);
        landmarks = compile({ landmarks: landmarkGraph(lm, 1, file) });
      }
      return landmarks;
    },
  };
  if (modelDir === faceApiModelDir()) shared = nets;
  return nets;
}
