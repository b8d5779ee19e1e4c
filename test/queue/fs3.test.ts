/**
 * fs3 precompute on the queue, end to end with real processes: a redis-server with append-only persistence,
 * `styleclip worker` processes and the `global precompute --queue` submitter. Each run's fs3.npy must be
 * bit-identical to the single-process precompute (computed here in-process, with two threads while the
 * workers use one), after a worker is SIGKILLed mid-shard and after Redis itself is killed and restarted.
 * K = 1 on the fixture generator (240 channels, 480 renders) keeps each run to a few seconds.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { precomputeFs3 } from '../../src/edit/fs3.js';
import { readNpy } from '../../src/io/npy.js';
import { ClipEncoder } from '../../src/models/clip/encoder.js';
import { loadClip } from '../../src/models/clip/load.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import { fixture } from '../helpers.js';
import { type Proc, type RedisServer, reap, sleep, startRedis, styleclip, worker } from './harness.js';

const RUN = [
  'global',
  'precompute',
  '--generator',
  fixture('stylegan2/generator.pt'),
  '--clip',
  fixture('clip/clip.pt'),
  '--images',
  '1',
  '--stats-samples',
  '200',
];

function assertBitIdentical(file: string, ref: Float32Array): void {
  const got = readNpy(file);
  assert.deepEqual(got.shape, [240, 64]);
  const a = Buffer.from(
    (got.data as Float32Array).buffer,
    (got.data as Float32Array).byteOffset,
    ref.byteLength,
  );
  const b = Buffer.from(ref.buffer, ref.byteOffset, ref.byteLength);
  assert.ok(a.equals(b), 'the queued fs3 differs from the single-process one');
}

describe('global precompute --queue', () => {
  let redis: RedisServer;
  let ref: Float32Array;
  let tmp: string;
  const procs: Proc[] = [];
  const track = (p: Proc) => {
    procs.push(p);
    return p;
  };

  before(async () => {
    redis = await startRedis({ appendonly: true });
    tmp = mkdtempSync(join(tmpdir(), 'styleclip-queue-'));
    const G = loadGenerator(fixture('stylegan2/generator.pt'));
    const clip = new ClipEncoder(loadClip(fixture('clip/clip.pt')));
    ref = (await precomputeFs3(G, clip, { images: 1, statsSamples: 200 })).fs3;
  });
  after(async () => {
    for (const p of procs) await reap(p);
    await redis?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('a worker SIGKILLed mid-shard: the shard is retried on another worker, fs3 is bit-identical', async () => {
    const out = join(tmp, 'killed.npy');
    const cmd = [...RUN, '--shard-channels', '32', '--queue', redis.url, '--out', out];
    const first = track(styleclip(cmd));
    const a = track(worker(redis.url));
    const [, shard] = await a.waitFor(/job (\S+) started/);
    await sleep(300); // loading the models and rendering: mid-shard
    a.child.kill('SIGKILL');
    await a.exited;
    // The submitter dies too; the run lives on in Redis: --status shows it, the same command continues it.
    first.child.kill('SIGKILL');
    await first.exited;
    const status = await styleclip([...cmd, '--status']).exited;
    assert.equal(status.code, 0, status.output);
    assert.match(status.output, /shards: \d of 9 done \(\d+ of 480 renders\), 1 running/);
    const b = track(worker(redis.url));
    const submit = track(styleclip(cmd));
    const r = await submit.exited;
    assert.match(r.output, /fs3: continuing run [0-9a-f]{12} \(9 shards\)/);
    assert.match(r.output, /9 shards already queued or done/);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /wrote .*killed\.npy: 240 x 64 from 9 shards/);
    assert.match(
      b.output(),
      new RegExp(`job ${shard} done`),
      'the killed shard was finished by the other worker',
    );
    assertBitIdentical(out, ref);

    // SIGTERM: a clean stop, exit 0.
    b.child.kill('SIGTERM');
    const end = await b.exited;
    assert.equal(end.code, 0, end.output);
    assert.match(end.output, /stopped after \d+ job\(s\)/);
  });

  it('Redis killed and restarted mid-run: everyone reconnects, no shard lost or counted twice', async () => {
    const out = join(tmp, 'restarted.npy');
    const submit = track(styleclip([...RUN, '--shard-channels', '30', '--queue', redis.url, '--out', out]));
    const w = track(worker(redis.url));
    const [, wid] = await w.waitFor(/worker (\S+): waiting for jobs/);
    await w.waitFor(/job \S+ done/);
    await redis.kill();
    await sleep(800);
    await redis.restart();
    const r = await submit.exited;
    assert.equal(r.code, 0, `${r.output}\nworker:\n${w.output()}`);
    assert.match(r.output, /from 15 shards/);
    assertBitIdentical(out, ref);
    // --status after the run: it was collected and removed.
    const s = await styleclip([
      ...RUN,
      '--shard-channels',
      '30',
      '--queue',
      redis.url,
      '--out',
      out,
      '--status',
    ]).exited;
    assert.equal(s.code, 0, s.output);
    assert.match(s.output, /no fs3 run with these settings/);
    // The worker SIGKILLed in the test before may still be listed until its heartbeat key expires (15 s).
    assert.match(s.output, new RegExp(`${wid}: .* running nothing`));
    w.child.kill('SIGTERM');
    assert.equal((await w.exited).code, 0);
  });
});
