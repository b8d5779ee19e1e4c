import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { grad } from '../../../src/autodiff/grad.js';
import { Graph, topoSort } from '../../../src/graph/graph.js';
import { readNpyF32 } from '../../../src/io/npy.js';
import { loadGenerator } from '../../../src/models/stylegan2/load.js';
import { StyleGAN2Graph } from '../../../src/models/stylegan2/model.js';
import {
  fastNormal,
  type GeneratorWeights,
  randomGeneratorWeights,
} from '../../../src/models/stylegan2/weights.js';
import { sum } from '../../../src/ops/index.js';
import {
  blockFilter,
  nchwcInterleave,
  nchwcReorderInput,
  nchwcReorderOutput,
} from '../../../src/ops/nchwc.js';
import { nchwcBlockSize } from '../../../src/runtime/nchwc.js';
import { compile } from '../../../src/runtime/session.js';
import { assertClose } from '../../helpers.js';

const fixtures = new URL('../../fixtures/', import.meta.url).pathname;

// ONNX Runtime's MLAS picks the block size from the CPU (16 with AVX-512, 8 with AVX2) and has no switch
// to force the other one, so the kernels run at one size per machine; where there are none, the tests that
// need them are reported as skipped. The layout code of ours that depends on the size (filter blocking,
// the phase interleave) is plain Reshape/Transpose and is tested below at both sizes on every machine.
const KERNEL_BLOCK = await nchwcBlockSize();
const noKernels = KERNEL_BLOCK === 0 ? 'no blocked (NCHWc) kernels in this ONNX Runtime build' : false;

/** One image W+ [1, L, D] → image, on the standard ops and on the blocked kernels. */
async function both(W: GeneratorWeights, wplus: Float32Array, blocked: number) {
  const run = async (b: number) => {
    const g = new Graph();
    const w = g.input('wplus', [1, W.config.nLatent, W.config.styleDim]);
    const img = new StyleGAN2Graph(g, W, 'stylegan2', { blocked: b }).image(w);
    const exe = await compile({ img });
    const ops = new Set<string>();
    // which ops the graph uses, to prove the blocked path really ran
    for (const n of topoSort([img])) ops.add(n.op.name);
    const out = (await exe.run({ wplus: { shape: [...w.shape], data: wplus } })).img.data as Float32Array;
    await exe.release();
    return { out, ops };
  };
  return { standard: await run(0), blocked: await run(blocked) };
}

