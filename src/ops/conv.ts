/**
 * conv2d and conv_transpose2d (NCHW). Both gradients of both ops are again Conv/ConvTranspose plus
 * transposes, so the backward pass runs on the same fast kernels as the forward.
 */
import { ShapeError, type Value } from '../graph/graph.js';
import { matmul, mT } from './matmul.js';
import { A, apply, type Op } from './op.js';
import { concat, pad, reshape, slice, transpose } from './shape.js';

export interface ConvOptions {
  stride?: number | [number, number];
  /** [top, left, bottom, right], or one number for all four. */
  pads?: number | [number, number, number, number];
  dilation?: number | [number, number];
  groups?: number;
  /**
   * How the weight gradient is formed: 'unfold' (k·k strided views of the input, one matmul each; fast, k·k
   * copies of the input), 'conv' (a conv with batch and channels swapped; no extra memory), or 'auto'
   * (unfold while the copies stay under 256 MB).
   */
  weightGrad?: 'auto' | 'unfold' | 'conv';
}
export interface ConvTransposeOptions extends ConvOptions {
  outputPadding?: number | [number, number];
}

interface ConvAttrs {
  stride: [number, number];
  pads: [number, number, number, number];
  dilation: [number, number];
  groups: number;
  outputPadding: [number, number];
  weightGrad: 'auto' | 'unfold' | 'conv';
}

