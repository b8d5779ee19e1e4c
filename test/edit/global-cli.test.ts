/**
 * `styleclip global edit|precompute` on the fixture models, through src/cli/main.ts as a user runs it:
 * outputs, the printed channel count, an end-to-end parity check against img_edited, and the mistakes a
 * user makes (each a clear message and a non-zero exit code, no stack trace).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { readNpy, readNpyF32, writeNpy } from '../../src/io/npy.js';
import { assertClose } from '../helpers.js';

const fx = 'test/fixtures';
const MODELS = ['--generator', `${fx}/stylegan2/generator.pt`, '--clip', `${fx}/clip/clip.pt`];
const EDIT = [...MODELS, '--fs3', `${fx}/global/fs3.npy`, '--neutral', 'face', '--target', 'smiling face'];

// Channel statistics are cached per generator (src/edit/stats-cache.ts): never in the user's cache folder.
const cache = mkdtempSync(join(tmpdir(), 'styleclip-global-cli-cache-'));
after(() => rmSync(cache, { recursive: true, force: true }));
const env = { ...process.env, STYLECLIP_DEBUG: '', STYLECLIP_CACHE: cache };

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'global', ...args], {
    encoding: 'utf8',
    env,
  });

/** Runs each argv of a JSON list through the real program as main.ts does, printing a marker after each. */
const RUNNER = `import { Command, CommanderError } from 'commander';
import { reportError } from './src/cli/common.ts';
import { globalCommand } from './src/cli/global.ts';
const cases = JSON.parse(process.argv[1]);
for (let i = 0; i < cases.length; i++) {
  const g = globalCommand().exitOverride();
  for (const c of g.commands) c.exitOverride();
  const program = new Command('styleclip').exitOverride().addCommand(g);
  let code = 0;
  try {
    await program.parseAsync(['global', ...cases[i]], { from: 'user' });
  } catch (e) {
    code = e instanceof CommanderError ? e.exitCode || 2 : reportError(e);
  }
  process.stderr.write('\\n@@case ' + i + ' exit ' + code + '\\n');
}`;

