import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Graph } from '../../../src/graph/graph.js';
import { readNpyF32 } from '../../../src/io/npy.js';
import { loadNvidiaPkl } from '../../../src/io/torch.js';
import { fromNvidia, loadGenerator } from '../../../src/models/stylegan2/load.js';
import { StyleGAN2Graph, truncate } from '../../../src/models/stylegan2/model.js';
import { compile, type HostTensor } from '../../../src/runtime/session.js';
import { assertClose } from '../../helpers.js';

const dir = new URL('../../fixtures/stylegan2/', import.meta.url).pathname;
const fx = (name: string) => readNpyF32(`${dir}${name}.npy`);
const FWD = { rtol: 1e-4, atol: 1e-5 };

describe('StyleGAN2 (NVIDIA stylegan2-ada-pytorch pkl) parity', () => {
  let out: Record<string, HostTensor>;
  const W = loadGenerator(`${dir}nvidia.pkl`);

  before(async () => {
    const g = new Graph();
    const G = new StyleGAN2Graph(g, W);
    const z = g.input('z', [2, 512]);
    const ws = g.input('ws', [2, 8, 512]);
    const wsOut = truncate(G.broadcast(G.mapping(z)), G.latentAvg(), 0.7, 8);
    const ex = await compile({ nvidia_ws: wsOut, nvidia_img: G.image(ws, 'const') });
    const zf = fx('nvidia_z');
    const wsf = fx('nvidia_ws');
    out = await ex.run({ z: { shape: zf.shape, data: zf.data }, ws: { shape: wsf.shape, data: wsf.data } });
  });

  it('infers the architecture from the snapshot', () => {
    assert.equal(W.source, 'nvidia');
    assert.equal(W.config.size, 32);
    assert.equal(W.config.nLatent, 8);
    assert.deepEqual(W.config.channels, { 4: 64, 8: 64, 16: 64, 32: 32 });
    assert.equal(W.convs[0].clamp, 256);
    assert.equal(W.config.styleDims.length, 11);
  });

  for (const name of ['nvidia_ws', 'nvidia_img'])
    it(`matches ${name}`, () => {
      const e = fx(name);
      assert.deepEqual(out[name].shape, e.shape);
      assertClose(out[name].data as Float32Array, e.data, { ...FWD, what: name });
    });

  it('names a missing key', () => {
    const net = loadNvidiaPkl(`${dir}nvidia.pkl`);
    const t = new Map(net.tensors);
    t.delete('synthesis.b16.conv1.noise_strength');
    assert.throws(() => fromNvidia('n.pkl', t, net.initKwargs), /synthesis\.b16\.conv1\.noise_strength/);
  });
});
