/**
 * fs3 precompute on the queue. The submitter samples the channel statistics and the K base images once (the
 * same `sampleFs3Base` as the single-process run), stores them in Redis, and enqueues one job per shard
 * (channels [start, end) of one layer × the K images). A worker measures its shard with the single-process
 * code itself (`precomputeFs3` with `only`), and returns the rows; the submitter places every shard's rows
 * by its layer and channel range, so the merge is ordered and a shard done twice (a retry after a crash)
 * overwrites itself instead of counting twice. Shards are deterministic (the same base codes, the same
 * per-image renders whatever the batch), so the file is bit-identical to the single-process one.
 *
 * Job ids are derived from the run (a hash of the model files and every setting that changes the result)
 * and the shard index, so running the same command again finds the run and adds only what is missing.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { progressBar, UserError } from '../cli/common.js';
import { type Fs3Base, precomputeFs3, sampleFs3Base, writeFs3 } from '../edit/fs3.js';
import { type LayerSelection, type StyleStats, selectLayers } from '../edit/global.js';
import { loadStyleStats, saveStyleStats } from '../edit/global-io.js';
import type { ClipEncoder } from '../models/clip/encoder.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import type { GeneratorWeights, StyleGAN2Config } from '../models/stylegan2/weights.js';
import { type Fs3Job, type Fs3Result, fs3Result, type ModelFile, modelFileOf, sha256File } from './jobs.js';
import {
  client,
  connectionOptions,
  keys,
  listWorkers,
  PREFIX,
  parseRedisUrl,
  probe,
  QUEUE,
} from './redis.js';

/** The flags of `global precompute` that matter here (global.ts parses them). */
export interface QueuedPrecompute {
  generator: string;
  clip: string;
  images: number;
  layers: LayerSelection;
  batch?: number;
  officialCarryover: boolean;
  out: string;
  stats?: string;
  statsSamples: number;
  saveStats?: string;
  queue: string;
  status?: boolean;
  shardChannels?: number;
  attempts?: number;
}

/** What a run stores next to its jobs: enough for `--status` and for merging without the models. */
export interface Fs3RunMeta {
  run: string;
  out: string;
  generator: ModelFile;
  clip: ModelFile;
  images: number;
  layers: LayerSelection;
  alpha: number;
  carryOver: boolean;
  /** [layer, start, end] per shard, in fs3 row order. */
  shards: [number, number, number][];
  created: string;
}

const ALPHA = 5;

/** Shards of at most `per` channels; a shard never spans two layers. */
export function planShards(
  cfg: StyleGAN2Config,
  layers: LayerSelection,
  per: number,
): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (const l of selectLayers(cfg, layers))
    for (let s = 0; s < cfg.styleDims[l]; s += per) out.push([l, s, Math.min(cfg.styleDims[l], s + per)]);
  return out;
}

export const shardJobId = (run: string, shard: number) => `fs3-${run.slice(0, 16)}-${shard}`;

/** The base as one float32 buffer: every layer's means, every layer's stds, every layer's K codes. */
export function encodeBase(b: Fs3Base): Buffer {
  const parts = [...b.stats.mean, ...b.stats.std, ...b.codes];
  const n = parts.reduce((s, a) => s + a.length, 0);
  const flat = new Float32Array(n);
  let off = 0;
  for (const a of parts) {
    flat.set(a, off);
    off += a.length;
  }
  return Buffer.from(flat.buffer, flat.byteOffset, flat.byteLength);
}

export function decodeBase(buf: Buffer, cfg: StyleGAN2Config, K: number): Fs3Base {
  const dims = cfg.styleDims;
  const total = dims.reduce((a, b) => a + b, 0);
  const want = (2 + K) * total * 4;
  if (buf.byteLength !== want)
    throw new Error(
      `the run's base codes in Redis hold ${buf.byteLength} bytes, but this generator and K = ${K} need ${want}`,
    );
  const flat = new Float32Array(buf.byteLength / 4);
  new Uint8Array(flat.buffer).set(buf);
  let off = 0;
  const take = (n: number) => {
    const a = flat.slice(off, off + n);
    off += n;
    return a;
  };
  const mean = dims.map((c) => take(c));
  const std = dims.map((c) => take(c));
  const codes = dims.map((c) => take(K * c));
  return { stats: { mean, std, samples: 0 }, codes };
}

