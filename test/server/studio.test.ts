import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readNpyF32 } from '../../src/io/npy.js';
import { loadModels, Studio } from '../../src/server/index.js';
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
  // rows 8.. keep w; rows 0..7 are truncated, so they differ from row 9
  assert.deepEqual(a.slice(8 * 512, 9 * 512), a.slice(9 * 512));
  assert.notDeepEqual(a.slice(0, 512), a.slice(9 * 512));
});