const pair = (v: number | [number, number] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v;

function attrsOf(o: ConvTransposeOptions): ConvAttrs {
  const p = o.pads ?? 0;
  return {
    stride: pair(o.stride, 1),
    pads: typeof p === 'number' ? [p, p, p, p] : p,
    dilation: pair(o.dilation, 1),
    groups: o.groups ?? 1,
    outputPadding: pair(o.outputPadding, 0),
    weightGrad: o.weightGrad ?? 'auto',
  };
}

function onnxAttrs(a: ConvAttrs, kernel: readonly number[]) {
  return {
    dilations: A.ints(a.dilation),
    group: A.int(a.groups),
    kernel_shape: A.ints(kernel),
    pads: A.ints(a.pads),
    strides: A.ints(a.stride),
  };
}

function convOut(size: number, k: number, s: number, p0: number, p1: number, d: number): number {
  return Math.floor((size + p0 + p1 - d * (k - 1) - 1) / s) + 1;
}

const convOp: Op = {
  name: 'conv2d',
  infer([x, w], attrs) {
    const a = attrs as unknown as ConvAttrs;
    if (x.rank !== 4 || w.rank !== 4) throw new ShapeError('conv2d needs NCHW input and OIHW weight');
    const [n, c, h, wd] = x.shape;
    const [o, cg, kh, kw] = w.shape;
    if (c !== cg * a.groups || o % a.groups !== 0)
      throw new ShapeError(`channels ${c} do not match weight [${w.shape}] with groups ${a.groups}`);
    const ho = convOut(h, kh, a.stride[0], a.pads[0], a.pads[2], a.dilation[0]);
    const wo = convOut(wd, kw, a.stride[1], a.pads[1], a.pads[3], a.dilation[1]);
    if (ho <= 0 || wo <= 0) throw new ShapeError('empty output');
    return [{ shape: [n, o, ho, wo], dtype: x.dtype }];
  },
  lower: (e, n) =>
    e.emit(
      'Conv',
      [e.name(n.inputs[0]), e.name(n.inputs[1])],
      [e.name(n.outputs[0])],
      onnxAttrs(n.attrs as unknown as ConvAttrs, n.inputs[1].shape.slice(2)),
    ),
  vjp(n, [g]) {
    if (!g) return [null, null];
    const [x, w] = n.inputs;
    const a = n.attrs as unknown as ConvAttrs;
    return [
      convInputGrad(g, w, x.shape, a),
      convWeightGrad(x, g, w.shape.slice(2), a.stride, a.pads, a.dilation, a.groups, a.weightGrad),
    ];
  },
};

/** The adjoint of conv2d with respect to its input. */
function convInputGrad(g: Value, w: Value, xShape: readonly number[], a: ConvAttrs): Value {
  const [kh, kw] = w.shape.slice(2);
  const [h, wd] = xShape.slice(2);
  const flippedPads = [
    a.dilation[0] * (kh - 1) - a.pads[0],
    a.dilation[1] * (kw - 1) - a.pads[1],
    a.dilation[0] * (kh - 1) -
      a.pads[2] +
      (h - ((g.shape[2] - 1) * a.stride[0] - a.pads[0] - a.pads[2] + a.dilation[0] * (kh - 1) + 1)),
    a.dilation[1] * (kw - 1) -
      a.pads[3] +
      (wd - ((g.shape[3] - 1) * a.stride[1] - a.pads[1] - a.pads[3] + a.dilation[1] * (kw - 1) + 1)),
  ] as [number, number, number, number];
  if (a.stride[0] === 1 && a.stride[1] === 1 && flippedPads.every((p) => p >= 0)) {
    // Stride 1: a plain conv with the kernel flipped and in/out swapped per group; ORT folds the
    // weight transform at session build and its Conv is faster than ConvTranspose.
    const [o, cg] = w.shape;
    const G = a.groups;
    let wt = reshape(w, [G, o / G, cg, kh, kw]);
    wt = transpose(wt, [0, 2, 1, 3, 4]); // [G, cg, o/G, kh, kw]
    wt = reshape(wt, [G * cg, o / G, kh, kw]);
    wt = slice(wt, [0, 0, -1, -1], [G * cg, o / G, -kh - 1, -kw - 1], [1, 1, -1, -1]);
    return conv2d(g, wt, { pads: flippedPads, dilation: a.dilation, groups: G });
  }
  const expected = [0, 1].map(
    (i) =>
      (g.shape[2 + i] - 1) * a.stride[i] -
      a.pads[i] -
      a.pads[i + 2] +
      a.dilation[i] * (w.shape[2 + i] - 1) +
      1,
  );
  return convTranspose2d(g, w, {
    stride: a.stride,
    pads: a.pads,
    dilation: a.dilation,
    groups: a.groups,
    outputPadding: [xShape[2] - expected[0], xShape[3] - expected[1]],
  });
}

/**
 * dW[o, c, i, j] = sum_n,p x[n, c, p*s + i*d - pad] gy[n, o, p]. Pads may be negative (convT's output
 * padding), which crops. Two formulations of the same sum: unfold x into k*k shifted strided views and
 * take one large matmul (fast, but k*k copies of x), or a grouped conv in which the per-group channels
 * play the batch, the batch plays the channels, and stride and dilation swap roles (no extra memory).
 */
function convWeightGrad(
  x: Value,
  gy: Value,
  kernel: readonly number[],
  stride: readonly number[],
  pads: readonly number[],
  dilation: readonly number[],
  groups: number,
  how: ConvAttrs['weightGrad'],
): Value {
  const [n, c, h, wd] = x.shape;
  const crop = pads.map((p) => Math.max(0, -p));
  const nonneg = pads.map((p) => Math.max(0, p)) as [number, number, number, number];
  const xc = slice(x, [0, 0, crop[0], crop[1]], [n, c, h - crop[2], wd - crop[3]]);
  const unfold = how === 'auto' ? x.size * kernel[0] * kernel[1] * 4 <= UNFOLD_LIMIT_BYTES : how === 'unfold';
  if (unfold)
    return weightGradUnfold(
      pad(xc, [0, 0, nonneg[0], nonneg[1], 0, 0, nonneg[2], nonneg[3]]),
      gy,
      kernel,
      stride,
      dilation,
      groups,
    );
  return weightGradByConv(xc, gy, kernel, stride, nonneg, dilation, groups);
}

/** Above this, the unfolded input would cost more memory than the speed is worth. */
const UNFOLD_LIMIT_BYTES = 256 * 2 ** 20;

function weightGradUnfold(
  xp: Value,
  gy: Value,
  kernel: readonly number[],
  stride: readonly number[],
  dilation: readonly number[],
  groups: number,
): Value {
  const [n, c] = xp.shape;
  const [, o, ho, wo] = gy.shape;
  const [kh, kw] = kernel;
  const cg = c / groups;
  const np = n * ho * wo;
  // With the batch moved next to the pixels (one transpose of x and of gy), each tap is one matmul over
  // N·P: no per-sample products summed over the batch, and no k·k-fold copy of x held at once.
  const xt = transpose(xp, [1, 0, 2, 3]); // [C, N, Hp, Wp]
  const g3 = reshape(transpose(gy, [1, 0, 2, 3]), [groups, o / groups, np]); // [G, O/G, N·P]
  const taps: Value[] = [];
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++) {
      const y0 = i * dilation[0];
      const x0 = j * dilation[1];
      const v = slice(
        xt,
        [0, 0, y0, x0],
        [c, n, y0 + (ho - 1) * stride[0] + 1, x0 + (wo - 1) * stride[1] + 1],
        [1, 1, stride[0], stride[1]],
      ); // [C, N, Ho, Wo]
      taps.push(reshape(matmul(g3, mT(reshape(v, [groups, cg, np]))), [o, cg, 1])); // [G, O/G, Cg] -> [O, Cg, 1]
    }
  return reshape(concat(taps, 2), [o, cg, kh, kw]);
}

