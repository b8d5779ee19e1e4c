import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Adam, optimizerFromState, type Param, Ranger } from '../../src/edit/optim.js';
import { getLr, lrSchedule } from '../../src/edit/schedule.js';
import { parseNpy } from '../../src/io/npy.js';

const fx = new URL('../fixtures/optim/', import.meta.url);
function load(name: string): { shape: number[]; data: Float32Array } {
  // A Uint8Array copy keeps the array at offset 0 of its own buffer.
  const a = parseNpy(new Uint8Array(readFileSync(new URL(`${name}.npy`, fx))), name);
  return { shape: a.shape, data: a.data as Float32Array };
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, relTol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  let maxB = 0;
  let maxDiff = 0;
  for (let i = 0; i < want.length; i++) {
    maxB = Math.max(maxB, Math.abs(want[i]));
    maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
  }
  assert.ok(maxDiff <= relTol * maxB, `${what}: max|a-b| = ${maxDiff} > ${relTol} * ${maxB}`);
}

describe('Ranger', () => {
  const initW = load('ranger_init_w');
  const initB = load('ranger_init_b');
  const gradsW = load('ranger_grads_w');
  const gradsB = load('ranger_grads_b');
  const refW = load('ranger_w');
  const refB = load('ranger_b');

  function run(opt: Ranger, from: number, to: number, w: Float32Array, b: Float32Array): void {
    for (let s = from; s < to; s++) {
      const params: Param[] = [
        { name: 'w', data: w, grad: gradsW.data.subarray(s * 12, (s + 1) * 12), shape: [4, 3] },
        { name: 'b', data: b, grad: gradsB.data.subarray(s * 3, (s + 1) * 3), shape: [3] },
      ];
      opt.step(params);
      assertClose(w, refW.data.subarray(s * 12, (s + 1) * 12), 1e-6, `w after step ${s + 1}`);
      assertClose(b, refB.data.subarray(s * 3, (s + 1) * 3), 1e-6, `b after step ${s + 1}`);
    }
  }

  test('matches StyleCLIP ranger.py over 8 steps (SGD phase, RAdam phase, lookahead at 6)', () => {
    assert.deepEqual(initW.shape, [4, 3]);
    run(new Ranger({ lr: 0.5 }), 0, 8, initW.data.slice(), initB.data.slice());
  });

  test('resumes from JSON state mid-run with identical results', () => {
    const w = initW.data.slice();
    const b = initB.data.slice();
    const first = new Ranger({ lr: 0.5 });
    run(first, 0, 4, w, b);
    const saved = JSON.parse(JSON.stringify(first.toJSON()));
    const resumed = optimizerFromState(saved);
    assert.ok(resumed instanceof Ranger);
    run(resumed, 4, 8, w, b);
  });

  test('rejects mismatched shapes and bad options', () => {
    const opt = new Ranger();
    assert.throws(
      () => opt.step([{ name: 'x', data: new Float32Array(4), grad: new Float32Array(3), shape: [4] }]),
      RangeError,
    );
    assert.throws(() => new Ranger({ alpha: 2 }), RangeError);
    assert.throws(() => new Ranger({ k: 0 }), RangeError);
  });
});

describe('Adam', () => {
  test('two steps agree with the closed form of torch.optim.Adam', () => {
    const lr = 0.1;
    const p0 = [0.5, -1.25, 3, 0];
    const g1 = [0.2, -0.7, 1e-3, 2];
    const g2 = [-0.4, -0.1, 5e-3, 1];
    const data = Float32Array.from(p0);
    const opt = new Adam({ lr });
    opt.step([{ name: 'p', data, grad: Float32Array.from(g1), shape: [4] }]);
    // Step 1: m = 0.1 g, v = 0.001 g², bias corrections 0.1 and 0.001, so the step is lr·g/(|g| + eps).
    const after1 = p0.map((p, i) => p - (lr * g1[i]) / (Math.abs(g1[i]) + 1e-8));
    assertClose(data, after1, 1e-6, 'step 1');
    opt.step([{ name: 'p', data, grad: Float32Array.from(g2), shape: [4] }]);
    const after2 = after1.map((p, i) => {
      const m = 0.09 * g1[i] + 0.1 * g2[i];
      const v = 0.999 * 0.001 * g1[i] ** 2 + 0.001 * g2[i] ** 2;
      const bc1 = 1 - 0.9 ** 2;
      const bc2 = 1 - 0.999 ** 2;
      return p - (lr / bc1) * (m / (Math.sqrt(v) / Math.sqrt(bc2) + 1e-8));
    });
    assertClose(data, after2, 1e-6, 'step 2');
    const again = Adam.fromState(JSON.parse(JSON.stringify(opt.toJSON())));
    assert.deepEqual(again.toJSON(), opt.toJSON());
  });

  test('follows a schedule through the lr field', () => {
    const data = new Float32Array([1]);
    const opt = new Adam({ lr: 0.1 });
    opt.lr = getLr(0, 0.1);
    opt.step([{ name: 'p', data, grad: new Float32Array([1]), shape: [1] }]);
    assert.equal(data[0], 1, 'lr is 0 at t = 0');
  });
});

describe('getLr', () => {
  test('reference ramp values', () => {
    assert.equal(getLr(0, 0.1), 0);
    assert.ok(Math.abs(getLr(0.025, 0.1) - 0.05) < 1e-15, 'half-way up the warm-up');
    assert.equal(getLr(0.5, 0.1), 0.1);
    assert.ok(Math.abs(getLr(0.875, 0.1) - 0.05) < 1e-15, 'half-way down the cosine');
    assert.ok(Math.abs(getLr(1, 0.1)) < 1e-18);
    // The fixture run: 5 steps at lr 0.1 (t = 0, .2, .4, .6, .8).
    const s = lrSchedule(5, 0.1);
    assert.equal(s[0], 0);
    assert.equal(s[1], 0.1);
    assert.equal(s[3], 0.1);
    assert.equal(s[4], 0.1 * (0.5 - 0.5 * Math.cos(((1 - 0.8) / 0.25) * Math.PI)));
  });
});
