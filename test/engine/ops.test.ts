/** Forward checks of every primitive against plain TypeScript, and a VJP check of each gradient rule. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { grad } from '../../src/autodiff/grad.js';
import { Graph, type Value } from '../../src/graph/graph.js';
import * as o from '../../src/ops/index.js';
import { compile } from '../../src/runtime/session.js';
import { seededNormal } from '../../src/util/random.js';
import { assertClose } from '../helpers.js';
import { checkVjp } from './gradcheck.js';

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Runs `build` on seeded inputs and compares with `ref` applied to the same plain arrays. */
async function checkForward(
  build: (...xs: Value[]) => Value,
  shapes: number[][],
  ref: (...xs: Float32Array[]) => ArrayLike<number>,
  domain?: (x: number) => number,
) {
  const g = new Graph();
  const xs = shapes.map((s, i) => g.input(`x${i}`, s));
  const ex = await compile({ y: build(...xs) });
  const data = shapes.map((s, i) => {
    const d = seededNormal(7 + i, size(s));
    return domain ? d.map(domain) : d;
  });
  const out = await ex.run(Object.fromEntries(shapes.map((s, i) => [`x${i}`, { shape: s, data: data[i] }])));
  assertClose(out.y.data as Float32Array, ref(...data), { rtol: 1e-5, atol: 1e-5 });
}

const pos = (x: number) => Math.abs(x) + 0.5;
/** Values in (-0.75, 0.75) or beyond ±1.25, never near ±1. */
const awayFromOne = (x: number) => (Math.abs(x) < 1 ? 0.75 * x : x + 0.25 * Math.sign(x));
const F32 = { dtype: 'float32' } as const;

