/**
 * Full size: CLIP ViT-B/32 as OpenAI publishes it (`ViT-B-32.pt`, a TorchScript archive with float16
 * weights) and as Hugging Face does (`model.safetensors`, float32), and StyleCLIP's `fs3.npy` for the FFHQ
 * 1024 generator (6048 × 512 in float16 and float32, and the 5376-row file of the layers up to 128²). Written
 * with random weights, loaded through the library, encoded once, and run through `styleclip global edit`
 * (the archive) and `styleclip embed` (the safetensors).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ClipEncoder, loadClip, loadFs3, readNpyF32 } from '../../src/index.js';
import { writeNpy } from '../../src/io/npy.js';
import { float32ToHalf, toFloat32 } from '../../src/io/tensor.js';
import { loadClipStateDict } from '../../src/models/clip/load.js';
import { configFChannels, makeConfig } from '../../src/models/stylegan2/weights.js';
import { assertCliOk, assertImage, cli, scratch } from './helpers.js';
import {
  describeArchive,
  manifest,
  manifestTensors,
  randomGenerator,
  writeClipScript,
  writeHfClip,
  writeRosinality,
} from './layouts.js';

const tmp = scratch('clip');
const vit = tmp.path('ViT-B-32.pt');
const hf = tmp.path('model.safetensors');
const TEXTS = ['a face', 'a smiling face'];
let scriptText: Float32Array;

before(() => writeClipScript(vit));
after(() => tmp.remove());

describe('ViT-B-32.pt (OpenAI TorchScript archive, float16)', () => {
  test('every tensor as torch wrote it: key order, shape, stride, dtype, storage', () => {
    const want = manifestTensors(manifest()['ViT-B-32.pt']);
    const have = describeArchive(vit);
    // The archive also pickles non-parameter attributes; the parameters are exactly torch's state_dict.
    assert.deepEqual(
      [...have.keys()].filter((k) => want.some((t) => t.key === k)),
      want.map((t) => t.key),
    );
    for (const t of want) {
      const { key, ...layout } = t;
      assert.deepEqual(have.get(key), layout, key);
    }
    const sd = loadClipStateDict(vit);
    assert.equal(sd.format, 'torchscript');
    assert.deepEqual(
      [...sd.tensors.keys()],
      want.map((t) => t.key),
    );
  });

  test('the library encodes text and an image (ViT-B/32 config read from the weights)', async () => {
    const model = loadClip(vit);
    assert.equal(model.config.embedDim, 512);
    const enc = new ClipEncoder(model);
    scriptText = await enc.encodeTexts(TEXTS);
    assert.equal(scriptText.length, 2 * 512);
    assert.ok(scriptText.every(Number.isFinite));
    const image = new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i * 0.01));
    const feats = await enc.encodeImages(image, 1);
    assert.equal(feats.length, 512);
    assert.ok(feats.every(Number.isFinite));
    await enc.release();
  });
});

test('Hugging Face model.safetensors (float32): same features as the archive, in the library and the CLI', async () => {
  const openAI = loadClipStateDict(vit).tensors;
  for (const [k, t] of openAI) openAI.set(k, toFloat32(t));
  writeHfClip(hf, openAI);
  openAI.clear();
  const sd = loadClipStateDict(hf);
  assert.equal(sd.layout, 'huggingface');
  const enc = new ClipEncoder(loadClip(hf));
  const feats = await enc.encodeTexts(TEXTS);
  await enc.release();
  assert.ok(scriptText, 'the archive test ran first');
  for (let i = 0; i < feats.length; i++)
    assert.ok(Math.abs(feats[i] - scriptText[i]) <= 1e-4, `feature ${i}`);
  const out = tmp.path('hf.npy');
  assertCliOk(cli(['embed', '--clip', hf, '--text', TEXTS[0], '--out', out]), 'embed model.safetensors');
  assert.deepEqual(readNpyF32(out).shape, [1, 512]);
});

test('fs3.npy: 6048 × 512 in float16 and float32, and 5376 rows; `styleclip global edit` with all full-size files', async () => {
  const config = makeConfig(1024, 512, 8, configFChannels(1024));
  const fs3 = (rows: number, dtype: 'float16' | 'float32') => {
    const file = tmp.path(`fs3-${rows}-${dtype}.npy`);
    const data = new Float32Array(rows * 512).map((_, i) => Math.sin(i * 0.013) * 0.05);
    writeNpy(
      file,
      dtype === 'float32'
        ? { dtype, shape: [rows, 512], data }
        : { dtype, shape: [rows, 512], data: Uint16Array.from(data, float32ToHalf) },
    );
    return file;
  };
  for (const [rows, dtype, layers] of [
    [6048, 'float16', 17],
    [6048, 'float32', 17],
    [5376, 'float32', 11],
  ] as const) {
    const f = loadFs3(fs3(rows, dtype), config, 512);
    assert.equal(f.rows, rows);
    assert.equal(f.layers.length, layers, `${rows} rows cover ${layers} non-toRGB layers`);
  }
  const gen = tmp.path('stylegan2-ffhq-config-f.pt');
  writeRosinality(gen, randomGenerator(1024, 4));
  const total = config.styleDims.reduce((a, b) => a + b, 0);
  const stats = tmp.path('stats.npy');
  writeNpy(stats, { dtype: 'float32', shape: [2, total], data: new Float32Array(2 * total).fill(1, total) });
  const out = tmp.path('global.png');
  const r = cli([
    'global',
    'edit',
    '--generator',
    gen,
    '--clip',
    vit,
    '--fs3',
    fs3(6048, 'float16'),
    '--stats',
    stats,
    '--latent',
    'test/fixtures/real/w_plus.npy',
    '--index',
    '3',
    '--neutral',
    'face',
    '--target',
    'smiling face',
    '--beta',
    '0',
    '--out',
    out,
  ]);
  assertCliOk(r, 'global edit');
  await assertImage(out, 1024);
});
