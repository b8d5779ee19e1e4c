/** Composite layers: forward against plain TypeScript, and VJP checks (their rules come from primitives). */
import { describe, test } from 'node:test';
import { Graph, type Value } from '../../src/graph/graph.js';
import * as o from '../../src/ops/index.js';
import { compile } from '../../src/runtime/session.js';
import { seededNormal } from '../../src/util/random.js';
import { assertClose } from '../helpers.js';
import { checkVjp } from './gradcheck.js';

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

async function forward(build: (...xs: Value[]) => Value, shapes: number[][], data?: Float32Array[]) {
  const g = new Graph();
  const xs = shapes.map((s, i) => g.input(`x${i}`, s));
  const ex = await compile({ y: build(...xs) });
  const inputs = data ?? shapes.map((s, i) => seededNormal(11 + i, size(s)));
  const out = await ex.run(
    Object.fromEntries(shapes.map((s, i) => [`x${i}`, { shape: s, data: inputs[i] }])),
  );
  return { y: out.y.data as Float32Array, inputs };
}

const F32 = { dtype: 'float32' } as const;

describe('composite layers', () => {
  test('linear uses torch weight layout', async () => {
    const { y, inputs } = await forward((x, w, b) => o.linear(x, w, b), [[2, 3], [4, 3], [4]]);
    const [x, w, b] = inputs;
    const ref = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 4; j++)
        ref.push(b[j] + [0, 1, 2].reduce((s, k) => s + x[i * 3 + k] * w[j * 3 + k], 0));
    assertClose(y, ref);
    await checkVjp((x2, w2, b2) => o.linear(x2, w2, b2), [[2, 5, 3], [4, 3], [4]]);
  });

  test('layer norm', async () => {
    const { y, inputs } = await forward((x, w, b) => o.layerNorm(x, w, b), [[2, 4], [4], [4]]);
    const [x, w, b] = inputs;
    const ref: number[] = [];
    for (let r = 0; r < 2; r++) {
      const row = [...x.subarray(r * 4, r * 4 + 4)];
      const mu = row.reduce((a, v) => a + v, 0) / 4;
      const v = row.reduce((a, t) => a + (t - mu) ** 2, 0) / 4;
      row.forEach((t, i) => {
        ref.push(((t - mu) / Math.sqrt(v + 1e-5)) * w[i] + b[i]);
      });
    }
    assertClose(y, ref);
    await checkVjp((x2, w2, b2) => o.layerNorm(x2, w2, b2), [[3, 2, 6], [6], [6]]);
  });

  test('GELU (erf) and QuickGELU', async () => {
    const { y: q, inputs } = await forward((x) => o.quickGelu(x), [[10]]);
    assertClose(
      q,
      inputs[0].map((v) => v / (1 + Math.exp(-1.702 * v))),
    );
    await checkVjp((x) => o.quickGelu(x), [[3, 4]]);
    await checkVjp((x) => o.gelu(x), [[3, 4]], F32);
  });

  test('PReLU per channel', async () => {
    const { y, inputs } = await forward((x, a) => o.prelu(x, a), [[1, 2, 2, 2], [2]]);
    const [x, a] = inputs;
    assertClose(
      y,
      [...x].map((v, i) => (v > 0 ? v : a[Math.floor(i / 4)] * v)),
    );
    await checkVjp((x2, a2) => o.prelu(x2, a2), [[2, 3, 2, 2], [3]]);
  });

  test('batch norm, inference mode', async () => {
    const shapes = [[2, 3, 2, 2], [3], [3], [3], [3]];
    const data = shapes.map((s, i) => seededNormal(30 + i, size(s)));
    data[4] = data[4].map((v) => Math.abs(v) + 0.1); // variance
    const { y } = await forward((x, w, b, m, v) => o.batchNorm(x, w, b, m, v), shapes, data);
    const [x, w, b, m, v] = data;
    assertClose(
      y,
      [...x].map((t, i) => {
        const c = Math.floor(i / 4) % 3;
        return ((t - m[c]) / Math.sqrt(v[c] + 1e-5)) * w[c] + b[c];
      }),
    );
    await checkVjp(
      (x2, w2, b2) => o.batchNorm(x2, w2, b2, w2, o.add(o.mul(b2, b2), 1)),
      [[2, 3, 2, 2], [3], [3]],
    );
  });

  test('adaptive average pool uses torch windows for non-integer ratios', async () => {
    // 5 -> 3: windows [0,2), [1,4), [3,5)
    const { y, inputs } = await forward((x) => o.adaptiveAvgPool2d(x, [3, 1]), [[1, 1, 5, 1]]);
    const x = inputs[0];
    assertClose(y, [(x[0] + x[1]) / 2, (x[1] + x[2] + x[3]) / 3, (x[3] + x[4]) / 2]);
    await checkVjp((x2) => o.adaptiveAvgPool2d(x2, [3, 4]), [[1, 2, 7, 9]]);
    await checkVjp((x2) => o.adaptiveAvgPool2d(x2, 2), [[1, 2, 4, 6]], F32);
  });

  test('upfirdn2d matches the direct definition', async () => {
    const k = Float32Array.from([1, 3, 3, 1, 2, 6, 6, 2, 1, 3, 3, 1, 0, 1, 2, 0]).map((v) => v / 10);
    for (const [up, down, pads] of [
      [2, 1, [2, 1, 2, 1]],
      [1, 2, [1, 1, 1, 1]],
      [1, 1, [-1, 2, 1, 0]],
    ] as const) {
      const g = new Graph();
      const x = g.input('x', [1, 2, 5, 6]);
      const ex = await compile({ y: o.upfirdn2d(x, g.const(k, [4, 4], 'k'), up, down, pads) });
      const xd = seededNormal(3, 60);
      const out = await ex.run({ x: { shape: [1, 2, 5, 6], data: xd } });
      assertClose(out.y.data as Float32Array, upfirdnRef(xd, [2, 5, 6], k, up, down, pads));
      await checkVjp(
        (v) => o.upfirdn2d(v, v.graph.const(k, [4, 4], 'k'), up, down, pads),
        [[1, 2, 5, 6]],
        F32,
      );
    }
  });
});

function upfirdnRef(
  x: Float32Array,
  [c, h, w]: number[],
  k: Float32Array,
  up: number,
  down: number,
  [x0, x1, y0, y1]: readonly number[],
): number[] {
  const uh = h * up;
  const uw = w * up;
  const ph = uh + y0 + y1;
  const pw = uw + x0 + x1;
  const at = (ch: number, yy: number, xx: number) => {
    const uy = yy - y0;
    const ux = xx - x0;
    if (uy < 0 || ux < 0 || uy >= uh || ux >= uw || uy % up || ux % up) return 0;
    return x[(ch * h + uy / up) * w + ux / up];
  };
  const out: number[] = [];
  for (let ch = 0; ch < c; ch++)
    for (let i = 0; i + 4 <= ph; i += down)
      for (let j = 0; j + 4 <= pw; j += down) {
        let s = 0;
        // A true convolution: the kernel is flipped relative to correlation.
        for (let u = 0; u < 4; u++)
          for (let v = 0; v < 4; v++) s += at(ch, i + u, j + v) * k[(3 - u) * 4 + (3 - v)];
        out.push(s);
      }
  return out;
}
