/**
 * `styleclip mapper sweep`: one `mapper train` job per prompt, each into its own folder under --out. A mapper
 * run writes checkpoints, logs and image grids as it goes, so its folder must be on a path every worker
 * sees (a shared folder); a job that moves to another worker (a crash, a SIGTERM) resumes from the newest
 * `checkpoints/iteration_N.pt` there instead of starting again.
 *
 * The worker runs the job as `styleclip mapper train` in a child process (mapper-child.ts): the very same
 * command a user runs, with its validation, checkpoints and Ctrl-C handling, and no copy of its logic here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Job, Queue, UnrecoverableError } from 'bullmq';
import { type Command, Option } from 'commander';
import { progressBar, UserError } from '../cli/common.js';
import { tokenize } from '../models/clip/tokenizer.js';
import { localModel, type MapperJob, type ModelFile, modelFileOf } from './jobs.js';
import { client, connectionOptions, listWorkers, PREFIX, parseRedisUrl, probe, QUEUE } from './redis.js';

/** Train flags that name files: the worker checks their SHA-256 and may find them under --models. */
const FILE_FLAGS = ['--generator', '--clip', '--arcface', '--latents-train', '--latents-test'];
/** Train flags the sweep sets per prompt. */
const PER_PROMPT = ['--prompt', '--out', '--resume', '--overwrite'];

/** A prompt's folder name: lower case, runs of other characters as one `_` ("purple hair" → purple_hair). */
export function promptFolder(prompt: string): string {
  const s = prompt
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '')
    .slice(0, 64);
  return s || `prompt_${createHash('sha256').update(prompt).digest('hex').slice(0, 8)}`;
}

export const mapperJobId = (out: string, prompt: string) =>
  `mapper-${createHash('sha256').update(`${out}\n${prompt}`).digest('hex').slice(0, 16)}`;

/** `mapper sweep`: the train command's flags (copied from it, so the two never drift) plus the sweep's own. */
export function mapperSweepCommand(train: Command): Command {
  const cmd = new (train.constructor as typeof Command)('sweep').description(
    'train one mapper per line of --prompts as jobs on a BullMQ queue (`styleclip worker` runs them); results in --out/<prompt>/',
  );
  cmd
    .option('--prompts <file>', 'text file, one prompt per line (blank lines and # comments skipped)')
    .option('--queue <url>', 'Redis address of the queue, redis://HOST:PORT')
    .option('--out <dir>', 'folder on a path every worker sees; each prompt trains into <dir>/<prompt>/')
    .option('--attempts <n>', 'tries per prompt before it is reported failed', '3')
    .option('--status', 'print where each prompt stands and exit');
  for (const o of train.options)
    if (!PER_PROMPT.includes(o.long ?? '')) {
      const copy = new Option(o.flags, o.description);
      if (o.defaultValue !== undefined) copy.default(o.defaultValue);
      cmd.addOption(copy);
    }
  cmd.action((opts: Record<string, unknown>) => sweep(opts, cmd));
  return cmd;
}

interface Prompt {
  prompt: string;
  out: string;
  id: string;
}