// Abramowitz-Stegun 7.1.26 is only good to 1.5e-7; a series is exact enough for |x| < 4.
function erfRef(x: number): number {
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

describe('unary primitives', () => {
  const unary: [string, (x: Value) => Value, (x: number) => number, ((x: number) => number)?][] = [
    ['neg', o.neg, (x) => -x],
    ['exp', o.exp, Math.exp],
    ['log', o.log, Math.log, pos],
    ['sqrt', o.sqrt, Math.sqrt, pos],
    ['reciprocal', o.reciprocal, (x) => 1 / x, pos],
    ['sigmoid', o.sigmoid, (x) => 1 / (1 + Math.exp(-x))],
    ['tanh', o.tanh, Math.tanh],
    ['erf', o.erf, erfRef],
    ['relu', o.relu, (x) => Math.max(x, 0)],
    ['leakyRelu', (x) => o.leakyRelu(x, 0.2), (x) => (x > 0 ? x : 0.2 * x)],
    // α outside (0, 1) takes the other backward branch (a mask of the input, not the clipped output)
    ['leakyRelu α=1.5', (x) => o.leakyRelu(x, 1.5), (x) => (x > 0 ? x : 1.5 * x)],
    ['leakyRelu α=-0.3', (x) => o.leakyRelu(x, -0.3), (x) => (x > 0 ? x : -0.3 * x)],
    ['leakyRelu α=0', (x) => o.leakyRelu(x, 0), (x) => Math.max(x, 0)],
    ['abs', o.abs, Math.abs],
    // The draw is moved away from the bounds (±1) so that finite differences do not straddle a kink.
    ['clip', (x) => o.clip(x, -1, 1), (x) => Math.min(Math.max(x, -1), 1), awayFromOne],
    ['pow3', (x) => o.powConst(x, 3), (x) => x ** 3],
    // powers 1 and 2 have their own backward shortcuts
    ['pow1', (x) => o.powConst(x, 1), (x) => x],
    ['pow2', (x) => o.powConst(x, 2), (x) => x ** 2],
    ['sign', o.sign, Math.sign],
    ['pow-0.5', (x) => o.powConst(x, -0.5), (x) => x ** -0.5, pos],
  ];
  for (const [name, f, ref, domain] of unary) {
    test(`${name} forward`, () => checkForward(f, [[3, 7]], (x) => x.map(ref), domain));
    test(`${name} vjp`, async () => {
      // erf has no float64 kernel in ONNX Runtime's CPU provider.
      const dtype = name === 'erf' ? 'float32' : 'float64';
      // Kinks (relu, abs, leaky) are avoided by the seeded draw, which keeps every value away from 0.
      await checkVjp(f, [[3, 7]], { dtype, domain });
      await checkVjp(f, [[2, 1, 5]], { dtype, domain, seed: 2 });
    });
  }
});

describe('binary primitives broadcast like numpy', () => {
  const binary: [string, (a: Value, b: Value) => Value, (a: number, b: number) => number][] = [
    ['add', o.add, (a, b) => a + b],
    ['sub', o.sub, (a, b) => a - b],
    ['mul', o.mul, (a, b) => a * b],
    ['div', o.div, (a, b) => a / b],
    ['max', o.max, Math.max],
  ];
  for (const [name, f, ref] of binary) {
    test(`${name} forward [2,3] with [3]`, () =>
      checkForward(f, [[2, 3], [3]], (a, b) => a.map((x, i) => ref(x, b[i % 3]))));
    test(`${name} vjp`, async () => {
      const domain = name === 'div' ? pos : undefined;
      for (const shapes of [
        [
          [2, 3],
          [2, 3],
        ],
        [[2, 3], [3]],
        [
          [4, 1, 3],
          [2, 1],
        ],
        [[1], [2, 2]],
      ])
        await checkVjp(f, shapes, { domain });
    });
  }
  test('where selects, and sends each cotangent to the branch it came from', async () => {
    await checkForward(
      (a, b) => o.where(o.greater(a, b), a, b),
      [[2, 3], [3]],
      (a, b) => a.map((x, i) => Math.max(x, b[i % 3])),
    );
    await checkVjp((a, b) => o.where(o.greater(a, 0), a, o.mul(b, 3)), [[2, 3], [3]]);
    await checkVjp((a) => o.where(o.greater(a, 0), 1, a), [[4]]);
  });
  test('leaky relu slope at and near 0 follows torch (alpha at 0), also for tiny normal outputs', async () => {
    const g = new Graph();
    const x = g.input('x', [5]);
    const [dx] = grad(o.sum(o.leakyRelu(x, 0.2)), [x]);
    const exe = await compile({ dx });
    const v = Float32Array.from([0, -0, 2 ** -126, -(2 ** -126), -3]);
    const out = (await exe.run({ x: { shape: [5], data: v } })).dx.data as Float32Array;
    assert.deepEqual(Array.from(out), [0.2, 0.2, 1, 0.2, 0.2].map(Math.fround));
  });
  test('number operands become scalars of the tensor dtype', () =>
    checkForward(
      (x) => o.sub(1, o.mul(x, 2)),
      [[4]],
      (x) => x.map((v) => 1 - 2 * v),
    ));
});

describe('reductions and softmax', () => {
  test('sum / mean forward', async () => {
    await checkForward(
      (x) => o.sum(x, 1),
      [[2, 3]],
      (x) => [x[0] + x[1] + x[2], x[3] + x[4] + x[5]],
    );
    await checkForward(
      (x) => o.mean(x, [0], true),
      [[2, 3]],
      (x) => [0, 1, 2].map((i) => (x[i] + x[i + 3]) / 2),
    );
    await checkForward(
      (x) => o.sum(x),
      [[2, 3]],
      (x) => [x.reduce((a, b) => a + b, 0)],
    );
  });
  test('sum / mean vjp', async () => {
    await checkVjp((x) => o.sum(x, [0, 2]), [[2, 3, 4]]);
    await checkVjp((x) => o.mean(x, -1, true), [[2, 3, 4]]);
    await checkVjp((x) => o.mean(x), [[5]]);
  });
  test('softmax forward and vjp', async () => {
    await checkForward(
      (x) => o.softmax(x),
      [[2, 3]],
      (x) => {
        const out: number[] = [];
        for (const r of [0, 3]) {
          const e = [0, 1, 2].map((i) => Math.exp(x[r + i]));
          const s = e[0] + e[1] + e[2];
          out.push(...e.map((v) => v / s));
        }
        return out;
      },
    );
    await checkVjp((x) => o.softmax(x, 1), [[2, 4, 3]]);
  });
});

function matmulRef(
  a: Float32Array,
  b: Float32Array,
  batch: number,
  m: number,
  k: number,
  n: number,
  bBatch: boolean,
) {
  const out = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; t++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += a[t * m * k + i * k + q] * b[(bBatch ? t * k * n : 0) + q * n + j];
        out[t * m * n + i * n + j] = s;
      }
  return out;
}

