/**
 * The graph IR: values with static shapes, nodes that apply a primitive op, and a graph that owns both.
 * Frozen weights are constants (ONNX initializers); latents, codes and trainable weights are inputs.
 */
import type { Op } from '../ops/op.js';

export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool' | 'uint8';
export type Shape = readonly number[];
export type ConstData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export type Attrs = Record<string, unknown>;

export class Node {
  readonly outputs: Value[] = [];
  constructor(
    readonly id: number,
    readonly op: Op,
    readonly inputs: readonly Value[],
    readonly attrs: Attrs,
    readonly scope: string,
  ) {}
}

export type ValueKind = 'input' | 'const' | 'node';

export class Value {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Shape,
    readonly dtype: DType,
    readonly kind: ValueKind,
    /** Producer for kind 'node'. */
    readonly node?: Node,
    /** Stable ONNX name for inputs and constants. */
    readonly name?: string,
    /** Host data for constants. */
    readonly data?: ConstData,
  ) {}

  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
}

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export class ShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

export function typedArrayFor(dtype: DType, n: number): ConstData {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'int32':
      return new Int32Array(n);
    default:
      return new Uint8Array(n);
  }
}

export class Graph {
  private nextId = 0;
  private scopeStack: string[] = [];
  readonly inputs: Value[] = [];
  readonly constants: Value[] = [];
  private readonly usedNames = new Set<string>();
  /** Scalar constants are shared: the same literal in many places is one initializer. */
  private readonly scalars = new Map<string, Value>();

  get scopeName(): string {
    return this.scopeStack.join('.');
  }

  /** Runs `fn` with `name` appended to the scope, so constants and nodes get paths like `synthesis.convs.3.conv`. */
  scope<T>(name: string | number, fn: () => T): T {
    this.scopeStack.push(String(name));
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  private uniqueName(base: string): string {
    let name = base;
    for (let k = 1; this.usedNames.has(name); k++) name = `${base}_${k}`;
    this.usedNames.add(name);
    return name;
  }

  private scoped(name: string): string {
    const s = this.scopeName;
    return s ? `${s}.${name}` : name;
  }

  input(name: string, shape: Shape, dtype: DType = 'float32'): Value {
    checkShape(shape, `input ${name}`);
    if (this.usedNames.has(name)) throw new ShapeError(`duplicate input name ${name}`);
    this.usedNames.add(name);
    const v = new Value(this, this.nextId++, [...shape], dtype, 'input', undefined, name);
    this.inputs.push(v);
    return v;
  }

  /** A frozen tensor. `name` is scoped, so `g.scope('conv', () => g.const(w, s, 'weight'))` gives `conv.weight`. */
  const(data: ConstData, shape: Shape, name = 'const', dtype?: DType): Value {
    checkShape(shape, `constant ${name}`);
    const dt = dtype ?? dtypeOfData(data);
    if (data.length !== sizeOf(shape))
      throw new ShapeError(`constant ${this.scoped(name)}: ${data.length} values for shape [${shape}]`);
    const v = new Value(
      this,
      this.nextId++,
      [...shape],
      dt,
      'const',
      undefined,
      this.uniqueName(this.scoped(name)),
      data,
    );
    this.constants.push(v);
    return v;
  }

  scalar(x: number, dtype: DType = 'float32'): Value {
    const key = `${dtype}:${Object.is(x, -0) ? '-0' : x}`;
    let v = this.scalars.get(key);
    if (!v) {
      const data = typedArrayFor(dtype, 1);
      if (data instanceof BigInt64Array) data[0] = BigInt(x);
      else data[0] = x;
      v = new Value(
        this,
        this.nextId++,
        [],
        dtype,
        'const',
        undefined,
        this.uniqueName(`scalar.${key}`),
        data,
      );
      this.constants.push(v);
      this.scalars.set(key, v);
    }
    return v;
  }

  /** Creates the node and its outputs; called by `apply` in ops/op.ts after shape inference. */
  addNode(
    op: Op,
    inputs: readonly Value[],
    attrs: Attrs,
    outTypes: readonly { shape: Shape; dtype: DType }[],
  ): Node {
    const node = new Node(this.nextId++, op, inputs, attrs, this.scopeName);
    for (const t of outTypes) {
      checkShape(t.shape, `output of ${op.name}`);
      node.outputs.push(new Value(this, this.nextId++, [...t.shape], t.dtype, 'node', node));
    }
    return node;
  }
}

/**
 * The nodes that `outputs` depend on, each after all of its inputs' producers. The order is fixed by
 * the graph alone (inputs are visited in order), which keeps serialized bytes deterministic.
 */
export function topoSort(outputs: readonly Value[]): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>();
  for (const out of outputs) {
    const stack: [Node, boolean][] = out.node ? [[out.node, false]] : [];
    while (stack.length) {
      const [node, done] = stack.pop()!;
      if (done) {
        order.push(node);
        continue;
      }
      if (seen.has(node)) continue;
      seen.add(node);
      stack.push([node, true]);
      for (let i = node.inputs.length - 1; i >= 0; i--) {
        const x = node.inputs[i];
        if (x.node && !seen.has(x.node)) stack.push([x.node, false]);
      }
    }
  }
  return order;
}

function checkShape(shape: Shape, what: string): void {
  for (const d of shape)
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`${what}: bad dimension in shape [${shape}]`);
}

export function dtypeOfData(data: ConstData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  return 'uint8';
}
