import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseNpy } from '../../../src/io/npy.js';
import {
  CLIP_MEAN,
  CLIP_STD,
  loadRgb,
  preprocessImageFile,
  preprocessRgb,
  resizeBicubicPil,
  resizedSize,
} from '../../../src/models/clip/preprocess.js';

const fx = new URL('../../fixtures/clip/', import.meta.url);

describe('CLIP preprocessing', () => {
  test('matches clip._transform(224) on the fixture photo bit for bit', async () => {
    const ref = parseNpy(new Uint8Array(readFileSync(new URL('preprocess_out.npy', fx))));
    assert.deepEqual(ref.shape, [1, 3, 224, 224]);
    const got = await preprocessImageFile(new URL('preprocess_in.png', fx).pathname);
    assert.equal(got.length, ref.data.length);
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs(got[i] - (ref.data[i] as number)));
    assert.equal(maxDiff, 0);
  });

  test('raw RGB entry point gives the same result as the file path', async () => {
    const img = await loadRgb(readFileSync(new URL('preprocess_in.png', fx)));
    assert.deepEqual([img.width, img.height], [317, 251]);
    const a = preprocessRgb(img);
    const b = await preprocessImageFile(new URL('preprocess_in.png', fx).pathname);
    assert.deepEqual(a, b);
  });

  test("torchvision's short-side size rule", () => {
    assert.deepEqual(resizedSize(317, 251, 224), [282, 224]);
    assert.deepEqual(resizedSize(251, 317, 224), [224, 282]);
    assert.deepEqual(resizedSize(1024, 1024, 224), [224, 224]);
    assert.deepEqual(resizedSize(100, 300, 224), [224, 672]);
  });

  test('a flat image stays flat through resize and normalizes to (v/255 - mean)/std', () => {
    const w = 300;
    const h = 229; // crop margin 2.5 → rounds half to even
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < data.length; i += 3) data.set([10, 128, 250], i);
    const out = preprocessRgb({ data, width: w, height: h });
    assert.equal(out.length, 3 * 224 * 224);
    const f = Math.fround;
    [10, 128, 250].forEach((v, c) => {
      const want = f(f(f(v / 255) - f(CLIP_MEAN[c])) / f(CLIP_STD[c]));
      assert.ok(out.subarray(c * 224 * 224, (c + 1) * 224 * 224).every((x) => x === want));
    });
  });

  test('Pillow bicubic: same size is a copy; upscaling and downscaling keep bounds', () => {
    const src = Uint8Array.from({ length: 5 * 4 }, (_, i) => (i * 53) % 256);
    assert.deepEqual(resizeBicubicPil(src, 5, 4, 1, 5, 4), src);
    const up = resizeBicubicPil(src, 5, 4, 1, 11, 9);
    assert.equal(up.length, 99);
    const down = resizeBicubicPil(src, 5, 4, 1, 2, 2);
    assert.equal(down.length, 4);
    // A step edge halved: the antialiased kernel (support 4 source pixels) blurs it symmetrically, and the
    // negative lobes overshoot, which the uint8 clip cuts at 0.
    const edge = Uint8Array.from({ length: 8 }, (_, i) => (i < 4 ? 0 : 200));
    const half = Array.from(resizeBicubicPil(edge, 8, 1, 1, 4, 1));
    assert.ok(half[0] <= half[1] && half[1] < half[2] && half[2] <= half[3], `${half}`);
    assert.ok(Math.abs(half[1] + half[2] - 200) <= 1, `${half}`);
  });

  test('rejects mismatched buffers', () => {
    assert.throws(() => preprocessRgb({ data: new Uint8Array(10), width: 2, height: 2 }), RangeError);
  });
});
