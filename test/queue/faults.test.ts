/**
 * The queue's failure cases with real processes: Redis unreachable at start, a malformed payload, a worker
 * whose generator file differs from the run's, and a job that throws every time. None of them renders a
 * full fs3, so the file stays quick.
 */
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { PREFIX, QUEUE } from '../../src/queue/redis.js';
import { fixture } from '../helpers.js';
import {
  freePort,
  type Proc,
  type RedisServer,
  reap,
  sleep,
  startRedis,
  styleclip,
  worker,
} from './harness.js';

const MODELS = ['--generator', fixture('stylegan2/generator.pt'), '--clip', fixture('clip/clip.pt')];
const RUN = ['global', 'precompute', ...MODELS, '--images', '1', '--stats-samples', '200'];

describe('queue: Redis unreachable at start', () => {
  it('worker, precompute and sweep each exit 1 with the address, quickly', async () => {
    const port = await freePort(); // nothing listens there
    const url = `redis://127.0.0.1:${port}`;
    const tmp = mkdtempSync(join(tmpdir(), 'styleclip-q-'));
    writeFileSync(join(tmp, 'prompts.txt'), 'purple hair\n');
    try {
      const runs = [
        ['worker', '--queue', url],
        [...RUN, '--queue', url, '--out', join(tmp, 'fs3.npy')],
        ['mapper', 'sweep', ...MODELS, '--prompts', join(tmp, 'prompts.txt'), '--queue', url, '--out', tmp],
      ];
      for (const args of runs) {
        const t0 = Date.now();
        const r = await styleclip(args).exited;
        assert.equal(r.code, 1, r.output);
        assert.match(r.output, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port} \\(`));
        assert.doesNotMatch(r.output, /\n\s+at /, 'no stack trace');
        assert.ok(Date.now() - t0 < 60_000, 'no hang');
      }
      const bad = await styleclip(['worker', '--queue', 'http://x']).exited;
      assert.equal(bad.code, 2, bad.output);
      assert.match(bad.output, /--queue must be a redis:\/\/HOST:PORT address/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('queue: bad jobs and bad workers', () => {
  let redis: RedisServer;
  let r: Redis;
  let queue: Queue;
  let tmp: string;
  const procs: Proc[] = [];
  const track = (p: Proc) => {
    procs.push(p);
    return p;
  };

  before(async () => {
    redis = await startRedis();
    r = new Redis(redis.port, '127.0.0.1');
    queue = new Queue(QUEUE, { connection: { host: '127.0.0.1', port: redis.port }, prefix: PREFIX });
    tmp = mkdtempSync(join(tmpdir(), 'styleclip-q-'));
  });
  beforeEach(async () => {
    for (const p of procs.splice(0)) await reap(p);
    await r.flushall();
  });
  after(async () => {
    for (const p of procs) await reap(p);
    await queue?.close();
    r?.disconnect();
    await redis?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function finished(id: string): Promise<Job> {
    for (let i = 0; i < 600; i++) {
      const job = await Job.fromId(queue, id);
      if (job?.finishedOn) return job;
      await sleep(100);
    }
    throw new Error(`job ${id} did not finish`);
  }

  it('a malformed payload fails at once (no retries) with a message; the worker goes on', async () => {
    const w = track(worker(redis.url));
    await queue.add('fs3', { kind: 'fs3', run: 'not-a-hash', layer: -1 }, { jobId: 'bad-1', attempts: 3 });
    await queue.add('x', { kind: 'bogus' }, { jobId: 'bad-2', attempts: 3 });
    await queue.add('x', 'just a string', { jobId: 'bad-3', attempts: 3 });
    const [j1, j2, j3] = [await finished('bad-1'), await finished('bad-2'), await finished('bad-3')];
    assert.match(j1.failedReason, /^malformed job payload: run: a hex SHA-256/);
    assert.match(j2.failedReason, /^malformed job payload: unknown job kind "bogus"/);
    assert.match(j3.failedReason, /^malformed job payload: unknown job kind undefined/);
    for (const j of [j1, j2, j3]) {
      assert.equal(await j.getState(), 'failed');
      assert.equal(j.attemptsMade, 1, 'not retried');
    }
    assert.equal(w.child.exitCode, null, 'the worker is still running');
    w.child.kill('SIGTERM');
    const end = await w.exited;
    assert.equal(end.code, 0, end.output);
  });

  it('a worker with another generator file refuses the run: exit 1, its job back in the queue', async () => {
    const models = join(tmp, 'models');
    rmSync(models, { recursive: true, force: true });
    mkdirSync(models);
    copyFileSync(fixture('stylegan2/generator.pt'), join(models, 'generator.pt'));
    appendFileSync(join(models, 'generator.pt'), Buffer.from([0])); // other bytes, same name
    copyFileSync(fixture('clip/clip.pt'), join(models, 'clip.pt'));
    const submit = track(
      styleclip([...RUN, '--shard-channels', '32', '--queue', redis.url, '--out', join(tmp, 'f.npy')]),
    );
    await submit.waitFor(/9 shards of up to 32 channels/);
    const bad = track(worker(redis.url, ['--models', models]));
    const end = await bad.exited;
    assert.equal(end.code, 1, end.output);
    assert.match(
      end.output,
      /generator\.pt has SHA-256 [0-9a-f]{12}…, but the run was submitted with [0-9a-f]{12}…/,
    );
    assert.match(end.output, /refuses the run's jobs/);
    const counts = await queue.getJobCounts('waiting', 'active', 'failed', 'completed', 'delayed');
    assert.deepEqual(counts, { waiting: 9, active: 0, failed: 0, completed: 0, delayed: 0 });
    const jobs = await queue.getJobs(['waiting']);
    assert.ok(
      jobs.every((j) => j.attemptsMade === 0),
      'the refusal used up no attempt',
    );
  });

  it('a job that throws every time fails after --attempts tries; the run names the failed shards', async () => {
    const submit = track(
      styleclip([
        ...RUN,
        '--shard-channels',
        '96',
        '--attempts',
        '2',
        '--queue',
        redis.url,
        '--out',
        join(tmp, 'g.npy'),
      ]),
    );
    const [, run] = await submit.waitFor(/fs3: run ([0-9a-f]{12})/);
    const [metaKey] = await r.keys(`${PREFIX}:fs3:${run}*:meta`);
    // Spoil the run's base codes: every shard now throws when it reads them.
    await r.set(metaKey.replace(/:meta$/, ':base'), 'garbage');
    const w = track(worker(redis.url));
    const res = await submit.exited;
    assert.equal(res.code, 1, res.output);
    assert.match(res.output, /9 of 9 shards failed:/);
    assert.match(
      res.output,
      /shard 0 \(layer 0, channels 0–31\): the run's base codes in Redis hold 7 bytes, .* \(after 2 attempts\)/,
    );
    assert.match(res.output, /run the same command again to retry the failed ones/);
    assert.match(w.output(), /failed \(attempt 2\)/);
    const status = await styleclip([
      ...RUN,
      '--shard-channels',
      '96',
      '--queue',
      redis.url,
      '--out',
      join(tmp, 'g.npy'),
      '--status',
    ]).exited;
    assert.equal(status.code, 0, status.output);
    assert.match(status.output, /0 of 9 done .* 9 failed/);
    assert.match(status.output, /workers: 1 alive/);
  });
});
