/**
 * `styleclip global edit` as a new user met it (issue 19): the same neutral and target text (item 2), what
 * --alphas writes and reports (item 12), the channel statistics cache (item 17), parser errors and messages
 * (items 9, 11) and a missing output folder (item 13).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CACHE, runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'styleclip-global-edit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const fx = 'test/fixtures';
const EDIT = [
  'global',
  'edit',
  '--generator',
  `${fx}/stylegan2/generator.pt`,
  '--clip',
  `${fx}/clip/clip.pt`,
  '--fs3',
  `${fx}/global/fs3.npy`,
  '--seed',
  '3',
  '--stats-samples',
  '300',
];

test('global edit: same texts, --alphas files, the statistics cache, parser and path messages', () => {
  const r = runCli([
    [...EDIT, '--neutral', 'face', '--target', 'face', '--out', join(tmp, 'same.png')],
    [
      ...EDIT,
      '--neutral',
      'face',
      '--target',
      'smiling face',
      '--alphas',
      '1,2',
      '--animation',
      join(tmp, 'a.gif'),
      '--out',
      join(tmp, 'new', 'ge.png'),
    ],
    [...EDIT, '--neutral', 'face', '--target', 'smiling face', '--alpha', '3', '--out', join(tmp, 'one.png')],
    [
      ...EDIT,
      '--neutral',
      'face',
      '--target',
      'x',
      '--alpha',
      '1',
      '--alphas',
      '1,2',
      '--out',
      join(tmp, 'x.png'),
    ],
    [
      'global',
      'edit',
      '--generator',
      fx,
      '--clip',
      `${fx}/clip/clip.pt`,
      '--fs3',
      'nope.npy',
      '--neutral',
      'a',
      '--target',
      'b',
      '--seed',
      '1',
      '--out',
      join(tmp, 'x.png'),
    ],
    ['global', 'edit', '--bogus'],
    ['tokenize'],
  ]);
  const [same, alphas, cached, both, paths, unknown, noText] = r;

  assert.equal(same.code, 2, same.stderr);
  assert.match(
    same.stderr,
    /^styleclip: error: --target: the target text "face" and the neutral text "face" mean the same/,
  );
  assert.ok(!existsSync(join(tmp, 'same.png')), 'no black image');

  assert.equal(alphas.code, 0, alphas.stderr);
  const files = [join(tmp, 'new', 'ge_a1.png'), join(tmp, 'new', 'ge_a2.png'), join(tmp, 'a.gif')];
  assert.equal(alphas.stdout.trim().split('\n').at(-1), `wrote ${files.join(', ')}`);
  for (const f of files) assert.ok(existsSync(f), f);
  assert.ok(!existsSync(join(tmp, 'new', 'ge.png')), 'nothing claims to be --out itself');

  // The second edit on the same generator reads the statistics from the cache folder.
  assert.doesNotMatch(alphas.stderr, /cached/);
  assert.match(cached.stderr, /channel statistics: cached \(.*-n300\.npy\)/);
  assert.equal(readdirSync(join(CACHE, 'stats')).length, 1);
  assert.equal(cached.code, 0, cached.stderr);

  assert.equal(both.code, 2);
  assert.match(both.stderr, /--alpha: give --alpha or --alphas, not both/);

  assert.equal(paths.code, 2);
  assert.match(paths.stderr, /--generator: test\/fixtures is a folder; give the file inside it/);
  assert.match(paths.stderr, /--fs3: file not found: nope\.npy/);
  assert.doesNotMatch(paths.stderr, /--fs3: --fs3|EISDIR/);

  for (const p of [unknown, noText]) {
    assert.equal(p.code, 2, p.stderr);
    assert.match(p.stderr, /^styleclip: error: (unknown option '--bogus'|missing required argument 'text')/);
  }
});