describe('styleclip global (CLI)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'styleclip-global-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('edit --latent reproduces img_edited and prints the channel count', () => {
    const out = join(dir, 'edited.png');
    const npy = join(dir, 'edited.npy');
    const stats = join(dir, 'stats.npy');
    const r = cli(
      'edit',
      ...EDIT,
      '--latent',
      `${fx}/stylegan2/wplus_trunc.npy`,
      '--index',
      '1',
      '--alpha',
      '4',
      '--beta',
      '0.15',
      '--stats-samples',
      '200',
      '--save-stats',
      stats,
      '--out',
      out,
      '--out-npy',
      npy,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /channels: 57 of 240 move/);
    assert.ok(existsSync(out) && existsSync(stats));
    const img = readNpyF32(npy);
    assert.deepEqual(img.shape, [1, 3, 64, 64]);
    assertClose(img.data, readNpyF32(`${fx}/global/img_edited.npy`).data.subarray(3 * 64 * 64), {
      what: 'CLI img_edited[1]',
    });
  });

  it('edit --seed --alphas --strip --animation writes a strip, a GIF, the images and the edited codes', async () => {
    const out = join(dir, 'strip.png');
    const gif = join(dir, 'anim.gif');
    const codes = join(dir, 'codes.npy');
    const r = cli(
      'edit',
      ...EDIT,
      '--seed',
      '3',
      '--alphas',
      '-4,0,4,8',
      '--strip',
      '--animation',
      gif,
      '--stats',
      join(dir, 'stats.npy'),
      '--out',
      out,
      '--save-latent',
      codes,
    );
    assert.equal(r.status, 0, r.stderr);
    const meta = await sharp(out).metadata();
    assert.deepEqual([meta.width, meta.height], [4 * 66 + 2, 68]); // make_grid: 2 px padding
    const anim = await sharp(gif, { animated: true }).metadata();
    assert.equal(anim.pages, 4);
    const s = readNpy(codes);
    assert.deepEqual(s.shape, [4, 368]);
    // α = 0 leaves the codes as they were; α = 8 moves twice as far as α = 4.
    const d = s.data as Float32Array;
    for (let j = 0; j < 368; j++) {
      const zero = d[368 + j];
      assert.ok(Math.abs(d[3 * 368 + j] - zero - 2 * (d[2 * 368 + j] - zero)) < 1e-4);
    }
  });

  it('edit --alphas without --strip writes one file per α', () => {
    const out = join(dir, 'frame.png');
    const r = cli(
      'edit',
      ...EDIT,
      '--seed',
      '1',
      '--alphas',
      '-2,2',
      '--stats',
      join(dir, 'stats.npy'),
      '--out',
      out,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(dir, 'frame_a-2.png')) && existsSync(join(dir, 'frame_a2.png')));
  });

  it('without --neutral the edit starts from "a face"', () => {
    const run = (extra: string[], name: string) => {
      const npy = join(dir, `${name}.npy`);
      const r = cli(
        'edit',
        ...MODELS,
        '--fs3',
        `${fx}/global/fs3.npy`,
        '--target',
        'a smiling face',
        ...extra,
        '--seed',
        '1',
        '--stats',
        join(dir, 'stats.npy'),
        '--out',
        join(dir, `${name}.png`),
        '--out-npy',
        npy,
      );
      assert.equal(r.status, 0, r.stderr);
      return readNpyF32(npy).data;
    };
    assert.deepEqual(run([], 'default_neutral'), run(['--neutral', 'a face'], 'a_face'));
  });

  it('precompute writes fs3 [240, 64] and reports its speed', () => {
    const out = join(dir, 'fs3.npy');
    const r = cli('precompute', ...MODELS, '--images', '1', '--stats-samples', '200', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /240 channels .* × 1 images × 2 = 480 renders/);
    assert.match(r.stdout, /240 x 64 .*renders\/s/);
    assert.deepEqual(readNpy(out).shape, [240, 64]);
    assert.ok(!existsSync(`${out}.partial`), 'the checkpoint folder is removed once the output is written');
  });

  it('explains mistakes (exit 2 for flags, 1 for unusable files) without a stack trace', () => {
    const badFs3 = join(dir, 'bad_fs3.npy');
    writeNpy(badFs3, { dtype: 'float32', shape: [100, 64], data: new Float32Array(6400) });
    const badLatent = join(dir, 'bad_latent.npy');
    writeNpy(badLatent, { dtype: 'float32', shape: [2, 10, 256], data: new Float32Array(2 * 10 * 256) });
    const out = ['--out', join(dir, 'x.png')];
    const cases: [string[], RegExp][] = [
      [[...EDIT, ...out], /exactly one of --latent FILE or --seed N/],
      [[...EDIT, '--seed', '1', '--latent', `${fx}/stylegan2/w.npy`, ...out], /exactly one of --latent/],
      [[...EDIT, '--seed', '1', '--alphas', '1,x', ...out], /--alphas: must be comma-separated numbers/],
      [[...EDIT, '--seed', '1', '--strip', ...out], /--strip: needs --alphas/],
      [[...EDIT, '--seed', '1', '--out', join(dir, 'x.bmp')], /--out must end with \.png/],
      [[...EDIT, '--seed', '-1', ...out], /--seed: must be between 0/],
      [
        [...MODELS, '--fs3', join(dir, 'nope.npy'), '--neutral', 'a', '--target', 'b', '--seed', '1', ...out],
        /--fs3: file not found: \S*nope\.npy\n/,
      ],
      [
        [...MODELS, '--fs3', badFs3, '--neutral', 'face', '--target', 'smile', '--seed', '1', ...out],
        /240 rows.*found 100 rows/s,
      ],
      [[...EDIT, '--latent', badLatent, ...out], /\[N, 10, 512\].*shape \[2, 10, 256\]/s],
      [[...EDIT, '--latent', `${fx}/stylegan2/w.npy`, '--index', '5', ...out], /holds 2 latent\(s\)/],
      [
        [...EDIT, '--seed', '1', '--beta', '0.99', '--stats-samples', '50', ...out],
        /no channel reaches --beta 0.99.*lower --beta/,
      ],
      [
        [
          ...MODELS,
          '--fs3',
          `${fx}/global/fs3.npy`,
          '--neutral',
          'face',
          '--target',
          'word '.repeat(80),
          '--seed',
          '1',
          ...out,
        ],
        /too long|context/i,
      ],
      [
        ['precompute', ...MODELS, '--layers', 'some', '--out', join(dir, 'f.npy')],
        /--layers must be all or upto128/,
      ],
      [
        ['precompute', ...MODELS, '--images', '0', '--out', join(dir, 'f.npy')],
        /--images: must be at least 1/,
      ],
      [['precompute', ...MODELS, '--out', join(dir, 'f.txt')], /--out must end with \.npy/],
    ];
    // All cases in one process (a fresh process per case costs seconds of start-up each).
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        RUNNER,
        '--',
        JSON.stringify(cases.map(([a]) => (a[0] === 'precompute' ? a : ['edit', ...a]))),
      ],
      { encoding: 'utf8', env },
    );
    assert.equal(r.status, 0, r.stderr);
    const parts = r.stderr.split(/^@@case (\d+) exit (\d+)$/m); // [text, i, code, text, i, code, ...]
    cases.forEach(([args, re], i) => {
      assert.equal(parts[3 * i + 1], String(i), `case ${i} did not finish: ${args.join(' ')}\n${r.stderr}`);
      const [code, stderr] = [Number(parts[3 * i + 2]), parts[3 * i]];
      const fileProblem = /rows|shape/.test(re.source);
      assert.equal(code, fileProblem ? 1 : 2, `${args.join(' ')}\n${stderr}`);
      assert.match(stderr, re, args.join(' '));
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    });
  });
});
