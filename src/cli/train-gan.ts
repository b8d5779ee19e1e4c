/**
 * `styleclip train gan DATA --out DIR`: StyleGAN2 training as rosinality's train.py, on a folder of images
 * (or, from code, any ImageDataset through runGanTraining).
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { configFChannels } from '../models/stylegan2/weights.js';
import { configureRuntime } from '../runtime/session.js';
import { OptimizerStateError } from '../train/adam.js';
import { DataError, type ImageDataset, ImageFolder } from '../train/data.js';
import { defaultGanConfig, type GanConfig, GanError, GanTrainer } from '../train/gan.js';
import { latestCheckpoint, runGanTraining } from '../train/gan-run.js';
import {
  CliCommand,
  int,
  interruptible,
  num,
  outputProblem,
  parseFlags,
  progressBar,
  UserError,
} from './common.js';

const positiveInt = (what: string) =>
  int(what).refine((n) => n >= 1, { message: `${what} must be at least 1` });
const positive = (what: string) => num(what).refine((n) => n > 0, { message: `${what} must be positive` });
const nonNegative = (what: string) => num(what).refine((n) => n >= 0, { message: `${what} must be >= 0` });

/** "4:128,8:128,16:64" → {4: 128, 8: 128, 16: 64} */
const channelTable = z
  .string()
  .regex(/^\d+:\d+(,\d+:\d+)*$/, 'a list like 4:512,8:512,16:256 (resolution:channels)')
  .transform(
    (s) => Object.fromEntries(s.split(',').map((p) => p.split(':').map(Number))) as Record<number, number>,
  );

const schema = z.object({
  out: z.string({ message: 'an output folder (--out) is required' }).min(1),
  size: positiveInt('--size').optional(),
  channels: channelTable.optional(),
  channelMultiplier: positiveInt('--channel-multiplier').default(2),
  latent: positiveInt('--latent').default(512),
  nMlp: positiveInt('--n-mlp').default(8),
  batch: positiveInt('--batch').optional(),
  lr: positive('--lr').optional(),
  r1: nonNegative('--r1').optional(),
  pathRegularize: nonNegative('--path-regularize').optional(),
  pathBatchShrink: positiveInt('--path-batch-shrink').optional(),
  dRegEvery: positiveInt('--d-reg-every').optional(),
  gRegEvery: positiveInt('--g-reg-every').optional(),
  mixing: num('--mixing')
    .refine((n) => n >= 0 && n <= 1, { message: '--mixing must be in [0, 1]' })
    .optional(),
  iter: positiveInt('--iter').optional(),
  kimg: positive('--kimg').optional(),
  flip: z.boolean().default(false),
  seed: int('--seed')
    .refine((n) => n >= 0 && n < 2 ** 31, { message: '--seed must be in [0, 2^31)' })
    .optional(),
  sampleEvery: positive('--sample-every').default(4),
  nSample: positiveInt('--n-sample').default(16),
  saveEvery: positive('--save-every').default(10),
  keep: positiveInt('--keep').default(3),
  resume: z.string().min(1).optional(),
  overwrite: z.boolean().default(false),
  threads: positiveInt('--threads').optional(),
});

type Flags = z.infer<typeof schema>;

function checkSize(size: number): void {
  if (!Number.isInteger(Math.log2(size)) || size < 8)
    throw new UserError(`--size ${size}: must be a power of two, at least 8`);
}

function channelsFor(o: Flags, size: number): Record<number, number> {
  const base = o.channels ?? configFChannels(size, o.channelMultiplier);
  const out: Record<number, number> = {};
  for (let r = 4; r <= size; r *= 2) {
    if (!(base[r] >= 1)) throw new UserError(`--channels: no entry for resolution ${r} (need 4..${size})`);
    out[r] = base[r];
  }
  return out;
}

