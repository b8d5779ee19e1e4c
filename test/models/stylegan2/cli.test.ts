import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { generateCommand } from '../../../src/cli/generate.js';
import { toUint8 } from '../../../src/io/image.js';
import { readNpyF32 } from '../../../src/io/npy.js';
import { assertClose } from '../../helpers.js';

const fixtures = new URL('../../fixtures/stylegan2/', import.meta.url).pathname;
const gen = `${fixtures}generator.pt`;
const tmp = mkdtempSync(join(tmpdir(), 'sg2-cli-'));
const run = (...args: string[]) => generateCommand().exitOverride().parseAsync(args, { from: 'user' });

describe('styleclip generate', () => {
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('renders every row of a W+ latent file (matches img_trunc) and saves the latent', async () => {
    const npy = join(tmp, 'img.npy');
    const lat = join(tmp, 'w.npy');
    await run(
      '--generator',
      gen,
      '--latent',
      `${fixtures}wplus_trunc.npy`,
      '--out-npy',
      npy,
      '--save-latent',
      lat,
    );
    assertClose(readNpyF32(npy).data, readNpyF32(`${fixtures}img_trunc.npy`).data, { what: 'cli img' });
    assert.deepEqual(readNpyF32(lat).shape, [2, 10, 512]);
  });

  it('seeds with truncation, a grid PNG and numbered PNGs holding the rendered images', async () => {
    const grid = join(tmp, 'grid.png');
    const gridNpy = join(tmp, 'grid.npy');
    await run(
      '--generator',
      gen,
      '--seed',
      '4',
      '--count',
      '3',
      '--truncation',
      '0.7',
      '--grid',
      '--out',
      grid,
      '--out-npy',
      gridNpy,
    );
    const images = readNpyF32(gridNpy);
    assert.deepEqual(images.shape, [3, 3, 64, 64]);
    // torchvision's make_grid: ceil(√3) = 2 columns, 2 px of padding around and between the tiles
    const g = await sharp(grid).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([g.info.width, g.info.height], [2 + 2 * 66, 2 + 2 * 66]);
    for (let i = 0; i < 3; i++) {
      const want = toUint8({ dtype: 'float32', ...images }, i).data;
      const [x0, y0] = [2 + (i % 2) * 66, 2 + Math.floor(i / 2) * 66];
      const tile = new Uint8Array(64 * 64 * 3);
      for (let y = 0; y < 64; y++)
        for (let x = 0; x < 64; x++)
          for (let c = 0; c < 3; c++)
            tile[(y * 64 + x) * 3 + c] = g.data[((y0 + y) * g.info.width + x0 + x) * g.info.channels + c];
      assert.deepEqual(tile, want, `grid tile ${i}`);
    }
    const px = 3 * 64 * 64;
    assert.notDeepEqual(
      images.data.subarray(0, px),
      images.data.subarray(px, 2 * px),
      'seeds 4 and 5 differ',
    );
    const each = join(tmp, 'each.png');
    const eachNpy = join(tmp, 'each.npy');
    await run(
      '--generator',
      gen,
      '--seed',
      '4',
      '--count',
      '2',
      '--noise',
      'random',
      '--out',
      each,
      '--out-npy',
      eachNpy,
    );
    const random = readNpyF32(eachNpy);
    for (let i = 0; i < 2; i++) {
      const png = await sharp(join(tmp, `each_00${i}.png`))
        .raw()
        .toBuffer();
      assert.deepEqual(
        new Uint8Array(png),
        toUint8({ dtype: 'float32', ...random }, i).data,
        `each_00${i}.png`,
      );
    }
    // seed 4 without truncation, const vs random noise: the noise really changes the picture
    const constNpy = join(tmp, 'const.npy');
    await run('--generator', gen, '--seed', '4', '--out-npy', constNpy);
    assert.notDeepEqual(readNpyF32(constNpy).data, random.data.subarray(0, px));
  });

  it('rejects bad flags with a plain message', async () => {
    await assert.rejects(run('--generator', gen, '--truncation', '2'), /--truncation: must be in \[0, 1\]/);
    await assert.rejects(
      run('--generator', gen, '--seed', '1', '--z', gen),
      /at most one of --seed, --z, --latent/,
    );
    await assert.rejects(run('--generator', join(tmp, 'nope.pt')), /--generator: file not found/);
    await assert.rejects(
      run('--generator', gen, '--latent', `${fixtures}z2.npy`, '--out', join(tmp, 'x.gif')),
      /--out: must end in/,
    );
  });
});
