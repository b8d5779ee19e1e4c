import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderStyles, stylesFromWplus } from '../../src/edit/global.js';
import type { Tensor } from '../../src/io/tensor.js';
import { loadTorch } from '../../src/io/torch.js';
import { saveTorch } from '../../src/io/torch-write.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import { previewWeights } from '../../src/server/studio.js';
import { assertClose } from '../helpers.js';
import { fx } from './helpers.js';

test('preview weights: synthesis stopped at a smaller size renders the toRGB skip sum there', async () => {
  const G = loadGenerator(fx('stylegan2/generator.pt'));
  const wplus = new Float32Array(G.config.nLatent * G.config.styleDim).map((_, i) => Math.sin(i) * 0.5);
  const codes = await stylesFromWplus(G, wplus, 1);
  const full = await renderStyles(G, codes, 1);
  const same = previewWeights(G, G.config.size);
  assert.deepEqual(await renderStyles(same, codes, 1), full, 'stopping at the full size changes nothing');
  const P = previewWeights(G, 32);
  assert.equal(P.config.size, 32);
  assert.equal(P.config.styleDims.length, 11);
  const small = await renderStyles(P, codes.slice(0, P.config.styleDims.length), 1);
  assert.equal(small.length, 3 * 32 * 32);
  // Independently: the same checkpoint cut down to a 32² rosinality generator (the layers above 32² and
  // their noise buffers dropped, written and loaded again) renders exactly this skip sum.
  const ck = loadTorch(fx('stylegan2/generator.pt')).tensors;
  const keep = (k: string) => {
    const conv = /^g_ema\.convs\.(\d+)\./.exec(k);
    const rgb = /^g_ema\.to_rgbs\.(\d+)\./.exec(k);
    const noise = /^g_ema\.noises\.noise_(\d+)$/.exec(k);
    return (
      !(conv && Number(conv[1]) >= 6) && !(rgb && Number(rgb[1]) >= 3) && !(noise && Number(noise[1]) >= 7)
    );
  };
  const dir = mkdtempSync(join(tmpdir(), 'preview-'));
  try {
    const file = join(dir, 'g32.pt');
    const g: Record<string, Tensor> = {};
    for (const [k, t] of ck) if (k.startsWith('g_ema.') && keep(k)) g[k.slice('g_ema.'.length)] = t;
    saveTorch(file, { g_ema: g, latent_avg: ck.get('latent_avg')! });
    const G32 = loadGenerator(file);
    assert.equal(G32.config.size, 32);
    const cut = await renderStyles(G32, codes.slice(0, G32.config.styleDims.length), 1);
    assertClose(small, cut, { rtol: 1e-5, atol: 1e-6, what: 'preview vs a 32² generator' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
