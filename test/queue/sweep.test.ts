/**
 * `styleclip mapper sweep` on the queue: two prompts, one folder each. The first worker is stopped with
 * SIGTERM once the first prompt has a checkpoint; the job goes back to the queue and the next worker resumes
 * it from that checkpoint instead of starting over. Fixture models, 12 steps of batch 2 (4 finished between
 * the first checkpoint and the stop request on a fast machine), no ID loss.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promptFolder } from '../../src/queue/mapper.js';
import { fixture } from '../helpers.js';
import { type Proc, type RedisServer, reap, sleep, startRedis, styleclip, worker } from './harness.js';

describe('mapper sweep --queue', () => {
  let redis: RedisServer;
  let tmp: string;
  const procs: Proc[] = [];
  const track = (p: Proc) => {
    procs.push(p);
    return p;
  };
  before(async () => {
    redis = await startRedis({ appendonly: true });
    tmp = mkdtempSync(join(tmpdir(), 'styleclip-sweep-'));
  });
  after(async () => {
    for (const p of procs) await reap(p);
    await redis?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('one folder per prompt; a job released by SIGTERM resumes from its checkpoint on the next worker', async () => {
    const prompts = join(tmp, 'prompts.txt');
    writeFileSync(prompts, '# two edits\npurple hair\n\nBob cut!\n');
    assert.equal(promptFolder('Bob cut!'), 'bob_cut');
    const out = join(tmp, 'runs');
    const latents = fixture('stylegan2/wplus_trunc.npy');
    const args = [
      'mapper',
      'sweep',
      '--prompts',
      prompts,
      '--queue',
      redis.url,
      '--out',
      out,
      '--generator',
      fixture('stylegan2/generator.pt'),
      '--clip',
      fixture('clip/clip.pt'),
      '--latents-train',
      latents,
      '--latents-test',
      latents,
      '--id-lambda',
      '0',
      '--steps',
      '12',
      '--save-interval',
      '1',
      '--val-interval',
      '2',
      '--log-interval',
      '1',
      '--val-samples',
      '2',
    ];
    const submit = track(styleclip(args));
    await submit.waitFor(/2 prompts \(2 queued now/);
    const a = track(worker(redis.url));
    const [, first] = await a.waitFor(/job \S+ started: "([^"]+)"/);
    const ck = join(out, promptFolder(first), 'checkpoints');
    while (!existsSync(join(ck, 'iteration_1.pt'))) await sleep(100);
    a.child.kill('SIGTERM');
    const ea = await a.exited;
    assert.equal(ea.code, 0, ea.output);
    assert.match(ea.output, /released \(stopping\)/);

    const b = track(worker(redis.url));
    const r = await submit.exited;
    assert.equal(r.code, 0, `${r.output}\nworker b:\n${b.output()}`);
    assert.match(r.output, /all 2 mappers trained/);
    assert.match(b.output(), new RegExp(`resuming "${first}" from step ([1-9]|1[01])\\b`));
    for (const p of ['purple_hair', 'bob_cut']) {
      assert.ok(existsSync(join(out, p, 'checkpoints', 'iteration_12.pt')), `${p}: final checkpoint`);
      assert.ok(existsSync(join(out, p, 'checkpoints', 'best_model.pt')), `${p}: best model`);
    }
    b.child.kill('SIGTERM');
    assert.equal((await b.exited).code, 0);
  });
});
