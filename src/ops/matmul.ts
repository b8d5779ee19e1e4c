/** Batched, broadcasting matrix product (both operands rank >= 2). */
import { ShapeError, type Value } from '../graph/graph.js';
import { broadcastShapes } from './elementwise.js';
import { apply, type Op } from './op.js';
import { transpose } from './shape.js';

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
