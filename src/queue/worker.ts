/**
 * `styleclip worker`: a BullMQ worker on the project's queue. It keeps its own ONNX Runtime sessions (the
 * models stay loaded between jobs of a run), reports each job's progress, writes a heartbeat key every few
 * seconds (what `--status` lists), and on SIGTERM or Ctrl-C stops taking jobs and releases the ones it is
 * running: an fs3 shard stops after its current batch and goes back to the queue untouched (it is short and
 * deterministic, so another worker redoes it); a mapper run finishes its step, writes a checkpoint and goes
 * back, so the next worker resumes from there. A second signal quits at once (the stalled-job check then
 * hands the jobs to others, as after a crash).
 *
 * Crash safety is BullMQ's: a job's lock is renewed while it runs; when a worker dies (SIGKILL, power), the
 * lock expires and another worker's stalled-job check puts the job back to wait.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type Job, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import { UserError } from '../cli/common.js';
import { Fs3Interrupted } from '../edit/fs3.js';
import { ClipEncoder } from '../models/clip/encoder.js';
import { loadClip } from '../models/clip/load.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { configureRuntime } from '../runtime/session.js';
import { runFs3Shard } from './fs3.js';
import { type Fs3Job, localModel, MalformedJob, type MapperJob, ModelMismatch, parseJob } from './jobs.js';
import { MapperReleased, runMapperJob } from './mapper.js';
import {
  client,
  connectionOptions,
  keys,
  PREFIX,
  parseRedisUrl,
  probe,
  QUEUE,
  type WorkerInfo,
} from './redis.js';

export interface WorkerOptions {
  queue: string;
  concurrency: number;
  threads: number;
  /** Look up the run's model files by name here instead of at the submitter's paths. */
  models?: string;
  /** `--device` as given to the worker: its mapper runs (child processes) use the same. */
  device?: string;
  /** How long a job's lock lives without renewal: a killed worker's job is retried after about this long. */
  lockMs: number;
  /** How often this worker looks for other workers' stalled jobs. */
  stalledMs: number;
  /** Log lines (job start/end, refusals, errors); stderr by default. */
  log?: (line: string) => void;
}

const HEARTBEAT_MS = 5000;

/** Runs until SIGTERM/SIGINT (after releasing its jobs), or throws (exit 1) after refusing a run's jobs. */
export async function runWorker(o: WorkerOptions): Promise<void> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const addr = parseRedisUrl(o.queue);
  await probe(addr);
  configureRuntime({ threads: o.threads });
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const redis = client(addr);
  let stopping = false;
  let refusal: Error | undefined;
  let done = 0;
  const active = new Map<string, string>();

  // Models by content hash: the generator and CLIP stay loaded (with their sessions) across a run's shards.
  let models: { key: string; G: GeneratorWeights; clip: ClipEncoder } | undefined;
  const modelsFor = async (j: Fs3Job) => {
    const gPath = await localModel(j.generator, o.models);
    const cPath = await localModel(j.clip, o.models);
    const key = `${j.generator.sha256}/${j.clip.sha256}`;
    if (models?.key !== key) {
      models = undefined;
      models = { key, G: loadGenerator(gPath), clip: new ClipEncoder(loadClip(cPath)) };
    }
    return models;
  };

  const processor = async (job: Job, token?: string): Promise<unknown> => {
    let data: Fs3Job | MapperJob;
    try {
      data = parseJob(job.data);
    } catch (e) {
      log(`worker ${id}: job ${job.id}: ${(e as Error).message}`);
      throw new UnrecoverableError((e as Error).message);
    }
    active.set(job.id!, `${job.id}`);
    void beat(); // --status shows what runs now, not what ran at the last heartbeat
    const t0 = performance.now();
    log(
      `worker ${id}: job ${job.id} started: ${data.kind === 'fs3' ? `layer ${data.layer}, channels ${data.start}–${data.end - 1}` : `"${data.prompt}"`}`,
    );
    try {
      let result: unknown;
      if (data.kind === 'fs3') {
        const m = await modelsFor(data);
        let last = 0;
        result = await runFs3Shard(data, m, redis, {
          worker: id,
          shouldStop: () => stopping,
          progress: (renders) => {
            const now = performance.now();
            if (now - last < 1000) return;
            last = now;
            job.updateProgress(renders).catch(() => {});
          },
        });
      } else {
        result = await runMapperJob(data, {
          threads: o.threads,
          models: o.models,
          device: o.device,
          shouldStop: () => stopping,
          progress: (step) => job.updateProgress(step).catch(() => {}),
          log: (l) => log(`worker ${id}: job ${job.id}: ${l}`),
        });
      }
      done++;
      log(`worker ${id}: job ${job.id} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      return result;
    } catch (e) {
      if (e instanceof Fs3Interrupted || e instanceof MapperReleased) {
        await job.moveToWait(token);
        log(`worker ${id}: job ${job.id} released (stopping)`);
        throw new WaitingError();
      }
      if (e instanceof ModelMismatch) {
        // Not this job's fault: put it back for a worker with the right files, and stop taking jobs.
        await job.moveToWait(token);
        log(`worker ${id}: job ${job.id} put back: this worker's model files differ from the run's`);
        refusal ??= e;
        setImmediate(() => void shutdown());
        throw new WaitingError();
      }
      if (e instanceof MalformedJob) throw new UnrecoverableError(e.message);
      log(`worker ${id}: job ${job.id} failed (attempt ${job.attemptsMade + 1}): ${(e as Error).message}`);
      throw e;
    } finally {
      active.delete(job.id!);
      void beat();
    }
  };

  const worker = new Worker(QUEUE, processor, {
    connection: connectionOptions(addr, true),
    prefix: PREFIX,
    concurrency: o.concurrency,
    lockDuration: o.lockMs,
    stalledInterval: o.stalledMs,
    // A crash is expected to happen now and then on a long run: a job may stall a few times before it fails.
    maxStalledCount: 5,
    autorun: false,
  });
  let lastError = '';
  worker.on('error', (e) => {
    const msg = e.message;
    if (msg !== lastError && !stopping) log(`worker ${id}: ${msg}`);
    lastError = msg;
  });
  worker.on('ready', () => {
    if (lastError) log(`worker ${id}: connected again`);
    lastError = '';
  });

  const beat = async () => {
    const info: WorkerInfo = {
      id,
      host: hostname(),
      pid: process.pid,
      concurrency: o.concurrency,
      threads: o.threads,
      done,
      active: [...active.keys()],
      seen: Date.now(),
    };
    await redis.set(keys.worker(id), JSON.stringify(info), 'PX', 3 * HEARTBEAT_MS).catch(() => {});
  };
  await beat();
  const heartbeat = setInterval(() => void beat(), HEARTBEAT_MS);

  let closing: Promise<void> | undefined;
  const shutdown = () => {
    stopping = true;
    closing ??= (async () => {
      await worker.close();
      clearInterval(heartbeat);
      await redis.del(keys.worker(id)).catch(() => {});
      redis.disconnect();
    })();
    return closing;
  };
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals > 1) process.exit(130);
    log(`worker ${id}: stopping: releasing running jobs (signal again to quit at once)`);
    void shutdown();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  log(
    `worker ${id}: waiting for jobs on redis://${addr.host}:${addr.port} (concurrency ${o.concurrency}, ${o.threads} thread(s) each)`,
  );
  try {
    await worker.run();
    await shutdown();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  log(`worker ${id}: stopped after ${done} job(s)`);
  if (refusal) throw new UserError(refusal.message, 1);
}
