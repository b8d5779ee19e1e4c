import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderStyles, stylesFromWplus } from '../../src/edit/global.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import { previewWeights } from '../../src/server/studio.js';
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
  // The preview resembles the full image: correlate it with the 2x2 box-downsampled full render.
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const xs: number[] = [];
  const ys: number[] = [];
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < 32; y++)
      for (let x = 0; x < 32; x++) {
        const at = (yy: number, xx: number) => full[c * 4096 + yy * 64 + xx];
        xs.push(small[c * 1024 + y * 32 + x]);
        ys.push(
          (at(2 * y, 2 * x) + at(2 * y + 1, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x + 1)) / 4,
        );
      }
  const mx = mean(xs);
  const my = mean(ys);
  xs.forEach((x, i) => {
    sxy += (x - mx) * (ys[i] - my);
    sxx += (x - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  });
  const corr = sxy / Math.sqrt(sxx * syy);
  assert.ok(corr > 0.5, `correlation ${corr}`);
});
