import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readNpyF32 } from '../../../src/io/npy.js';
import { seededZ } from '../../../src/models/stylegan2/generator.js';
import { StyleGAN2 } from '../../../src/models/stylegan2/index.js';
import { assertClose } from '../../helpers.js';

const fixtures = new URL('../../fixtures/', import.meta.url).pathname;
const fx = (name: string) => readNpyF32(`${fixtures}${name}.npy`);
const nn = (i: number) => String(i).padStart(2, '0');

describe('StyleGAN2 host API', () => {
  const G = StyleGAN2.load(`${fixtures}stylegan2/generator.pt`);

  it('W+ → S → image round trip equals W+ → image, and w2s matches style_NN', async () => {
    const wplus = fx('stylegan2/wplus_trunc').data;
    const s = await G.w2s(wplus);
    s.forEach((a, i) => {
      assertClose(a, fx(`stylegan2/style_${nn(i)}`).data, { what: `style_${nn(i)}` });
    });
    const img = await G.synthesizeStyles(s);
    assertClose(img.data as Float32Array, fx('stylegan2/img_trunc').data, { what: 'img from S' });
    const img2 = await G.synthesize(wplus);
    assertClose(img2.data as Float32Array, fx('stylegan2/img_trunc').data, { what: 'img from W+' });
  });

  it('truncation and explicit noise through the host API', async () => {
    const w = await G.mapping(fx('stylegan2/z').data);
    const wt = await G.toWPlus(w, [2, 512], { psi: 0.7 });
    assertClose(wt, fx('stylegan2/wplus_trunc').data, { what: 'wplus_trunc' });
    const noise = Array.from({ length: G.config.numLayers }, (_, i) => fx(`stylegan2/noise_${nn(i)}`).data);
    const img = await G.synthesize(fx('stylegan2/wplus_trunc').data, noise);
    assertClose(img.data as Float32Array, fx('stylegan2/img_explicit_noise').data, {
      what: 'explicit noise',
    });
    const r1 = await G.synthesize(wt, { seed: 3 });
    const r2 = await G.synthesize(wt, { seed: 3 });
    assert.deepEqual(r1.data, r2.data);
  });

  it('StyleSpace mean/std over 200 samples matches global/code_mean_NN, code_std_NN', async () => {
    const st = await G.styleStats(200, { seed: 5, psi: 0.7, cutoff: 8, chunk: 100 });
    st.mean.forEach((m, i) => {
      assertClose(m, fx(`global/code_mean_${nn(i)}`).data, { what: `code_mean_${nn(i)}` });
      assertClose(st.std[i], fx(`global/code_std_${nn(i)}`).data, { what: `code_std_${nn(i)}` });
    });
  });

  it('computes a mean latent when the checkpoint has none', async () => {
    const H = new StyleGAN2({ ...G.weights, latentAvg: null });
    // 600 samples: two chunks (512 + 88), weighted by their sizes
    const m = await H.meanLatent(600);
    assert.equal(m.length, 512);
    // the mean of mapping(z) over numpy RandomState(0).randn(600, 512), in float64 here
    const w = await H.mapping(seededZ(0, 600, 512));
    const want = new Float64Array(512);
    for (let r = 0; r < 600; r++) for (let d = 0; d < 512; d++) want[d] += w[r * 512 + d] / 600;
    assertClose(m, want, { rtol: 1e-5, atol: 1e-6, what: 'mean latent' });
    // Cached per (samples, seed): the same request is the same array, another seed another mean.
    assert.equal(await H.meanLatent(600), m);
    const other = await H.meanLatent(600, 1);
    assert.notDeepEqual([...other], [...m]);
  });
});
