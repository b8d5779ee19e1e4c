/**
 * Messages and rules a new user met (issue 19): generate --z checked like --latent (item 6), files named in
 * image errors and library options named as flags (item 11), one rule for a missing output folder (item 13),
 * progress-bar text (item 14).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { etaText, progressBar, writeOutputs } from '../../src/cli/common.js';
import { writeNpy } from '../../src/io/npy.js';
import { runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'styleclip-messages-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const fx = 'test/fixtures';
const G = ['--generator', `${fx}/stylegan2/generator.pt`];
const CLIP = ['--clip', `${fx}/clip/clip.pt`];

test('generate --z, image files, --arcface units, long prompts, missing output folders', () => {
  const z = (name: string, shape: number[], fill = (i: number) => Math.sin(i)) => {
    const f = join(tmp, name);
    const n = shape.reduce((a, b) => a * b, 1);
    writeNpy(f, { dtype: 'float32', shape, data: Float32Array.from({ length: n }, (_, i) => fill(i)) });
    return f;
  };
  const z3 = z('z3.npy', [3, 7, 512]);
  const z22 = z('z22.npy', [2, 2, 512]);
  const zNaN = z('znan.npy', [2, 512], (i) => (i === 700 ? Number.NaN : 0.5));
  const z2 = z('z2.npy', [2, 512]);
  const cut = join(tmp, 'cut.png');
  writeFileSync(cut, readFileSync(`${fx}/clip/preprocess_in.png`).subarray(0, 300));
  const long = 'purple '.repeat(80);
  const r = runCli([
    ['generate', ...G, '--z', z3, '--out', join(tmp, 'a.png')],
    ['generate', ...G, '--z', z22, '--out', join(tmp, 'b.png')],
    ['generate', ...G, '--z', zNaN, '--out', join(tmp, 'c.png')],
    ['generate', ...G, '--z', z2, '--out', join(tmp, 'new', 'deeper', 'd.png')],
    ['embed', ...CLIP, '--image', 'README.md'],
    ['embed', ...CLIP, '--image', cut],
    ['embed', ...CLIP, '--text', 'a face', '--out', join(tmp, 'new2', 'e.npy')],
    ['embed', ...CLIP, '--text', long],
    ['optimize', ...G, ...CLIP, '--prompt', long, '--out', join(tmp, 'o')],
    ['tokenize', long],
    [
      'optimize',
      ...G,
      ...CLIP,
      '--prompt',
      'a face',
      '--steps',
      '1',
      '--id-lambda',
      '0.1',
      '--arcface',
      `${fx}/arcface/irse.pth`,
      '--out',
      join(tmp, 'o2'),
    ],
  ]);
  const [shape3, shape22, nan, made, notImage, truncated, embedOut, embedLong, optLong, tokLong, units] = r;
  for (const [res, what] of [
    [shape3, /z3\.npy: expected z of shape \[512\] or \[N, 512\], found shape \[3, 7, 512\]/],
    [shape22, /z22\.npy: expected z of shape .*found shape \[2, 2, 512\]/],
    [nan, /znan\.npy: expected finite z values, found NaN at flat index 700/],
  ] as const) {
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, what);
  }
  assert.ok(!existsSync(join(tmp, 'a_000.png')) && !existsSync(join(tmp, 'c_000.png')), 'no images written');

  assert.equal(made.code, 0, made.stderr);
  assert.ok(existsSync(join(tmp, 'new', 'deeper', 'd_000.png')), 'a missing folder is created');
  assert.equal(embedOut.code, 0, embedOut.stderr);
  assert.ok(existsSync(join(tmp, 'new2', 'e.npy')));

  assert.equal(notImage.code, 1);
  assert.match(notImage.stderr, /^styleclip: error: --image README\.md: not a readable image/);
  assert.equal(truncated.code, 1);
  assert.match(truncated.stderr, /--image \S*cut\.png: not a readable image/);

  for (const res of [embedLong, optLong]) {
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /too long.*shorten it\n/);
    assert.doesNotMatch(res.stderr, /truncate/);
  }
  assert.equal(tokLong.code, 2);
  assert.match(tokLong.stderr, /^styleclip: error: .*pass --truncate/);

  assert.equal(units.code, 1, units.stderr);
  assert.match(units.stderr, /pass --arcface-units/);
  assert.doesNotMatch(units.stderr, /stageUnits/);
});

test('the progress bar: no "NFs", and every output is attempted even when one fails', async () => {
  assert.equal(etaText(Number.POSITIVE_INFINITY), '-');
  assert.equal(etaText(Number.NaN), '-');
  assert.equal(etaText(75), '1m15s');
  // The first frame's fields show "-" (not the literal "{loss}") until the first update.
  let shown = '';
  const tty = {
    isTTY: true,
    columns: 200,
    write: (s: string) => {
      shown += s;
      return true;
    },
  };
  const bar = progressBar(
    10,
    'optimize',
    'loss {loss} | clip {clip}',
    tty as unknown as NodeJS.WritableStream,
  );
  bar.stop();
  assert.match(shown, /optimize \[.*\] 0\/10 \| ETA - \| loss - \| clip -/);
  assert.doesNotMatch(shown, /\{loss\}|NF/);
  const ok = join(tmp, 'ok.txt');
  await assert.rejects(
    writeOutputs([
      ['README.md/x.png', () => writeFileSync('README.md/x.png', 'x')],
      [ok, () => writeFileSync(ok, 'x')],
    ]),
    /could not write README\.md\/x\.png: .*\n {2}written: .*ok\.txt/,
  );
  assert.ok(existsSync(ok));
});

test('top-level mistakes (an unknown option or command) say styleclip: and exit 2', () => {
  const [opt, cmd] = runCli([['--bogus'], ['nosuchcmd']]);
  assert.equal(opt.code, 2);
  assert.match(opt.stderr, /^styleclip: error: unknown option '--bogus'/);
  assert.equal(cmd.code, 2);
  assert.match(cmd.stderr, /^styleclip: error: unknown command 'nosuchcmd'/);
});
