import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Tensor } from '../../../src/io/tensor.js';
import { loadArcFaceStateDict } from '../../../src/models/arcface/load.js';
import { ArcFaceWeightsError, inferArcFaceConfig } from '../../../src/models/arcface/model.js';

const fx = (p: string) => new URL(`../../fixtures/arcface/${p}`, import.meta.url).pathname;

/** Shapes of an IR-SE state dict (no values: config inference reads shapes only). */
function irseShapes(
  stem: number,
  widths: number[],
  units: number[],
  embed: number,
  side = 7,
): Map<string, Tensor> {
  const sd = new Map<string, Tensor>();
  const put = (k: string, shape: number[]) =>
    sd.set(k, { dtype: 'float32', shape, data: new Float32Array(0) });
  put('input_layer.0.weight', [stem, 3, 3, 3]);
  let i = 0;
  let cin = stem;
  widths.forEach((d, s) => {
    for (let k = 0; k < units[s]; k++, i++) {
      const inC = k === 0 ? cin : d;
      if (inC !== d) put(`body.${i}.shortcut_layer.0.weight`, [d, inC, 1, 1]);
      put(`body.${i}.res_layer.1.weight`, [d, inC, 3, 3]);
      put(`body.${i}.res_layer.3.weight`, [d, d, 3, 3]);
      put(`body.${i}.res_layer.5.fc1.weight`, [d / 16, d, 1, 1]);
    }
    cin = d;
  });
  put('output_layer.3.weight', [embed, cin * side * side]);
  return sd;
}

describe('ArcFace IR-SE config from weights', () => {
  test('IR-SE50: widths, units, strides and input size are read from the shapes', () => {
    const c = inferArcFaceConfig(irseShapes(64, [64, 128, 256, 512], [3, 4, 14, 3], 512));
    assert.deepEqual(c.stageWidths, [64, 128, 256, 512]);
    assert.deepEqual(c.stageUnits, [3, 4, 14, 3]);
    assert.equal(c.inputSize, 112);
    assert.equal(c.embedDim, 512);
    assert.equal(c.seReduction, 16);
    assert.deepEqual(
      c.units.map((u) => u.stride),
      [3, 4, 14, 3].flatMap((n) => [2, ...new Array(n - 1).fill(1)]),
    );
  });

  test('the scaled-down fixture (widths 16,16,32,32) needs its stage units; the error says so', () => {
    const sd = loadArcFaceStateDict(fx('irse.pth'));
    assert.throws(
      () => inferArcFaceConfig(sd),
      (e: Error) => e instanceof ArcFaceWeightsError && /stageUnits/.test(e.message),
    );
    const c = inferArcFaceConfig(sd, { stageUnits: [1, 1, 2, 1] });
    assert.deepEqual(c.stageWidths, [16, 16, 32, 32]);
    assert.equal(c.inputSize, 112);
    assert.equal(c.embedDim, 32);
    assert.throws(() => inferArcFaceConfig(sd, { stageUnits: [1, 2, 1, 1] }), ArcFaceWeightsError);
  });

  test('legacy and zip files hold the same tensors', () => {
    const a = loadArcFaceStateDict(fx('irse.pth'));
    const b = loadArcFaceStateDict(fx('irse_zip.pth'));
    assert.deepEqual([...a.keys()], [...b.keys()]);
    for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, k);
  });
});
