import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { grad } from '../../src/autodiff/grad.js';
import {
  EDIT_SCALE,
  initMapperWeights,
  LR_MUL,
  MAPPER_LAYERS,
  MapperGraph,
  type MapperWeights,
  styleSpaceSpec,
} from '../../src/edit/mapper/model.js';
import { Graph, type Value } from '../../src/graph/graph.js';
import { fastNormal } from '../../src/models/stylegan2/weights.js';
import { add, mul, sum } from '../../src/ops/index.js';
import { compile } from '../../src/runtime/session.js';
import { assertClose } from '../helpers.js';

// The official code never finished its StyleSpace mapper, so there is no reference output: these tests
// check ours against the same mapper written out here in float64 (PixelNorm over the channels, four
// equalized-lr linear layers with leaky ReLU 0.2 × √2, s + 0.1·M(s) on the non-toRGB layers).

const styleDims = [16, 16, 24, 24, 24, 8];
const isToRGB = [false, true, false, false, true, false];
const B = 2;

function weights(seed: number): MapperWeights {
  const w = initMapperWeights(styleSpaceSpec(styleDims, isToRGB), seed);
  const r = fastNormal(seed + 100);
  for (const [k, p] of w.params) if (k.endsWith('.bias')) r(p.data); // biases away from their zero init
  return w;
}

/** s + 0.1·M(s) for one layer, in float64. */
function editF64(w: MapperWeights, i: number, s: Float64Array, C: number): Float64Array {
  const out = new Float64Array(s.length);
  for (let b = 0; b < B; b++) {
    let h = Array.from(s.subarray(b * C, (b + 1) * C));
    const ms = h.reduce((a, v) => a + v * v, 0) / C;
    h = h.map((v) => v / Math.sqrt(ms + 1e-8));
    for (let l = 1; l <= MAPPER_LAYERS; l++) {
      const W = w.params.get(`mapper_${i}.mapping.${l}.weight`)!.data; // [out, in]
      const bias = w.params.get(`mapper_${i}.mapping.${l}.bias`)!.data;
      const scale = LR_MUL / Math.sqrt(C);
      h = Array.from({ length: C }, (_, o) => {
        let y = bias[o] * LR_MUL;
        for (let k = 0; k < C; k++) y += h[k] * W[o * C + k] * scale;
        return (y < 0 ? 0.2 * y : y) * Math.SQRT2;
      });
    }
    for (let c = 0; c < C; c++) out[b * C + c] = s[b * C + c] + EDIT_SCALE * h[c];
  }
  return out;
}

const codes = styleDims.map((C, i) => fastNormal(7 + i)(new Float32Array(B * C)));
const probes = styleDims.map((C, i) => fastNormal(70 + i)(new Float32Array(B * C)));

async function run(w: MapperWeights, wrt?: string) {
  const g = new Graph();
  const mg = new MapperGraph(g, w, 'input');
  const ins = styleDims.map((C, i) => g.input(`s${i}`, [B, C]));
  const prs = styleDims.map((C, i) => g.input(`r${i}`, [B, C]));
  const edited = mg.editStyles(ins);
  const outputs: Record<string, Value> = Object.fromEntries(edited.map((e, i) => [`e${i}`, add(e, 0)]));
  if (wrt) {
    const loss = edited.map((e, i) => sum(mul(e, prs[i]))).reduce((a, b) => add(a, b));
    outputs.grad = grad(loss, [mg.inputs.get(wrt)!])[0];
  }
  const feeds: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of mg.inputs) feeds[v.name!] = { shape: [...v.shape], data: w.params.get(k)!.data };
  styleDims.forEach((C, i) => {
    feeds[`s${i}`] = { shape: [B, C], data: codes[i] };
    feeds[`r${i}`] = { shape: [B, C], data: probes[i] };
  });
  const exe = await compile(outputs);
  const out = await exe.run(feeds);
  await exe.release();
  return out;
}

describe('StyleSpace mapper against an independent float64 computation', () => {
  test('s + 0.1·M(s) on every non-toRGB layer; toRGB codes pass through unchanged', async () => {
    const w = weights(1);
    const out = await run(w);
    styleDims.forEach((C, i) => {
      const got = out[`e${i}`].data as Float32Array;
      if (isToRGB[i]) {
        assert.deepEqual(got, codes[i]);
        return;
      }
      const want = editF64(w, i, Float64Array.from(codes[i]), C);
      assertClose(got, want, { rtol: 1e-5, atol: 1e-6, what: `layer ${i}` });
      assert.ok(
        got.some((v, k) => Math.abs(v - codes[i][k]) > 1e-3),
        `layer ${i} is really edited`,
      );
    });
  });

  test('a zero last layer makes the edit the identity', async () => {
    const w = weights(2);
    for (const [k, p] of w.params) if (k.includes(`.mapping.${MAPPER_LAYERS}.`)) p.data.fill(0);
    const out = await run(w);
    styleDims.forEach((_, i) => {
      assert.deepEqual(out[`e${i}`].data, codes[i], `layer ${i}`);
    });
  });

  for (const key of ['mapper_0.mapping.1.weight', 'mapper_3.mapping.4.bias', 'mapper_5.mapping.2.weight'])
    test(`the gradient with respect to ${key} matches float64 central differences`, async () => {
      const w = weights(3);
      const got = (await run(w, key)).grad.data as Float32Array;
      const p = w.params.get(key)!.data;
      const loss = () =>
        styleDims.reduce((acc, C, i) => {
          if (isToRGB[i]) return acc + codes[i].reduce((a, v, k) => a + v * probes[i][k], 0);
          const e = editF64(w, i, Float64Array.from(codes[i]), C);
          return acc + e.reduce((a, v, k) => a + v * probes[i][k], 0);
        }, 0);
      // float64 differences on a float32 parameter copy: perturb, evaluate, restore
      const at = Array.from({ length: 12 }, (_, j) => Math.floor((j * p.length) / 12));
      const h = 1e-2; // stored weights are randn/lr_mul ~ 100; the loss is smooth at this scale
      const fd = new Float64Array(at.length);
      const gotAt = new Float64Array(at.length);
      at.forEach((k, j) => {
        const v = p[k];
        const up = new Float32Array([v + h])[0];
        const down = new Float32Array([v - h])[0];
        p[k] = up;
        const lu = loss();
        p[k] = down;
        const ld = loss();
        p[k] = v;
        fd[j] = (lu - ld) / (up - down);
        gotAt[j] = got[k];
      });
      assertClose(gotAt, fd, { rtol: 1e-4, atol: 1e-9, what: `d loss / d ${key}` });
      assert.ok(
        fd.some((v) => Math.abs(v) > 1e-6),
        'the sampled gradient is not all zero',
      );
    });
});
