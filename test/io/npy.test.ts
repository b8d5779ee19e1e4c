import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckpointError } from '../../src/io/errors.js';
import { encodeNpy, parseNpy, readNpy, readNpyF32, writeNpy } from '../../src/io/npy.js';
import { float32ToHalf, type Tensor } from '../../src/io/tensor.js';
import { fixture } from '../helpers.js';

test('fixture .npy files read with their shapes and dtypes', () => {
  const z = readNpy(fixture('stylegan2/z.npy'));
  assert.equal(z.dtype, 'float32');
  assert.deepEqual(z.shape, [2, 512]);
  const tokens = readNpy(fixture('clip/tokens.npy'));
  assert.equal(tokens.dtype, 'int32');
  assert.deepEqual(tokens.shape, [14, 77]);
  assert.equal(readNpyF32(fixture('global/num_channels.npy')).data.length, 1);
});

test('every dtype round-trips through writeNpy, atomically', () => {
  const dir = mkdtempSync(join(tmpdir(), 'npy-'));
  try {
    const cases: Tensor[] = [
      { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) },
      { dtype: 'float64', shape: [3], data: Float64Array.from([1e300, -2, Math.PI]) },
      { dtype: 'int32', shape: [1, 2], data: Int32Array.from([-7, 2 ** 31 - 1]) },
      { dtype: 'int64', shape: [2], data: BigInt64Array.from([-(2n ** 62n), 5n]) },
      { dtype: 'uint8', shape: [4], data: Uint8Array.from([0, 1, 254, 255]) },
      { dtype: 'float16', shape: [3], data: Uint16Array.from([1, -2, 0.5].map(float32ToHalf)) },
      { dtype: 'float32', shape: [], data: Float32Array.from([42]) },
    ];
    for (const [i, t] of cases.entries()) {
      const f = join(dir, `${i}.npy`);
      writeNpy(f, t);
      const back = readNpy(f, { widen: false });
      assert.equal(back.dtype, t.dtype);
      assert.deepEqual(back.shape, t.shape);
      assert.deepEqual(Array.from(back.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>));
      // numpy pads the header so data starts 64-byte aligned.
      assert.equal((encodeNpy(t).length - t.data.byteLength) % 64, 0);
    }
    const widened = readNpy(join(dir, '5.npy'));
    assert.equal(widened.dtype, 'float32');
    assert.deepEqual(Array.from(widened.data as Float32Array), [1, -2, 0.5]);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.tmp')),
      [],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('big-endian arrays are swapped', () => {
  const t = encodeNpy({ dtype: 'float32', shape: [2], data: Float32Array.from([1.5, -3]) });
  const be = t.slice();
  const header = new TextDecoder('latin1').decode(be.subarray(10, 10 + (be[8] | (be[9] << 8))));
  const at = header.indexOf('<f4');
  be[10 + at] = '>'.charCodeAt(0);
  const body = be.length - 8;
  for (let i = body; i < be.length; i += 4) be.subarray(i, i + 4).reverse();
  assert.deepEqual(Array.from(parseNpy(be).data as Float32Array), [1.5, -3]);
});

test('bad .npy input fails with CheckpointError', () => {
  const good = encodeNpy({ dtype: 'float32', shape: [4], data: new Float32Array(4) });
  for (const bad of [
    new Uint8Array(3),
    good.subarray(0, good.length - 1),
    good.subarray(0, 20),
    Uint8Array.from([...good.subarray(0, 6), 9, 0, 0, 0]),
  ])
    assert.throws(() => parseNpy(bad, 'x.npy'), CheckpointError);
});

test('an atomic write creates a missing output folder and leaves no temp file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'styleclip-atomic-'));
  try {
    const file = join(dir, 'a', 'b', 'x.npy');
    writeNpy(file, { dtype: 'float32', shape: [2], data: Float32Array.of(1, 2) });
    assert.deepEqual([...readNpyF32(file).data], [1, 2]);
    assert.deepEqual(readdirSync(join(dir, 'a', 'b')), ['x.npy']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
