import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { grad } from '../../../src/autodiff/grad.js';
import { Graph } from '../../../src/graph/graph.js';
import { readNpyF32 } from '../../../src/io/npy.js';
import { loadTorch } from '../../../src/io/torch.js';
import { fromRosinality, loadGenerator } from '../../../src/models/stylegan2/load.js';
import { StyleGAN2Graph, truncate } from '../../../src/models/stylegan2/model.js';
import { mean, mul, sum } from '../../../src/ops/index.js';
import { compile, type HostTensor } from '../../../src/runtime/session.js';
import { assertClose } from '../../helpers.js';

const dir = new URL('../../fixtures/stylegan2/', import.meta.url).pathname;
const fx = (name: string) => readNpyF32(`${dir}${name}.npy`);
const nn = (i: number) => String(i).padStart(2, '0');
const FWD = { rtol: 1e-4, atol: 1e-5 };
const GRAD = { rtol: 1e-3, atol: 0 };

describe('StyleGAN2 (rosinality checkpoint) parity', () => {
  let out: Record<string, HostTensor>;
  let nStyles = 0;
  let nNoise = 0;

  before(async () => {
    const W = loadGenerator(`${dir}generator.pt`);
    const cfg = W.config;
    nStyles = cfg.styleDims.length;
    nNoise = cfg.numLayers;
    const g = new Graph();
    const G = new StyleGAN2Graph(g, W);
    const t = (name: string) => {
      const a = fx(name);
      return { value: g.input(`in_${name}`, a.shape), host: { shape: a.shape, data: a.data } as HostTensor };
    };
    const feeds: Record<string, HostTensor> = {};
    const inp = (name: string) => {
      const r = t(name);
      feeds[`in_${name}`] = r.host;
      return r.value;
    };
    const z = inp('z');
    const z2 = inp('z2');
    const zMean = inp('z_for_mean');
    const w = inp('w');
    const wplus = inp('wplus_trunc');
    const probe = inp('grad_probe');
    const styleIn = Array.from({ length: nStyles }, (_, i) => inp(`style_${nn(i)}`));
    const noiseIn = Array.from({ length: nNoise }, (_, i) => inp(`noise_${nn(i)}`));

    const outputs: Record<string, ReturnType<typeof G.mapping>> = {};
    outputs.w = G.mapping(z);
    outputs.w_mean = mean(G.mapping(zMean), 0, true);
    outputs.img_from_w = G.image(G.broadcast(w));
    const wt = truncate(G.mapping(z), G.latentAvg(), 0.7);
    outputs.wplus_trunc = G.broadcast(wt);
    const styles = G.styles(outputs.wplus_trunc);
    styles.forEach((s, i) => {
      outputs[`style_${nn(i)}`] = s;
    });
    outputs.img_trunc = G.synthesis(styles);
    outputs.wplus_mix = G.mix(G.mapping(z), G.mapping(z2), 3);
    outputs.img_mix = G.image(outputs.wplus_mix);
    outputs.img_from_styles = G.synthesis(styleIn);
    outputs.img_explicit_noise = G.image(wplus, noiseIn);
    const [gw] = grad(sum(mul(G.image(wplus), probe)), [wplus]);
    outputs.grad_wplus = gw;
    const gs = grad(sum(mul(G.synthesis(styleIn), probe)), styleIn);
    gs.forEach((v, i) => {
      outputs[`grad_style_${nn(i)}`] = v;
    });
    const ex = await compile(outputs);
    out = await ex.run(feeds);
  });

  it('infers the architecture from the checkpoint', () => {
    const W = loadGenerator(`${dir}generator.pt`);
    assert.equal(W.config.size, 64);
    assert.equal(W.config.styleDim, 512);
    assert.equal(W.config.nMlp, 2);
    assert.equal(W.config.nLatent, 10);
    assert.deepEqual(W.config.channels, { 4: 32, 8: 32, 16: 32, 32: 16, 64: 16 });
    assert.deepEqual(W.config.styleDims, [32, 32, 32, 32, 32, 32, 32, 32, 32, 16, 16, 16, 16, 16]);
    assert.deepEqual(
      W.config.styleIsToRGB.flatMap((f, i) => (f ? [i] : [])),
      [1, 4, 7, 10, 13],
    );
    assert.ok(W.latentAvg);
  });

  for (const name of [
    'w',
    'w_mean',
    'img_from_w',
    'img_trunc',
    'wplus_trunc',
    'img_mix',
    'wplus_mix',
    'img_from_styles',
    'img_explicit_noise',
  ])
    it(`matches ${name}`, () => {
      const e = fx(name);
      assert.deepEqual(out[name].shape, e.shape);
      assertClose(out[name].data as Float32Array, e.data, { ...FWD, what: name });
    });

  it('matches every StyleSpace code style_NN', () => {
    for (let i = 0; i < nStyles; i++) {
      const name = `style_${nn(i)}`;
      assertClose(out[name].data as Float32Array, fx(name).data, { ...FWD, what: name });
    }
  });

  it('matches grad_wplus', () => {
    assertClose(out.grad_wplus.data as Float32Array, fx('grad_wplus').data, { ...GRAD, what: 'grad_wplus' });
  });

  it('matches every grad_style_NN', () => {
    for (let i = 0; i < nStyles; i++) {
      const name = `grad_style_${nn(i)}`;
      assertClose(out[name].data as Float32Array, fx(name).data, { ...GRAD, what: name });
    }
  });

  it('rejects a checkpoint with a missing key, naming it', () => {
    const ck = loadTorch(`${dir}generator.pt`);
    const t = new Map(ck.tensors);
    t.delete('g_ema.convs.3.noise.weight');
    assert.throws(() => fromRosinality('x.pt', t), /g_ema\.convs\.3\.noise\.weight/);
  });

  it('rejects an extra key and a wrong shape, naming them', () => {
    const ck = loadTorch(`${dir}generator.pt`);
    const t = new Map(ck.tensors);
    t.set('g_ema.convs.1.extra', t.get('latent_avg')!);
    assert.throws(() => fromRosinality('x.pt', t), /g_ema\.convs\.1\.extra/);
    const t2 = new Map(ck.tensors);
    const b = t2.get('g_ema.conv1.activate.bias')!;
    t2.set('g_ema.conv1.activate.bias', { ...b, shape: [2, 16] });
    assert.throws(() => fromRosinality('x.pt', t2), /g_ema\.conv1\.activate\.bias/);
  });
});
