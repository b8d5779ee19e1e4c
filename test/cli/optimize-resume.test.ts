/**
 * `styleclip optimize --resume` (issue 19, item 18) and outputs checked before the work (item 7): a run
 * stopped by Ctrl-C and resumed ends on exactly the latent and losses of an uninterrupted run (the lr ramp,
 * Adam's moments and the L2 anchor continue); mismatched flags are refused; an unwritable output is
 * refused before any model loads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readNpyF32 } from '../../src/io/npy.js';
import { runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'styleclip-opt-resume-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const fx = 'test/fixtures';
const base = [
  'optimize',
  '--generator',
  `${fx}/stylegan2/generator.pt`,
  '--clip',
  `${fx}/clip/clip.pt`,
  '--prompt',
  'a person with purple hair',
  '--steps',
  '30',
  '--save-every',
  '1',
];
const losses = (dir: string) =>
  readFileSync(join(dir, 'losses.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss: number });

test('Ctrl-C, then --resume: the same latent and losses as a run without a break', async () => {
  const a = join(tmp, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...base, '--out', a], {
    env: { ...process.env, STYLECLIP_DEBUG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const log = join(a, 'losses.jsonl');
  const deadline = Date.now() + 60_000;
  while (!(existsSync(log) && readFileSync(log, 'utf8').split('\n').length > 3)) {
    assert.ok(Date.now() < deadline && child.exitCode === null, `no progress:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGINT');
  assert.equal(await new Promise((r) => child.on('close', r)), 130, stderr);
  assert.match(stderr, /--resume/);
  const stoppedAt = losses(a).length;
  assert.ok(stoppedAt >= 3 && stoppedAt < 30, `stopped after ${stoppedAt} steps`);

  const b = join(tmp, 'b');
  const [resumed, fresh, otherLr, withSeed] = runCli([
    [...base, '--out', a, '--resume'],
    [...base, '--out', b],
    [...base, '--out', a, '--resume', '--lr', '0.2'],
    [...base, '--out', a, '--resume', '--seed', '3'],
  ]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming after step ${stoppedAt}`));
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.deepEqual(readNpyF32(join(a, 'latent.npy')).data, readNpyF32(join(b, 'latent.npy')).data);
  assert.deepEqual(losses(a), losses(b));
  assert.ok(existsSync(join(a, 'before_after.png')), 'the before image comes from the saved start');
  assert.equal(otherLr.code, 2);
  assert.match(otherLr.stderr, /--lr 0\.2 \(the run has 0\.1\)/);
  assert.equal(withSeed.code, 2);
  assert.match(withSeed.stderr, /--resume: continues from the start latent saved in --out/);
});

test('an unwritable output is refused before the models load, naming the path the user gave', () => {
  const [r, g] = runCli([
    [...base, '--out', join(tmp, 'c'), '--save-latent', 'README.md/lat.npy'],
    ['generate', '--generator', `${fx}/stylegan2/generator.pt`, '--out', 'README.md/x.png'],
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--save-latent README\.md\/lat\.npy: .*README\.md is a file, not a folder/);
  assert.doesNotMatch(r.stderr, /\.tmp\b|optimizing/);
  assert.ok(!existsSync(join(tmp, 'c')), 'nothing was started');
  assert.equal(g.code, 2);
  assert.match(g.stderr, /--out README\.md\/x\.png/);
});
