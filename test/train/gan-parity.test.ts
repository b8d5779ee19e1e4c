/**
 * Parity with rosinality's train.py (test/fixtures/train, made with StyleCLIP's copy of its model code):
 * D forward and input gradient, R1 and its gradient w.r.t. every D parameter (double backward), the
 * path-length penalty and its gradient w.r.t. every G parameter (double backward), and two whole
 * iterations (losses, scores, path-length statistics, g, d, g_ema and both Adam states).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { grad } from '../../src/autodiff/grad.js';
import { Graph } from '../../src/graph/graph.js';
import { readNpyF32 } from '../../src/io/npy.js';
import type { Tensor } from '../../src/io/tensor.js';
import { loadTorch } from '../../src/io/torch.js';
import { discriminatorArch, discriminatorSpecs } from '../../src/models/stylegan2/discriminator.js';
import { generatorSpecs, generatorStructure, type StateDict } from '../../src/models/stylegan2/trainable.js';
import { mul, sum } from '../../src/ops/index.js';
import { compile, type HostTensor } from '../../src/runtime/session.js';
import {
  discriminatorGraph,
  dR1Loss,
  GanTrainer,
  generatorGraph,
  gPathRegularize,
  type IterationDraws,
} from '../../src/train/gan.js';
import { assertClose, fixture } from '../helpers.js';

const GRAD = { rtol: 1e-3, atol: 0 };
const FWD = { rtol: 1e-4, atol: 1e-5 };

function sub(tensors: Map<string, Tensor>, prefix: string): StateDict {
  const sd: StateDict = new Map();
  for (const [k, t] of tensors) if (k.startsWith(prefix)) sd.set(k.slice(prefix.length), t);
  return sd;
}
const f32 = (t: Tensor) => t.data as Float32Array;
const host = (t: Tensor): HostTensor => ({ shape: t.shape, data: Float32Array.from(f32(t)) });

const init = loadTorch(fixture('train/init.pt')).tensors;

test('discriminator: D(x), d sum(D(x)·r)/dx, R1 and its gradient w.r.t. every D parameter', async () => {
  const u = loadTorch(fixture('train/d_unit.pt')).tensors;
  const sdD = sub(init, 'd.');
  const arch = discriminatorArch(sdD);
  const params = discriminatorSpecs(arch).filter((s) => !s.buffer);
  const g = new Graph();
  const { D, raw } = discriminatorGraph(g, arch, params, (n) => n);
  const x = g.input('x', u.get('x')!.shape);
  const r = g.input('r', u.get('r')!.shape);
  const out = D.forward(x);
  const [gx] = grad(sum(mul(out, r)), [x]);
  const r1 = dR1Loss(D.forward(x), x);
  const names = [...raw.keys()];
  const gs = grad(
    r1,
    names.map((n) => raw.get(n)!),
  );
  const outs: Record<string, ReturnType<typeof sum>> = { out, gx, r1 };
  names.forEach((n, k) => {
    outs[`g:${n}`] = gs[k];
  });
  const ex = await compile(outs);
  const feeds: Record<string, HostTensor> = { x: host(u.get('x')!), r: host(u.get('r')!) };
  for (const n of names) feeds[n] = host(sdD.get(n)!);
  const res = await ex.run(feeds);
  assertClose(res.out.data as Float32Array, f32(u.get('out')!), { ...FWD, what: 'D(x)' });
  assertClose(res.gx.data as Float32Array, f32(u.get('grad_x')!), { ...GRAD, what: 'dD/dx' });
  assertClose(res.r1.data as Float32Array, f32(u.get('r1')!), { ...FWD, what: 'r1' });
  for (const n of names)
    assertClose(res[`g:${n}`].data as Float32Array, f32(u.get(`r1_grads.${n}`)!), {
      ...GRAD,
      what: `dr1/d ${n}`,
    });
});

test('generator: path-length penalty and its gradient w.r.t. every G parameter', async () => {
  const u = loadTorch(fixture('train/pl_unit.pt')).tensors;
  const sdG = sub(init, 'g.');
  const structure = generatorStructure(sdG);
  const params = generatorSpecs(structure.config).filter((s) => !s.buffer);
  const g = new Graph();
  const { G, raw } = generatorGraph(g, structure, params, (n) => n);
  const z = u.get('z')!;
  const zin = g.input('z', z.shape);
  const wplus = G.broadcast(G.mapping(zin));
  const noise = structure.convs.map((_, i) => g.input(`noise_${i}`, u.get(`noise.${i}`)!.shape));
  const img = G.image(wplus, noise);
  const probe = g.input('probe', u.get('probe')!.shape);
  const { penalty, pathLengths } = gPathRegularize(img, wplus, probe, g.scalar(0));
  const names = [...raw.keys()];
  const gs = grad(
    penalty,
    names.map((n) => raw.get(n)!),
  );
  const outs: Record<string, ReturnType<typeof sum>> = { penalty, pathLengths };
  names.forEach((n, k) => {
    outs[`g:${n}`] = gs[k];
  });
  const ex = await compile(outs);
  const feeds: Record<string, HostTensor> = { z: host(z), probe: host(u.get('probe')!) };
  structure.convs.forEach((_, i) => {
    feeds[`noise_${i}`] = host(u.get(`noise.${i}`)!);
  });
  for (const n of names) feeds[n] = host(sdG.get(n)!);
  const res = await ex.run(feeds);
  assertClose(res.pathLengths.data as Float32Array, f32(u.get('path_lengths')!), {
    ...FWD,
    what: 'path lengths',
  });
  assertClose(res.penalty.data as Float32Array, f32(u.get('path_penalty')!), {
    ...FWD,
    what: 'path penalty',
  });
  for (const n of names)
    assertClose(res[`g:${n}`].data as Float32Array, f32(u.get(`grads.${n}`)!), {
      ...GRAD,
      what: `dpl/d ${n}`,
    });
});

test('two iterations of train.py: losses, scores, path stats, g, d, g_ema and both Adam states', async () => {
  const inputs = loadTorch(fixture('train/inputs.pt')).tensors;
  const t = GanTrainer.fromCheckpoint(fixture('train/init.pt'), {
    batch: 4,
    lr: 0.002,
    r1: 10,
    path_regularize: 2,
    path_batch_shrink: 2,
    d_reg_every: 2,
    g_reg_every: 2,
    mixing: 0,
  });
  const L = t.structure.convs.length;
  const gen = (i: number, ph: string) => ({
    z: Float32Array.from(f32(inputs.get(`it${i}.${ph}.z`)!)),
    noise: Array.from({ length: L }, (_, k) =>
      Float32Array.from(f32(inputs.get(`it${i}.${ph}.noise.${k}`)!)),
    ),
  });
  const losses = readNpyF32(fixture('train/losses.npy'));
  for (let i = 0; i < 2; i++) {
    const dr: IterationDraws = {
      real: Float32Array.from(f32(inputs.get(`it${i}.real`)!)),
      d: gen(i, 'd'),
      g: gen(i, 'g'),
    };
    if (inputs.has(`it${i}.pl.z`))
      dr.pl = { ...gen(i, 'pl'), probe: Float32Array.from(f32(inputs.get(`it${i}.pl.probe`)!)) };
    const s = await t.step(dr);
    const got = [s.d, s.real_score, s.fake_score, s.r1, s.g, s.path, s.path_length, s.mean_path_length];
    const want = Array.from(losses.data.subarray(8 * i, 8 * i + 8));
    got.forEach((v, k) => {
      assert.ok(
        Math.abs(v - want[k]) <= 1e-3 * Math.max(1e-2, Math.abs(want[k])),
        `it${i} stat ${k}: ${v} vs ${want[k]}`,
      );
    });
  }
  const after = loadTorch(fixture('train/after2.pt'));
  for (const [net, set] of [
    ['g', t.g],
    ['d', t.d],
    ['g_ema', t.gEma],
  ] as const)
    for (const p of set.params)
      assertClose(set.data(p.name), f32(after.tensors.get(`${net}.${p.name}`)!), {
        ...GRAD,
        what: `${net}.${p.name}`,
      });
  // Adam's moments after iteration 1 are that iteration's gradients. One pre-activation of D at iteration
  // 0 (sample 3 of the G step, convs.1.conv1 at (30, 24), 3e-7 in float64) rounds to the other side of the
  // leaky ReLU's kink in our float32 sums than in torch's, which moves dL/dimg by 1% on a 3x3 patch, a few
  // scalar gradients (noise strengths) by ~1e-3 and, through Adam's sign-like first steps, ~200 weights by
  // 2·lr. The weights still meet 1e-3; the moments get 1e-2 (measured: at most 6.4e-3, conv1.noise.weight).
  const MOMENTS = { rtol: 1e-2, atol: 0 };
  for (const [net, opt, set] of [
    ['g_optim', t.gOptim, t.g],
    ['d_optim', t.dOptim, t.d],
  ] as const)
    set.params.forEach((p, k) => {
      const st = opt.state(k)!;
      assert.equal(st.step, Number(after.tensors.get(`${net}.state.${k}.step`)!.data[0]), `${net} step ${k}`);
      assertClose(st.expAvg, f32(after.tensors.get(`${net}.state.${k}.exp_avg`)!), {
        ...MOMENTS,
        what: `${net} exp_avg ${p.name}`,
      });
      assertClose(st.expAvgSq, f32(after.tensors.get(`${net}.state.${k}.exp_avg_sq`)!), {
        ...MOMENTS,
        what: `${net} exp_avg_sq ${p.name}`,
      });
    });
});