const encodeRows = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
function decodeRows(s: string, n: number, e: number): Float32Array {
  const b = Buffer.from(s, 'base64');
  if (b.byteLength !== n * e * 4)
    throw new Error(`a shard result holds ${b.byteLength} bytes, expected ${n * e * 4}`);
  const a = new Float32Array(n * e);
  new Uint8Array(a.buffer).set(b);
  return a;
}

/** The run id: every input that changes fs3, so another setting is another run. */
async function runId(f: QueuedPrecompute, gen: ModelFile, clip: ModelFile, per: number): Promise<string> {
  return createHash('sha256')
    .update(
      JSON.stringify({
        g: gen.sha256,
        clip: clip.sha256,
        K: f.images,
        alpha: ALPHA,
        carry: f.officialCarryover,
        layers: f.layers,
        stats: f.stats ? await sha256File(f.stats) : f.statsSamples,
        per,
      }),
    )
    .digest('hex');
}

// --- the worker's side ---------------------------------------------------------------------------------

const baseCache = new Map<string, Fs3Base>();

/** Measures one shard with the single-process code; `shouldStop` releases it half-way (see worker.ts). */
export async function runFs3Shard(
  job: Fs3Job,
  models: { G: GeneratorWeights; clip: ClipEncoder },
  redis: Redis,
  hooks: { progress: (renders: number) => void; shouldStop: () => boolean; worker: string },
): Promise<Fs3Result> {
  let base = baseCache.get(job.run);
  if (!base) {
    const buf = await redis.getBuffer(keys.fs3Base(job.run));
    if (!buf)
      throw new Error(`run ${job.run.slice(0, 12)} has no base codes in Redis (finished, or deleted?)`);
    base = decodeBase(buf, models.G.config, job.images);
    baseCache.clear(); // one run at a time is the common case; keep memory flat
    baseCache.set(job.run, base);
  }
  const renders = (job.end - job.start) * 2 * job.images;
  const size = models.G.config.size;
  const batch = Math.min(
    job.batch ?? Math.max(1, Math.min(32, Math.floor(1_048_576 / (size * size)))),
    renders,
  );
  const t0 = performance.now();
  const r = await precomputeFs3(models.G, models.clip, {
    images: job.images,
    alpha: job.alpha,
    carryOver: job.carryOver,
    layers: job.layers,
    base,
    batch,
    only: { layer: job.layer, start: job.start, end: job.end },
    onProgress: (done) => hooks.progress(done),
    shouldStop: hooks.shouldStop,
  });
  return {
    rows: encodeRows(r.fs3),
    n: r.rows,
    e: r.embedDim,
    ms: performance.now() - t0,
    worker: hooks.worker,
  };
}

// --- the submitter's side ------------------------------------------------------------------------------