function weightGradByConv(
  x: Value,
  gy: Value,
  kernel: readonly number[],
  stride: readonly number[],
  pads: [number, number, number, number],
  dilation: readonly number[],
  groups: number,
): Value {
  const [n, c, h, wd] = x.shape;
  const o = gy.shape[1];
  const cg = c / groups;
  let xt = reshape(x, [n, groups, cg, h, wd]);
  xt = transpose(xt, [2, 1, 0, 3, 4]); // [cg, G, N, H, W]
  xt = reshape(xt, [cg, groups * n, h, wd]);
  const gt = transpose(gy, [1, 0, 2, 3]); // [O, N, Ho, Wo]
  const r = conv2d(xt, gt, {
    stride: [dilation[0], dilation[1]],
    dilation: [stride[0], stride[1]],
    pads,
    groups,
  }); // [cg, O, >=kh, >=kw]
  const cut = slice(r, [0, 0, 0, 0], [cg, o, kernel[0], kernel[1]]);
  return transpose(cut, [1, 0, 2, 3]);
}

const convTransposeOp: Op = {
  name: 'conv_transpose2d',
  infer([x, w], attrs) {
    const a = attrs as unknown as ConvAttrs;
    if (x.rank !== 4 || w.rank !== 4)
      throw new ShapeError('conv_transpose2d needs NCHW input and [Cin, Cout/G, kh, kw]');
    const [n, c, h, wd] = x.shape;
    const [ci, og, kh, kw] = w.shape;
    if (c !== ci || c % a.groups !== 0)
      throw new ShapeError(`channels ${c} do not match weight [${w.shape}]`);
    const size = (len: number, k: number, i: number) =>
      (len - 1) * a.stride[i] - a.pads[i] - a.pads[i + 2] + a.dilation[i] * (k - 1) + a.outputPadding[i] + 1;
    for (const i of [0, 1])
      if (a.outputPadding[i] >= Math.max(a.stride[i], a.dilation[i]))
        throw new ShapeError('output padding must be smaller than stride or dilation');
    return [{ shape: [n, og * a.groups, size(h, kh, 0), size(wd, kw, 1)], dtype: x.dtype }];
  },
  lower(e, n) {
    const a = n.attrs as unknown as ConvAttrs;
    e.emit('ConvTranspose', [e.name(n.inputs[0]), e.name(n.inputs[1])], [e.name(n.outputs[0])], {
      ...onnxAttrs(a, n.inputs[1].shape.slice(2)),
      output_padding: A.ints(a.outputPadding),
    });
  },
  vjp(n, [g]) {
    if (!g) return [null, null];
    const [x, w] = n.inputs;
    const a = n.attrs as unknown as ConvAttrs;
    const gx = conv2d(g, w, { stride: a.stride, pads: a.pads, dilation: a.dilation, groups: a.groups });
    const pads = [a.pads[0], a.pads[1], a.pads[2] - a.outputPadding[0], a.pads[3] - a.outputPadding[1]];
    const gw = convWeightGrad(g, x, w.shape.slice(2), a.stride, pads, a.dilation, a.groups, a.weightGrad);
    return [gx, gw];
  },
};

