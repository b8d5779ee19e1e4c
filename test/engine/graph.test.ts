/** Structure before numbers: what the graph and its gradient contain, and deterministic serialization. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { grad } from '../../src/autodiff/grad.js';
import { Graph, ShapeError, topoSort } from '../../src/graph/graph.js';
import { serialize } from '../../src/onnx/writer.js';
import * as o from '../../src/ops/index.js';
import { apply, type Op } from '../../src/ops/op.js';
import { compile } from '../../src/runtime/session.js';

test('sum(x*y + x) builds exactly mul, add, sum', () => {
  const g = new Graph();
  const x = g.input('x', [2, 3]);
  const y = g.input('y', [2, 3]);
  const loss = o.sum(o.add(o.mul(x, y), x));
  assert.deepEqual(
    topoSort([loss]).map((n) => n.op.name),
    ['mul', 'add', 'sum'],
  );
  assert.deepEqual(loss.shape, []);
});

test('grad emits nothing for inputs that need no gradient', () => {
  const g = new Graph();
  const x = g.input('x', [2, 3]);
  const y = g.input('y', [2, 3]);
  const w = g.const(new Float32Array(6).fill(2), [2, 3], 'w');
  const loss = o.sum(o.add(o.mul(x, y), o.mul(w, y)));
  const [gx] = grad(loss, [x]);
  const ops = topoSort([gx]).map((n) => n.op.name);
  // d/dx = y: the cotangent of sum viewed with kept dims, spread back, times y. Nothing for w*y's branch.
  assert.deepEqual(ops, ['reshape', 'expand', 'mul']);
});

test('gradients from several uses accumulate, and broadcasting is undone', async () => {
  const g = new Graph();
  const x = g.input('x', [3]);
  const m = g.input('m', [2, 3]);
  const loss = o.sum(o.mul(o.add(m, x), x)); // d/dx = sum_rows(m) + 4x (2 rows, x used twice)
  const [gx] = grad(loss, [x]);
  assert.deepEqual(gx.shape, [3]);
  const ex = await compile({ gx });
  const r = await ex.run({
    x: { shape: [3], data: Float32Array.from([1, 2, 3]) },
    m: { shape: [2, 3], data: Float32Array.from([1, 1, 1, 2, 2, 2]) },
  });
  assert.deepEqual([...r.gx.data], [7, 11, 15]);
});

test('stop-gradient blocks the cotangent; an unconnected input gets zeros', async () => {
  const g = new Graph();
  const x = g.input('x', [3]);
  const z = g.input('z', [2]);
  const [gx, gz] = grad(o.sum(o.mul(x, o.stopGradient(x))), [x, z]);
  const ex = await compile({ gx, gz });
  const r = await ex.run({
    x: { shape: [3], data: Float32Array.from([1, 2, 3]) },
    z: { shape: [2], data: new Float32Array(2) },
  });
  assert.deepEqual([...r.gx.data], [1, 2, 3]);
  assert.deepEqual([...r.gz.data], [0, 0]);
});

test('an op without a gradient rule on the path is an error that names it and its scope', () => {
  const opaque: Op = {
    name: 'opaque',
    infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
    lower: (e, n) => e.emit('Identity', [e.name(n.inputs[0])], [e.name(n.outputs[0])]),
  };
  const g = new Graph();
  const x = g.input('x', [3]);
  const y = g.scope('block', () => apply(opaque, [x]));
  assert.throws(() => grad(o.sum(y), [x]), /op opaque \(in block\) has no gradient/);
  // A boolean intermediate never receives a cotangent, so comparisons need no rule.
  assert.doesNotThrow(() => grad(o.sum(o.mul(o.cast(o.greater(x, 0), 'float32'), x)), [x]));
});

test('shape errors name the scope, the op and the shapes', () => {
  const g = new Graph();
  const a = g.input('a', [2, 3]);
  const b = g.input('b', [4, 3]);
  assert.throws(
    () => g.scope('synthesis', () => g.scope(3, () => o.add(a, b))),
    (e: unknown) => e instanceof ShapeError && /synthesis\.3: add\(\[2,3\], \[4,3\]\)/.test(e.message),
  );
  assert.throws(() => o.matmul(a, a), /inner dimensions/);
  assert.throws(() => o.reshape(a, [5, -1]), /cannot view/);
});

test('serialization is deterministic and names constants by scope', () => {
  const build = () => {
    const g = new Graph();
    const x = g.input('latent', [1, 4]);
    const w = g.scope('mapping', () =>
      g.scope(1, () => g.const(new Float32Array(16).fill(0.5), [4, 4], 'weight')),
    );
    const y = o.linear(x, w);
    return { bytes: serialize({ y: o.sum(y) }), w };
  };
  const a = build();
  const b = build();
  assert.equal(a.w.name, 'mapping.1.weight');
  assert.deepEqual(Buffer.from(a.bytes), Buffer.from(b.bytes));
  assert.ok(Buffer.from(a.bytes).includes(Buffer.from('mapping.1.weight')));
});

test('the runtime rejects wrong feeds clearly', async () => {
  const g = new Graph();
  const x = g.input('x', [2]);
  const ex = await compile({ y: o.mul(x, 3) });
  await assert.rejects(ex.run({}), /missing input "x"/);
  await assert.rejects(ex.run({ x: { shape: [2], data: new Float64Array(2) } }), /must be Float32Array data/);
  await assert.rejects(ex.run({ x: { shape: [3], data: new Float32Array(3) } }), /must have shape \[2\]/);
  await assert.rejects(
    ex.run({ x: { shape: [2], data: new Float32Array(2) }, q: { shape: [1], data: new Float32Array(1) } }),
    /unknown input "q"/,
  );
});
