/** Reductions and softmax. */
import { type Node, sizeOf, type Value } from '../graph/graph.js';
import { div, mul, sub } from './elementwise.js';
import { A, apply, type Op } from './op.js';
import { expand, reshape } from './shape.js';

function reducedShape(shape: readonly number[], axes: readonly number[], keepdims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

/** The cotangent of a reduction, broadcast back over the reduced axes. */
function spread(n: Node, g: Value): Value {
  const x = n.inputs[0];
  const axes = n.attrs.axes as number[];
  return expand(reshape(g, reducedShape(x.shape, axes, true)), x.shape);
}

function reduceOp(name: string, onnx: string, vjp: (n: Node, g: Value) => Value): Op {
  return {
    name,
    infer: ([x], { axes, keepdims }) => [
      { shape: reducedShape(x.shape, axes as number[], keepdims as boolean), dtype: x.dtype },
    ],
    lower: (e, n) =>
      e.emit(onnx, [e.name(n.inputs[0]), e.ints(n.attrs.axes as number[])], [e.name(n.outputs[0])], {
        keepdims: A.int(n.attrs.keepdims ? 1 : 0),
      }),
    vjp: (n, [g]) => [g && vjp(n, g)],
  };
}

const sumOp = reduceOp('sum', 'ReduceSum', spread);
const meanOp = reduceOp('mean', 'ReduceMean', (n, g) => {
  const count = n.inputs[0].size / n.outputs[0].size;
  return spread(n, div(g, count));
});

function axesOf(x: Value, axes?: number | readonly number[]): number[] {
  if (axes === undefined) return x.shape.map((_, i) => i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  return [...new Set(list.map((a) => (a < 0 ? a + x.rank : a)))].sort((a, b) => a - b);
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Value, axes?: number | readonly number[], keepdims = false): Value {
  const ax = axesOf(x, axes);
  if (ax.length === 0) return x;
  return apply(sumOp, [x], { axes: ax, keepdims });
}

export function mean(x: Value, axes?: number | readonly number[], keepdims = false): Value {
  const ax = axesOf(x, axes);
  if (ax.length === 0) return x;
  return apply(meanOp, [x], { axes: ax, keepdims });
}

const softmaxOp: Op = {
  name: 'softmax',
  infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
  lower: (e, n) =>
    e.emit('Softmax', [e.name(n.inputs[0])], [e.name(n.outputs[0])], { axis: A.int(n.attrs.axis as number) }),
  vjp(n, [g]) {
    if (!g) return [null];
    const y = n.outputs[0];
    const gy = mul(g, y);
    return [sub(gy, mul(y, sum(gy, n.attrs.axis as number, true)))];
  },
};

export function softmax(x: Value, axis = -1): Value {
  return apply(softmaxOp, [x], { axis: axis < 0 ? axis + x.rank : axis });
}

export const numel = (x: Value): number => sizeOf(x.shape);
