import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readNpyF32 } from '../../src/io/npy.js';
import { StyleGAN2 } from '../../src/models/stylegan2/index.js';
import { loadModels, Studio } from '../../src/server/index.js';
import { RandomState } from '../../src/util/random.js';
import { assertClose } from '../helpers.js';
import { FIXTURE_FILES, fx } from './helpers.js';

test('--latents fills the gallery with the file’s images, in order', async () => {
  const models = loadModels({
    generator: FIXTURE_FILES.generator,
    clip: FIXTURE_FILES.clip,
    latents: fx('stylegan2/wplus_trunc.npy'),
  });
  const studio = new Studio(models);
  assert.deepEqual(
    studio.list().map((i) => i.id),
    ['latents:0', 'latents:1'],
  );
  const file = readNpyF32(fx('stylegan2/wplus_trunc.npy')).data;
  assert.deepEqual(await studio.wplus('latents:1'), file.slice(5120));
  assert.equal(studio.info().global, false);
  await assert.rejects(
    studio.globalEdit({
      image: 'latents:0',
      target: 't',
      neutral: 'n',
      alpha: 1,
      beta: 0.1,
      preview: false,
      before: false,
    }),
    /--fs3/,
  );
});

test('seed images follow the official sampling (ψ 0.7 on the first 8 rows)', async () => {
  const studio = new Studio(loadModels({ generator: FIXTURE_FILES.generator, clip: FIXTURE_FILES.clip }), {
    seeds: 3,
  });
  assert.equal(studio.list().length, 3);
  const a = await studio.wplus('seed:5');
  const b = await studio.wplus('seed:5');
  assert.deepEqual(a, b);
  assert.equal(a.length, 10 * 512);
  // The official sampling written out: z = numpy RandomState(5).randn(1, 512), w = mapping(z), rows 0..7
  // pulled to latent_avg with ψ 0.7, rows 8.. w itself.
  const G = StyleGAN2.load(FIXTURE_FILES.generator);
  const w = await G.mapping(Float32Array.from(new RandomState(5).randn(1, 512)));
  const avg = G.weights.latentAvg!;
  const want = new Float32Array(10 * 512);
  for (let r = 0; r < 10; r++)
    for (let d = 0; d < 512; d++) want[r * 512 + d] = r < 8 ? avg[d] + 0.7 * (w[d] - avg[d]) : w[d];
  assertClose(a, want, { rtol: 1e-6, atol: 1e-6, what: 'seed:5 W+' });
  assert.notDeepEqual(a.slice(0, 512), a.slice(9 * 512));
});

test('photo uploads are aligned by default, except with the world generator (its faces are not photos)', () => {
  const files = { generator: FIXTURE_FILES.generator, clip: FIXTURE_FILES.clip };
  assert.equal(new Studio(loadModels(files)).info().photoAlign, true);
  const world = mkdtempSync(join(tmpdir(), 'styleclip-world-'));
  const saved = process.env.STYLECLIP_WORLD;
  try {
    copyFileSync(FIXTURE_FILES.generator, join(world, 'generator.pt'));
    process.env.STYLECLIP_WORLD = world;
    const models = loadModels({ ...files, generator: join(world, 'generator.pt') });
    assert.equal(new Studio(models).info().photoAlign, false);
  } finally {
    if (saved === undefined) delete process.env.STYLECLIP_WORLD;
    else process.env.STYLECLIP_WORLD = saved;
    rmSync(world, { recursive: true, force: true });
  }
});
