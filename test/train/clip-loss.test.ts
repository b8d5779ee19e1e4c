/** The contrastive loss's pieces: the log-sum-exp primitive (its VJP by finite differences), the loss in plain numbers, schedule and AdamW rules. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Graph } from '../../src/graph/graph.js';
import { mul } from '../../src/ops/elementwise.js';
import { compile } from '../../src/runtime/session.js';
import { contrastiveLoss, crossEntropyDiagonal, logSumExp } from '../../src/train/clip-loss.js';
import { AdamW, warmupCosineLr } from '../../src/train/clip-optim.js';
import { seededNormal } from '../../src/util/random.js';
import { checkVjp } from '../engine/gradcheck.js';

/** The symmetric CLIP loss in float64 plain code. */
function referenceLoss(
  img: Float32Array,
  txt: Float32Array,
  b: number,
  e: number,
  logitScale: number,
): number {
  const unit = (x: Float32Array, r: number) => {
    const row = Array.from(x.subarray(r * e, (r + 1) * e));
    const n = Math.hypot(...row);
    return row.map((v) => v / n);
  };
  const logits = Array.from({ length: b }, (_, i) =>
    Array.from({ length: b }, (_, j) => {
      const a = unit(img, i);
      const t = unit(txt, j);
      return Math.exp(logitScale) * a.reduce((s, v, k) => s + v * t[k], 0);
    }),
  );
  const ce = (rows: number[][]) =>
    rows.reduce((s, row, i) => {
      const m = Math.max(...row);
      return s + m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[i];
    }, 0) / rows.length;
  const transposed = logits.map((_, j) => logits.map((row) => row[j]));
  return (ce(logits) + ce(transposed)) / 2;
}

describe('contrastive loss', () => {
  test('log-sum-exp: VJP against finite differences (float64)', async () => {
    await checkVjp((x) => logSumExp(x), [[3, 5]]);
    await checkVjp((x) => crossEntropyDiagonal(x), [[4, 4]]);
  });

  test('log-sum-exp stays finite at logits of ±100 (float32), with softmax gradients', async () => {
    const g = new Graph();
    const x = g.input('x', [2, 3]);
    const ex = await compile({ y: logSumExp(mul(x, 100)) });
    const out = await ex.run({ x: { shape: [2, 3], data: Float32Array.of(1, -1, 0.5, -1, -1, -1) } });
    const y = out.y.data as Float32Array;
    assert.ok(Math.abs(y[0] - (100 + Math.log(1 + Math.exp(-50) + Math.exp(-200)))) < 1e-4, `${y[0]}`);
    assert.ok(Math.abs(y[1] - (-100 + Math.log(3))) < 1e-4, `${y[1]}`);
  });

  test('the loss matches the symmetric cross-entropy in plain float64 code', async () => {
    const b = 5;
    const e = 7;
    const img = seededNormal(1, b * e);
    const txt = seededNormal(2, b * e);
    const g = new Graph();
    const i = g.input('img', [b, e]);
    const t = g.input('txt', [b, e]);
    const s = g.input('scale', []);
    const ex = await compile({ loss: contrastiveLoss(i, t, s).loss });
    for (const scale of [Math.log(1 / 0.07), Math.log(100)]) {
      const out = await ex.run({
        img: { shape: [b, e], data: img },
        txt: { shape: [b, e], data: txt },
        scale: { shape: [], data: Float32Array.of(scale) },
      });
      const want = referenceLoss(img, txt, b, e, scale);
      const got = (out.loss.data as Float32Array)[0];
      assert.ok(Math.abs(got - want) < 1e-4 * Math.max(1, want), `loss ${got} vs ${want}`);
    }
  });

  test('the loss VJP, temperature included, against finite differences', async () => {
    await checkVjp((i, t, s) => contrastiveLoss(i, t, s).loss, [[3, 4], [3, 4], []]);
  });
});

describe('AdamW and the schedule', () => {
  test('warm-up is linear to the peak, then the cosine decays to zero', () => {
    assert.equal(warmupCosineLr(0, 100, 1, 10), 0.1);
    assert.equal(warmupCosineLr(9, 100, 1, 10), 1);
    assert.equal(warmupCosineLr(10, 100, 1, 10), 1);
    assert.ok(Math.abs(warmupCosineLr(55, 100, 1, 10) - 0.5) < 1e-12);
    assert.ok(warmupCosineLr(99, 100, 1, 10) < 1e-3);
  });

  test('weight decay reaches only tensors of two or more dimensions', () => {
    const opt = new AdamW({ lr: 0.1, weightDecay: 0.5 });
    const vec = { name: 'b', data: Float32Array.of(2, -2), grad: new Float32Array(2), shape: [2] };
    const mat = { name: 'w', data: Float32Array.of(2, -2), grad: new Float32Array(2), shape: [1, 2] };
    const scalar = { name: 's', data: Float32Array.of(3), grad: new Float32Array(1), shape: [] };
    opt.step([vec, mat, scalar]);
    assert.deepEqual(Array.from(vec.data), [2, -2]);
    assert.deepEqual(Array.from(scalar.data), [3]);
    assert.deepEqual(Array.from(mat.data), [Math.fround(2 * 0.95), Math.fround(-2 * 0.95)]);
  });

  test('the first step moves each weight by lr against the sign of its gradient', () => {
    const opt = new AdamW({ lr: 0.01, weightDecay: 0 });
    const p = { name: 'w', data: Float32Array.of(1, 1), grad: Float32Array.of(3, -0.5), shape: [2] };
    opt.step([p]);
    assert.ok(Math.abs(p.data[0] - 0.99) < 1e-6 && Math.abs(p.data[1] - 1.01) < 1e-6, `${p.data}`);
  });

  test('row-sparse tensors: idle rows decayed lazily agree with the dense update', () => {
    const rows = 6;
    const w = 3;
    const init = seededNormal(5, rows * w);
    const dense = new AdamW({ weightDecay: 0.3 });
    const lazy = new AdamW({ weightDecay: 0.3 });
    const a = { name: 't', data: init.slice(), grad: new Float32Array(rows * w), shape: [rows, w] };
    const b = { name: 't', data: init.slice(), grad: new Float32Array(rows * w), shape: [rows, w] };
    const touched = [[1], [1, 4], [], [2], [1], [], [5, 0]];
    touched.forEach((rs, k) => {
      const g = new Float32Array(rows * w);
      const noise = seededNormal(10 + k, rows * w);
      for (const r of rs) g.set(noise.subarray(r * w, (r + 1) * w), r * w);
      a.grad = g;
      b.grad = g;
      dense.lr = lazy.lr = 0.01 * (k + 1);
      dense.step([a]);
      lazy.materialize(b, rs); // the rows a batch would read
      lazy.step([b], new Map([['t', { rowSize: w, rows: rs }]]));
    });
    lazy.materialize(b);
    for (let i = 0; i < a.data.length; i++)
      assert.ok(
        Math.abs(a.data[i] - b.data[i]) <= 1e-6 * Math.abs(a.data[i]),
        `${i}: ${a.data[i]} vs ${b.data[i]}`,
      );
    assert.deepEqual(lazy.states.get('t')!.expAvg, dense.states.get('t')!.expAvg);
  });
});