describe('matmul', () => {
  test('forward, batched and broadcast', async () => {
    await checkForward(
      o.matmul,
      [
        [3, 2, 4],
        [4, 5],
      ],
      (a, b) => matmulRef(a, b, 3, 2, 4, 5, false),
    );
    await checkForward(
      o.matmul,
      [
        [3, 2, 4],
        [3, 4, 5],
      ],
      (a, b) => matmulRef(a, b, 3, 2, 4, 5, true),
    );
  });
  test('vjp', async () => {
    await checkVjp(o.matmul, [
      [2, 3],
      [3, 4],
    ]);
    await checkVjp(o.matmul, [
      [2, 2, 3],
      [3, 4],
    ]);
    await checkVjp(o.matmul, [
      [2, 1, 2, 3],
      [3, 3, 2],
    ]);
  });
});

interface ConvCase {
  x: number[];
  w: number[];
  stride?: number | [number, number];
  pads?: number | [number, number, number, number];
  dilation?: number | [number, number];
  groups?: number;
  outputPadding?: number | [number, number];
}

/** Direct definition of torch's conv2d (cross-correlation). */
function convRef(x: Float32Array, w: Float32Array, c: ConvCase): Float64Array {
  const [n, ci, h, wd] = c.x;
  const [co, cg, kh, kw] = c.w;
  const g = c.groups ?? 1;
  const s = typeof c.stride === 'number' ? [c.stride, c.stride] : (c.stride ?? [1, 1]);
  const p = typeof c.pads === 'number' ? [c.pads, c.pads, c.pads, c.pads] : (c.pads ?? [0, 0, 0, 0]);
  const d = typeof c.dilation === 'number' ? [c.dilation, c.dilation] : (c.dilation ?? [1, 1]);
  const ho = Math.floor((h + p[0] + p[2] - d[0] * (kh - 1) - 1) / s[0]) + 1;
  const wo = Math.floor((wd + p[1] + p[3] - d[1] * (kw - 1) - 1) / s[1]) + 1;
  const out = new Float64Array(n * co * ho * wo);
  for (let b = 0; b < n; b++)
    for (let o2 = 0; o2 < co; o2++) {
      const grp = Math.floor(o2 / (co / g));
      for (let i = 0; i < ho; i++)
        for (let j = 0; j < wo; j++) {
          let acc = 0;
          for (let c2 = 0; c2 < cg; c2++)
            for (let u = 0; u < kh; u++)
              for (let v = 0; v < kw; v++) {
                const y = i * s[0] + u * d[0] - p[0];
                const xx = j * s[1] + v * d[1] - p[1];
                if (y < 0 || y >= h || xx < 0 || xx >= wd) continue;
                acc +=
                  x[((b * ci + grp * cg + c2) * h + y) * wd + xx] * w[((o2 * cg + c2) * kh + u) * kw + v];
              }
          out[((b * co + o2) * ho + i) * wo + j] = acc;
        }
    }
  return out;
}

/** torch's conv_transpose2d by scattering each input pixel. */
function convTRef(x: Float32Array, w: Float32Array, c: ConvCase): Float64Array {
  const [n, ci, h, wd] = c.x;
  const [, og, kh, kw] = c.w;
  const g = c.groups ?? 1;
  const s = typeof c.stride === 'number' ? [c.stride, c.stride] : (c.stride ?? [1, 1]);
  const p = typeof c.pads === 'number' ? [c.pads, c.pads, c.pads, c.pads] : (c.pads ?? [0, 0, 0, 0]);
  const d = typeof c.dilation === 'number' ? [c.dilation, c.dilation] : (c.dilation ?? [1, 1]);
  const op =
    typeof c.outputPadding === 'number' ? [c.outputPadding, c.outputPadding] : (c.outputPadding ?? [0, 0]);
  const ho = (h - 1) * s[0] - p[0] - p[2] + d[0] * (kh - 1) + op[0] + 1;
  const wo = (wd - 1) * s[1] - p[1] - p[3] + d[1] * (kw - 1) + op[1] + 1;
  const co = og * g;
  const out = new Float64Array(n * co * ho * wo);
  const cpg = ci / g;
  for (let b = 0; b < n; b++)
    for (let c2 = 0; c2 < ci; c2++) {
      const grp = Math.floor(c2 / cpg);
      for (let i = 0; i < h; i++)
        for (let j = 0; j < wd; j++)
          for (let o2 = 0; o2 < og; o2++)
            for (let u = 0; u < kh; u++)
              for (let v = 0; v < kw; v++) {
                const y = i * s[0] + u * d[0] - p[0];
                const xx = j * s[1] + v * d[1] - p[1];
                if (y < 0 || y >= ho || xx < 0 || xx >= wo) continue;
                out[((b * co + grp * og + o2) * ho + y) * wo + xx] +=
                  x[((b * ci + c2) * h + i) * wd + j] * w[((c2 * og + o2) * kh + u) * kw + v];
              }
    }
  return out;
}

