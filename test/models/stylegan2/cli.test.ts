import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateCommand } from '../../../src/cli/generate.js';
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

  it('seeds with truncation, a grid PNG and numbered PNGs', async () => {
    const grid = join(tmp, 'grid.png');
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
    );
    assert.ok(existsSync(grid));
    const each = join(tmp, 'each.png');
    await run('--generator', gen, '--seed', '4', '--count', '2', '--noise', 'random', '--out', each);
    assert.ok(existsSync(join(tmp, 'each_000.png')) && existsSync(join(tmp, 'each_001.png')));
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
