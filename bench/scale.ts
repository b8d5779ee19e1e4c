/**
 * `npm run bench -- scale`: the queue (src/queue/) on this machine, with a redis-server of its own on a free
 * loopback port and real `styleclip worker` processes, on the small fixture generator (64², 240 channels)
 * and fixture CLIP. Prints JSON lines {"bench":"scale","name",...}.
 *
 *   throughput_1x1   fs3 renders/s through the queue, 1 worker × 1 thread (K = 4, 16-channel shards)
 *   throughput_2x1   the same run on 2 workers × 1 thread; `ratio` against the first (target ≥ 1.8)
 *   overhead_1000    queue overhead per shard at 1,000 one-channel shards on one worker: (wall − the
 *                    workers' own compute time) / shards, i.e. enqueue → fetch → payload check → result
 *                    → completion → collected (target ≤ 20 ms)
 *   ffhq_1024_hours  the full FFHQ 1024 fs3 (6048 channels × K = 100 × 2 = 1,209,600 renders) projected on
 *                    N workers from the per-worker 1024² rate (--rate r/s, default 0.8: README, `npm run
 *                    bench -- edit fs3_1024`), the 2-worker scaling efficiency and the per-shard overhead
 *                    measured here
 *
 * Workers are started (and their models loaded by a warm-up run) before the clock starts: the figures are
 * the steady state of a long run, not process start-up.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { sampleFs3Base } from '../src/edit/fs3.js';
import { selectLayers } from '../src/edit/global.js';
import { loadGenerator } from '../src/models/stylegan2/load.js';
import { encodeBase } from '../src/queue/fs3.js';
import { type Fs3Job, modelFileOf } from '../src/queue/jobs.js';
import { keys, PREFIX, QUEUE } from '../src/queue/redis.js';
import { type Proc, startRedis, styleclip, worker } from '../test/queue/harness.js';
import { report } from './report.js';

const B = 'scale';
const GEN = join(import.meta.dirname, '../test/fixtures/stylegan2/generator.pt');
const CLIP = join(import.meta.dirname, '../test/fixtures/clip/clip.pt');
const K = 4;
const PER = 16;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

/** One queued fs3 run of the fixture generator; returns renders/s from enqueue to fs3.npy written. */
async function fs3Run(url: string, out: string, statsSamples: number): Promise<number> {
  const sub = styleclip([
    'global',
    'precompute',
    '--generator',
    GEN,
    '--clip',
    CLIP,
    '--images',
    String(K),
    '--stats-samples',
    String(statsSamples),
    '--shard-channels',
    String(PER),
    '--queue',
    url,
    '--out',
    out,
  ]);
  await sub.waitFor(/fs3: run \S+: \d+ shards/, 600_000);
  const t0 = performance.now();
  const r = await sub.exited;
  if (r.code !== 0) throw new Error(`the submitter failed:\n${r.output}`);
  return (240 * 2 * K) / ((performance.now() - t0) / 1000);
}

async function throughput(url: string, tmp: string, workers: number): Promise<number> {
  const ws: Proc[] = [];
  try {
    for (let i = 0; i < workers; i++) ws.push(worker(url, ['--lock-ms', '30000', '--stalled-ms', '30000']));
    for (const w of ws) await w.waitFor(/waiting for jobs/, 120_000);
    await fs3Run(url, join(tmp, `warm${workers}.npy`), 50 + workers); // every worker loads the models
    return await fs3Run(url, join(tmp, `run${workers}.npy`), 100 + workers);
  } finally {
    for (const w of ws) {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  }
}

async function overhead(url: string, port: number, shards: number) {
  const G = loadGenerator(GEN);
  const base = await sampleFs3Base(G, { images: 1, statsSamples: 100 });
  const run = 'b'.repeat(64);
  const redis = new Redis(port, '127.0.0.1');
  await redis.set(keys.fs3Base(run), encodeBase(base));
  const queue = new Queue(QUEUE, { connection: { host: '127.0.0.1', port }, prefix: PREFIX });
  const generator = await modelFileOf(GEN);
  const clip = await modelFileOf(CLIP);
  const channels = selectLayers(G.config, 'all').flatMap((l) =>
    Array.from({ length: G.config.styleDims[l] }, (_, c) => [l, c]),
  );
  const job = (i: number): Fs3Job => {
    const [layer, c] = channels[i % channels.length];
    return {
      kind: 'fs3',
      run,
      shard: i,
      layer,
      start: c,
      end: c + 1,
      images: 1,
      alpha: 5,
      carryOver: false,
      layers: 'all',
      generator,
      clip,
    };
  };
  const w = worker(url, ['--lock-ms', '30000', '--stalled-ms', '30000']);
  try {
    await w.waitFor(/waiting for jobs/, 120_000);
    // Warm-up: models and sessions loaded, the base cached.
    await queue.add('fs3', job(0), { jobId: 'warm' });
    while (!(await Job.fromId(queue, 'warm'))?.finishedOn) await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await queue.addBulk(
      Array.from({ length: shards }, (_, i) => ({ name: 'fs3', data: job(i), opts: { jobId: `s${i}` } })),
    );
    // Collect as the submitter does: poll the unfinished jobs, decode each result once.
    const pending = new Set(Array.from({ length: shards }, (_, i) => i));
    let compute = 0;
    while (pending.size) {
      const ids = [...pending];
      const jobs = await Promise.all(ids.map((i) => Job.fromId(queue, `s${i}`)));
      jobs.forEach((j, k) => {
        if (j?.finishedOn && j.returnvalue) {
          const r = j.returnvalue as { rows: string; ms: number };
          Buffer.from(r.rows, 'base64');
          compute += r.ms;
          pending.delete(ids[k]);
        }
      });
      if (pending.size) await new Promise((r) => setTimeout(r, 250));
    }
    const wall = performance.now() - t0;
    return { wall, compute, perShard: (wall - compute) / shards };
  } finally {
    w.child.kill('SIGTERM');
    await w.exited;
    await queue.close();
    redis.disconnect();
  }
}

export default async function main() {
  const rate1024 = arg('--rate', 0.8);
  const redis = await startRedis();
  const tmp = redis.dir;
  try {
    const load = loadavg()[0];
    const t1 = await throughput(redis.url, tmp, 1);
    report(B, 'throughput_1x1', t1, 'renders/s', { K, shard_channels: PER, load1: load });
    const t2 = await throughput(redis.url, tmp, 2);
    report(B, 'throughput_2x1', t2, 'renders/s', { ratio: Number((t2 / t1).toFixed(3)), target: 1.8 });
    const o = await overhead(redis.url, redis.port, 1000);
    report(B, 'overhead_1000', o.perShard, 'ms/shard', {
      wall_s: Number((o.wall / 1000).toFixed(2)),
      compute_s: Number((o.compute / 1000).toFixed(2)),
      target: 20,
    });
    // FFHQ 1024, K = 100: 6048 channels in 8-channel shards (756 shards of 1600 renders).
    const renders = 6048 * 2 * 100;
    const shards = 756;
    // Each worker is one such machine; the queue adds its per-shard overhead and nothing else (the 2-worker
    // ratio above shows it serializes nothing). With more workers than shards, some would idle.
    for (const n of [1, 10, 50, 100, 756]) {
      const seconds = renders / (rate1024 * n) + (shards * o.perShard) / 1000 / n;
      report(B, 'ffhq_1024_hours', seconds / 3600, 'h', { workers: n, rate_per_worker: rate1024 });
    }
  } finally {
    await redis.stop();
  }
}