describe('conv2d', () => {
  const cases: ConvCase[] = [
    { x: [2, 3, 6, 6], w: [4, 3, 3, 3], pads: 1 },
    { x: [1, 4, 7, 6], w: [6, 2, 3, 2], stride: 2, pads: [1, 0, 2, 1], groups: 2 },
    { x: [1, 2, 9, 9], w: [2, 2, 3, 3], dilation: 2, stride: [2, 1] },
    { x: [2, 4, 5, 5], w: [4, 1, 3, 3], pads: 1, groups: 4 },
    { x: [1, 3, 8, 8], w: [2, 3, 1, 1], stride: 3 },
    // Pads wider than the kernel: the stride-1 input gradient cannot be a plain conv (negative pads).
    { x: [1, 2, 5, 4], w: [3, 2, 3, 3], pads: [3, 0, 1, 3] },
  ];
  for (const c of cases) {
    const label = JSON.stringify(c);
    test(`forward ${label}`, () =>
      checkForward(
        (x, w) => o.conv2d(x, w, c),
        [c.x, c.w],
        (x, w) => convRef(x, w, c),
      ));
    test(`vjp (input and weight, both weight-gradient formulations) ${label}`, async () => {
      for (const weightGrad of ['unfold', 'conv'] as const)
        await checkVjp((x, w) => o.conv2d(x, w, { ...c, weightGrad }), [c.x, c.w], F32);
    });
  }
});

describe('conv_transpose2d', () => {
  const cases: ConvCase[] = [
    { x: [1, 3, 4, 4], w: [3, 2, 3, 3], stride: 2 },
    { x: [2, 4, 3, 5], w: [4, 3, 3, 2], stride: 2, pads: [1, 0, 0, 1], outputPadding: 1, groups: 2 },
    { x: [1, 2, 4, 4], w: [2, 2, 3, 3], pads: 1 },
    { x: [1, 2, 3, 3], w: [2, 1, 2, 2], stride: 3, dilation: 2, groups: 2, outputPadding: [2, 1] },
  ];
  for (const c of cases) {
    const label = JSON.stringify(c);
    test(`forward ${label}`, () =>
      checkForward(
        (x, w) => o.convTranspose2d(x, w, c),
        [c.x, c.w],
        (x, w) => convTRef(x, w, c),
      ));
    test(`vjp (input and weight, both weight-gradient formulations) ${label}`, async () => {
      for (const weightGrad of ['unfold', 'conv'] as const)
        await checkVjp((x, w) => o.convTranspose2d(x, w, { ...c, weightGrad }), [c.x, c.w], F32);
    });
    if (c.dilation === undefined)
      test(`polyphase formulation ${label}`, async () => {
        await checkForward(
          (x, w) => o.convTranspose2dPolyphase(x, w, c),
          [c.x, c.w],
          (x, w) => convTRef(x, w, c),
        );
        await checkVjp((x, w) => o.convTranspose2dPolyphase(x, w, c), [c.x, c.w], F32);
      });
  }
});

describe('pooling and resizing', () => {
  test('avg pool forward (count_include_pad) and vjp', async () => {
    await checkForward(
      (x) => o.avgPool2d(x, 2),
      [[1, 1, 4, 4]],
      (x) => [0, 2, 8, 10].map((i) => (x[i] + x[i + 1] + x[i + 4] + x[i + 5]) / 4),
    );
    await checkVjp((x) => o.avgPool2d(x, 2), [[2, 3, 4, 6]], F32);
    await checkVjp((x) => o.avgPool2d(x, 3, 2, 1), [[1, 2, 7, 6]], F32);
  });
  test('nearest upsample forward and vjp', async () => {
    await checkForward(
      (x) => o.upsampleNearest(x, 2),
      [[1, 1, 2, 2]],
      (x) => [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3].map((i) => x[i]),
    );
    await checkVjp((x) => o.upsampleNearest(x, 3), [[2, 2, 3, 2]], F32);
  });
});

