/**
 * A primitive op keeps its three rules together: shape/dtype inference, ONNX lowering, and the
 * vector-Jacobian product. VJPs are written with the same primitives, so gradients are graphs too.
 */
import {
  type Attrs,
  type DType,
  type Graph,
  type Node,
  type Shape,
  ShapeError,
  Value,
} from '../graph/graph.js';

export type OnnxAttr =
  | { type: 'int'; v: number }
  | { type: 'float'; v: number }
  | { type: 'ints'; v: readonly number[] }
  | { type: 'floats'; v: readonly number[] }
  | { type: 'string'; v: string };

export const A = {
  int: (v: number): OnnxAttr => ({ type: 'int', v }),
  float: (v: number): OnnxAttr => ({ type: 'float', v }),
  ints: (v: readonly number[]): OnnxAttr => ({ type: 'ints', v }),
  floats: (v: readonly number[]): OnnxAttr => ({ type: 'floats', v }),
  string: (v: string): OnnxAttr => ({ type: 'string', v }),
};

/** What a lowering rule may do: read value names, emit ONNX nodes, and make int64 constants. */
export interface Emitter {
  name(v: Value): string;
  emit(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attrs?: Record<string, OnnxAttr>,
    /** Operator set domain; ONNX's own when omitted. */
    domain?: string,
  ): void;
  /** A 1-D int64 initializer (deduplicated); ONNX wants shapes, axes and pads as such inputs. */
  ints(values: readonly number[]): string;
  /** A fresh name for an intermediate result inside one lowering. */
  tmp(hint: string): string;
}

export interface TypeInfo {
  shape: Shape;
  dtype: DType;
}

export interface Op {
  readonly name: string;
  infer(inputs: readonly Value[], attrs: Attrs): TypeInfo[];
  lower(e: Emitter, node: Node): void;
  /**
   * Cotangents for each input given the output cotangents (null = zero). Results may have a broadcast
   * shape; autodiff un-broadcasts them in one place. Omit for ops that have no gradient.
   */
  vjp?(node: Node, cts: readonly (Value | null)[]): (Value | null)[];
}

export type Operand = Value | number;

export function graphOf(...xs: Operand[]): Graph {
  for (const x of xs) if (x instanceof Value) return x.graph;
  throw new ShapeError('an op needs at least one graph value among its operands');
}

/** Numbers become scalar constants of the dtype of the tensor beside them. */
export function lift(x: Operand, like: Value): Value {
  return x instanceof Value ? x : like.graph.scalar(x, like.dtype);
}

export function applyN(op: Op, inputs: readonly Value[], attrs: Attrs = {}): Value[] {
  const g = inputs[0].graph;
  for (const x of inputs)
    if (x.graph !== g) throw new ShapeError(`${op.name}: operands come from different graphs`);
  let types: TypeInfo[];
  try {
    types = op.infer(inputs, attrs);
  } catch (err) {
    if (err instanceof ShapeError)
      throw new ShapeError(
        `${g.scopeName || '<root>'}: ${op.name}(${inputs.map((x) => `[${x.shape}]`).join(', ')}): ${err.message}`,
      );
    throw err;
  }
  return g.addNode(op, inputs, attrs, types).outputs;
}

export function apply(op: Op, inputs: readonly Value[], attrs: Attrs = {}): Value {
  return applyN(op, inputs, attrs)[0];
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function isFloat(dt: DType): boolean {
  return dt === 'float32' || dt === 'float64';
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
