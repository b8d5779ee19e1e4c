import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CheckpointError } from '../../src/io/errors.js';
import { imageGrid, readImage, signedToUnit, toUint8, unitToSigned, writeImage } from '../../src/io/image.js';
import type { Tensor } from '../../src/io/tensor.js';
import { fixture } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'io-image-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const img = (n: number, h: number, w: number, f: (i: number) => number): Tensor => ({
  dtype: 'float32',
  shape: [n, 3, h, w],
  data: Float32Array.from({ length: n * 3 * h * w }, (_, i) => f(i)),
});

test('PNG reads to NCHW [0, 1] and round-trips exactly through writeImage', async () => {
  const a = await readImage(fixture('clip/preprocess_in.png'));
  assert.deepEqual(a.shape, [1, 3, 251, 317]);
  assert.ok(a.data.every((x) => x >= 0 && x <= 1));
  const signed = await readImage(fixture('clip/preprocess_in.png'), { range: '-1,1' });
  assert.ok(Math.abs(signed.data[0] - (a.data[0] * 2 - 1)) < 1e-6);
  assert.ok(Math.abs(unitToSigned(a).data[5] - signed.data[5]) < 1e-6);
  assert.ok(Math.abs(signedToUnit(signed).data[5] - a.data[5]) < 1e-6);
  const file = join(dir, 'a.png');
  await writeImage(file, a, { range: '0,1' });
  const b = await readImage(file);
  assert.deepEqual(b.shape, a.shape);
  for (let i = 0; i < a.data.length; i++)
    assert.equal(Math.round(b.data[i] * 255), Math.round(a.data[i] * 255));
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
  );
});

test("8-bit conversion: torchvision save_image's round-half-up and the fs3 pipeline's truncation", () => {
  const t: Tensor = {
    dtype: 'float32',
    shape: [1, 1, 1, 6],
    data: Float32Array.from([-1, 0, 1, -5, 5, 0.999]),
  };
  assert.deepEqual(Array.from(toUint8(t).data), [0, 128, 255, 0, 255, 255]);
  assert.deepEqual(Array.from(toUint8(t, 0, { rounding: 'truncate' }).data), [0, 127, 255, 0, 255, 254]);
  assert.deepEqual(
    Array.from(toUint8({ ...t, data: Float32Array.from([0, 0.5, 1, -1, 2, 0.2]) }, 0, { range: '0,1' }).data),
    [0, 128, 255, 0, 255, 51],
  );
});

test("grids follow torchvision's make_grid layout", () => {
  const a = img(2, 2, 3, () => 0.5);
  const b = img(1, 2, 3, () => 0.25);
  const g = imageGrid([a, b], { cols: 2, padding: 1 });
  // 3 images in 2 columns: 2 rows of (2 + 1) + 1, 2 columns of (3 + 1) + 1.
  assert.deepEqual(g.shape, [1, 3, 7, 9]);
  const at = (c: number, y: number, x: number) => g.data[c * 63 + y * 9 + x];
  assert.equal(at(0, 0, 0), -1);
  assert.equal(at(0, 1, 1), 0.5);
  assert.equal(at(2, 2, 7), 0.5);
  assert.equal(at(1, 4, 1), 0.25);
  assert.equal(at(1, 4, 5), -1);
  assert.deepEqual(imageGrid(img(1, 2, 3, () => 0)).shape, [1, 3, 2, 3]);
});

test('JPEG and grids write; bad names and bad bytes fail with CheckpointError', async () => {
  const file = join(dir, 'grid.jpg');
  await writeImage(
    file,
    img(2, 8, 8, (i) => ((i % 7) - 3) / 3),
  );
  const back = await readImage(file);
  assert.deepEqual(back.shape, [1, 3, 12, 22]);
  await assert.rejects(
    writeImage(
      join(dir, 'x.bmp'),
      img(1, 2, 2, () => 0),
    ),
    CheckpointError,
  );
  await assert.rejects(readImage(readFileSync(fixture('clip/texts.json'))), CheckpointError);
});
