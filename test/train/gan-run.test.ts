/**
 * A whole (tiny) `train gan` run through runGanTraining on an in-memory ImageDataset: checkpoints in
 * rosinality's layout, samples and metrics written, and a stopped-then-resumed run giving exactly the
 * weights, EMA, Adam state and losses of an uninterrupted one. Plus the CLI's answers to bad data.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadTorch } from '../../src/io/torch.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import type { ImageDataset } from '../../src/train/data.js';
import { defaultGanConfig, GanTrainer } from '../../src/train/gan.js';
import { type GanRunOptions, runGanTraining } from '../../src/train/gan-run.js';
import { ROOT } from '../helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'gan-run-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Smooth random blobs, 8², as a generated dataset would give them. */
class Blobs implements ImageDataset {
  readonly size = 8;
  readonly length = 10;
  async get(i: number): Promise<Float32Array> {
    const out = new Float32Array(3 * 64);
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < 64; p++)
        out[c * 64 + p] = Math.tanh((Math.sin(i * 1.7 + c) * ((p % 8) - 3.5)) / 3 + Math.cos(i + (p >> 3)));
    return out;
  }
}

const config = {
  ...defaultGanConfig(8, { 4: 8, 8: 8 }),
  latent: 16,
  n_mlp: 1,
  batch: 4,
  d_reg_every: 2,
  g_reg_every: 3,
  mixing: 0.5,
  seed: 7,
};
const options = (outDir: string, iterations: number): GanRunOptions => ({
  outDir,
  iterations,
  sampleEveryKimg: 0.008,
  nSample: 4,
  saveEveryMinutes: 60,
  keep: 2,
  flip: true,
});

test('a stopped and resumed run equals an uninterrupted one (weights, EMA, Adam, losses)', async () => {
  const a = join(tmp, 'a');
  const ta = GanTrainer.fresh(config);
  const ra = await runGanTraining(ta, new Blobs(), options(a, 6));
  assert.equal(ra.stopped, false);
  assert.deepEqual(readdirSync(join(a, 'checkpoint')), ['000006.pt']);
  assert.ok(readdirSync(join(a, 'sample')).includes('000000.png'));

  const b = join(tmp, 'b');
  let n = 0;
  const rb = await runGanTraining(GanTrainer.fresh(config), new Blobs(), options(b, 6), {
    stopRequested: () => ++n >= 4,
  });
  assert.equal(rb.stopped, true);
  assert.equal(rb.lastCheckpoint, join(b, 'checkpoint', '000004.pt'));
  const tb = GanTrainer.fromCheckpoint(rb.lastCheckpoint!, { batch: config.batch });
  assert.equal(tb.iter, 4);
  await runGanTraining(tb, new Blobs(), options(b, 6));

  const ca = loadTorch(join(a, 'checkpoint', '000006.pt'));
  const cb = loadTorch(join(b, 'checkpoint', '000006.pt'));
  assert.deepEqual([...ca.tensors.keys()], [...cb.tensors.keys()]);
  for (const [k, t] of ca.tensors) assert.deepEqual(cb.tensors.get(k)!.data, t.data, k);
  for (const key of [
    'g.style.1.weight',
    'd.final_linear.1.bias',
    'g_ema.conv1.conv.weight',
    'g_optim.state.0.exp_avg_sq',
  ])
    assert.ok(ca.tensors.has(key), key);
  // g_ema is what generate, global, mapper and optimize load
  assert.deepEqual(loadGenerator(join(a, 'checkpoint', '000006.pt')).config.channels, { 4: 8, 8: 8 });
  const strip = (f: string) =>
    readFileSync(f, 'utf8')
      .trim()
      .split('\n')
      .map((l) => {
        const { time, images_per_s, ...rest } = JSON.parse(l);
        return rest;
      });
  assert.deepEqual(strip(join(b, 'logs', 'metrics.jsonl')), strip(join(a, 'logs', 'metrics.jsonl')));
  assert.equal(strip(join(a, 'logs', 'metrics.jsonl')).length, 6);
});

test('CLI: an empty folder, a missing folder and an earlier run are clear errors (exit 2)', () => {
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  writeFileSync(join(empty, 'notes.txt'), 'no images here');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'train', 'gan', ...args], {
      encoding: 'utf8',
      cwd: ROOT,
    });
  let r = run(empty, '--out', join(tmp, 'o1'), '--size', '8');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /no images in .*empty/);
  r = run(join(tmp, 'missing'), '--out', join(tmp, 'o2'), '--size', '8');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /no such folder/);
  r = run(empty, '--out', join(tmp, 'a'), '--size', '8');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /holds an earlier run/);
  r = run(empty, '--out', join(tmp, 'o3'));
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--size is required/);
});