export function conv2d(x: Value, w: Value, options: ConvOptions = {}): Value {
  return apply(convOp, [x, w], { ...attrsOf(options) });
}

/** torch's conv_transpose2d, lowered to ONNX's ConvTranspose. */
export function convTranspose2d(x: Value, w: Value, options: ConvTransposeOptions = {}): Value {
  return apply(convTransposeOp, [x, w], { ...attrsOf(options) });
}

/**
 * The same transposed conv as a polyphase conv: each of the s×s output phases is an ordinary conv of
 * the input with a sub-kernel, and the phases are interleaved. It does (ceil(k/s)·s/k)² times the work
 * of ConvTranspose and measured slower on ONNX Runtime's CPU provider (512 ch, 32→65: 50 ms vs 29 ms),
 * so it is the reference formulation, kept for providers whose ConvTranspose is weak.
 */
export function convTranspose2dPolyphase(x: Value, w: Value, options: ConvTransposeOptions = {}): Value {
  const a = attrsOf(options);
  if (a.dilation[0] !== 1 || a.dilation[1] !== 1)
    throw new ShapeError('polyphase conv_transpose2d needs dilation 1');
  const [{ shape: expected }] = convTransposeOp.infer([x, w], { ...a }); // the one shape rule, and its checks
  const [n, c, h, wd] = x.shape;
  const [, og, kh, kw] = w.shape;
  const [sh, sw] = a.stride;
  const G = a.groups;
  const th = Math.ceil(kh / sh);
  const tw = Math.ceil(kw / sw);
  // Tap k = r + s*t feeds phase r from input m - t; flipping t turns the sum into a correlation.
  let wr = pad(w, [0, 0, 0, 0, 0, 0, th * sh - kh, tw * sw - kw]); // [Cin, Og, Th*sh, Tw*sw]
  wr = reshape(wr, [G, c / G, og, th, sh, tw, sw]);
  wr = slice(wr, [0, 0, 0, -1, 0, -1, 0], [G, c / G, og, -th - 1, sh, -tw - 1, sw], [1, 1, 1, -1, 1, -1, 1]);
  wr = transpose(wr, [0, 2, 4, 6, 1, 3, 5]); // [G, Og, sh, sw, Cin/G, Th, Tw]
  wr = reshape(wr, [G * og * sh * sw, c / G, th, tw]);
  const [hout, wout] = [expected[2], expected[3]];
  const eh = Math.max(0, Math.ceil((a.pads[0] + hout) / sh) - h);
  const ew = Math.max(0, Math.ceil((a.pads[1] + wout) / sw) - wd);
  const xp = pad(x, [0, 0, th - 1, tw - 1, 0, 0, eh, ew]);
  const phases = conv2d(xp, wr, { groups: G }); // [N, Cout*sh*sw, H+eh, W+ew]
  const [ph, pw] = [h + eh, wd + ew];
  let y = reshape(phases, [n, G * og, sh, sw, ph, pw]);
  y = transpose(y, [0, 1, 4, 2, 5, 3]); // [N, Cout, H', sh, W', sw]
  y = reshape(y, [n, G * og, ph * sh, pw * sw]);
  return slice(y, [0, 0, a.pads[0], a.pads[1]], [n, G * og, a.pads[0] + hout, a.pads[1] + wout]);
}