/** The trainer: resumed (a checkpoint file, or the newest in --out with --resume auto) or fresh. */
function makeTrainer(o: Flags): GanTrainer {
  // undefined flags: train.py's defaults for a new run, the checkpoint's values on --resume
  const run: Partial<GanConfig> = {
    batch: o.batch,
    lr: o.lr,
    r1: o.r1,
    path_regularize: o.pathRegularize,
    path_batch_shrink: o.pathBatchShrink,
    d_reg_every: o.dRegEvery,
    g_reg_every: o.gRegEvery,
    mixing: o.mixing,
    seed: o.seed,
  };
  if (o.resume) {
    const file = o.resume === 'auto' ? latestCheckpoint(o.out) : o.resume;
    if (!file) throw new UserError(`--resume auto: no checkpoint in ${join(o.out, 'checkpoint')}`);
    if (!existsSync(file) || !statSync(file).isFile()) throw new UserError(`--resume: no such file: ${file}`);
    const m = /(\d+)\.pt$/.exec(file);
    const t = GanTrainer.fromCheckpoint(file, run, m ? Number(m[1]) : 0);
    if (o.size && o.size !== t.config.size)
      throw new UserError(`--size ${o.size}: the checkpoint's model is ${t.config.size}²`);
    process.stderr.write(`styleclip: resuming ${file} at iteration ${t.iter}\n`);
    return t;
  }
  if (!o.size) throw new UserError('--size is required for a new run (the model and image resolution)');
  checkSize(o.size);
  return GanTrainer.fresh({
    ...defaultGanConfig(o.size, channelsFor(o, o.size)),
    latent: o.latent,
    n_mlp: o.nMlp,
    ...Object.fromEntries(Object.entries(run).filter(([, v]) => v !== undefined)),
  });
}

/** A folder with an earlier run is refused unless --resume continues it or --overwrite replaces it. */
function prepareOut(o: Flags): void {
  const why = outputProblem(o.out, true);
  if (why) throw new UserError(`--out ${o.out}: ${why}`);
  const earlier = ['checkpoint', 'sample', 'logs'].filter((d) => {
    const p = join(o.out, d);
    return existsSync(p) && statSync(p).isDirectory() && readdirSync(p).length > 0;
  });
  if (!earlier.length || o.resume) return;
  if (!o.overwrite)
    throw new UserError(
      `--out ${o.out} holds an earlier run (${earlier.join('/, ')}/): continue it with --resume auto, ` +
        'replace it with --overwrite, or pick another --out',
    );
  for (const d of earlier) rmSync(join(o.out, d), { recursive: true, force: true });
}

/**
 * The training images: `world:N` is the built-in world's first N faces (drawn on demand, src/world), anything
 * else a folder of image files. Prints what it found.
 */
async function openData(spec: string, size: number): Promise<ImageDataset> {
  const world = /^world:(\d+)$/.exec(spec);
  if (world) {
    const { WorldImages } = await import('../world/dataset.js');
    const n = Number(world[1]);
    if (n < 1) throw new UserError(`${spec}: a world dataset needs at least one image`);
    process.stderr.write(`styleclip: ${n} world faces (seeds 0..${n - 1}) at ${size}²\n`);
    return new WorldImages(n, { size });
  }
  let folder: ImageFolder;
  try {
    folder = await ImageFolder.open(spec, size);
  } catch (e) {
    if (e instanceof DataError) throw new UserError(e.message);
    throw e;
  }
  for (const s of folder.skipped.slice(0, 20))
    process.stderr.write(`styleclip: skipped ${s.file}: ${s.reason}\n`);
  if (folder.skipped.length > 20)
    process.stderr.write(`styleclip: ... and ${folder.skipped.length - 20} more\n`);
  process.stderr.write(
    `styleclip: ${folder.length} images from ${spec}${folder.skipped.length ? ` (${folder.skipped.length} unreadable, skipped)` : ''}\n`,
  );
  return folder;
}

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function trainGan(dataDir: string, opts: unknown): Promise<void> {
  try {
    await train(dataDir, opts);
  } catch (e) {
    // a bad checkpoint, a diverged run, a dataset that does not fit: said plainly, exit 1
    if (e instanceof GanError || e instanceof DataError || e instanceof OptimizerStateError)
      throw new UserError(e.message, 1);
    throw e;
  }
}

