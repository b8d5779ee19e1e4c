/**
 * `styleclip mapper train` and an existing --out (issue 19, items 4 and 10): Ctrl-C exits 130 with a
 * checkpoint; a second run into the same --out is refused unless --resume (with the same flags) or
 * --overwrite; --overwrite leaves no iteration file of the earlier run behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'styleclip-mapper-out-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const out = join(tmp, 'run');
const fx = 'test/fixtures';
const common = [
  'mapper',
  'train',
  '--generator',
  `${fx}/stylegan2/generator.pt`,
  '--clip',
  `${fx}/clip/clip.pt`,
  '--latents-train',
  `${fx}/stylegan2/wplus_trunc.npy`,
  '--latents-test',
  `${fx}/stylegan2/wplus_trunc.npy`,
  '--log-interval',
  '1',
  '--val-interval',
  '1000',
  '--save-interval',
  '1000',
];

test('Ctrl-C exits 130 and says how to resume; a second run into that --out is refused', async () => {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      ...common,
      '--prompt',
      'purple hair',
      '--steps',
      '1000',
      '--out',
      out,
    ],
    { env: { ...process.env, STYLECLIP_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const metrics = join(out, 'logs', 'metrics.jsonl');
  const deadline = Date.now() + 120_000;
  while (!(existsSync(metrics) && statSync(metrics).size > 0)) {
    assert.ok(Date.now() < deadline && child.exitCode === null, `training never logged a step:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted at step \d+; resume with --resume .*iteration_\d+\.pt/);
  const ck = readdirSync(join(out, 'checkpoints')).find((f) => /^iteration_\d+\.pt$/.test(f));
  assert.ok(ck, 'a checkpoint of the step reached');
  const resume = join(out, 'checkpoints', ck);
  const logged = readFileSync(metrics, 'utf8');

  const [again, otherPrompt, otherLr, both] = runCli([
    [...common, '--prompt', 'purple hair', '--steps', '2', '--out', out],
    [...common, '--prompt', 'red hair', '--steps', '1000', '--resume', resume, '--out', out],
    [
      ...common,
      '--prompt',
      'purple hair',
      '--lr',
      '0.1',
      '--steps',
      '1000',
      '--resume',
      resume,
      '--out',
      out,
    ],
    [...common, '--prompt', 'purple hair', '--steps', '2', '--resume', resume, '--overwrite', '--out', out],
  ]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /holds an earlier run .*--resume .*iteration_\d+\.pt.*--overwrite/s);
  assert.equal(readFileSync(metrics, 'utf8'), logged, 'the earlier metrics are untouched');
  assert.equal(otherPrompt.code, 2);
  assert.match(otherPrompt.stderr, /--prompt "red hair" \(the checkpoint has "purple hair"\)/);
  assert.equal(otherLr.code, 2);
  assert.match(otherLr.stderr, /--lr 0\.1 \(the checkpoint has 0\.5\)/);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give one/);
});

test('--overwrite replaces the earlier run: no old iteration file or metrics line is left', () => {
  const [r] = runCli([[...common, '--prompt', 'purple hair', '--steps', '1', '--overwrite', '--out', out]]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    readdirSync(join(out, 'checkpoints')).filter((f) => f.startsWith('iteration_')),
    ['iteration_1.pt'],
  );
  const lines = readFileSync(join(out, 'logs', 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n');
  assert.deepEqual(
    lines.map((l) => JSON.parse(l).step),
    lines.map(() => 1),
  );
});
