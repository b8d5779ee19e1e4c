// The README's library example, run on the fixtures through the package entry point only: each of the
// three methods reaches its reference output with nothing but what `import ... from 'styleclip'` offers.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  ClipEncoder,
  GlobalEditor,
  LatentOptimizer,
  loadArcFace,
  loadClip,
  loadFs3,
  loadMapper,
  MapperApplier,
  promptFeatures,
  readImage,
  readLatents,
  readNpyF32,
  runOptimization,
  StyleGAN2,
  sampleStyleStats,
  stylesFromWplus,
  writeImage,
} from '../src/index.js';
import { assertClose } from './helpers.js';

const fx = (p: string) => new URL(`fixtures/${p}`, import.meta.url).pathname;
const ref = (p: string, n: number) => readNpyF32(fx(p)).data.subarray(0, n);

describe('the library entry point (README example)', () => {
  const G = StyleGAN2.load(fx('stylegan2/generator.pt'));
  const { nLatent, styleDim, size } = G.config;
  const latents = readLatents(fx('stylegan2/wplus_trunc.npy'), nLatent, styleDim);
  const w = latents.gather([0]); // W+ [1, L, D]
  const px = 3 * size * size;
  const clipModel = loadClip(fx('clip/clip.pt'));

  it('renders a latent from a file and writes it as PNG', async () => {
    const before = await G.synthesize(w);
    assertClose(before.data as Float32Array, ref('stylegan2/img_trunc.npy', px), { what: 'G(w)' });
    const dir = mkdtempSync(join(tmpdir(), 'styleclip-library-'));
    try {
      const file = join(dir, 'before.png');
      await writeImage(file, { dtype: 'float32', shape: before.shape, data: before.data as Float32Array });
      const back = await readImage(file, { range: '-1,1' });
      assert.deepEqual(back.shape, [1, 3, size, size]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('global directions: Δt from two texts, the boundary at β, the edit at α', async () => {
    const clip = new ClipEncoder(clipModel);
    const fs3 = loadFs3(fx('global/fs3.npy'), G.config, clip.embedDim);
    const { stats } = await sampleStyleStats(G.weights, { samples: 200 });
    const editor = new GlobalEditor(G.weights, clip, fs3.data, stats);
    const boundary = editor.boundary(await editor.direction('smiling face', 'face'), 0.15);
    const codes = await stylesFromWplus(G.weights, w, 1);
    const edited = await editor.render(codes, boundary, [4]);
    assertClose(edited, ref('global/img_edited.npy', px), { what: 'global edit' });
  });

  it('latent mapper: an official checkpoint applied to the latent', async () => {
    const mapper = loadMapper(fx('mapper/mapper.pt'));
    const applier = await MapperApplier.create(mapper.weights, G.weights);
    const r = await applier.run(w);
    assertClose(r.image!, ref('mapper/img_mapped.npy', px), { what: 'mapper edit' });
  });

  it('latent optimization: 5 steps toward a prompt', async () => {
    const arcface = loadArcFace(fx('arcface/irse.pth'), { stageUnits: [1, 1, 2, 1] });
    const opt = await LatentOptimizer.create(
      { generator: G.weights, clip: clipModel, arcface },
      { steps: 5, l2Lambda: 0.008, idLambda: 0.005 },
    );
    const run = await opt.start(w, await promptFeatures(clipModel, 'a person with purple hair'));
    const res = await runOptimization(run);
    const losses = Float32Array.from(res.history.map((h) => h.loss));
    assertClose(losses, readNpyF32(fx('optimization/losses.npy')).data, {
      rtol: 1e-3,
      atol: 0,
      what: 'losses',
    });
    assertClose(res.latent.data, readNpyF32(fx('optimization/latent_final.npy')).data, {
      rtol: 1e-3,
      atol: 0,
      what: 'latent',
    });
    await opt.release();
  });
});
