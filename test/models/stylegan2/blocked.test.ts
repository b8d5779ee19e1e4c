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
import { nchwcInterleave, nchwcReorderInput, nchwcReorderOutput } from '../../../src/ops/nchwc.js';
import { nchwcBlockSize } from '../../../src/runtime/nchwc.js';
import { compile } from '../../../src/runtime/session.js';
import { assertClose } from '../../helpers.js';

const fixtures = new URL('../../fixtures/', import.meta.url).pathname;

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
  it('the block size probe answers 16 (AVX-512), 8 (AVX2) or 0 (no such kernels)', async () => {
    assert.ok([0, 8, 16].includes(await nchwcBlockSize()));
  });

  it('fixture generator: one image per W+ row equals img_trunc, with the 64² block blocked', async () => {
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
    it(`${t.what}: blocked and standard agree`, async () => {
      const B = await nchwcBlockSize();
      const channels = { 4: 32, 8: 32, 16: 32, 32: 32, 64: 32, 128: 32, 256: t.last };
      const W = randomGeneratorWeights({ size: 256, seed: t.seed, styleDim: 64, nMlp: 2, channels });
      const wplus = fastNormal(t.seed + 5)(new Float32Array(W.config.nLatent * 64));
      const r = await both(W, wplus, B);
      assert.equal(r.blocked.ops.has('nchwc_conv'), B > 0);
      assertClose(r.blocked.out, r.standard.out, { rtol: 1e-4, atol: 1e-5, what: t.what });
    });

  it('interleaving four blocked phases puts phase (p, q) at pixel (2m + p, 2n + q)', async () => {
    const B = await nchwcBlockSize();
    if (B === 0) return assert.ok(true, 'no blocked kernels on this machine');
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

  it('a blocked graph cannot be differentiated, and says so', async () => {
    const B = await nchwcBlockSize();
    if (B === 0) return assert.ok(true, 'no blocked kernels on this machine: nothing to differentiate');
    const W = loadGenerator(`${fixtures}stylegan2/generator.pt`);
    const g = new Graph();
    const w = g.input('wplus', [1, W.config.nLatent, W.config.styleDim]);
    const img = new StyleGAN2Graph(g, W, 'stylegan2', { blocked: B }).image(w);
    assert.throws(() => grad(sum(img), [w]), /op nchwc_\w+ .*has no gradient/);
  });
});
