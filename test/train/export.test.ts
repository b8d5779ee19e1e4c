import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadMapper } from '../../src/edit/mapper/checkpoint.js';
import { loadTorch } from '../../src/io/torch.js';
import { ClipEncoder } from '../../src/models/clip/encoder.js';
import { loadClip } from '../../src/models/clip/load.js';
import { StyleGAN2 } from '../../src/models/stylegan2/generator.js';
import { runCli } from '../cli/helpers.js';
import { assertClose, fixture } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'styleclip-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('train export of a GAN: g_ema in float16 and the mean latent; it renders as the checkpoint does; bad input is refused', async () => {
  const ckpt = fixture('train/init.pt');
  const out = join(dir, 'generator.pt');
  const [ok, missing, noOut, noEma] = runCli([
    ['train', 'export', ckpt, '--out', out, '--half', '--mean-samples', '256'],
    ['train', 'export', join(dir, 'nope.pt'), '--out', join(dir, 'x.pt')],
    ['train', 'export', ckpt],
    ['train', 'export', fixture('stylegan2/nvidia.pkl'), '--out', join(dir, 'y.pt')],
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /32² generator .*latent_avg from 256 samples.*float16/);
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
  assert.match(noEma.stderr, /not a training checkpoint this command knows/);
  assert.ok(statSync(out).size < statSync(ckpt).size / 3);
});

test('train export of a CLIP and of a mapper: float16 files that load and compute as the originals', async () => {
  const clipOut = join(dir, 'clip.pt');
  const mapperOut = join(dir, 'mapper.pt');
  const [c, m] = runCli([
    ['train', 'export', fixture('clip/clip.pt'), '--out', clipOut, '--half'],
    ['train', 'export', fixture('mapper/mapper.pt'), '--out', mapperOut, '--half'],
  ]);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /CLIP \(\d+ tensors\), weights in float16/);
  const a = new ClipEncoder(loadClip(fixture('clip/clip.pt')));
  const b = new ClipEncoder(loadClip(clipOut));
  const texts = ['a face with purple hair', 'a smiling face'];
  // the fixture is float16 already, so its float16 copy computes the same features
  assertClose(await b.encodeTexts(texts), await a.encodeTexts(texts), { rtol: 1e-6, what: 'text features' });
  assert.equal(b.model.inputNormalization, null, 'an OpenAI-layout file stays unmarked');
  const marked = join(dir, 'clip-marked.pt');
  const [mk, bad] = runCli([
    ['train', 'export', clipOut, '--out', marked, '--normalized-input'],
    ['train', 'export', fixture('mapper/mapper.pt'), '--out', join(dir, 'x.pt'), '--normalized-input'],
  ]);
  assert.equal(mk.code, 0, mk.stderr);
  assert.deepEqual(
    loadClip(marked).inputNormalization?.mean.map((v) => +v.toFixed(5)),
    [0.48145, 0.45783, 0.40821],
  );
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--normalized-input marks a CLIP; this checkpoint holds no CLIP/);

  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stderr, /mapper \(\d+ tensors\), weights in float16/);
  const saved = loadTorch(mapperOut, { widen: false });
  assert.ok([...saved.tensors.keys()].every((k) => k.startsWith('state_dict.mapper.')));
  assert.equal([...saved.tensors.values()][0].dtype, 'float16');
  assert.deepEqual(loadMapper(mapperOut).opts, loadMapper(fixture('mapper/mapper.pt')).opts);
  assert.ok(statSync(mapperOut).size < statSync(fixture('mapper/mapper.pt')).size / 2);
});
