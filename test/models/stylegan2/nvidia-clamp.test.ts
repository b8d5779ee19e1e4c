import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { grad } from '../../../src/autodiff/grad.js';
import { Graph } from '../../../src/graph/graph.js';
import { readNpyF32 } from '../../../src/io/npy.js';
import { loadGenerator } from '../../../src/models/stylegan2/load.js';
import { StyleGAN2Graph } from '../../../src/models/stylegan2/model.js';
import { mul, sum } from '../../../src/ops/index.js';
import { compile, type HostTensor } from '../../../src/runtime/session.js';
import { assertClose, fixture } from '../../helpers.js';

// nvidia_clamp.pkl has conv_clamp 0.5, which really clips (nvidia.pkl's 256 never acts), so these are the
// only reference values for the clamp and for its gradient (zero where a value was clipped).
const fx = (name: string) => readNpyF32(fixture(`stylegan2/${name}.npy`));

describe('StyleGAN2 (NVIDIA pkl with an active conv_clamp) parity', () => {
  const W = loadGenerator(fixture('stylegan2/nvidia_clamp.pkl'));
  let out: Record<string, HostTensor>;

  before(async () => {
    const wsf = fx('nvidia_clamp_ws');
    const probe = fx('nvidia_clamp_probe');
    const g = new Graph();
    const G = new StyleGAN2Graph(g, W);
    const ws = g.input('ws', wsf.shape);
    const img = G.image(ws, 'const');
    const [gws] = grad(sum(mul(img, g.input('probe', probe.shape))), [ws]);
    const ex = await compile({ img, gws });
    out = await ex.run({
      ws: { shape: wsf.shape, data: wsf.data },
      probe: { shape: probe.shape, data: probe.data },
    });
  });

  it('reads the clamp from the snapshot', () => {
    assert.equal(W.convs[0].clamp, 0.5);
  });

  it('matches synthesis(ws, noise_mode=const)', () => {
    const e = fx('nvidia_clamp_img');
    assert.deepEqual(out.img.shape, e.shape);
    assertClose(out.img.data as Float32Array, e.data, { rtol: 1e-4, atol: 1e-5, what: 'image' });
  });

  it('matches d sum(image·probe) / d ws', () => {
    const e = fx('nvidia_clamp_grad_ws');
    assert.deepEqual(out.gws.shape, e.shape);
    assertClose(out.gws.data as Float32Array, e.data, { rtol: 1e-3, atol: 0, what: 'grad ws' });
  });
});
