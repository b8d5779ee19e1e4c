import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { readLatents } from '../../src/models/stylegan2/latents.js';

const FX = 'test/fixtures';
const ARGS = ['--import', 'tsx', 'src/cli/main.ts', 'invert'];
const cli = (...args: string[]) => spawnSync(process.execPath, [...ARGS, ...args], { encoding: 'utf8' });
const tmp = mkdtempSync(join(tmpdir(), 'invert-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('styleclip invert', () => {
  test('--align --encoder --steps: writes W+ that the latent reader takes, the crop, and the pair; prints PSNR', async () => {
    const out = join(tmp, 'me.npy');
    const r = cli(
      '--photo',
      `${FX}/photos/astronaut.png`,
      '--align',
      '--encoder',
      `${FX}/e4e/e4e.pt`,
      '--steps',
      '2',
      '--out',
      out,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^PSNR \d+\.\d\d dB\n/);
    const lat = readLatents(out, 8, 24);
    assert.equal(lat.count, 1);
    const crop = await sharp(join(tmp, 'me_aligned.png')).metadata();
    assert.deepEqual([crop.width, crop.height], [32, 32]);
    const pair = await sharp(join(tmp, 'me.png')).metadata();
    assert.deepEqual([pair.width, pair.height], [2 * 34 + 2, 36]); // two 32² tiles, 2-pixel padding
  });

  test('Ctrl-C: exit 130, and the W+ reached so far is written', async () => {
    const out = join(tmp, 'stopped.npy');
    const child = spawn(process.execPath, [
      ...ARGS,
      '--photo',
      `${FX}/photos/astronaut.png`,
      '--generator',
      `${FX}/stylegan2/generator.pt`,
      '--steps',
      '100000',
      '--out',
      out,
    ]);
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('optimizing')) {
      assert.ok(Date.now() < deadline, `no progress: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted after \d+ of 100000 steps; kept the W\+ reached so far/);
    assert.equal(readLatents(out, 10, 512).count, 1);
  });

  test('clear answers: not an image, two faces, the photo as an output, no model, --steps 0 without an encoder', async () => {
    const text = join(tmp, 'notes.jpg');
    writeFileSync(text, 'not a photo');
    const args = ['--encoder', `${FX}/e4e/e4e.pt`, '--out', join(tmp, 'x.npy')];
    let r = cli('--photo', text, '--align', ...args);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is not an image/);
    assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/); // no stack trace

    const two = join(tmp, 'two.png');
    await sharp({ create: { width: 1024, height: 512, channels: 3, background: { r: 0, g: 0, b: 0 } } })
      .composite([
        { input: `${FX}/photos/astronaut.png`, left: 0, top: 0 },
        { input: `${FX}/photos/astronaut.png`, left: 512, top: 0 },
      ])
      .png()
      .toFile(two);
    r = cli('--photo', two, '--align', ...args);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /2 faces found .*--face N/);

    // --out face.npy beside --photo face.png: the pair image would overwrite the photo.
    const photo = join(tmp, 'face.png');
    writeFileSync(photo, readFileSync(`${FX}/photos/astronaut.png`));
    r = cli('--photo', photo, '--generator', `${FX}/stylegan2/generator.pt`, '--out', join(tmp, 'face.npy'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--out: it would write .*face\.png over the photo; give the latent another name/);
    assert.deepEqual(readFileSync(photo), readFileSync(`${FX}/photos/astronaut.png`));

    // no model flag and no world generator (an empty world folder): the command asks for one
    r = spawnSync(
      process.execPath,
      [...ARGS, '--photo', `${FX}/photos/astronaut.png`, '--out', join(tmp, 'x.npy')],
      {
        encoding: 'utf8',
        env: { ...process.env, STYLECLIP_WORLD: tmp },
      },
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--generator: give --generator, or --encoder/);

    r = cli(
      '--photo',
      `${FX}/photos/astronaut.png`,
      '--generator',
      `${FX}/stylegan2/generator.pt`,
      '--steps',
      '0',
      '--out',
      join(tmp, 'x.npy'),
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--steps 0 needs --encoder/);
  });
});
