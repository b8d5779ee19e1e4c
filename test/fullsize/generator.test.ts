/**
 * Full size: the generator files a user brings, written here with random weights in their published layouts
 * (rosinality `stylegan2-ffhq-config-f.pt` at 1024 and its 256/512 variants, NVIDIA `ffhq.pkl` at 1024, e4e's
 * `latents.pt`), loaded through the library entry point and through the CLI, rendered once each.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadGenerator, readLatents, StyleGAN2 } from '../../src/index.js';
import { saveTorch } from '../../src/io/torch-write.js';
import type { GeneratorWeights } from '../../src/models/stylegan2/weights.js';
import { assertClose } from '../helpers.js';
import { assertCliOk, assertImage, assertRendered, cli, scratch } from './helpers.js';
import {
  describeArchive,
  manifest,
  manifestTensors,
  randomGenerator,
  writeNvidiaPkl,
  writeRosinality,
} from './layouts.js';

const tmp = scratch('gen');
const ffhq = tmp.path('stylegan2-ffhq-config-f.pt');
let G: GeneratorWeights;

before(() => {
  G = randomGenerator(1024);
  writeRosinality(ffhq, G);
});
after(() => tmp.remove());

/** A fixed W+ [L, 512] (the library renders from W+ directly). */
function wplus(L: number): Float32Array {
  const w = new Float32Array(L * 512);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.37) * 0.5;
  return w;
}

describe('stylegan2-ffhq-config-f.pt (rosinality, 1024, n_mlp 8)', () => {
  test('every tensor as torch wrote it: key order, shape, stride, dtype, storage', () => {
    const want = manifestTensors(manifest()['ffhq1024.pt']);
    const have = describeArchive(ffhq);
    assert.deepEqual(
      [...have.keys()],
      want.map((t) => t.key),
    );
    for (const t of want) {
      const { key, ...layout } = t;
      assert.deepEqual(have.get(key), layout, key);
    }
  });

  test('loads through the library with the weights as written', () => {
    const loaded = loadGenerator(ffhq);
    assert.equal(loaded.source, 'rosinality');
    assert.equal(loaded.config.size, 1024);
    assert.equal(loaded.config.nLatent, 18);
    assert.equal(loaded.mapping.length, 8);
    assert.deepEqual(loaded.convs.at(-1)!.noiseConst, G.convs.at(-1)!.noiseConst);
    // Stored unscaled as torch keeps them and rescaled on load: equal up to float rounding.
    assertClose(loaded.toRGBs.at(-1)!.conv.weight, G.toRGBs.at(-1)!.conv.weight, {
      rtol: 1e-6,
      atol: 0,
      what: 'toRGB',
    });
  });

  test('e4e latents.pt (torch.save of [N, 18, 512]) renders through `styleclip generate`', async () => {
    const latents = tmp.path('latents.pt');
    saveTorch(latents, { dtype: 'float32', shape: [1, 18, 512], data: wplus(18) }, { root: 'latents' });
    assert.equal(readLatents(latents, 18, 512).count, 1);
    const out = tmp.path('from-latents.png');
    assertCliOk(
      cli(['generate', '--generator', ffhq, '--latent', latents, '--out', out]),
      'generate --latent',
    );
    await assertImage(out, 1024);
  });
});

test('rosinality 256² and 512² (config-f channels): the library renders 256², `styleclip generate` 512²', async () => {
  const files = [256, 512].map((size) => {
    const file = tmp.path(`stylegan2-${size}.pt`);
    writeRosinality(file, randomGenerator(size, size));
    const G = StyleGAN2.load(file);
    assert.equal(G.config.size, size);
    assert.equal(G.config.nLatent, 2 * Math.log2(size) - 2);
    return { file, G };
  });
  assertRendered(await files[0].G.synthesize(wplus(14)), 256);
  const out = tmp.path('seed-512.png');
  assertCliOk(cli(['generate', '--generator', files[1].file, '--seed', '0', '--out', out]), 'generate 512');
  await assertImage(out, 512);
});

test('NVIDIA ffhq.pkl (stylegan2-ada-pytorch snapshot, 1024): the library reads G_ema, the CLI renders', async () => {
  const pkl = tmp.path('ffhq.pkl');
  writeNvidiaPkl(pkl, 1024);
  const loaded = loadGenerator(pkl);
  assert.equal(loaded.source, 'nvidia');
  assert.equal(loaded.config.size, 1024);
  assert.equal(loaded.config.nLatent, 18);
  assert.equal(loaded.convs[0].clamp, 256);
  const out = tmp.path('nvidia.png');
  assertCliOk(cli(['generate', '--generator', pkl, '--seed', '0', '--out', out]), 'generate ffhq.pkl');
  await assertImage(out, 1024);
});
