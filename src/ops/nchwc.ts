/**
 * ONNX Runtime's blocked-layout CPU kernels (domain com.microsoft.nchwc), for forward-only graphs: a
 * tensor "in NCHWc" keeps its NCHW shape, but its memory holds blocks of `block` channels innermost.
 * These ops have no gradient rules and exist only where the runtime reports a block size.
 */
import { ShapeError, type Value } from '../graph/graph.js';
import { A, apply, type Op } from './op.js';
import { concat, reshape, transpose } from './shape.js';

const DOMAIN = 'com.microsoft.nchwc';

const reorderInputOp: Op = {
  name: 'nchwc_reorder_input',
  infer([x], a) {
    const [n, c, h, w] = x.shape;
    const b = a.block as number;
    return [{ shape: [n, Math.ceil(c / b) * b, h, w], dtype: x.dtype }];
  },
  lower: (e, n) => e.emit('ReorderInput', [e.name(n.inputs[0])], [e.name(n.outputs[0])], {}, DOMAIN),
};

const reorderOutputOp: Op = {
  name: 'nchwc_reorder_output',
  infer([x], a) {
    const [n, , h, w] = x.shape;
    return [{ shape: [n, a.channels as number, h, w], dtype: x.dtype }];
  },
  lower: (e, n) =>
    e.emit(
      'ReorderOutput',
      [e.name(n.inputs[0])],
      [e.name(n.outputs[0])],
      { channels: A.int(n.attrs.channels as number) },
      DOMAIN,
    ),
};

type Pads = [number, number, number, number]; // top, left, bottom, right

const convOp: Op = {
  name: 'nchwc_conv',
  infer([x, w], a) {
    const [kh, kw] = [w.shape[2], w.shape[3]];
    const [t, l, b, r] = a.pads as Pads;
    return [
      {
        shape: [x.shape[0], w.shape[0], x.shape[2] + t + b - kh + 1, x.shape[3] + l + r - kw + 1],
        dtype: x.dtype,
      },
    ];
  },
  lower(e, n) {
    const a = n.attrs;
    const w = n.inputs[1];
    const attrs: Record<string, ReturnType<typeof A.int>> = {
      kernel_shape: A.ints([w.shape[2], w.shape[3]]),
      pads: A.ints(a.pads as Pads),
      strides: A.ints([1, 1]),
      dilations: A.ints([1, 1]),
      group: A.int(a.group as number),
    };
    if (a.leaky !== undefined) {
      attrs.activation = A.string('LeakyRelu');
      attrs.activation_params = A.floats([a.leaky as number]);
    }
    const [x, , b, sum] = n.inputs;
    const bias = a.hasBias ? e.name(b) : '';
    const s = a.hasSum ? e.name(a.hasBias ? sum : b) : '';
    e.emit(
      'Conv',
      [e.name(x), e.name(w), bias, s].slice(0, s ? 4 : bias ? 3 : 2),
      [e.name(n.outputs[0])],
      attrs,
      DOMAIN,
    );
  },
};

export const nchwcReorderInput = (x: Value, block: number): Value => apply(reorderInputOp, [x], { block });
export const nchwcReorderOutput = (x: Value, channels: number): Value =>
  apply(reorderOutputOp, [x], { channels });

/** Conv on blocked tensors: weights already in the blocked filter layout, optional bias, sum and leaky ReLU. */
export function nchwcConv(
  x: Value,
  w: Value,
  o: { pads: number | Pads; group?: number; bias?: Value; sum?: Value; leaky?: number },
): Value {
  const inputs = [x, w, ...(o.bias ? [o.bias] : []), ...(o.sum ? [o.sum] : [])];
  return apply(convOp, inputs, {
    pads: typeof o.pads === 'number' ? [o.pads, o.pads, o.pads, o.pads] : o.pads,
    group: o.group ?? 1,
    hasBias: !!o.bias,
    hasSum: !!o.sum,
    ...(o.leaky !== undefined ? { leaky: o.leaky } : {}),
  });
}

/** OIHW → MLAS's OIHWBiBo filter layout (shape unchanged). */
export function blockFilter(w: Value, block: number): Value {
  const [O, I, kh, kw] = w.shape;
  if (O % block || I % block) throw new ShapeError(`channels [${O}, ${I}] are not multiples of ${block}`);
  // [O/B, Bo, I/B, Bi, kh, kw] -> [O/B, I/B, kh, kw, Bi, Bo]
  return reshape(transpose(reshape(w, [O / block, block, I / block, block, kh, kw]), [0, 2, 4, 5, 3, 1]), [
    O,
    I,
    kh,
    kw,
  ]);
}

/** Depthwise [C, 1, kh, kw] → OIHWBo (shape unchanged). */
export function blockDepthwiseFilter(w: Value, block: number): Value {
  const [C, , kh, kw] = w.shape;
  // [C/B, Bo, 1, kh, kw] -> [C/B, 1, kh, kw, Bo]
  return reshape(transpose(reshape(w, [C / block, block, 1, kh, kw]), [0, 2, 3, 4, 1]), [C, 1, kh, kw]);
}

/**
 * Interleaves the four phases of a 2x upsampling, each blocked [1, C, H, W] and listed as (row, column)
 * parities 00, 01, 10, 11, into one blocked [1, C, 2H, 2W]. The blocks of channels stay innermost, so
 * this is one transpose that moves whole channel blocks (DepthToSpace on NCHW moves single floats).
 */
export function nchwcInterleave(phases: readonly Value[], block: number): Value {
  const [n, c, h, w] = phases[0].shape;
  if (n !== 1 || phases.length !== 4) throw new ShapeError('interleave takes four single-image phases');
  // each phase [1, C, H, W] in memory [C/B, H, W, B]; stacked [2 (row parity), 2 (col parity), C/B, H, W, B]
  const stacked = reshape(
    concat(
      phases.map((p) => reshape(p, [1, c / block, h, w, block])),
      0,
    ),
    [2, 2, c / block, h, w, block],
  );
  // -> [C/B, H, 2, W, 2, B] = [C/B, 2H, 2W, B]: the blocked layout of [1, C, 2H, 2W]
  return reshape(transpose(stacked, [2, 3, 0, 4, 1, 5]), [1, c, 2 * h, 2 * w]);
}
