/**
 * Layers composed from primitives; their gradients come for free from the primitives' rules.
 */
import { ShapeError, type Value } from '../../graph/graph.js';
import { conv2d } from '../conv.js';
import { add, div, erf, mul, relu, sigmoid, sqrt, sub } from '../elementwise.js';
import { matmul, mT } from '../matmul.js';

export { linear } from '../matmul.js';

import { avgPool2d } from '../pool.js';
import { mean } from '../reduce.js';
import { expand, pad, reshape, slice } from '../shape.js';

/** Layer norm over the last axis (biased variance, as torch). */
export function layerNorm(x: Value, weight: Value, bias: Value, eps = 1e-5): Value {
  const mu = mean(x, -1, true);
  const xc = sub(x, mu);
  const variance = mean(mul(xc, xc), -1, true);
  return add(mul(div(xc, sqrt(add(variance, eps))), weight), bias);
}

/** The exact (erf) GELU. */
export const gelu = (x: Value): Value => mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));

/** CLIP's QuickGELU: x·σ(1.702x). */
export const quickGelu = (x: Value): Value => mul(x, sigmoid(mul(x, 1.702)));

/** Channel-wise PReLU on NCHW (slope has one entry per channel). */
export function prelu(x: Value, slope: Value): Value {
  const s = reshape(slope, [1, slope.size, 1, 1]); // [C] -> [1, C, 1, 1]
  return sub(relu(x), mul(s, relu(mul(x, -1))));
}

/** Inference-mode batch norm over axis 1 of NCHW or [N, C]. */
export function batchNorm(
  x: Value,
  weight: Value,
  bias: Value,
  runMean: Value,
  runVar: Value,
  eps = 1e-5,
): Value {
  const c = x.shape[1];
  const view = x.rank === 4 ? [1, c, 1, 1] : [1, c];
  const scale = div(weight, sqrt(add(runVar, eps))); // folded by ONNX Runtime when all are constants
  const shift = sub(bias, mul(runMean, scale));
  return add(mul(x, reshape(scale, view)), reshape(shift, view));
}

/** PyTorch's adaptive-pool windows: [floor(i*n/m), ceil((i+1)*n/m)). */
export function adaptiveWindows(n: number, m: number): [number, number][] {
  return Array.from({ length: m }, (_, i) => [Math.floor((i * n) / m), Math.ceil(((i + 1) * n) / m)]);
}

function poolMatrix(x: Value, n: number, m: number, dtype: 'float32' | 'float64'): Value {
  const data = dtype === 'float64' ? new Float64Array(m * n) : new Float32Array(m * n);
  adaptiveWindows(n, m).forEach(([s, e], i) => {
    for (let j = s; j < e; j++) data[i * n + j] = 1 / (e - s);
  });
  return x.graph.const(data, [m, n], `adaptive_pool_${n}_to_${m}`);
}

/** torch.nn.AdaptiveAvgPool2d: an average pool when the ratio is whole, else constant pooling matrices. */
export function adaptiveAvgPool2d(x: Value, size: number | [number, number]): Value {
  const [oh, ow] = typeof size === 'number' ? [size, size] : size;
  const [, , h, w] = x.shape;
  if (h % oh === 0 && w % ow === 0) return avgPool2d(x, [h / oh, w / ow]);
  if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new ShapeError('adaptive pool needs floats');
  const ph = poolMatrix(x, h, oh, x.dtype); // [oh, H]
  const pw = poolMatrix(x, w, ow, x.dtype); // [ow, W]
  return matmul(ph, matmul(x, mT(pw))); // [N, C, H, ow] -> [N, C, oh, ow]
}

/**
 * upfirdn2d as rosinality's reference: zero-insert upsampling, pad (negative pads crop), FIR filter
 * with the flipped kernel (a true convolution), then keep every `down`-th sample.
 * `pads` = [x0, x1, y0, y1]; `kernel` is a constant [kh, kw].
 */
export function upfirdn2d(
  x: Value,
  kernel: Value,
  up = 1,
  down = 1,
  pads: readonly [number, number, number, number] = [0, 0, 0, 0],
): Value {
  const [n, c, h, w] = x.shape;
  const [kh, kw] = kernel.shape;
  let y = x;
  if (up > 1) {
    y = reshape(y, [n, c, h, 1, w, 1]); // [N, C, H, 1, W, 1]
    y = pad(y, [0, 0, 0, 0, 0, 0, 0, 0, 0, up - 1, 0, up - 1]); // zeros after each sample
    y = reshape(y, [n, c, h * up, w * up]);
  }
  const [x0, x1, y0, y1] = pads;
  y = pad(y, [0, 0, Math.max(y0, 0), Math.max(x0, 0), 0, 0, Math.max(y1, 0), Math.max(x1, 0)]);
  y = slice(
    y,
    [0, 0, Math.max(-y0, 0), Math.max(-x0, 0)],
    [n, c, y.shape[2] - Math.max(-y1, 0), y.shape[3] - Math.max(-x1, 0)],
  );
  const flipped = slice(kernel, [-1, -1], [-kh - 1, -kw - 1], [-1, -1]);
  const wk = reshape(flipped, [1, 1, kh, kw]); // one filter shared by every channel
  return conv2d(y, expand(wk, [c, 1, kh, kw]), { stride: down, groups: c });
}
