import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { grad } from '../../src/autodiff/grad.js';
import {
  ClipLossFunction,
  clipInput,
  clipLoss,
  clipResample,
  IdLossFunction,
  idFeatures,
  idLoss,
} from '../../src/edit/losses.js';
import { Graph } from '../../src/graph/graph.js';
import { parseNpy } from '../../src/io/npy.js';
import { loadArcFace } from '../../src/models/arcface/load.js';
import { ClipEncoder } from '../../src/models/clip/encoder.js';
import { loadClip, loadClipStateDict } from '../../src/models/clip/load.js';
import { ClipModel, clipNormalizationTensor, INPUT_NORMALIZATION_KEY } from '../../src/models/clip/model.js';
import { mul } from '../../src/ops/elementwise.js';
import { avgPool2d, upsampleNearest } from '../../src/ops/pool.js';
import { sum } from '../../src/ops/reduce.js';
import { compile, type HostTensor } from '../../src/runtime/session.js';
import { normalizeSigned } from '../../src/train/clip-data.js';
import { assertClose } from '../helpers.js';

const fx = (p: string) => new URL(`../fixtures/${p}`, import.meta.url);
const f32 = (p: string) => parseNpy(new Uint8Array(readFileSync(fx(p)))).data as Float32Array;
const SHAPE = [2, 3, 64, 64];

describe('StyleCLIP CLIP loss', () => {
  let res: { loss: Float32Array; grad: Float32Array };
  before(async () => {
    const clip = loadClip(fx('clip/clip.pt').pathname);
    const text = await new ClipEncoder(clip).encodeTexts(['a person with purple hair']);
    const fn = await ClipLossFunction.create(clip, text, SHAPE);
    res = await fn.run(f32('stylegan2/img_from_w.npy'));
  });

  test('CLIPLoss(img_from_w, "a person with purple hair") = 1 − logits/100', () => {
    assertClose(res.loss, f32('clip/styleclip_clip_loss.npy'), { what: 'clip loss' });
  });

  test('gradient with respect to the image', () => {
    assertClose(res.grad, f32('clip/grad_styleclip_clip_loss.npy'), { rtol: 1e-3, atol: 0, what: 'grad' });
  });

  test('the separable resample equals ×7 nearest upsample then AvgPool2d(size/32), values and gradients', async () => {
    const g = new Graph();
    const x = g.input('x', [1, 2, 96, 96]);
    const a = clipResample(x);
    const b = avgPool2d(upsampleNearest(x, 7), 3);
    assert.deepEqual(a.shape, [1, 2, 224, 224]);
    assert.deepEqual(b.shape, a.shape);
    const r2 = g.input('r2', [1, 2, 224, 224]);
    const [ga] = grad(sum(mul(a, r2)), [x]);
    const [gb] = grad(sum(mul(b, r2)), [x]);
    const ex = await compile({ a, b, ga, gb }, {});
    const rnd = (n: number, s: number) =>
      Float32Array.from({ length: n }, (_, i) => Math.sin(i * s) + 0.1 * Math.cos(i));
    const o: Record<string, HostTensor> = await ex.run({
      x: { shape: [1, 2, 96, 96], data: rnd(2 * 96 * 96, 0.37) },
      r2: { shape: [1, 2, 224, 224], data: rnd(2 * 224 * 224, 0.11) },
    });
    assertClose(o.a.data as Float32Array, o.b.data as Float32Array, {
      rtol: 1e-6,
      atol: 1e-6,
      what: 'resample',
    });
    assertClose(o.ga.data as Float32Array, o.gb.data as Float32Array, {
      rtol: 1e-5,
      atol: 0,
      what: 'resample grad',
    });
  });

  test("another CLIP's resolution: a 64² image is passed as it is to a 64² CLIP, a 256² one is 4×4 means", async () => {
    const g = new Graph();
    const small = g.input('small', [1, 3, 64, 64]);
    assert.equal(clipResample(small, 64), small);
    const x = g.input('x', [1, 2, 256, 256]);
    const a = clipResample(x, 64);
    assert.deepEqual(a.shape, [1, 2, 64, 64]);
    const ex = await compile({ a, b: avgPool2d(x, 4) }, { inputs: [x] });
    const data = Float32Array.from({ length: 2 * 256 * 256 }, (_, i) => Math.sin(i * 0.13));
    const o = await ex.run({ x: { shape: [1, 2, 256, 256], data } });
    assertClose(o.a.data as Float32Array, o.b.data as Float32Array, {
      rtol: 1e-5,
      atol: 1e-6,
      what: 'pool 4',
    });
  });
});

