/**
 * Second derivatives: every gradient rule that StyleGAN2 training differentiates again (R1 through the
 * discriminator, path length through the generator) is checked by finite differences of its own VJP. The
 * function under test is the first-order gradient g(x, r) = ∂ sum(f(x)·r)/∂x (all inputs, flattened and
 * concatenated), so checkVjp compares ⟨J_g v, u⟩ against the graph's second-order VJP.
 */
import { describe, test } from 'node:test';
import { grad } from '../../src/autodiff/grad.js';
import type { Value } from '../../src/graph/graph.js';
import { DiscriminatorGraph, initDiscriminator } from '../../src/models/stylegan2/discriminator.js';
import * as o from '../../src/ops/index.js';
import { softplus } from '../../src/train/gan.js';
import { type CheckOptions, checkVjp } from './gradcheck.js';

// Central differences of these cubic gradients err by O(eps²): 3e-3 keeps that under 1e-3 in float32.
const F32: CheckOptions = { dtype: 'float32', eps: 3e-3, rtol: 2e-2 };

/** ∂ sum(f(xs)·r)/∂(xs), flattened: f's gradient as a function of (xs, r). */
function gradientOf(f: (...xs: Value[]) => Value) {
  return (...all: Value[]) => {
    const xs = all.slice(0, -1);
    const r = all[all.length - 1];
    const gs = grad(o.sum(o.mul(f(...xs), r)), xs);
    return o.concat(
      gs.map((g) => o.reshape(g, [g.size])),
      0,
    );
  };
}

async function secondOrder(
  f: (...xs: Value[]) => Value,
  shapes: number[][],
  out: number[],
  opts: CheckOptions = {},
): Promise<void> {
  await checkVjp(gradientOf(f), [...shapes, out], opts);
}

/** Draws away from 0, where leaky ReLU's and |x|'s kinks would spoil finite differences. */
const offKink = (x: number) => x + Math.sign(x) * 0.3;

