import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Graph } from '../../../src/graph/graph.js';
import { readNpyF32 } from '../../../src/io/npy.js';
import { loadGenerator } from '../../../src/models/stylegan2/load.js';
import { StyleGAN2Graph } from '../../../src/models/stylegan2/model.js';
import { compile } from '../../../src/runtime/session.js';
import { assertClose } from '../../helpers.js';

const fixtures = new URL('../../fixtures/', import.meta.url).pathname;

describe('StyleGAN2 from the decoder half of a StyleCLIP mapper checkpoint', () => {
  it('loads decoder.* and reproduces img_from_w', async () => {
    const W = loadGenerator(`${fixtures}mapper/mapper.pt`);
    assert.equal(W.source, 'styleclip-mapper');
    assert.equal(W.config.size, 64);
    const g = new Graph();
    const G = new StyleGAN2Graph(g, W);
    const w = g.input('w', [2, 512]);
    const ex = await compile({ img: G.image(G.broadcast(w)) });
    const wf = readNpyF32(`${fixtures}stylegan2/w.npy`);
    const { img } = await ex.run({ w: { shape: wf.shape, data: wf.data } });
    assertClose(img.data as Float32Array, readNpyF32(`${fixtures}stylegan2/img_from_w.npy`).data, {
      what: 'img_from_w',
    });
  });
});