async function sweep(opts: Record<string, unknown>, cmd: Command): Promise<void> {
  const need = (k: string, flag: string) => {
    if (typeof opts[k] !== 'string' || !opts[k]) throw new UserError(`${flag} is required`);
    return opts[k] as string;
  };
  const promptsFile = need('prompts', '--prompts');
  const url = need('queue', '--queue');
  const out = resolve(need('out', '--out'));
  const attempts = Number(opts.attempts);
  if (!Number.isInteger(attempts) || attempts < 1)
    throw new UserError('--attempts must be a whole number ≥ 1');
  if (!existsSync(promptsFile)) throw new UserError(`--prompts: no such file ${promptsFile}`);
  const prompts = readPrompts(promptsFile, out);
  const addr = parseRedisUrl(url);
  await probe(addr);
  const queue = new Queue(QUEUE, { connection: connectionOptions(addr, false), prefix: PREFIX });
  queue.on('error', () => {});
  const redis = client(addr);
  try {
    if (opts.status) {
      await printSweepStatus(prompts, queue, redis);
      return;
    }
    const { args, files, steps } = await trainArgs(opts, cmd);
    mkdirSync(out, { recursive: true });
    // A fixed job id per prompt and folder: adding it again while it exists changes nothing.
    const add = (p: Prompt) => {
      const data: MapperJob = { kind: 'mapper', prompt: p.prompt, out: p.out, args, files, steps };
      return queue.add('mapper', data, {
        jobId: p.id,
        attempts,
        backoff: { type: 'exponential', delay: 5000 },
        removeOnComplete: false,
        removeOnFail: false,
      });
    };
    let added = 0;
    for (const p of prompts) {
      const state = await queue.getJobState(p.id);
      if (state === 'failed') await (await Job.fromId(queue, p.id))?.retry('failed');
      if (state !== 'unknown') continue;
      await add(p);
      added++;
    }
    process.stderr.write(
      `mapper sweep: ${prompts.length} prompt${prompts.length === 1 ? '' : 's'} (${added} queued now, ${prompts.length - added} already queued or done) into ${out}/\n`,
    );
    await waitForSweep(prompts, steps, queue, add);
    for (const p of prompts) await queue.remove(p.id).catch(() => 0);
    process.stdout.write(
      `mapper sweep: all ${prompts.length} mappers trained, in ${out}/<prompt>/checkpoints/\n`,
    );
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

function readPrompts(file: string, out: string): Prompt[] {
  const lines = readFileSync(file, 'utf8').split(/\r?\n/);
  const prompts: Prompt[] = [];
  const folders = new Map<string, string>();
  lines.forEach((raw, i) => {
    const prompt = raw.trim();
    if (!prompt || prompt.startsWith('#')) return;
    try {
      tokenize(prompt);
    } catch (e) {
      throw new UserError(`--prompts line ${i + 1}: ${(e as Error).message}`);
    }
    const folder = promptFolder(prompt);
    const clash = folders.get(folder);
    if (clash !== undefined)
      throw new UserError(
        `--prompts line ${i + 1}: "${prompt}" and "${clash}" would share the folder ${folder}/`,
      );
    folders.set(folder, prompt);
    const dir = join(out, folder);
    prompts.push({ prompt, out: dir, id: mapperJobId(dir, prompt) });
  });
  if (prompts.length === 0) throw new UserError(`--prompts: ${file} holds no prompt`);
  return prompts;
}

/** The train command line (without files, prompt, out, resume) from the parsed sweep options. */
async function trainArgs(opts: Record<string, unknown>, cmd: Command) {
  const args: string[] = [];
  const files: MapperJob['files'] = [];
  for (const o of cmd.options) {
    const flag = o.long ?? '';
    if (['--prompts', '--queue', '--out', '--attempts', '--status'].includes(flag)) continue;
    const v = opts[o.attributeName()];
    if (v === undefined) continue;
    if (FILE_FLAGS.includes(flag)) {
      if (typeof v !== 'string' || !existsSync(v)) throw new UserError(`${flag}: no such file ${String(v)}`);
      files.push({ flag, file: await modelFileOf(v) });
    } else if (o.negate) {
      if (v === false) args.push(flag);
    } else if (o.isBoolean()) {
      if (v === true) args.push(flag);
    } else args.push(flag, String(v));
  }
  for (const f of ['--generator', '--clip'])
    if (!files.some((x) => x.flag === f)) throw new UserError(`${f} is required`);
  const steps = Number(opts.steps);
  if (!Number.isInteger(steps) || steps < 1) throw new UserError('--steps must be a whole number ≥ 1');
  return { args, files, steps };
}

async function waitForSweep(
  prompts: Prompt[],
  steps: number,
  queue: Queue,
  add: (p: Prompt) => Promise<unknown>,
): Promise<void> {
  const bar = progressBar(prompts.length * steps, 'mapper steps', 'prompts {prompts}');
  const pending = new Set(prompts.map((_, i) => i));
  const failed = new Map<number, string>();
  try {
    while (pending.size > failed.size) {
      let running = 0;
      try {
        for (const i of pending) {
          if (failed.has(i)) continue;
          const job = await Job.fromId(queue, prompts[i].id);
          if (!job) {
            await add(prompts[i]); // gone from Redis (a restart without persistence): again, from its checkpoint
            continue;
          }
          if (job.finishedOn && job.returnvalue) pending.delete(i);
          else if (job.finishedOn && job.failedReason) {
            failed.set(i, `${job.failedReason} (after ${job.attemptsMade} attempts)`);
            bar.stop();
            process.stderr.write(`mapper sweep: "${prompts[i].prompt}" failed: ${failed.get(i)}\n`);
          } else if (typeof job.progress === 'number') running += job.progress;
        }
      } catch {
        // Redis restarting: poll again.
      }
      const done = prompts.length - pending.size;
      bar.update(done * steps + running, { prompts: `${done}/${prompts.length}` });
      if (pending.size > failed.size) await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    bar.stop();
  }
  if (failed.size > 0)
    throw new UserError(
      `${failed.size} of ${prompts.length} prompts failed:\n${[...failed].map(([i, why]) => `  "${prompts[i].prompt}": ${why}`).join('\n')}\nthe others are done; run the same command again to retry (each resumes from its last checkpoint)`,
      1,
    );
}

async function printSweepStatus(
  prompts: Prompt[],
  queue: Queue,
  redis: ReturnType<typeof client>,
): Promise<void> {
  const lines: string[] = [];
  for (const p of prompts) {
    const job = await Job.fromId(queue, p.id);
    const state = job ? await job.getState() : 'not queued';
    const step = typeof job?.progress === 'number' && job.progress > 0 ? `, step ${job.progress}` : '';
    const why = state === 'failed' ? `: ${job?.failedReason}` : '';
    lines.push(`  "${p.prompt}" → ${p.out}: ${state}${step}${why}`);
  }
  const workers = await listWorkers(redis);
  process.stdout.write(
    `mapper sweep, ${prompts.length} prompts:\n${lines.join('\n')}\nworkers: ${workers.length} alive\n`,
  );
}

// --- the worker's side ---------------------------------------------------------------------------------

/** The job went back to the queue with its checkpoint (the worker is stopping). */
export class MapperReleased extends Error {
  constructor() {
    super('released');
    this.name = 'MapperReleased';
  }
}

/** The newest `checkpoints/iteration_N.pt` of a run folder, if any. */
export function latestCheckpoint(dir: string): { file: string; step: number } | undefined {
  const ck = join(dir, 'checkpoints');
  if (!existsSync(ck)) return undefined;
  let best: { file: string; step: number } | undefined;
  for (const f of readdirSync(ck)) {
    const m = /^iteration_(\d+)\.pt$/.exec(f);
    if (m && (!best || Number(m[1]) > best.step)) best = { file: join(ck, f), step: Number(m[1]) };
  }
  return best;
}

/** The step of the last line of logs/metrics.jsonl (0 when there is none yet). */
function loggedStep(dir: string): number {
  const f = join(dir, 'logs', 'metrics.jsonl');
  if (!existsSync(f)) return 0;
  const size = statSync(f).size;
  const n = Math.min(size, 4096);
  const buf = Buffer.alloc(n);
  const fd = openSync(f, 'r');
  try {
    readSync(fd, buf, 0, n, size - n);
  } finally {
    closeSync(fd);
  }
  const lines = buf.toString('utf8').trim().split('\n');
  try {
    return Number((JSON.parse(lines[lines.length - 1]) as { step?: number }).step) || 0;
  } catch {
    return 0;
  }
}

const here = fileURLToPath(import.meta.url);
const childScript = join(dirname(here), `mapper-child${extname(here)}`);

/** Runs `mapper train` for the job, resuming from the folder's newest checkpoint. */
export async function runMapperJob(
  job: MapperJob,
  ctx: {
    threads: number;
    models?: string;
    /** The worker's --device; the child inherits STYLECLIP_DEVICE otherwise. */
    device?: string;
    shouldStop: () => boolean;
    progress: (step: number) => void;
    log: (line: string) => void;
  },
): Promise<{ prompt: string; out: string; steps: number }> {
  const fileArgs: string[] = [];
  for (const f of job.files) fileArgs.push(f.flag, await localModel(f.file as ModelFile, ctx.models));
  mkdirSync(job.out, { recursive: true });
  const resume = latestCheckpoint(job.out);
  if (resume) ctx.log(`resuming "${job.prompt}" from step ${resume.step}`);
  const argv = [
    ...process.execArgv,
    childScript,
    String(ctx.threads),
    'mapper',
    'train',
    ...job.args,
    ...fileArgs,
    '--prompt',
    job.prompt,
    '--out',
    job.out,
    // No checkpoint yet: whatever an earlier attempt logged is replaced (it restarts from step 0).
    ...(resume ? ['--resume', resume.file] : ['--overwrite']),
  ];
  const env = ctx.device ? { ...process.env, STYLECLIP_DEVICE: ctx.device } : process.env;
  const child: ChildProcess = spawn(process.execPath, argv, {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env,
  });
  let tail = '';
  const keep = (b: Buffer) => {
    tail = (tail + b.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let interrupted = false;
  let lastStep = 0;
  const watch = setInterval(() => {
    if (ctx.shouldStop() && !interrupted) {
      interrupted = true;
      child.kill('SIGINT'); // mapper train finishes its step and writes a checkpoint
    }
    const step = loggedStep(job.out);
    if (step !== lastStep) ctx.progress(step);
    lastStep = step;
  }, 250);
  const code = await new Promise<number>((res) => {
    child.on('exit', (c, sig) => res(c ?? (sig ? 128 : 1)));
    child.on('error', () => res(1));
  });
  clearInterval(watch);
  if (interrupted && code === 130) throw new MapperReleased();
  if (code === 0) return { prompt: job.prompt, out: job.out, steps: job.steps };
  const last = tail
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l && !l.includes('[') && !l.startsWith('at '))
    .slice(-3)
    .join(' | ');
  const msg = `mapper train exited with code ${code}: ${last || 'no output'}`;
  // Exit 2 is a mistake in the invocation (a flag, a file): retrying cannot help.
  if (code === 2) throw new UnrecoverableError(msg);
  throw new Error(msg);
}