describe('second-order gradient rules', () => {
  test('elementwise: mul, div, sqrt, pow(-0.5), reciprocal, exp, log, sigmoid', async () => {
    await secondOrder((a, b) => o.div(o.mul(a, b), o.add(o.mul(b, b), 1)), [[2, 3], [3]], [2, 3]);
    const pos = { domain: (x: number) => Math.abs(x) + 0.5 };
    await secondOrder((x) => o.sqrt(x), [[5]], [5], pos);
    await secondOrder((x) => o.powConst(x, -0.5), [[5]], [5], pos);
    await secondOrder((x) => o.reciprocal(x), [[5]], [5], pos);
    await secondOrder((x) => o.log(o.add(o.exp(x), 1)), [[6]], [6]);
    await secondOrder((x) => o.sigmoid(x), [[6]], [6]);
  });

  test('leaky ReLU, relu, abs and softplus (zero second derivative off the kink)', async () => {
    await secondOrder((x) => o.mul(o.leakyRelu(o.mul(x, x), 0.2), x), [[8]], [8], { domain: offKink });
    await secondOrder((x) => o.mul(o.leakyRelu(x, 0.2), x), [[8]], [8], { domain: offKink });
    await secondOrder((x) => o.mul(o.relu(x), x), [[8]], [8], { domain: offKink });
    await secondOrder((x) => softplus(o.mul(x, 3)), [[8]], [8], { domain: offKink });
  });

  test('reductions, broadcasts and data movement', async () => {
    await secondOrder((x) => o.mul(x, o.mean(o.mul(x, x), 1, true)), [[2, 3, 4]], [2, 3, 4]);
    await secondOrder((x) => o.expand(o.sum(o.mul(x, x), [0]), [2, 3]), [[4, 3]], [2, 3]);
    await secondOrder(
      (x) => {
        const y = o.transpose(o.reshape(o.mul(x, x), [3, 2, 2]), [2, 0, 1]);
        return o.concat([o.pad(o.slice(y, [0, 1, 0], [2, 3, 2]), [0, 0, 0, 0, 1, 0]), y], 1); // [2, 6, 2]
      },
      [[2, 6]],
      [2, 6, 2],
    );
    await secondOrder(
      (x) => {
        const s = o.sliceAxis(x, 1, 3, 0, -2);
        return o.mul(s, s);
      },
      [[2, 5]],
      [2, 2],
    );
  });

  test('matmul and linear', async () => {
    await secondOrder(
      (a, b) => o.mul(o.matmul(a, b), o.matmul(a, b)),
      [
        [2, 3, 4],
        [4, 2],
      ],
      [2, 3, 2],
    );
    await secondOrder((x, w, b) => o.leakyRelu(o.linear(x, w, b), 0.2), [[3, 4], [2, 4], [2]], [3, 2]);
  });

  test('conv2d: 3x3 pad 1, 3x3 stride 2, depthwise 4x4 pad 2 (D), both weight-gradient forms', async () => {
    for (const weightGrad of ['unfold', 'conv'] as const) {
      const sq = (x: Value, w: Value, opts: o.ConvOptions) => {
        const y = o.conv2d(x, w, { ...opts, weightGrad });
        return o.mul(y, y);
      };
      await secondOrder(
        (x, w) => sq(x, w, { pads: 1 }),
        [
          [1, 2, 5, 5],
          [3, 2, 3, 3],
        ],
        [1, 3, 5, 5],
        F32,
      );
      await secondOrder(
        (x, w) => sq(x, w, { stride: 2 }),
        [
          [1, 2, 7, 7],
          [2, 2, 3, 3],
        ],
        [1, 2, 3, 3],
        F32,
      );
      await secondOrder(
        (x, w) => sq(x, w, { pads: 2, groups: 2 }),
        [
          [1, 2, 4, 4],
          [2, 1, 4, 4],
        ],
        [1, 2, 5, 5],
        F32,
      );
    }
  });

  test('conv_transpose2d stride 2 (G upsampling, blur) ', async () => {
    await secondOrder(
      (x, w) => {
        const y = o.convTranspose2d(x, w, { stride: 2 });
        return o.mul(y, y);
      },
      [
        [1, 2, 3, 3],
        [2, 3, 3, 3],
      ],
      [1, 3, 7, 7],
      F32,
    );
    await secondOrder(
      (x, w) => {
        const y = o.convTranspose2d(x, w, { stride: 2, pads: 1, groups: 2 });
        return o.mul(y, y);
      },
      [
        [1, 2, 3, 3],
        [2, 1, 4, 4],
      ],
      [1, 2, 6, 6],
      F32,
    );
  });

  test('R1 on a small discriminator: ∂/∂θ of |∂D/∂x|² (minibatch stddev, blur, residual blocks)', async () => {
    const arch = { size: 8, channels: { 4: 4, 8: 3 }, stddevGroup: 4 };
    const sd = initDiscriminator(arch, 3);
    // θ: the final conv weight (through the stddev branch and the 4x4 head); the rest constant
    await checkVjp(
      (x, w) => {
        const D = new DiscriminatorGraph(x.graph, arch, (n) =>
          n === 'final_conv.0.weight'
            ? w
            : x.graph.const(sd.get(n)!.data as Float32Array, sd.get(n)!.shape, n),
        );
        const [gx] = grad(o.sum(D.forward(x)), [x]);
        return o.sum(o.mul(gx, gx));
      },
      [
        [4, 3, 8, 8],
        [4, 5, 3, 3],
      ],
      // |∂D/∂x|² jumps where an activation crosses a leaky ReLU kink; at seed 1 one lies within 1e-3 of
      // one (the check fails for every eps), at seed 2 none does (passes for eps 1e-4..3e-3).
      { ...F32, eps: 1e-3, seed: 2 },
    );
  });
});
