import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Inverter, noiseRegularize, psnr, runInversion } from '../../src/edit/invert.js';
import { seedLatent } from '../../src/edit/optimize.js';
import { Graph } from '../../src/graph/graph.js';
import { loadClip } from '../../src/models/clip/load.js';
import { StyleGAN2 } from '../../src/models/stylegan2/generator.js';
import { compile } from '../../src/runtime/session.js';
import { RandomState } from '../../src/util/random.js';
import { fixture } from '../helpers.js';

/** projector.py's noise_regularize on the host, for one [1, 1, s, s] map. */
function hostNoiseReg(map: Float32Array, s: number): number {
  let loss = 0;
  let n = map;
  let size = s;
  for (;;) {
    let h = 0;
    let v = 0;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        h += n[y * size + x] * n[y * size + ((x - 1 + size) % size)];
        v += n[y * size + x] * n[((y - 1 + size) % size) * size + x];
      }
    loss += (h / (size * size)) ** 2 + (v / (size * size)) ** 2;
    if (size <= 8) break;
    const half = size / 2;
    const m = new Float32Array(half * half);
    for (let y = 0; y < half; y++)
      for (let x = 0; x < half; x++)
        m[y * half + x] =
          (n[2 * y * size + 2 * x] +
            n[2 * y * size + 2 * x + 1] +
            n[(2 * y + 1) * size + 2 * x] +
            n[(2 * y + 1) * size + 2 * x + 1]) /
          4;
    n = m;
    size = half;
  }
  return loss;
}

describe('optimization-based inversion', () => {
  test('noise regularization: shift-1 autocorrelations at every scale down to 8², as projector.py', async () => {
    const s = 32;
    const data = Float32Array.from(new RandomState(3).randn(1, s * s));
    for (let i = 0; i < data.length; i++) data[i] += 0.5 * data[(i + 1) % data.length]; // some correlation
    const g = new Graph();
    const exe = await compile({ r: noiseRegularize([g.input('n', [1, 1, s, s])]) });
    const r = (await exe.run({ n: { shape: [1, 1, s, s], data } })).r.data as Float32Array;
    const want = hostNoiseReg(data, s);
    assert.ok(Math.abs(r[0] - want) <= 1e-5 * want + 1e-9, `${r[0]} vs ${want}`);
  });

  test('recovers a generated image: W+ from the mean latent, pixel + CLIP terms, noise optimized', async () => {
    const G = StyleGAN2.load(fixture('stylegan2/generator.pt'));
    const clip = loadClip(fixture('clip/clip.pt'));
    const wTrue = await seedLatent(G.weights, 5, 0.7);
    const target = (await G.synthesize(wTrue)).data as Float32Array;
    const inv = await Inverter.create({ generator: G.weights, clip }, { steps: 40, noise: true, lr: 0.1 });
    const run = await inv.start(target);
    const before = await run.evaluate();
    const losses: number[] = [];
    const res = await runInversion(run, { onStep: (r) => void losses.push(r.mse) });
    assert.equal(res.steps, 40);
    const pBefore = psnr(before.image, target);
    const pAfter = psnr(res.final.image, target);
    assert.ok(pAfter > pBefore + 3, `PSNR ${pBefore.toFixed(2)} → ${pAfter.toFixed(2)} dB`);
    assert.ok(res.final.clip < before.clip, `CLIP distance ${before.clip} → ${res.final.clip}`);
    assert.equal(res.wplus.length, G.config.nLatent * G.config.styleDim);
    await inv.release();
  });

  test('no onStep hook: every step is taken (the step was once inside the optional onStep call, and never ran)', async () => {
    const G = StyleGAN2.load(fixture('stylegan2/generator.pt'));
    const target = (await G.synthesize(await seedLatent(G.weights, 2, 0.7))).data as Float32Array;
    const inv = await Inverter.create({ generator: G.weights }, { steps: 3, clipLambda: 0 });
    const run = await inv.start(target);
    let checks = 0;
    // The guard makes a regression fail instead of spinning forever (the loop never yields to timers).
    const res = await runInversion(run, { shouldStop: () => ++checks > 10 });
    assert.equal(res.steps, 3);
    assert.equal(run.stepsDone, 3);
    assert.ok(!res.stopped);
    await inv.release();
  });

  test('latent noise (projector.py; off by default): only the latent fed to G is perturbed, and only early', async () => {
    const G = StyleGAN2.load(fixture('stylegan2/generator.pt'));
    const target = (await G.synthesize(await seedLatent(G.weights, 3, 0.7))).data as Float32Array;
    const firstLosses = async (latentNoise?: number) => {
      const inv = await Inverter.create({ generator: G.weights }, { steps: 4, clipLambda: 0, latentNoise });
      const run = await inv.start(target);
      const clean = (await run.evaluate()).loss;
      const step0 = (await run.step()).loss; // lr 0 at step 0: the latent itself has not moved yet
      await inv.release();
      return { clean, step0 };
    };
    const off = await firstLosses();
    assert.equal(off.step0, off.clean);
    const on = await firstLosses(0.05);
    assert.equal(on.clean, off.clean);
    assert.notEqual(on.step0, on.clean);
  });

  test('W space, stopped early: the loop ends at the next step and keeps the latent reached', async () => {
    const G = StyleGAN2.load(fixture('stylegan2/generator.pt'));
    const target = (await G.synthesize(await seedLatent(G.weights, 1, 0.7))).data as Float32Array;
    const inv = await Inverter.create({ generator: G.weights }, { steps: 10, space: 'w', clipLambda: 0 });
    let n = 0;
    const res = await runInversion(await inv.start(target), {
      onStep: () => void n++,
      shouldStop: () => n >= 3,
    });
    assert.equal(res.steps, 3);
    assert.ok(res.stopped);
    const { nLatent: L, styleDim: D } = G.config;
    for (let l = 1; l < L; l++)
      assert.deepEqual(res.wplus.subarray(l * D, l * D + D), res.wplus.subarray(0, D)); // one w
    await inv.release();
  });
});
