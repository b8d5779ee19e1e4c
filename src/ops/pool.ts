/** Average pooling and integer-factor nearest upsampling (NCHW). */
import { ShapeError, type Value } from '../graph/graph.js';
import { convTranspose2d } from './conv.js';
import { A, apply, type Op } from './op.js';
import { sum } from './reduce.js';
import { reshape } from './shape.js';

interface PoolAttrs {
  kernel: [number, number];
  stride: [number, number];
  pads: [number, number, number, number];
}

const avgPoolOp: Op = {
  name: 'avg_pool2d',
  infer([x], attrs) {
    const a = attrs as unknown as PoolAttrs;
    if (x.rank !== 4) throw new ShapeError('avg_pool2d needs NCHW');
    const out = [0, 1].map(
      (i) => Math.floor((x.shape[2 + i] + a.pads[i] + a.pads[i + 2] - a.kernel[i]) / a.stride[i]) + 1,
    );
    return [{ shape: [x.shape[0], x.shape[1], out[0], out[1]], dtype: x.dtype }];
  },
  lower(e, n) {
    const a = n.attrs as unknown as PoolAttrs;
    e.emit('AveragePool', [e.name(n.inputs[0])], [e.name(n.outputs[0])], {
      count_include_pad: A.int(1),
      kernel_shape: A.ints(a.kernel),
      pads: A.ints(a.pads),
      strides: A.ints(a.stride),
    });
  },
  // The adjoint spreads each cotangent evenly over its window: a depthwise transposed conv with 1/k².
  vjp(n, [g]) {
    if (!g) return [null];
    const x = n.inputs[0];
    const a = n.attrs as unknown as PoolAttrs;
    const c = x.shape[1];
    const k = a.kernel[0] * a.kernel[1];
    const w = x.graph.const(
      (x.dtype === 'float64' ? new Float64Array(c * k) : new Float32Array(c * k)).fill(1 / k),
      [c, 1, a.kernel[0], a.kernel[1]],
      'avg_pool_adjoint',
    );
    const expected = [0, 1].map(
      (i) => (g.shape[2 + i] - 1) * a.stride[i] - a.pads[i] - a.pads[i + 2] + a.kernel[i],
    );
    return [
      convTranspose2d(g, w, {
        stride: a.stride,
        pads: a.pads,
        groups: c,
        outputPadding: [x.shape[2] - expected[0], x.shape[3] - expected[1]],
      }),
    ];
  },
};

/** torch.nn.AvgPool2d with count_include_pad=True. */
export function avgPool2d(
  x: Value,
  kernel: number | [number, number],
  stride?: number | [number, number],
  pads: number | [number, number, number, number] = 0,
): Value {
  const k: [number, number] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
  const s: [number, number] =
    stride === undefined ? k : typeof stride === 'number' ? [stride, stride] : stride;
  const p: [number, number, number, number] = typeof pads === 'number' ? [pads, pads, pads, pads] : pads;
  if (k[0] === 1 && k[1] === 1 && s[0] === 1 && s[1] === 1 && p.every((v) => v === 0)) return x;
  return apply(avgPoolOp, [x], { kernel: k, stride: s, pads: p });
}

const upsampleOp: Op = {
  name: 'upsample_nearest',
  infer: ([x], { scale }) => {
    const s = scale as number;
    return [{ shape: [x.shape[0], x.shape[1], x.shape[2] * s, x.shape[3] * s], dtype: x.dtype }];
  },
  lower(e, n) {
    const s = n.attrs.scale as number;
    const scales = e.tmp('scales');
    e.emit('Constant', [], [scales], { value_floats: A.floats([1, 1, s, s]) });
    e.emit('Resize', [e.name(n.inputs[0]), '', scales], [e.name(n.outputs[0])], {
      coordinate_transformation_mode: A.string('asymmetric'),
      mode: A.string('nearest'),
      nearest_mode: A.string('floor'),
    });
  },
  vjp(n, [g]) {
    if (!g) return [null];
    const [b, c, h, w] = n.inputs[0].shape;
    const s = n.attrs.scale as number;
    return [sum(reshape(g, [b, c, h, s, w, s]), [3, 5])]; // each input pixel feeds an s×s block
  },
};

/** torch's nn.Upsample(scale_factor=s, mode='nearest') for an integer factor. */
export function upsampleNearest(x: Value, scale: number): Value {
  if (!Number.isInteger(scale) || scale < 1)
    throw new ShapeError(`upsample scale must be a positive integer, got ${scale}`);
  if (x.rank !== 4) throw new ShapeError('upsample needs NCHW');
  if (scale === 1) return x;
  return apply(upsampleOp, [x], { scale });
}
