import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Tensor, toFloat32 } from '../../src/io/tensor.js';
import { loadNvidiaPkl, loadTorch } from '../../src/io/torch.js';
import { fixture, ROOT } from '../helpers.js';

interface Ref {
  shape: number[];
  dtype?: string;
  sum: number;
  sumsq: number;
  first: number[];
}
const fixtures = fixture('');
const refs: Record<string, Record<string, Ref>> = JSON.parse(
  readFileSync(`${fixtures}/checkpoints.json`, 'utf8'),
);

function stats(t: Tensor): { sum: number; sumsq: number; first: number[] } {
  const d = toFloat32(t).data;
  let sum = 0;
  let sumsq = 0;
  for (let i = 0; i < d.length; i++) {
    sum += d[i];
    sumsq += d[i] * d[i];
  }
  return { sum, sumsq, first: Array.from(d.subarray(0, 4)) };
}

/** Same keys in the same order, same shapes and dtypes, and sums that match to float32 rounding. */
function assertMatches(
  tensors: Map<string, Tensor>,
  ref: Record<string, Ref>,
  dtypeOf = (r: Ref) => r.dtype,
): void {
  assert.deepEqual([...tensors.keys()], Object.keys(ref));
  for (const [k, r] of Object.entries(ref)) {
    const t = tensors.get(k)!;
    assert.deepEqual(t.shape, r.shape, k);
    if (dtypeOf(r)) assert.equal(t.dtype, dtypeOf(r), k);
    assert.equal(
      t.data.length,
      r.shape.reduce((a, b) => a * b, 1),
      k,
    );
    const s = stats(t);
    assert.ok(
      Math.abs(s.sum - r.sum) <= 1e-9 * Math.sqrt(r.sumsq * t.data.length) + 1e-12,
      `${k} sum ${s.sum} vs ${r.sum}`,
    );
    assert.ok(Math.abs(s.sumsq - r.sumsq) <= 1e-9 * r.sumsq + 1e-12, `${k} sumsq ${s.sumsq} vs ${r.sumsq}`);
    assert.deepEqual(s.first, r.first.map(Math.fround), `${k} first values`);
  }
}

describe('torch checkpoints load to what torch gives', () => {
  for (const file of ['stylegan2/generator.pt', 'mapper/mapper.pt', 'arcface/irse.pth', 'clip/clip.pt']) {
    test(file, () => {
      const ck = loadTorch(`${fixtures}/${file}`, { widen: false });
      assertMatches(ck.tensors, refs[file]);
    });
  }

  test('formats are sniffed', () => {
    assert.equal(loadTorch(`${fixtures}/stylegan2/generator.pt`).format, 'torch-zip');
    assert.equal(loadTorch(`${fixtures}/arcface/irse.pth`).format, 'torch-legacy');
    assert.equal(loadTorch(`${fixtures}/clip/clip.pt`).format, 'torchscript');
    assert.equal(loadTorch(`${fixtures}/stylegan2/nvidia.pkl`).format, 'pickle');
  });

  test('arcface/irse_zip.pth holds the same weights as the legacy file', () => {
    const zip = loadTorch(`${fixtures}/arcface/irse_zip.pth`);
    assertMatches(zip.tensors, refs['arcface/irse.pth']);
    const legacy = loadTorch(`${fixtures}/arcface/irse.pth`);
    for (const [k, t] of legacy.tensors) assert.deepEqual(zip.tensors.get(k)!.data, t.data, k);
  });

  test('TorchScript fp16 weights widen to float32 by default', () => {
    const ck = loadTorch(`${fixtures}/clip/clip.pt`);
    assertMatches(ck.tensors, refs['clip/clip.pt'], () => 'float32');
    const value = ck.value as Record<string, unknown>;
    assert.equal(value.__class__, '__torch__.clip.model.CLIP');
  });

  test('plain values come back as JS values', () => {
    const gen = loadTorch(`${fixtures}/stylegan2/generator.pt`).value as Record<string, unknown>;
    assert.deepEqual(Object.keys(gen), ['g_ema', 'latent_avg']);
    const mapper = loadTorch(`${fixtures}/mapper/mapper.pt`).value as { opts: Record<string, unknown> };
    assert.equal(mapper.opts.description, 'purple hair');
    assert.equal(mapper.opts.mapper_type, 'LevelsMapper');
    assert.equal(mapper.opts.stylegan_size, 64);
    assert.equal(mapper.opts.no_fine_mapper, false);
    assert.equal(mapper.opts.learning_rate, 0.5);
  });

  test('NVIDIA pkl: G_ema parameters and buffers by module path, plus init kwargs', () => {
    const net = loadNvidiaPkl(`${fixtures}/stylegan2/nvidia.pkl`);
    const ref: Record<string, Ref> = JSON.parse(
      readFileSync(join(ROOT, 'test/io/nvidia_g_ema.json'), 'utf8'),
    );
    assertMatches(net.tensors, ref, () => 'float32');
    assert.equal(net.className, 'Generator');
    assert.ok(net.tensors.has('mapping.fc0.weight'));
    assert.deepEqual(net.tensors.get('mapping.w_avg')!.shape, [512]);
    assert.ok(net.tensors.has('synthesis.b4.conv1.affine.weight'));
    assert.equal(net.initKwargs.img_resolution, 32);
    assert.deepEqual(net.initKwargs.synthesis_kwargs, {
      channel_base: 1024,
      channel_max: 64,
      num_fp16_res: 0,
      conv_clamp: 256,
    });
    assert.deepEqual(net.snapshot.training_set_kwargs, { resolution: 32 });
    assert.equal(net.snapshot.D, null);
  });
});
