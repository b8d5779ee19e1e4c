import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadTorch } from '../../src/io/torch.js';
import { StyleGAN2 } from '../../src/models/stylegan2/generator.js';
import { runCli } from '../cli/helpers.js';
import { assertClose, fixture } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'styleclip-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('train export: g_ema in float16 and the mean latent; it renders as the checkpoint does; bad input is refused', async () => {
  const ckpt = fixture('train/init.pt');
  const out = join(dir, 'generator.pt');
  const [ok, missing, noOut, noEma] = runCli([
    ['train', 'export', ckpt, '--out', out, '--half', '--mean-samples', '256'],
    ['train', 'export', join(dir, 'nope.pt'), '--out', join(dir, 'x.pt')],
    ['train', 'export', ckpt],
    ['train', 'export', fixture('stylegan2/nvidia.pkl'), '--out', join(dir, 'y.pt')],
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /in float16, latent_avg from 256 samples/);
  const saved = loadTorch(out, { widen: false }).tensors;
  assert.equal(saved.get('g_ema.style.1.weight')?.dtype, 'float16');
  assert.equal(saved.get('latent_avg')?.dtype, 'float32');
  assert.ok(
    ![...saved.keys()].some((k) => k.startsWith('d.') || k.startsWith('g.')),
    'only g_ema and latent_avg',
  );

  const original = StyleGAN2.load(ckpt);
  const shipped = StyleGAN2.load(out);
  assertClose(shipped.weights.latentAvg!, await original.meanLatent(256, 0), {
    rtol: 1e-6,
    what: 'latent_avg',
  });
  const { nLatent: L, styleDim: D } = original.config;
  const w = Float32Array.from({ length: L * D }, (_, i) => Math.sin(i * 0.7) * 0.5);
  const a = (await original.synthesize(w)).data as Float32Array;
  const b = (await shipped.synthesize(w)).data as Float32Array;
  assertClose(b, a, { rtol: 0, atol: 2e-2, what: 'render from the float16 weights' });

  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /checkpoint not found: .*nope\.pt/);
  assert.notEqual(noOut.code, 0);
  assert.match(noOut.stderr, /--out/);
  assert.equal(noEma.code, 1);
  assert.match(noEma.stderr, /has no g_ema/);
  assert.ok(statSync(out).size < statSync(ckpt).size / 3);
});
