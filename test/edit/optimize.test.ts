import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readStartLatent } from '../../src/cli/optimize.js';
import { LatentOptimizer, promptFeatures, runOptimization, stylesOf } from '../../src/edit/optimize.js';
import { lrSchedule } from '../../src/edit/schedule.js';
import { encodeNpy, parseNpy } from '../../src/io/npy.js';
import { loadArcFace } from '../../src/models/arcface/load.js';
import { loadClip } from '../../src/models/clip/load.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import { assertClose } from '../helpers.js';

const fx = (p: string) => new URL(`../fixtures/${p}`, import.meta.url).pathname;
const f32 = (p: string) => parseNpy(new Uint8Array(readFileSync(fx(p)))).data as Float32Array;

const generator = loadGenerator(fx('stylegan2/generator.pt'));
const clip = loadClip(fx('clip/clip.pt'));
const arcface = loadArcFace(fx('arcface/irse.pth'), { stageUnits: [1, 1, 2, 1] });
const PROMPT = 'a person with purple hair';
const L = generator.config.nLatent;
const D = generator.config.styleDim;

describe('latent optimization (run_optimization.py)', () => {
  test('parity: 5 steps from wplus_trunc[0], l2 0.008, id 0.005 — losses and final latent', async () => {
    const opt = await LatentOptimizer.create(
      { generator, clip, arcface },
      { steps: 5, lr: 0.1, l2Lambda: 0.008, idLambda: 0.005 },
    );
    const init = f32('stylegan2/wplus_trunc.npy').slice(0, L * D);
    const run = await opt.start(init, await promptFeatures(clip, PROMPT));
    const res = await runOptimization(run);
    assert.equal(res.steps, 5);
    assert.deepEqual(
      res.history.map((h) => h.lr),
      lrSchedule(5, 0.1),
    );
    assert.equal(res.history[0].lr, 0, 'step 0 has lr 0 (t = 0 in the warm-up)');
    const losses = Float32Array.from(res.history.map((h) => h.loss));
    assertClose(losses, f32('optimization/losses.npy'), { rtol: 1e-3, atol: 0, what: 'losses' });
    assertClose(res.latent.data, f32('optimization/latent_final.npy'), {
      rtol: 1e-3,
      atol: 0,
      what: 'latent',
    });
    // The parts add up to the total with the λs, and the step-0 ID loss is against the same image.
    for (const h of res.history) assert.ok(Math.abs(h.clip + 0.008 * h.l2 + 0.005 * h.id - h.loss) < 1e-5);
    assert.equal(res.history[0].l2, 0);
    assert.ok(Math.abs(res.history[0].id) < 1e-5, `id at step 0 is ~0, got ${res.history[0].id}`);
    // The initial image is G(wplus_trunc[0]) with the fixed noise, i.e. img_trunc[0].
    assertClose(res.initialImage!, f32('stylegan2/img_trunc.npy').slice(0, 3 * 64 * 64), { what: 'image' });
    assert.ok(res.final);
    assert.equal(res.final.image.length, 3 * 64 * 64);
    await opt.release();
  });

  test('intermediate images: step i % k == 0 gets the image after that step (last one from the final render)', async () => {
    const opt = await LatentOptimizer.create({ generator, clip }, { steps: 5, l2Lambda: 0.008 });
    const init = f32('stylegan2/wplus_trunc.npy').slice(0, L * D);
    const text = await promptFeatures(clip, PROMPT);
    const seen: number[] = [];
    const images: Float32Array[] = [];
    const res = await runOptimization(await opt.start(init, text), {
      every: 2,
      onIntermediate: (i, img) => {
        seen.push(i);
        images.push(img);
      },
    });
    assert.deepEqual(seen, [0, 2, 4]);
    assert.deepEqual(images[2], res.final!.image);
    // Stopping after 2 steps keeps the latent reached so far and renders nothing more.
    let n = 0;
    const stopped = await runOptimization(await opt.start(init, text), {
      onStep: () => {
        n++;
      },
      shouldStop: () => n >= 2,
    });
    assert.equal(stopped.steps, 2);
    assert.ok(stopped.stopped);
    assert.equal(stopped.final, null);
    assert.notDeepEqual(stopped.latent.data, init);
    assert.notDeepEqual(stopped.latent.data, res.latent.data);
    await opt.release();
  });

  test('free mode: CLIP term only; StyleSpace: only non-toRGB codes move', async () => {
    const init = f32('stylegan2/wplus_trunc.npy').slice(0, L * D);
    const text = await promptFeatures(clip, PROMPT);
    const free = await LatentOptimizer.create({ generator, clip }, { steps: 3, mode: 'free' });
    const rf = await runOptimization(await free.start(init, text));
    for (const h of rf.history) {
      assert.equal(h.l2, 0);
      assert.equal(h.loss, h.clip);
    }
    await free.release();

    const s = await LatentOptimizer.create({ generator, clip }, { steps: 3, space: 's', lr: 0.5 });
    const rs = await runOptimization(await s.start(init, text));
    const before = await stylesOf(generator, init);
    const after = rs.run.styles!;
    generator.config.styleIsToRGB.forEach((toRGB, i) => {
      const moved = after[i].some((v, k) => v !== before[i][k]);
      assert.equal(moved, !toRGB, `style ${i} (toRGB ${toRGB}) moved: ${moved}`);
    });
    const total = generator.config.styleDims.reduce((a, b) => a + b, 0);
    assert.deepEqual(rs.latent.shape, [1, total]);
    assert.ok(rs.history[2].l2 > 0);
    await s.release();
  });

  test('parity: StyleSpace edit (--work_in_stylespace), 5 steps, l2 0.008 — losses and every code after', async () => {
    const opt = await LatentOptimizer.create(
      { generator, clip },
      { steps: 5, lr: 0.1, l2Lambda: 0.008, space: 's' },
    );
    const init = f32('stylegan2/wplus_trunc.npy').slice(0, L * D);
    const res = await runOptimization(await opt.start(init, await promptFeatures(clip, PROMPT)));
    const losses = Float32Array.from(res.history.map((h) => h.loss));
    assertClose(losses, f32('optimization/stylespace_losses.npy'), { rtol: 1e-3, atol: 0, what: 'losses' });
    assertClose(res.latent.data, f32('optimization/stylespace_final.npy'), {
      rtol: 1e-3,
      atol: 0,
      what: 'codes',
    });
    await opt.release();
  });

  test('parity: free generation, 5 steps of the CLIP loss alone from latent_avg on every layer', async () => {
    const opt = await LatentOptimizer.create({ generator, clip }, { steps: 5, lr: 0.1, mode: 'free' });
    const avg = generator.latentAvg!;
    const init = new Float32Array(L * D);
    for (let l = 0; l < L; l++) init.set(avg, l * D); // [L, D]: latent_avg on every W+ row
    const res = await runOptimization(await opt.start(init, await promptFeatures(clip, PROMPT)));
    const losses = Float32Array.from(res.history.map((h) => h.loss));
    assertClose(losses, f32('optimization/free_losses.npy'), { rtol: 1e-3, atol: 0, what: 'losses' });
    // The fixtures README's rule for this path: CLIP-only gradients are tiny and Adam divides by their
    // running RMS, so a handful of near-zero-gradient elements may differ by float32 rounding; the mean
    // difference must stay within 1e-3 of the largest magnitude.
    const ref = f32('optimization/free_latent_final.npy');
    let meanDiff = 0;
    let maxRef = 0;
    for (let i = 0; i < ref.length; i++) {
      meanDiff += Math.abs(res.latent.data[i] - ref[i]) / ref.length;
      maxRef = Math.max(maxRef, Math.abs(ref[i]));
    }
    assert.ok(meanDiff <= 1e-3 * maxRef, `mean |a-b| ${meanDiff} > 1e-3 · ${maxRef}`);
    await opt.release();
  });

  test('starting latents: W+ [L, D], [1, L, D], a batch row, or a w row on every layer; other shapes are refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'optimize-latent-'));
    try {
      const save = (name: string, shape: number[]) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const file = join(dir, `${name}.npy`);
        writeFileSync(
          file,
          encodeNpy({ dtype: 'float32', shape, data: Float32Array.from({ length: n }, (_, i) => i) }),
        );
        return file;
      };
      const wplus = Float32Array.from({ length: L * D }, (_, i) => i);
      assert.deepEqual(readStartLatent(save('a', [L, D]), 0, generator), wplus);
      assert.deepEqual(readStartLatent(save('b', [1, L, D]), 0, generator), wplus);
      assert.deepEqual(
        readStartLatent(save('c', [2, L, D]), 1, generator),
        wplus.map((v) => v + L * D),
      );
      const w = readStartLatent(save('d', [D]), 0, generator);
      assert.deepEqual(w.subarray((L - 1) * D), w.subarray(0, D));
      assert.deepEqual(readStartLatent(save('e', [1, D]), 0, generator), w);
      const w2 = readStartLatent(save('g', [3, D]), 2, generator); // w rows: row 2 on every layer
      assert.deepEqual(
        w2.subarray((L - 1) * D),
        w.subarray(0, D).map((v) => v + 2 * D),
      );
      assert.throws(() => readStartLatent(save('f', [L, D - 1]), 0, generator), /latents of shape/);
      assert.throws(() => readStartLatent(save('h', [2, L, D]), 2, generator), /out of range/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
