/** Unary and broadcasting binary elementwise primitives. */
import { type DType, type Node, type Shape, ShapeError, type Value } from '../graph/graph.js';
import {
  A,
  apply,
  type Emitter,
  graphOf,
  isFloat,
  lift,
  type Op,
  type Operand,
  type TypeInfo,
} from './op.js';
import { cast, onnxDataType, stopGradient } from './shape.js';

export function broadcastShapes(a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new ShapeError(`shapes [${a}] and [${b}] do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

const simpleLower =
  (onnx: string, attrs?: (node: Node) => Record<string, ReturnType<typeof A.int>>) =>
  (e: Emitter, node: Node) =>
    e.emit(
      onnx,
      node.inputs.map((x) => e.name(x)),
      [e.name(node.outputs[0])],
      attrs?.(node),
    );

function unaryOp(
  name: string,
  onnx: string,
  vjp?: (x: Value, y: Value, g: Value, node: Node) => Value | null,
  attrs?: (node: Node) => Record<string, ReturnType<typeof A.int>>,
): Op {
  return {
    name,
    infer: ([x]): TypeInfo[] => [{ shape: x.shape, dtype: x.dtype }],
    lower: simpleLower(onnx, attrs),
    vjp: vjp && ((node, [g]) => [g && vjp(node.inputs[0], node.outputs[0], g, node)]),
  };
}

/** A scalar Constant node of dtype `dt` (Constant makes float32; other dtypes get a Cast). */
function scalarConstant(e: Emitter, v: number, dt: DType, hint: string): string {
  const c = e.tmp(hint);
  e.emit('Constant', [], [c], { value_float: A.float(v) });
  if (dt === 'float32') return c;
  const cc = e.tmp(`${hint}_cast`);
  e.emit('Cast', [c], [cc], { to: A.int(onnxDataType(dt)) });
  return cc;
}

/** 1 where x > 0, else 0, in x's dtype. */
function positive(x: Value): Value {
  return cast(greater(x, 0), x.dtype);
}

const clipOp: Op = {
  name: 'clip',
  infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
  lower(e, node) {
    const { lo, hi } = node.attrs as { lo: number; hi: number };
    const dt = node.inputs[0].dtype;
    e.emit(
      'Clip',
      [e.name(node.inputs[0]), scalarConstant(e, lo, dt, 'lo'), scalarConstant(e, hi, dt, 'hi')],
      [e.name(node.outputs[0])],
    );
  },
  vjp(node, [g]) {
    if (!g) return [null];
    const x = node.inputs[0];
    const { lo, hi } = node.attrs as { lo: number; hi: number };
    return [mul(g, mul(positive(sub(x, lo)), positive(sub(hi, x))))];
  },
};

const whereOp: Op = {
  name: 'where',
  infer([c, a, b]) {
    if (c.dtype !== 'bool') throw new ShapeError('where needs a boolean condition');
    if (a.dtype !== b.dtype) throw new ShapeError(`dtype mismatch ${a.dtype} vs ${b.dtype}`);
    return [{ shape: broadcastShapes(c.shape, broadcastShapes(a.shape, b.shape)), dtype: a.dtype }];
  },
  lower: simpleLower('Where'),
  vjp(node, [g]) {
    if (!g) return [null, null, null];
    const [c] = node.inputs;
    return [null, where(c, g, 0), where(c, 0, g)];
  },
};

/** Elementwise select: `a` where `cond` holds, else `b` (numbers become scalars of the other's dtype). */
export function where(cond: Value, a: Operand, b: Operand): Value {
  if (typeof a === 'number' && typeof b === 'number')
    throw new ShapeError('where needs at least one tensor branch');
  const av = typeof a === 'number' ? lift(a, b as Value) : a;
  const bv = typeof b === 'number' ? lift(b, av) : b;
  return apply(whereOp, [cond, av, bv]);
}

const ops: Record<string, Op> = {
  neg: unaryOp('neg', 'Neg', (_x, _y, g) => neg(g)),
  exp: unaryOp('exp', 'Exp', (_x, y, g) => mul(g, y)),
  log: unaryOp('log', 'Log', (x, _y, g) => div(g, x)),
  sqrt: unaryOp('sqrt', 'Sqrt', (_x, y, g) => div(mul(g, 0.5), y)),
  reciprocal: unaryOp('reciprocal', 'Reciprocal', (_x, y, g) => neg(mul(g, mul(y, y)))),
  sigmoid: unaryOp('sigmoid', 'Sigmoid', (_x, y, g) => mul(g, mul(y, sub(1, y)))),
  tanh: unaryOp('tanh', 'Tanh', (_x, y, g) => mul(g, sub(1, mul(y, y)))),
  erf: unaryOp('erf', 'Erf', (x, _y, g) => mul(g, mul(2 / Math.sqrt(Math.PI), exp(neg(mul(x, x)))))),
  // Gradients at the kink follow torch: 0 for relu, alpha for leaky relu.
  // The masks read the output (same sign as the input), so the input need not be kept for the backward.
  // A cast mask and Mul run 3x faster than ONNX Runtime's Where at 33M elements.
  relu: unaryOp('relu', 'Relu', (_x, y, g) => mul(g, positive(y))),
  abs: unaryOp('abs', 'Abs', (x, _y, g) => mul(g, sign(x))),
  sign: unaryOp('sign', 'Sign', () => null),
  leakyRelu: unaryOp(
    'leaky_relu',
    'LeakyRelu',
    (x, y, g, node) => {
      const alpha = node.attrs.alpha as number;
      // For 0 < alpha < 1 the slope is clip(y·2^127, alpha, 1): one scale and one Clip instead of
      // compare, cast, scale and shift, two fewer passes over every activation in a StyleGAN2 backward.
      // Only outputs below float32's smallest normal (2^-126) would get alpha instead of 1.
      // The slope is a step function of y: stopGradient keeps a second derivative (R1, path length) from
      // seeing the Clip's 2^127 scale in its sub-normal ramp.
      if (alpha > 0 && alpha < 1) return mul(g, stopGradient(clip(mul(y, 2 ** 127), alpha, 1)));
      return mul(g, add(mul(positive(alpha > 0 ? y : x), 1 - alpha), alpha));
    },
    (node) => ({ alpha: A.float(node.attrs.alpha as number) }),
  ),
  powConst: {
    name: 'pow',
    infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
    lower(e, node) {
      const p = node.attrs.p as number;
      // ONNX Pow wants the exponent in a type the kernel supports; match the base's.
      const pcast = scalarConstant(e, p, node.inputs[0].dtype, 'exponent');
      e.emit('Pow', [e.name(node.inputs[0]), pcast], [e.name(node.outputs[0])]);
    },
    vjp(node, [g]) {
      const p = node.attrs.p as number;
      const x = node.inputs[0];
      if (!g) return [null];
      const d = p === 2 ? mul(x, 2) : p === 1 ? null : mul(p, powConst(x, p - 1));
      return [d ? mul(g, d) : g];
    },
  } satisfies Op,
};

function binaryOp(
  name: string,
  onnx: string,
  vjp?: (a: Value, b: Value, y: Value, g: Value) => [Value | null, Value | null],
  outDtype?: (a: DType) => DType,
): Op {
  return {
    name,
    infer([a, b]) {
      if (a.dtype !== b.dtype) throw new ShapeError(`dtype mismatch ${a.dtype} vs ${b.dtype}`);
      return [{ shape: broadcastShapes(a.shape, b.shape), dtype: outDtype ? outDtype(a.dtype) : a.dtype }];
    },
    lower: simpleLower(onnx),
    vjp: vjp && ((node, [g]) => (g ? vjp(node.inputs[0], node.inputs[1], node.outputs[0], g) : [null, null])),
  };
}

const bin: Record<string, Op> = {
  add: binaryOp('add', 'Add', (_a, _b, _y, g) => [g, g]),
  sub: binaryOp('sub', 'Sub', (_a, _b, _y, g) => [g, neg(g)]),
  mul: binaryOp('mul', 'Mul', (a, b, _y, g) => [mul(g, b), mul(g, a)]),
  div: binaryOp('div', 'Div', (_a, b, y, g) => {
    const ga = div(g, b);
    return [ga, neg(mul(ga, y))];
  }),
  // Ties send the whole gradient to `a`, a fixed and documented choice.
  max: binaryOp('max', 'Max', (a, b, _y, g) => {
    const ga = mul(g, cast(greaterOrEqual(a, b), a.dtype));
    return [ga, sub(g, ga)];
  }),
  greater: binaryOp('greater', 'Greater', undefined, () => 'bool'),
  greaterOrEqual: binaryOp('greater_or_equal', 'GreaterOrEqual', undefined, () => 'bool'),
};

function binary(op: Op, a: Operand, b: Operand): Value {
  graphOf(a, b); // two literals make no graph value; say so clearly
  const av = typeof a === 'number' ? lift(a, b as Value) : a;
  const bv = typeof b === 'number' ? lift(b, av) : b;
  return apply(op, [av, bv]);
}

export const neg = (x: Value): Value => apply(ops.neg, [x]);
export const exp = (x: Value): Value => apply(ops.exp, [x]);
export const log = (x: Value): Value => apply(ops.log, [x]);
export const sqrt = (x: Value): Value => apply(ops.sqrt, [x]);
export const reciprocal = (x: Value): Value => apply(ops.reciprocal, [x]);
export const sigmoid = (x: Value): Value => apply(ops.sigmoid, [x]);
export const tanh = (x: Value): Value => apply(ops.tanh, [x]);
export const erf = (x: Value): Value => apply(ops.erf, [x]);
export const relu = (x: Value): Value => apply(ops.relu, [x]);
export const abs = (x: Value): Value => apply(ops.abs, [x]);
export const sign = (x: Value): Value => apply(ops.sign, [x]);
export const leakyRelu = (x: Value, alpha: number): Value => apply(ops.leakyRelu, [x], { alpha });

/** min(max(x, lo), hi) elementwise (ONNX Clip); the gradient passes where lo < x < hi. */
export function clip(x: Value, lo: number, hi: number): Value {
  if (!(lo <= hi)) throw new ShapeError(`clip needs lo <= hi, got ${lo} and ${hi}`);
  return apply(clipOp, [x], { lo, hi });
}
export function powConst(x: Value, p: number): Value {
  if (!isFloat(x.dtype)) throw new ShapeError('pow needs a float tensor');
  return apply(ops.powConst, [x], { p });
}
export const add = (a: Operand, b: Operand): Value => binary(bin.add, a, b);
export const sub = (a: Operand, b: Operand): Value => binary(bin.sub, a, b);
export const mul = (a: Operand, b: Operand): Value => binary(bin.mul, a, b);
export const div = (a: Operand, b: Operand): Value => binary(bin.div, a, b);
export const max = (a: Operand, b: Operand): Value => binary(bin.max, a, b);
export const greater = (a: Operand, b: Operand): Value => binary(bin.greater, a, b);
export const greaterOrEqual = (a: Operand, b: Operand): Value => binary(bin.greaterOrEqual, a, b);