async function train(dataDir: string, opts: unknown): Promise<void> {
  const o = parseFlags(schema, opts);
  if (o.threads) configureRuntime({ threads: o.threads });
  prepareOut(o);
  const t = makeTrainer(o);
  const c = t.config;
  process.stderr.write(
    `styleclip: model ${c.size}², channels ${JSON.stringify(c.channels)}, batch ${c.batch}\n`,
  );
  const data = await openData(dataDir, c.size);
  if (data.length < c.batch)
    throw new UserError(`${dataDir}: ${data.length} images, fewer than one batch of ${c.batch}`);
  const iterations = o.iter ?? (o.kimg ? Math.ceil((o.kimg * 1000) / c.batch) : 800000);
  if (t.iter >= iterations) throw new UserError(`the run is already at iteration ${t.iter} of ${iterations}`);
  const stop = interruptible(
    'styleclip: stopping after this iteration (a checkpoint is written); Ctrl-C again to quit now',
  );
  const bar = progressBar(
    Math.ceil((iterations * c.batch) / 1000),
    'kimg',
    'd {d} g {g} r1 {r1} path {path} real {real} fake {fake} | {ips} img/s',
  );
  bar.update(Math.floor((t.iter * c.batch) / 1000));
  let lastLine = 0;
  try {
    const res = await runGanTraining(
      t,
      data,
      {
        outDir: o.out,
        iterations,
        sampleEveryKimg: o.sampleEvery,
        nSample: o.nSample,
        saveEveryMinutes: o.saveEvery,
        keep: o.keep,
        flip: o.flip,
      },
      {
        stopRequested: stop.requested,
        onIteration: ({ stats: s, kimg, imagesPerSecond, etaSeconds }) => {
          const fields = {
            d: fmt(s.d),
            g: fmt(s.g),
            r1: fmt(s.r1, 4),
            path: fmt(s.path, 4),
            real: fmt(s.real_score),
            fake: fmt(s.fake_score),
            ips: fmt(imagesPerSecond, 1),
          };
          bar.update(Math.floor(kimg), fields);
          // without a terminal (a background run's log) the bar is silent: one status line a minute instead
          if (!process.stderr.isTTY && Date.now() - lastLine >= 60_000) {
            lastLine = Date.now();
            const eta = Number.isFinite(etaSeconds) ? `${(etaSeconds / 3600).toFixed(1)} h` : '-';
            process.stderr.write(
              `styleclip: iter ${s.iter} kimg ${kimg.toFixed(1)} | d ${fields.d} g ${fields.g} r1 ${fields.r1} ` +
                `path ${fields.path} real ${fields.real} fake ${fields.fake} | ${fields.ips} img/s | ETA ${eta}\n`,
            );
          }
        },
      },
    );
    bar.stop();
    process.stderr.write(
      `styleclip: ${res.stopped ? 'stopped' : 'done'} at iteration ${t.iter}; checkpoint ${res.lastCheckpoint}\n`,
    );
  } finally {
    bar.stop();
    stop.dispose();
  }
}

export function trainGanCommand(): Command {
  return new CliCommand('gan')
    .description("train a StyleGAN2 as rosinality's train.py does (on a folder of PNG/JPEG/WebP images)")
    .argument(
      '<data>',
      'folder of training images (resized and center-cropped to --size), or world:N for the first N world faces',
    )
    .option('--out <dir>', 'run folder: checkpoint/, sample/, logs/metrics.jsonl')
    .option(
      '--size <n>',
      'image and model resolution (a power of two); taken from the checkpoint on --resume',
    )
    .option('--channels <table>', 'channels per resolution, e.g. 4:128,8:128,16:128,32:64,64:32')
    .option('--channel-multiplier <n>', 'config-f table multiplier when --channels is not given', '2')
    .option('--latent <n>', 'style (z, w) dimension', '512')
    .option('--n-mlp <n>', 'mapping network depth', '8')
    .option('--batch <n>', 'batch size (a multiple of 4) (default 16; on --resume from the checkpoint)')
    .option('--lr <x>', 'learning rate (default 0.002; on --resume from the checkpoint)')
    .option('--r1 <x>', 'R1 weight (default 10; on --resume from the checkpoint)')
    .option('--path-regularize <x>', 'path-length weight (default 2; on --resume from the checkpoint)')
    .option(
      '--path-batch-shrink <n>',
      'path-length batch = batch / this (default 2; on --resume from the checkpoint)',
    )
    .option('--d-reg-every <n>', 'R1 every n iterations (default 16; on --resume from the checkpoint)')
    .option(
      '--g-reg-every <n>',
      'path length every n iterations (default 4; on --resume from the checkpoint)',
    )
    .option('--mixing <p>', 'style-mixing probability (default 0.9; on --resume from the checkpoint)')
    .option('--iter <n>', 'total iterations (default 800000)')
    .option('--kimg <k>', 'total thousands of images instead of --iter')
    .option('--flip', 'random horizontal flips')
    .option(
      '--seed <n>',
      'seeds the weights, every random draw and the data order (default 0; on --resume from the checkpoint)',
    )
    .option('--sample-every <kimg>', 'sample grid from g_ema every this many kimg', '4')
    .option('--n-sample <n>', 'images in the sample grid', '16')
    .option('--save-every <minutes>', 'checkpoint every this many minutes', '10')
    .option('--keep <n>', 'checkpoints kept', '3')
    .option(
      '--resume <file|auto>',
      "continue from a checkpoint (ours or rosinality's); auto: the newest in --out",
    )
    .option('--overwrite', 'replace an earlier run in --out')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .action(trainGan);
}