describe('StyleGAN2 on ONNX Runtime blocked (NCHWc) kernels', () => {
  it('the block size probe answers 16 (AVX-512), 8 (AVX2) or 0 (no such kernels)', () => {
    assert.ok([0, 8, 16].includes(KERNEL_BLOCK));
  });

  it('fixture generator: one image per W+ row equals img_trunc, with the 64² block blocked', {
    skip: noKernels,
  }, async () => {
    const B = await nchwcBlockSize();
    const W = loadGenerator(`${fixtures}stylegan2/generator.pt`);
    const wplus = readNpyF32(`${fixtures}stylegan2/wplus_trunc.npy`).data;
    const ref = readNpyF32(`${fixtures}stylegan2/img_trunc.npy`).data;
    const per = W.config.nLatent * W.config.styleDim;
    const px = 3 * W.config.size ** 2;
    for (let i = 0; i < 2; i++) {
      const r = await both(W, wplus.subarray(i * per, (i + 1) * per), B);
      assert.equal(r.blocked.ops.has('nchwc_conv'), B > 0, 'the blocked kernels are used when available');
      assert.equal(r.standard.ops.has('nchwc_conv'), false);
      assertClose(r.blocked.out, ref.subarray(i * px, (i + 1) * px), { what: `img_trunc[${i}] blocked` });
    }
  });

  // 32 channels throughout: two consecutive blocked blocks. 24 at 256²: that block cannot be blocked, so
  // the blocked 128² output is reordered back for it.
  const tables = [
    { what: 'a 256² generator with 32 channels', last: 32, seed: 4 },
    {
      what: 'a blocked block followed by a standard one (24 channels do not fill a block)',
      last: 24,
      seed: 5,
    },
  ];
  for (const t of tables)
    it(`${t.what}: blocked and standard agree`, { skip: noKernels }, async () => {
      const B = await nchwcBlockSize();
      const channels = { 4: 32, 8: 32, 16: 32, 32: 32, 64: 32, 128: 32, 256: t.last };
      const W = randomGeneratorWeights({ size: 256, seed: t.seed, styleDim: 64, nMlp: 2, channels });
      const wplus = fastNormal(t.seed + 5)(new Float32Array(W.config.nLatent * 64));
      const r = await both(W, wplus, B);
      assert.equal(r.blocked.ops.has('nchwc_conv'), B > 0);
      assertClose(r.blocked.out, r.standard.out, { rtol: 1e-4, atol: 1e-5, what: t.what });
    });

  it('interleaving four blocked phases puts phase (p, q) at pixel (2m + p, 2n + q)', {
    skip: noKernels,
  }, async () => {
    const B = KERNEL_BLOCK;
    const [C, H, W] = [2 * B, 3, 5];
    const g = new Graph();
    const xs = [0, 1, 2, 3].map((k) => g.input(`p${k}`, [1, C, H, W]));
    const y = nchwcReorderOutput(
      nchwcInterleave(
        xs.map((x) => nchwcReorderInput(x, B)),
        B,
      ),
      C,
    );
    const exe = await compile({ y });
    const rand = fastNormal(3);
    const data = xs.map(() => rand(new Float32Array(C * H * W)));
    const feeds = Object.fromEntries(xs.map((x, k) => [x.name, { shape: [1, C, H, W], data: data[k] }]));
    const out = (await exe.run(feeds)).y.data as Float32Array;
    await exe.release();
    const want = new Float32Array(C * 4 * H * W);
    for (let c = 0; c < C; c++)
      for (let m = 0; m < 2 * H; m++)
        for (let n = 0; n < 2 * W; n++)
          want[(c * 2 * H + m) * 2 * W + n] = data[2 * (m % 2) + (n % 2)][(c * H + (m >> 1)) * W + (n >> 1)];
    assert.deepEqual(out, want);
  });

  it('a blocked graph cannot be differentiated, and says so', { skip: noKernels }, async () => {
    const B = KERNEL_BLOCK;
    const W = loadGenerator(`${fixtures}stylegan2/generator.pt`);
    const g = new Graph();
    const w = g.input('wplus', [1, W.config.nLatent, W.config.styleDim]);
    const img = new StyleGAN2Graph(g, W, 'stylegan2', { blocked: B }).image(w);
    assert.throws(() => grad(sum(img), [w]), /op nchwc_\w+ .*has no gradient/);
  });

  for (const B of [8, 16]) {
    it(`block ${B}: the filter layout is MLAS's OIHWBiBo and the interleave moves whole blocks (no kernels needed)`, async () => {
      const [O, I, kh, kw] = [2 * B, 3 * B, 3, 2];
      const [C, H, Wd] = [2 * B, 3, 5];
      const g = new Graph();
      const w = g.input('w', [O, I, kh, kw]);
      // phases given directly in the blocked memory order [C/B, H, W, B] under their NCHW shape
      const ps = [0, 1, 2, 3].map((k) => g.input(`p${k}`, [1, C, H, Wd]));
      const exe = await compile({ wb: blockFilter(w, B), y: nchwcInterleave(ps, B) });
      const rand = fastNormal(B);
      const wd = rand(new Float32Array(O * I * kh * kw));
      const pd = ps.map(() => rand(new Float32Array(C * H * Wd)));
      const out = await exe.run({
        w: { shape: [O, I, kh, kw], data: wd },
        ...Object.fromEntries(ps.map((p, k) => [p.name, { shape: [1, C, H, Wd], data: pd[k] }])),
      });
      await exe.release();
      // OIHWBiBo: [O/B][I/B][kh][kw][Bi][Bo]
      const wantW = new Float32Array(wd.length);
      for (let o = 0; o < O; o++)
        for (let i = 0; i < I; i++)
          for (let y = 0; y < kh; y++)
            for (let x = 0; x < kw; x++) {
              const at =
                ((((((o / B) | 0) * (I / B) + ((i / B) | 0)) * kh + y) * kw + x) * B + (i % B)) * B + (o % B);
              wantW[at] = wd[((o * I + i) * kh + y) * kw + x];
            }
      assert.deepEqual(out.wb.data, wantW);
      // blocked [C/B, 2H, 2W, B]: element (c, m, n) of the result is phase (m%2, n%2) at (m>>1, n>>1)
      const wantY = new Float32Array(4 * C * H * Wd);
      const blockedAt = (c: number, y: number, x: number, h: number, wd2: number) =>
        ((((c / B) | 0) * h + y) * wd2 + x) * B + (c % B);
      for (let c = 0; c < C; c++)
        for (let m = 0; m < 2 * H; m++)
          for (let n = 0; n < 2 * Wd; n++)
            wantY[blockedAt(c, m, n, 2 * H, 2 * Wd)] =
              pd[2 * (m % 2) + (n % 2)][blockedAt(c, m >> 1, n >> 1, H, Wd)];
      assert.deepEqual(out.y.data, wantY);
    });
  }
});
