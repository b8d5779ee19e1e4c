/** `styleclip worker --queue redis://HOST:PORT`: runs fs3 shards and mapper trainings from the queue (src/queue/). */
import { availableParallelism } from 'node:os';
import { Command } from 'commander';
import { z } from 'zod';
import { runWorker } from '../queue/worker.js';
import { int, parseFlags } from './common.js';

const positive = (what: string) => int(what).refine((n) => n >= 1, { message: 'must be at least 1' });

const schema = z.object({
  queue: z.string({ error: '--queue is required (redis://HOST:PORT)' }).min(1, '--queue is required'),
  concurrency: positive('--concurrency').default(1),
  threads: positive('--threads').optional(),
  models: z.string().optional(),
  device: z.string().optional(),
  lockMs: positive('--lock-ms').default(30_000),
  stalledMs: positive('--stalled-ms').default(30_000),
});

export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'take jobs (fs3 shards of `global precompute --queue`, prompts of `mapper sweep`) from a BullMQ queue on Redis; SIGTERM releases the running jobs and exits',
    )
    .option('--queue <url>', 'Redis address, redis://HOST:PORT[/DB]')
    .option('--concurrency <n>', 'jobs at once in this process', '1')
    .option('--threads <n>', 'ONNX Runtime threads per job (default: cores / concurrency)')
    .option(
      '--models <dir>',
      "this worker's copies of the model files, found by file name (default: the submitter's paths)",
    )
    .option(
      '--lock-ms <ms>',
      "a job's lock time: a killed worker's job is retried after about this long",
      '30000',
    )
    .option('--stalled-ms <ms>', 'how often to look for stalled jobs of killed workers', '30000')
    .action(async (raw: unknown) => {
      const f = parseFlags(schema, raw);
      const threads = f.threads ?? Math.max(1, Math.floor(availableParallelism() / f.concurrency));
      await runWorker({ ...f, threads });
    });
}