describe('data movement', () => {
  test('reshape, transpose, expand, concat forward', async () => {
    await checkForward(
      (x) => o.transpose(x, [1, 0]),
      [[2, 3]],
      (x) => [0, 3, 1, 4, 2, 5].map((i) => x[i]),
    );
    await checkForward(
      (x) => o.reshape(x, [3, -1]),
      [[2, 3]],
      (x) => x,
    );
    await checkForward(
      (x) => o.expand(x, [2, 3]),
      [[3]],
      (x) => [...x, ...x],
    );
    await checkForward(
      (a, b) => o.concat([a, b], 1),
      [
        [2, 1],
        [2, 2],
      ],
      (a, b) => [a[0], b[0], b[1], a[1], b[2], b[3]],
    );
  });
  test('pad and slice forward (negative steps, clamped ends)', async () => {
    await checkForward(
      (x) => o.pad(x, [0, 1, 1, 0]),
      [[2, 2]],
      (x) => [0, x[0], x[1], 0, x[2], x[3], 0, 0, 0],
    );
    await checkForward(
      (x) => o.slice(x, [1, 5], [2, -100], [1, -2]),
      [[2, 6]],
      (x) => [x[11], x[9], x[7]],
    );
    await checkForward(
      (x) => o.sliceAxis(x, 1, 1, 100, 3),
      [[1, 8]],
      (x) => [x[1], x[4], x[7]],
    );
  });
  test('gather forward', () =>
    checkForward(
      (x) => o.gather(x, x.graph.const(BigInt64Array.from([2n, 0n, 2n]), [3]), 1),
      [[2, 3]],
      (x) => [x[2], x[0], x[2], x[5], x[3], x[5]],
    ));
  test('vjps', async () => {
    await checkVjp((x) => o.reshape(x, [4, 3]), [[2, 6]]);
    await checkVjp((x) => o.transpose(x, [2, 0, 1]), [[2, 3, 4]]);
    await checkVjp((x) => o.expand(x, [2, 3, 4]), [[3, 1]]);
    await checkVjp(
      (a, b) => o.concat([a, b, a], 0),
      [
        [1, 3],
        [2, 3],
      ],
    );
    await checkVjp((x) => o.pad(x, [1, 0, 2, 3], 0.5), [[2, 3]]);
    await checkVjp((x) => o.slice(x, [1, 7], [3, 0], [1, -3]), [[3, 9]]);
    await checkVjp((x) => o.slice(x, [0, 1], [4, 9], [2, 3]), [[5, 9]]);
    await checkVjp(
      (x) => o.gather(x, x.graph.const(BigInt64Array.from([1n, 1n, 0n, 3n]), [2, 2]), 1),
      [[2, 4, 3]],
    );
    await checkVjp((x) => o.cast(o.cast(x, 'float64'), 'float32'), [[4]], F32);
  });
  test('scatter_add (the gradient of gather) has gather as its gradient: second order through gather', async () => {
    // y = d/dx Σ gather(x, idx)·w = scatter_add(w) at idx (repeated indices accumulate); its VJP in w is
    // a gather again, the path that double backward (R1, path length) takes through every gather.
    await checkVjp(
      (x, w) => {
        const idx = x.graph.const(BigInt64Array.from([1n, 1n, 0n, 3n, 1n]), [5]);
        const [dx] = grad(o.sum(o.mul(o.gather(x, idx, 1), w)), [x]);
        return o.mul(dx, o.add(x, 2)); // depends on x too, so both inputs are checked
      },
      [
        [2, 4, 3],
        [2, 5, 3],
      ],
    );
  });
  test('stop_gradient passes values and blocks the gradient', async () => {
    await checkForward(
      (x) => o.stopGradient(x),
      [[3]],
      (x) => x,
    );
    const { vjp } = await checkVjp((x) => o.mul(o.stopGradient(x), 0), [[3]]);
    assert.equal(vjp, 0);
    // d/dx Σ x·sg(x) = sg(x): the blocked factor is a constant to the backward (finite differences would
    // see 2x, which is exactly what stop_gradient is for)
    const g = new Graph();
    const x = g.input('x', [3], 'float64');
    const [dx] = grad(o.sum(o.mul(x, o.stopGradient(x))), [x]);
    const exe = await compile({ dx });
    const data = Float64Array.from([1.5, -2, 0.25]);
    const out = await exe.run({ x: { shape: [3], data } });
    assert.deepEqual(Array.from(out.dx.data as Float64Array), [1.5, -2, 0.25]);
  });
});
