/**
 * Reverse-mode autodiff over the graph. Only nodes on a path from `wrt` to the loss are visited;
 * cotangents always accumulate (micrograd's `+=`), and are un-broadcast here and nowhere else.
 */
import { type Shape, ShapeError, topoSort, type Value } from '../graph/graph.js';
import { add } from '../ops/elementwise.js';
import { isFloat, sameShape } from '../ops/op.js';
import { sum } from '../ops/reduce.js';
import { expand, reshape } from '../ops/shape.js';

/** Sums a cotangent of a broadcast result back to the operand's shape. */
export function unbroadcast(ct: Value, shape: Shape): Value {
  if (sameShape(ct.shape, shape)) return ct;
  const lead = ct.rank - shape.length;
  if (lead < 0) throw new ShapeError(`cotangent [${ct.shape}] has lower rank than [${shape}]`);
  const axes: number[] = [];
  for (let i = 0; i < ct.rank; i++)
    if (i < lead || (shape[i - lead] === 1 && ct.shape[i] !== 1)) axes.push(i);
  return reshape(sum(ct, axes), shape);
}

export function zerosLike(x: Value): Value {
  return expand(x.graph.scalar(0, x.dtype), x.shape);
}

/**
 * Gradients of `loss` with respect to each of `wrt`. A non-scalar loss needs `seed`, the cotangent of
 * the loss (the vector in a vector-Jacobian product).
 */
export function grad(loss: Value, wrt: readonly Value[], seed?: Value): Value[] {
  const g = loss.graph;
  if (!isFloat(loss.dtype)) throw new ShapeError('grad: the loss must be a float tensor');
  if (!seed && loss.size !== 1)
    throw new ShapeError(`grad: the loss has shape [${loss.shape}]; pass a seed cotangent`);
  if (seed && !sameShape(seed.shape, loss.shape)) throw new ShapeError('grad: seed and loss shapes differ');
  for (const x of wrt)
    if (!isFloat(x.dtype)) throw new ShapeError('grad: can only differentiate float values');

  return g.scope('grad', () => {
    const order = topoSort([loss]);
    const wrtSet = new Set<Value>(wrt);
    const needs = new Set<Value>(wrt);
    for (const node of order)
      if (node.inputs.some((x) => needs.has(x)))
        for (const y of node.outputs) if (isFloat(y.dtype)) needs.add(y);

    const cts = new Map<Value, Value>();
    const accumulate = (x: Value, ct: Value) => {
      const c = unbroadcast(ct, x.shape);
      const prev = cts.get(x);
      cts.set(x, prev ? add(prev, c) : c);
    };
    if (needs.has(loss)) accumulate(loss, seed ?? expand(g.scalar(1, loss.dtype), loss.shape));

    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i];
      if (!node.outputs.some((y) => cts.has(y))) continue;
      if (!node.inputs.some((x) => needs.has(x))) continue;
      if (!node.op.vjp)
        throw new ShapeError(`grad: op ${node.op.name} (in ${node.scope || '<root>'}) has no gradient`);
      const inCts = node.op.vjp(
        node,
        node.outputs.map((y) => cts.get(y) ?? null),
      );
      node.inputs.forEach((x, k) => {
        const ct = inCts[k];
        if (ct && needs.has(x)) accumulate(x, ct);
      });
      // Intermediate cotangents are no longer needed once consumed.
      for (const y of node.outputs) if (!wrtSet.has(y)) cts.delete(y);
    }
    return wrt.map((x) => cts.get(x) ?? zerosLike(x));
  });
}
