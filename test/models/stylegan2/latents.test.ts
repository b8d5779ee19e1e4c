import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readNpyF32, writeNpy } from '../../../src/io/npy.js';
import type { Tensor } from '../../../src/io/tensor.js';
import { saveTorch } from '../../../src/io/torch-write.js';
import { readLatents } from '../../../src/models/stylegan2/latents.js';

const fixtures = new URL('../../fixtures/', import.meta.url).pathname;
const [L, D] = [10, 512]; // the fixture generator's W+ shape

describe('latent files (one reader for generate, optimize, global, mapper and the web app)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'latents-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const wplus = readNpyF32(`${fixtures}stylegan2/wplus_trunc.npy`).data; // [2, L, D]
  const w = readNpyF32(`${fixtures}stylegan2/w.npy`).data; // [2, D]
  const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'float32', shape, data });
  const npy = (name: string, t: Tensor) => {
    const file = join(dir, name);
    writeNpy(file, t);
    return file;
  };

  it('W+ [N, L, D] and [L, D], from .npy and from torch files (a bare tensor, or a dict)', () => {
    const a = readLatents(npy('w_plus.npy', f32([2, L, D], wplus)), L, D);
    assert.deepEqual([a.count, a.broadcast], [2, false]);
    assert.deepEqual(a.gather([0, 1]), wplus);
    const one = readLatents(npy('one.npy', f32([L, D], wplus.slice(L * D))), L, D);
    assert.deepEqual([one.count, one.broadcast], [1, false]);
    assert.deepEqual(one.gather([0]), wplus.subarray(L * D));
    const bare = join(dir, 'latents.pt');
    saveTorch(bare, f32([2, L, D], wplus));
    const swapped = readLatents(bare, L, D).gather([1, 0]);
    assert.deepEqual(swapped.subarray(0, L * D), wplus.subarray(L * D));
    assert.deepEqual(swapped.subarray(L * D), wplus.subarray(0, L * D));
    const dict = join(dir, 'dict.pt');
    saveTorch(dict, { latents: f32([2, L, D], wplus), note: 'not a tensor' });
    assert.deepEqual(readLatents(dict, L, D).gather([0, 1]), wplus);
  });

  it('w [N, D] and [D] stand for the same w on every row', () => {
    const set = readLatents(npy('w.npy', f32([2, D], w)), L, D);
    assert.deepEqual([set.count, set.broadcast], [2, true]);
    const all = set.gather([0, 1]);
    for (let l = 0; l < L; l++) assert.deepEqual(all.subarray((L + l) * D, (L + l + 1) * D), w.subarray(D));
    const single = readLatents(npy('w1.npy', f32([D], w.slice(0, D))), L, D);
    assert.deepEqual(single.gather([0]).subarray((L - 1) * D), w.subarray(0, D));
  });

  it('refuses what is not latents, and says what was expected', () => {
    const bad = (name: string, t: Tensor, re: RegExp) =>
      assert.throws(() => readLatents(npy(name, t), L, D), re);
    bad(
      'shape.npy',
      f32([2, 18, 512], new Float32Array(2 * 18 * 512)),
      /\[N, 10, 512\].*shape \[2, 18, 512\]/s,
    );
    bad('ints.npy', { dtype: 'int32', shape: [D], data: new Int32Array(D) }, /floating-point latents.*int32/);
    bad('empty.npy', f32([0, L, D], new Float32Array(0)), /at least one latent/);
    const nan = new Float32Array(D);
    nan[7] = Number.NaN;
    bad('nan.npy', f32([D], nan), /finite latents.*NaN at flat index 7/);
    const two = join(dir, 'two.pt');
    saveTorch(two, { a: f32([D], w.slice(0, D)), b: f32([D], w.slice(D)) });
    assert.throws(() => readLatents(two, L, D), /one latents tensor.*2 tensors \(a, b\)/);
    const junk = join(dir, 'junk.pt');
    writeFileSync(junk, 'not a checkpoint');
    assert.throws(() => readLatents(junk, L, D), /junk\.pt/);
  });
});
