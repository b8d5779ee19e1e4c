/** Data-movement primitives: reshape, transpose, expand, pad, slice, concat, gather, cast, stop-gradient. */
import { type DType, type Node, type Shape, ShapeError, sizeOf, type Value } from '../graph/graph.js';
import { A, apply, normAxis, type Op, sameShape } from './op.js';

const onnxType: Record<DType, number> = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float64: 11 };
export const onnxDataType = (dt: DType): number => onnxType[dt];

const reshapeOp: Op = {
  name: 'reshape',
  infer: ([x], { shape }) => [{ shape: shape as number[], dtype: x.dtype }],
  lower: (e, n) =>
    e.emit('Reshape', [e.name(n.inputs[0]), e.ints(n.outputs[0].shape)], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [g && reshape(g, n.inputs[0].shape)],
};

/** One -1 is inferred, as in numpy. */
export function reshape(x: Value, shape: Shape): Value {
  const known = shape.filter((d) => d !== -1);
  if (shape.length - known.length > 1) throw new ShapeError(`reshape: more than one -1 in [${shape}]`);
  const rest = sizeOf(known);
  const full = shape.map((d) => (d === -1 ? x.size / rest : d));
  if (sizeOf(full) !== x.size || full.some((d) => !Number.isInteger(d)))
    throw new ShapeError(`reshape: cannot view [${x.shape}] as [${shape}]`);
  if (sameShape(full, x.shape)) return x;
  return apply(reshapeOp, [x], { shape: full });
}

const transposeOp: Op = {
  name: 'transpose',
  infer: ([x], { perm }) => [{ shape: (perm as number[]).map((p) => x.shape[p]), dtype: x.dtype }],
  lower: (e, n) =>
    e.emit('Transpose', [e.name(n.inputs[0])], [e.name(n.outputs[0])], {
      perm: A.ints(n.attrs.perm as number[]),
    }),
  vjp: (n, [g]) => {
    const perm = n.attrs.perm as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [g && transpose(g, inv)];
  },
};

export function transpose(x: Value, perm: readonly number[]): Value {
  if (perm.length !== x.rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i))
    throw new ShapeError(`transpose: bad permutation [${perm}] for rank ${x.rank}`);
  if (perm.every((p, i) => p === i)) return x;
  return apply(transposeOp, [x], { perm: [...perm] });
}

const expandOp: Op = {
  name: 'expand',
  infer: ([x], { shape }) => [{ shape: shape as number[], dtype: x.dtype }],
  lower: (e, n) =>
    e.emit('Expand', [e.name(n.inputs[0]), e.ints(n.outputs[0].shape)], [e.name(n.outputs[0])]),
  // Expand is a broadcast: autodiff's un-broadcast sums the cotangent back to the input's shape.
  vjp: (_n, [g]) => [g],
};

export function expand(x: Value, shape: Shape): Value {
  const off = shape.length - x.rank;
  if (off < 0 || x.shape.some((d, i) => d !== 1 && d !== shape[off + i]))
    throw new ShapeError(`expand: [${x.shape}] does not broadcast to [${shape}]`);
  if (sameShape(x.shape, shape)) return x;
  return apply(expandOp, [x], { shape: [...shape] });
}

const padOp: Op = {
  name: 'pad',
  infer: ([x], { pads }) => {
    const p = pads as number[];
    return [{ shape: x.shape.map((d, i) => d + p[i] + p[i + x.rank]), dtype: x.dtype }];
  },
  lower(e, n) {
    const x = n.inputs[0];
    const value = e.tmp('pad_value');
    e.emit('Constant', [], [value], { value_float: A.float(n.attrs.value as number) });
    let v = value;
    if (x.dtype !== 'float32') {
      v = e.tmp('pad_value_cast');
      e.emit('Cast', [value], [v], { to: A.int(onnxDataType(x.dtype)) });
    }
    e.emit('Pad', [e.name(x), e.ints(n.attrs.pads as number[]), v], [e.name(n.outputs[0])], {
      mode: A.string('constant'),
    });
  },
  vjp(n, [g]) {
    const x = n.inputs[0];
    const p = n.attrs.pads as number[];
    return [
      g &&
        slice(
          g,
          p.slice(0, x.rank),
          x.shape.map((d, i) => p[i] + d),
        ),
    ];
  },
};

/** Constant padding; `pads` is ONNX's [begin_0..begin_n, end_0..end_n], all >= 0. */
export function pad(x: Value, pads: readonly number[], value = 0): Value {
  if (pads.length !== 2 * x.rank || pads.some((p) => !Number.isInteger(p) || p < 0))
    throw new ShapeError(`pad: need ${2 * x.rank} non-negative pads, got [${pads}]`);
  if (pads.every((p) => p === 0)) return x;
  return apply(padOp, [x], { pads: [...pads], value });
}