/** `styleclip global precompute … --queue redis://…` (and `--status`). */
export async function precomputeOnQueue(f: QueuedPrecompute): Promise<void> {
  const addr = parseRedisUrl(f.queue);
  await probe(addr);
  const per = f.shardChannels ?? 8;
  const gen = await modelFileOf(f.generator);
  const clipFile = await modelFileOf(f.clip);
  const run = await runId(f, gen, clipFile, per);
  const redis = client(addr);
  const queue = new Queue(QUEUE, { connection: connectionOptions(addr, false), prefix: PREFIX });
  queue.on('error', () => {}); // reconnects; the poll below retries
  try {
    const metaJson = await redis.get(keys.fs3Meta(run));
    let meta = metaJson ? (JSON.parse(metaJson) as Fs3RunMeta) : undefined;
    if (f.status) {
      await printStatus(f.queue, meta, queue, redis);
      return;
    }
    if (!meta) meta = await startRun(f, run, gen, clipFile, per, redis);
    else process.stderr.write(`fs3: continuing run ${run.slice(0, 12)} (${meta.shards.length} shards)\n`);
    await enqueue(meta, f.batch, f.attempts ?? 3, queue);
    const m = meta;
    const requeue = () => enqueue(m, f.batch, f.attempts ?? 3, queue);
    const onInt = () => {
      process.stderr.write(
        `\nfs3: the run goes on on the workers; run the same command again to follow and collect it\n`,
      );
      process.exit(130);
    };
    process.once('SIGINT', onInt);
    const rows = await collect(meta, queue, redis, requeue).finally(() => process.off('SIGINT', onInt));
    writeFs3(f.out, rows);
    process.stdout.write(
      `wrote ${f.out}: ${rows.rows} x ${rows.embedDim} from ${meta.shards.length} shards on the queue\n`,
    );
    await removeRun(meta, queue, redis);
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

async function startRun(
  f: QueuedPrecompute,
  run: string,
  gen: ModelFile,
  clipFile: ModelFile,
  per: number,
  redis: Redis,
): Promise<Fs3RunMeta> {
  const G = loadGenerator(f.generator);
  let stats: StyleStats | undefined;
  if (f.stats) stats = loadStyleStats(f.stats, G.config);
  process.stderr.write(
    `fs3: sampling ${f.stats ? `the ${f.images} base images` : `the channel statistics (${f.statsSamples} samples) and the base images`}\n`,
  );
  const base = await sampleFs3Base(G, { images: f.images, stats, statsSamples: f.statsSamples });
  if (f.saveStats) saveStyleStats(f.saveStats, base.stats);
  const meta: Fs3RunMeta = {
    run,
    out: f.out,
    generator: gen,
    clip: clipFile,
    images: f.images,
    layers: f.layers,
    alpha: ALPHA,
    carryOver: f.officialCarryover,
    shards: planShards(G.config, f.layers, per),
    created: new Date().toISOString(),
  };
  // The base first: a worker never sees a job whose base is missing.
  await redis.set(keys.fs3Base(run), encodeBase(base));
  await redis.set(keys.fs3Meta(run), JSON.stringify(meta));
  process.stderr.write(
    `fs3: run ${run.slice(0, 12)}: ${meta.shards.length} shards of up to ${per} channels\n`,
  );
  return meta;
}

function shardPayload(meta: Fs3RunMeta, i: number, batch?: number): Fs3Job {
  const [layer, start, end] = meta.shards[i];
  return {
    kind: 'fs3',
    run: meta.run,
    shard: i,
    layer,
    start,
    end,
    images: meta.images,
    alpha: meta.alpha,
    carryOver: meta.carryOver,
    layers: meta.layers,
    ...(batch ? { batch } : {}),
    generator: meta.generator,
    clip: meta.clip,
  };
}

/** Adds the shards that are not in the queue (ids are fixed, so this is idempotent) and retries failed ones. */
async function enqueue(
  meta: Fs3RunMeta,
  batch: number | undefined,
  attempts: number,
  queue: Queue,
): Promise<void> {
  const missing: number[] = [];
  let retried = 0;
  const states = await Promise.all(meta.shards.map((_, i) => queue.getJobState(shardJobId(meta.run, i))));
  for (let i = 0; i < states.length; i++) {
    if (states[i] === 'unknown') missing.push(i);
    else if (states[i] === 'failed') {
      const job = await Job.fromId(queue, shardJobId(meta.run, i));
      await job?.retry('failed');
      retried++;
    }
  }
  for (let i = 0; i < missing.length; i += 500)
    await queue.addBulk(
      missing.slice(i, i + 500).map((s) => ({
        name: 'fs3',
        data: shardPayload(meta, s, batch),
        opts: {
          jobId: shardJobId(meta.run, s),
          attempts,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: false,
          removeOnFail: false,
        },
      })),
    );
  if (missing.length < meta.shards.length)
    process.stderr.write(
      `fs3: ${meta.shards.length - missing.length} shards already queued or done${retried ? `, ${retried} failed ones retried` : ''}\n`,
    );
}

const rendersOf = (meta: Fs3RunMeta, i: number) => (meta.shards[i][2] - meta.shards[i][1]) * 2 * meta.images;

/**
 * Waits for every shard: polls the pending jobs (a Redis restart just makes a poll fail, and the next one
 * succeeds), decodes each result once into its place, and shows one progress bar over all renders. Ends
 * with an error naming the failed shards when nothing else is left to wait for.
 */
async function collect(meta: Fs3RunMeta, queue: Queue, redis: Redis, requeue: () => Promise<void>) {
  const n = meta.shards.length;
  const offsets: number[] = [];
  let rows = 0;
  for (const [, s, e] of meta.shards) {
    offsets.push(rows);
    rows += e - s;
  }
  const total = meta.shards.reduce((s, _, i) => s + rendersOf(meta, i), 0);
  let fs3: Float32Array | undefined;
  let embedDim = 0;
  const pending = new Set(meta.shards.map((_, i) => i));
  const failed = new Map<number, string>();
  let doneRenders = 0;
  const bar = progressBar(total, 'fs3 renders', 'shards {shards} | workers {workers}');
  let lastWorkers = 0;
  let lastWorkerCheck = 0;
  let lastError = '';
  // Jobs gone from Redis (one restarted without persistence, or flushed): add them again if the run's base is
  // still there, else say so; the run cannot go on without it.
  const recover = async (missing: number) => {
    if (!(await redis.exists(keys.fs3Base(meta.run))))
      throw new UserError(
        `the run's data is gone from Redis (restarted without persistence, or flushed): run the same command again to start it over`,
        1,
      );
    process.stderr.write(`fs3: ${missing} shard job(s) missing from Redis; queueing them again\n`);
    await requeue();
  };
  try {
    while (pending.size > failed.size) {
      let running = 0;
      let missing = 0;
      try {
        const ids = [...pending].filter((i) => !failed.has(i));
        const jobs = await Promise.all(ids.map((i) => Job.fromId(queue, shardJobId(meta.run, i))));
        for (let k = 0; k < ids.length; k++) {
          const i = ids[k];
          const job = jobs[k];
          if (!job) {
            missing++;
            continue;
          }
          if (job.finishedOn && job.returnvalue) {
            try {
              const r = fs3Result.parse(job.returnvalue);
              if (r.n !== meta.shards[i][2] - meta.shards[i][1] || (fs3 && r.e !== embedDim))
                throw new Error(`${r.n} rows of ${r.e}`);
              const part = decodeRows(r.rows, r.n, r.e);
              if (!fs3) {
                embedDim = r.e;
                fs3 = new Float32Array(rows * embedDim);
              }
              fs3.set(part, offsets[i] * embedDim);
              pending.delete(i);
              doneRenders += rendersOf(meta, i);
            } catch (e) {
              failed.set(i, `its result is unreadable (${(e as Error).message})`);
            }
          } else if (job.finishedOn && job.failedReason) {
            failed.set(i, `${job.failedReason} (after ${job.attemptsMade} attempts)`);
            bar.stop();
            process.stderr.write(`fs3: ${describeShard(meta, i)} failed: ${failed.get(i)}\n`);
          } else if (typeof job.progress === 'number') running += Math.min(job.progress, rendersOf(meta, i));
        }
        if (missing > 0) await recover(missing);
        if (performance.now() - lastWorkerCheck > 5000) {
          lastWorkers = (await listWorkers(redis)).length;
          lastWorkerCheck = performance.now();
        }
      } catch (e) {
        if (e instanceof UserError) throw e;
        // Redis unreachable for a moment (a restart): say so once, try again on the next tick.
        const msg = (e as Error).message;
        if (msg !== lastError) process.stderr.write(`\nfs3: Redis: ${msg}; retrying\n`);
        lastError = msg;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      lastError = '';
      bar.update(doneRenders + running, { shards: `${n - pending.size}/${n}`, workers: lastWorkers });
      // Every pending job is read once per tick: a slower tick while many are pending keeps Redis and the
      // submitter's CPU out of the workers' way (0.25 s at the end, 1.75 s with 750 pending).
      const tick = Math.min(2000, 250 + 2 * (pending.size - failed.size));
      if (pending.size > failed.size) await new Promise((r) => setTimeout(r, tick));
    }
  } finally {
    bar.stop();
  }
  if (failed.size > 0) {
    const list = [...failed.keys()].slice(0, 10).map((i) => `  ${describeShard(meta, i)}: ${failed.get(i)}`);
    throw new UserError(
      `${failed.size} of ${n} shards failed:\n${list.join('\n')}${failed.size > 10 ? `\n  … and ${failed.size - 10} more` : ''}\nthe other ${n - failed.size} are kept: fix the cause and run the same command again to retry the failed ones`,
      1,
    );
  }
  return { fs3: fs3!, rows, embedDim };
}

function describeShard(meta: Fs3RunMeta, i: number): string {
  const [l, s, e] = meta.shards[i];
  return `shard ${i} (layer ${l}, channels ${s}–${e - 1})`;
}

async function removeRun(meta: Fs3RunMeta, queue: Queue, redis: Redis): Promise<void> {
  for (let i = 0; i < meta.shards.length; i += 200)
    await Promise.all(
      meta.shards.slice(i, i + 200).map((_, k) => queue.remove(shardJobId(meta.run, i + k)).catch(() => 0)),
    );
  await redis.del(keys.fs3Base(meta.run), keys.fs3Meta(meta.run));
}

async function printStatus(
  url: string,
  meta: Fs3RunMeta | undefined,
  queue: Queue,
  redis: Redis,
): Promise<void> {
  const workers = await listWorkers(redis);
  const out: string[] = [];
  if (!meta) out.push(`no fs3 run with these settings on ${url} (not started, or finished and collected)`);
  else {
    const states = await Promise.all(meta.shards.map((_, i) => queue.getJobState(shardJobId(meta.run, i))));
    const count = (s: string) => states.filter((x) => x === s).length;
    const done = states.reduce((a, s, i) => a + (s === 'completed' ? rendersOf(meta, i) : 0), 0);
    const total = meta.shards.reduce((a, _, i) => a + rendersOf(meta, i), 0);
    out.push(
      `fs3 run ${meta.run.slice(0, 12)} (${basename(meta.generator.path)}, ${basename(meta.clip.path)}; K = ${meta.images}, layers ${meta.layers}; started ${meta.created})`,
      `  shards: ${count('completed')} of ${meta.shards.length} done (${done} of ${total} renders), ${count('active')} running, ${count('waiting') + count('prioritized') + count('delayed')} waiting, ${count('failed')} failed${count('unknown') ? `, ${count('unknown')} not queued` : ''}`,
    );
    for (let i = 0; i < states.length; i++)
      if (states[i] === 'failed') {
        const job = await Job.fromId(queue, shardJobId(meta.run, i));
        out.push(`  ${describeShard(meta, i)} failed: ${job?.failedReason ?? '?'}`);
      }
  }
  out.push(`workers: ${workers.length} alive`);
  for (const w of workers)
    out.push(
      `  ${w.id}: ${w.host} pid ${w.pid}, ${w.threads} thread(s) × ${w.concurrency}, ${w.done} jobs done, running ${w.active.length ? w.active.join(', ') : 'nothing'} (seen ${((Date.now() - w.seen) / 1000).toFixed(0)} s ago)`,
    );
  process.stdout.write(`${out.join('\n')}\n`);
}