describe('CLIP input: the pixel normalization a CLIP file asks for', () => {
  const sd = loadClipStateDict(fx('clip/clip.pt').pathname).tensors;
  const plain = ClipModel.fromStateDict(sd);
  const marked = ClipModel.fromStateDict(
    new Map([...sd, [INPUT_NORMALIZATION_KEY, clipNormalizationTensor()]]),
  );

  test("unmarked (OpenAI's files): [-1, 1] as it is; marked (train clip's): CLIP's mean/std, loss included", async () => {
    assert.equal(plain.inputNormalization, null);
    assert.deepEqual(
      marked.inputNormalization?.std.map((v) => +v.toFixed(6)),
      [0.26863, 0.261303, 0.275777],
    );
    const g = new Graph();
    const x = g.input('x', SHAPE);
    const text = await new ClipEncoder(plain).encodeTexts(['a face with purple hair']);
    const t = g.const(text, [1, text.length], 'text');
    const ex = await compile(
      {
        resampled: clipResample(x),
        raw: clipInput(plain, x),
        norm: clipInput(marked, x),
        lossMarked: clipLoss(marked, x, t),
        lossPlain: clipLoss(plain, x, t),
      },
      { inputs: [x] },
    );
    const o = await ex.run({ x: { shape: SHAPE, data: f32('stylegan2/img_from_w.npy') } });
    const resampled = o.resampled.data as Float32Array; // [2, 3, 224, 224]
    assert.deepEqual(o.raw.data, resampled);
    const expected = Float32Array.from(resampled);
    const per = expected.length / 2;
    for (let b = 0; b < 2; b++) normalizeSigned(expected.subarray(b * per, (b + 1) * per));
    assertClose(o.norm.data as Float32Array, expected, { what: 'normalized' });
    // the marked model's loss on x is the plain model's loss on the normalized 224² image
    const g2 = new Graph();
    const y = g2.input('y', [2, 3, 224, 224]);
    const ex2 = await compile(
      { l: clipLoss(plain, y, g2.const(text, [1, text.length], 'text')) },
      { inputs: [y] },
    );
    const l = (await ex2.run({ y: { shape: [2, 3, 224, 224], data: expected } })).l.data as Float32Array;
    assertClose(o.lossMarked.data as Float32Array, l, { what: 'loss (marked)' });
    assert.ok(
      Math.abs((o.lossMarked.data as Float32Array)[0] - (o.lossPlain.data as Float32Array)[0]) > 1e-4,
    );
  });

  test('a malformed mark is refused with its name', () => {
    const bad = (data: number[], shape: number[]) =>
      ClipModel.fromStateDict(
        new Map([
          ...sd,
          [INPUT_NORMALIZATION_KEY, { dtype: 'float32', shape, data: Float32Array.from(data) }],
        ]),
      );
    assert.throws(
      () => bad([0.5, 0.5, 0.5], [3]),
      /"input_normalization" has shape \[3\], expected \[2, 3\]/,
    );
    assert.throws(() => bad([0.5, 0.5, 0.5, 0.2, 0, 0.2], [2, 3]), /positive stds/);
  });
});

describe('StyleCLIP ID loss (IR-SE backbone)', () => {
  for (const file of ['irse.pth', 'irse_zip.pth'])
    test(`${file}: IDLoss(img_from_w, img_trunc) and its gradient`, async () => {
      const arc = loadArcFace(fx(`arcface/${file}`).pathname, { stageUnits: [1, 1, 2, 1] });
      const fn = await IdLossFunction.create(arc, SHAPE);
      const { loss, grad: gr } = await fn.run(
        f32('stylegan2/img_from_w.npy'),
        f32('stylegan2/img_trunc.npy'),
      );
      assertClose(loss, f32('arcface/id_loss.npy'), { what: 'id loss' });
      assertClose(gr, f32('arcface/grad_id_loss.npy'), { rtol: 1e-3, atol: 0, what: 'id grad' });
      if (file !== 'irse.pth') return;
      // The same loss with the target's features computed once.
      await fn.setTarget(f32('stylegan2/img_trunc.npy'));
      const cached = await fn.runToTarget(f32('stylegan2/img_from_w.npy'));
      assertClose(cached.loss, f32('arcface/id_loss.npy'), { what: 'id loss (cached target)' });
      assertClose(cached.grad, f32('arcface/grad_id_loss.npy'), {
        rtol: 1e-3,
        atol: 0,
        what: 'id grad (cached)',
      });
    });

  test('extract_feats(img_trunc) and the detached target', async () => {
    const arc = loadArcFace(fx('arcface/irse.pth').pathname, { stageUnits: [1, 1, 2, 1] });
    const g = new Graph();
    const y = g.input('y', SHAPE);
    const feats = idFeatures(arc, y);
    // y's features are detached: the loss has no gradient with respect to the target image.
    const yHat = g.input('y_hat', SHAPE);
    const [gy] = grad(idLoss(arc, yHat, y), [y]);
    const ex = await compile({ feats, gy });
    const img = f32('stylegan2/img_trunc.npy');
    const o = await ex.run({ y: { shape: SHAPE, data: img }, y_hat: { shape: SHAPE, data: img } });
    assertClose(o.feats.data as Float32Array, f32('arcface/feats_img_trunc.npy'), { what: 'feats' });
    assert.ok((o.gy.data as Float32Array).every((v) => v === 0));
  });
});