/** Python slice semantics for one axis, returning the normalized start and the length. */
function sliceRange(dim: number, start: number, end: number, step: number): { start: number; len: number } {
  if (step === 0) throw new ShapeError('slice step 0');
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  if (step > 0) {
    const s = clamp(start < 0 ? start + dim : start, 0, dim);
    const en = clamp(end < 0 ? end + dim : end, 0, dim);
    return { start: s, len: Math.max(0, Math.ceil((en - s) / step)) };
  }
  const s = clamp(start < 0 ? start + dim : start, -1, dim - 1);
  const en = clamp(end < 0 ? end + dim : end, -1, dim - 1);
  return { start: s, len: Math.max(0, Math.ceil((s - en) / -step)) };
}

const sliceOp: Op = {
  name: 'slice',
  infer: ([x], { lens }) => [{ shape: (lens as number[]).slice(), dtype: x.dtype }],
  lower(e, n) {
    const x = n.inputs[0];
    const starts = n.attrs.starts as number[];
    const lens = n.attrs.lens as number[];
    const steps = n.attrs.steps as number[];
    // Ends are written explicitly from the normalized start and length, so ONNX's clamping never matters;
    // a negative-step slice that runs to the front needs INT64_MIN-like ends.
    const ends = starts.map((s, i) => {
      const end = s + lens[i] * steps[i];
      return steps[i] < 0 && end < 0 ? -(2 ** 53) : end;
    });
    e.emit(
      'Slice',
      [e.name(x), e.ints(starts), e.ints(ends), e.ints(x.shape.map((_, i) => i)), e.ints(steps)],
      [e.name(n.outputs[0])],
    );
  },
  // Scatter the cotangent back in at most five nodes whatever the rank: reverse the negative-step axes,
  // interleave zeros on the strided axes, trim the overshoot, and pad to the start offsets.
  vjp(n, [g]) {
    if (!g) return [null];
    const x = n.inputs[0];
    const lens = n.attrs.lens as number[];
    const steps = n.attrs.steps as number[];
    const starts = (n.attrs.starts as number[]).map((s, i) =>
      steps[i] < 0 ? s + (lens[i] - 1) * steps[i] : s,
    );
    const stride = steps.map(Math.abs);
    let ct = g;
    if (steps.some((s) => s < 0))
      ct = slice(
        ct,
        steps.map((s, i) => (s < 0 ? lens[i] - 1 : 0)),
        steps.map((s, i) => (s < 0 ? -lens[i] - 1 : lens[i])),
        steps.map((s) => (s < 0 ? -1 : 1)),
      );
    if (stride.some((s) => s > 1)) {
      // [.., len, ..] -> [.., len, 1, ..] -> pad the unit axis to the stride -> [.., len*stride, ..]
      const withUnits = lens.flatMap((d) => [d, 1]);
      const pads = new Array(2 * withUnits.length).fill(0);
      stride.forEach((s, i) => {
        pads[withUnits.length + 2 * i + 1] = s - 1;
      });
      ct = reshape(
        pad(reshape(ct, withUnits), pads),
        lens.map((d, i) => d * stride[i]),
      );
    }
    const keep = ct.shape.map((d, i) => Math.min(d, x.shape[i] - starts[i]));
    ct = slice(
      ct,
      keep.map(() => 0),
      keep,
    );
    return [pad(ct, [...starts, ...x.shape.map((d, i) => d - starts[i] - keep[i])])];
  },
};

/** Static slice with Python semantics over every axis (`starts`, `ends`, `steps` have one entry per axis). */
export function slice(
  x: Value,
  starts: readonly number[],
  ends: readonly number[],
  steps?: readonly number[],
): Value {
  if (starts.length !== x.rank || ends.length !== x.rank || (steps && steps.length !== x.rank))
    throw new ShapeError(`slice: need ${x.rank} starts/ends/steps`);
  const st = steps ?? starts.map(() => 1);
  const ranges = x.shape.map((d, i) => sliceRange(d, starts[i], ends[i], st[i]));
  if (ranges.every((r, i) => r.start === 0 && r.len === x.shape[i] && st[i] === 1)) return x;
  return apply(sliceOp, [x], {
    starts: ranges.map((r) => r.start),
    lens: ranges.map((r) => r.len),
    steps: [...st],
  });
}

/** Slice along one axis only. */
export function sliceAxis(x: Value, axis: number, start: number, end: number, step = 1): Value {
  const ax = normAxis(axis, x.rank);
  const starts = x.shape.map((_, i) => (i === ax ? start : 0));
  const ends = x.shape.map((d, i) => (i === ax ? end : d));
  const steps = x.shape.map((_, i) => (i === ax ? step : 1));
  return slice(x, starts, ends, steps);
}

