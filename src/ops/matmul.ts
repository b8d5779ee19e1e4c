/** Batched, broadcasting matrix product (both operands rank >= 2). */
import { ShapeError, type Value } from '../graph/graph.js';
import { broadcastShapes } from './elementwise.js';
import { A, apply, type Op } from './op.js';
import { sum } from './reduce.js';
import { reshape, transpose } from './shape.js';

/** Swaps the last two axes. */
export function mT(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return transpose(x, perm);
}

const matmulOp: Op = {
  name: 'matmul',
  infer([a, b]) {
    if (a.rank < 2 || b.rank < 2) throw new ShapeError('matmul needs rank >= 2 operands');
    if (a.dtype !== b.dtype) throw new ShapeError('dtype mismatch');
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new ShapeError(`inner dimensions ${k} and ${k2} differ`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return [{ shape: [...batch, m, n], dtype: a.dtype }];
  },
  lower: (e, n) => e.emit('MatMul', [e.name(n.inputs[0]), e.name(n.inputs[1])], [e.name(n.outputs[0])]),
  vjp(n, [g]) {
    if (!g) return [null, null];
    const [a, b] = n.inputs;
    return [matmul(g, mT(b)), matmul(mT(a), g)];
  },
};

export const matmul = (a: Value, b: Value): Value => apply(matmulOp, [a, b]);

/**
 * x @ wᵀ (+ b) with torch's [out, in] weight, lowered to Gemm(transB=1) so that a frozen weight is used
 * as stored: a Transpose of a constant would make ONNX Runtime fold a second copy of every weight.
 */
const linearOp: Op = {
  name: 'linear',
  infer([x, w, b]) {
    if (x.rank < 1 || w.rank !== 2) throw new ShapeError('linear needs x [..., in] and w [out, in]');
    if (x.shape[x.rank - 1] !== w.shape[1])
      throw new ShapeError(`input features ${x.shape[x.rank - 1]} vs weight [${w.shape}]`);
    if (b && (b.rank !== 1 || b.shape[0] !== w.shape[0]))
      throw new ShapeError(`bias [${b.shape}] vs weight [${w.shape}]`);
    return [{ shape: [...x.shape.slice(0, -1), w.shape[0]], dtype: x.dtype }];
  },
  lower(e, n) {
    const [x, w, b] = n.inputs;
    const rows = x.size / x.shape[x.rank - 1];
    const flat = x.rank === 2 ? e.name(x) : e.tmp('linear_in');
    if (x.rank !== 2) e.emit('Reshape', [e.name(x), e.ints([rows, x.shape[x.rank - 1]])], [flat]);
    const out = n.outputs[0];
    const res = out.rank === 2 ? e.name(out) : e.tmp('linear_out');
    e.emit('Gemm', b ? [flat, e.name(w), e.name(b)] : [flat, e.name(w)], [res], { transB: A.int(1) });
    if (out.rank !== 2) e.emit('Reshape', [res, e.ints(out.shape)], [e.name(out)]);
  },
  vjp(n, [g]) {
    if (!g) return n.inputs.map(() => null);
    const [x, w, b] = n.inputs;
    const g2 = reshape(g, [g.size / w.shape[0], w.shape[0]]); // [rows, out]
    const x2 = reshape(x, [x.size / w.shape[1], w.shape[1]]); // [rows, in]
    const gx = matmul(g, w);
    const gw = matmul(mT(g2), x2);
    return b ? [gx, gw, sum(g2, 0)] : [gx, gw];
  },
};

/** torch.nn.functional.linear: x [..., in], w [out, in], b [out]. */
export function linear(x: Value, w: Value, b?: Value): Value {
  return apply(linearOp, b ? [x, w, b] : [x, w]);
}