const concatOp: Op = {
  name: 'concat',
  infer(xs, { axis }) {
    const ax = axis as number;
    const first = xs[0];
    for (const x of xs)
      if (
        x.rank !== first.rank ||
        x.dtype !== first.dtype ||
        x.shape.some((d, i) => i !== ax && d !== first.shape[i])
      )
        throw new ShapeError(`concat: mismatched operands along axis ${ax}`);
    const shape = [...first.shape];
    shape[ax] = xs.reduce((s, x) => s + x.shape[ax], 0);
    return [{ shape, dtype: first.dtype }];
  },
  lower: (e, n) =>
    e.emit(
      'Concat',
      n.inputs.map((x) => e.name(x)),
      [e.name(n.outputs[0])],
      { axis: A.int(n.attrs.axis as number) },
    ),
  vjp(n, [g]) {
    if (!g) return n.inputs.map(() => null);
    const ax = n.attrs.axis as number;
    let off = 0;
    return n.inputs.map((x) => {
      const part = sliceAxis(g, ax, off, off + x.shape[ax]);
      off += x.shape[ax];
      return part;
    });
  },
};

export function concat(xs: readonly Value[], axis: number): Value {
  if (xs.length === 0) throw new ShapeError('concat of nothing');
  if (xs.length === 1) return xs[0];
  return apply(concatOp, xs, { axis: normAxis(axis, xs[0].rank) });
}

const gatherOp: Op = {
  name: 'gather',
  infer: ([x, idx], { axis }) => {
    const ax = axis as number;
    return [{ shape: [...x.shape.slice(0, ax), ...idx.shape, ...x.shape.slice(ax + 1)], dtype: x.dtype }];
  },
  lower: (e, n) =>
    e.emit('Gather', [e.name(n.inputs[0]), e.name(n.inputs[1])], [e.name(n.outputs[0])], {
      axis: A.int(n.attrs.axis as number),
    }),
  vjp(n, [g]) {
    if (!g) return [null, null];
    const [x, idx] = n.inputs;
    const ax = n.attrs.axis as number;
    const pre = sizeOf(x.shape.slice(0, ax));
    const post = sizeOf(x.shape.slice(ax + 1));
    const flat = reshape(g, [pre, idx.size, post]); // [pre, k, post]
    const flatIdx = reshape(idx, [idx.size]);
    const summed = apply(scatterAddOp, [flat, flatIdx], { dim: x.shape[ax] }); // [pre, D, post]
    return [reshape(summed, x.shape), null];
  },
};

/** Gradient of gather: sums rows of `updates` [pre, k, post] into [pre, dim, post] at `indices` [k]. */
const scatterAddOp: Op = {
  name: 'scatter_add',
  infer: ([u], { dim }) => [{ shape: [u.shape[0], dim as number, u.shape[2]], dtype: u.dtype }],
  lower(e, n) {
    const [u, idx] = n.inputs;
    const [pre, , post] = u.shape;
    const dim = n.attrs.dim as number;
    const ut = e.tmp('updates_t');
    e.emit('Transpose', [e.name(u)], [ut], { perm: A.ints([1, 0, 2]) }); // [k, pre, post]
    const idx2 = e.tmp('indices');
    e.emit('Reshape', [e.name(idx), e.ints([idx.size, 1])], [idx2]); // [k, 1]
    const zeros = e.tmp('zeros');
    const zerosRaw = e.tmp('zeros_raw');
    e.emit('ConstantOfShape', [e.ints([dim, pre, post])], [zerosRaw]);
    e.emit('Cast', [zerosRaw], [zeros], { to: A.int(onnxDataType(u.dtype)) });
    const out = e.tmp('scattered');
    e.emit('ScatterND', [zeros, idx2, ut], [out], { reduction: A.string('add') }); // [D, pre, post]
    e.emit('Transpose', [out], [e.name(n.outputs[0])], { perm: A.ints([1, 0, 2]) });
  },
  vjp(n, [g]) {
    return [g && gather(g, n.inputs[1], 1), null];
  },
};

/** Gathers along `axis` at constant int64 indices (negative indices are not allowed). */
export function gather(x: Value, indices: Value, axis: number): Value {
  if (indices.dtype !== 'int64' && indices.dtype !== 'int32')
    throw new ShapeError('gather indices must be integers');
  return apply(gatherOp, [x, indices], { axis: normAxis(axis, x.rank) });
}

const castOp: Op = {
  name: 'cast',
  infer: ([x], { to }) => [{ shape: x.shape, dtype: to as DType }],
  lower: (e, n) =>
    e.emit('Cast', [e.name(n.inputs[0])], [e.name(n.outputs[0])], {
      to: A.int(onnxDataType(n.attrs.to as DType)),
    }),
  vjp: (n, [g]) => [g && cast(g, n.inputs[0].dtype)],
};

export function cast(x: Value, to: DType): Value {
  if (x.dtype === to) return x;
  return apply(castOp, [x], { to });
}

const stopGradientOp: Op = {
  name: 'stop_gradient',
  infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
  lower: (e, n: Node) => e.emit('Identity', [e.name(n.inputs[0])], [e.name(n.outputs[0])]),
  vjp: () => [null],
};

export const stopGradient = (x: Value): Value => apply(stopGradientOp, [x]);
