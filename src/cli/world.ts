/**
 * `styleclip world`: the built-in world of cartoon faces. `sample` draws faces (and prints their labels and
 * captions); `train-classifier` trains the attribute classifier used to measure edits; `eval-classifier`
 * measures a classifier file on held-out faces; `fid` measures a generator against held-out faces in the
 * world CLIP's image-feature space.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { writeImage } from '../io/image.js';
import { loadClip } from '../models/clip/load.js';
import type { ClipModel } from '../models/clip/model.js';
import { StyleGAN2 } from '../models/stylegan2/index.js';
import { configureRuntime } from '../runtime/session.js';
import {
  FAMILIES,
  FAMILY_NAMES,
  type Face,
  type Family,
  parseWhere,
  sampleFace,
} from '../world/attributes.js';
import { caption } from '../world/captions.js';
import { AttributeClassifier } from '../world/classifier.js';
import { fidSettings, WorldFidError, worldFid } from '../world/fid.js';
import { missingModelMessage, resolveModel, worldModelPath } from '../world/models.js';
import { renderFaces, toSignedNCHW } from '../world/render.js';
import { evaluateClassifier, trainClassifier } from '../world/train-classifier.js';
import {
  CliCommand,
  checkOutputs,
  inputFile,
  int,
  interruptible,
  num,
  parseFlags,
  progressBar,
  UserError,
  writeOutputs,
} from './common.js';

const seedFlag = int('--seed').refine((n) => n >= 0 && n < 2 ** 32, { message: 'must be in [0, 2^32)' });

const SampleFlags = z
  .object({
    count: int('--count')
      .refine((n) => n >= 1 && n <= 10000, { message: 'must be in [1, 10000]' })
      .default(16),
    seed: seedFlag.default(0),
    size: int('--size')
      .refine((n) => n >= 16 && n <= 1024, { message: 'must be in [16, 1024]' })
      .default(64),
    grid: z.boolean().default(false),
    cols: int('--cols')
      .refine((n) => n >= 1, { message: 'must be at least 1' })
      .optional(),
    out: z
      .string()
      .regex(/\.(png|jpe?g|webp)$/i, 'must end in .png, .jpg or .webp')
      .optional(),
    labels: z.boolean().default(false),
    captions: z.boolean().default(false),
    where: z.string().optional(),
    vary: z.enum(FAMILY_NAMES as [Family, ...Family[]]).optional(),
  })
  // No --out and nothing to print: the picture goes to world-sample.png (as generate's generated.png).
  .transform((o) => ({ ...o, out: o.out ?? (o.labels || o.captions ? undefined : 'world-sample.png') }));

function numbered(file: string, i: number, n: number): string {
  if (n === 1) return file;
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}_${String(i).padStart(Math.max(3, String(n - 1).length), '0')}${ext}`;
}

async function sample(o: z.infer<typeof SampleFlags>): Promise<void> {
  let where: ReturnType<typeof parseWhere> = {};
  if (o.where)
    try {
      where = parseWhere(o.where);
    } catch (e) {
      throw new UserError(`--where: ${(e as Error).message}`);
    }
  checkOutputs({ '--out': o.out });
  // Consecutive seeds from --seed, keeping those that match --where (at most 1000 tries per face).
  const faces: Face[] = [];
  for (let s = o.seed; faces.length < (o.vary ? 1 : o.count); s++) {
    if (s >= 2 ** 32 || s - o.seed > 1000 * o.count)
      throw new UserError(`--where ${o.where}: too few faces match among the seeds tried`);
    const f = sampleFace(s);
    if (Object.entries(where).every(([k, v]) => f.labels[k as keyof typeof where] === v)) faces.push(f);
  }
  // --vary: the first face once per value of the family, everything else equal.
  if (o.vary) {
    const family = o.vary;
    const base = faces.pop()!;
    for (const v of FAMILIES[family]) faces.push({ ...base, labels: { ...base.labels, [family]: v } });
  }
  if (o.labels || o.captions) {
    // `world sample --labels | head` closes the pipe early: the rest of the lines go nowhere, quietly (as
    // Unix tools do), and the images are still written.
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    });
  }
  if (o.labels || o.captions)
    for (const f of faces) {
      const rec: Record<string, unknown> = { seed: f.seed };
      if (o.labels) for (const k of FAMILY_NAMES) rec[k] = f.labels[k];
      if (o.captions) rec.caption = caption(f.labels, f.seed);
      process.stdout.write(`${JSON.stringify(rec)}\n`);
    }
  if (!o.out) return;
  const n = faces.length;
  const s = o.size;
  const t0 = performance.now();
  const images = toSignedNCHW(await renderFaces(faces, s), n, s);
  const seconds = (performance.now() - t0) / 1000;
  const out = o.out;
  const writes: [string, () => unknown][] = [];
  if (o.grid || n === 1)
    writes.push([
      out,
      () =>
        writeImage(
          out,
          { dtype: 'float32', shape: [n, 3, s, s], data: images },
          { cols: o.cols ?? Math.ceil(Math.sqrt(n)) },
        ),
    ]);
  else
    for (let i = 0; i < n; i++) {
      const file = numbered(out, i, n);
      const one = images.slice(i * 3 * s * s, (i + 1) * 3 * s * s);
      writes.push([file, () => writeImage(file, { dtype: 'float32', shape: [1, 3, s, s], data: one })]);
    }
  await writeOutputs(writes);
  process.stderr.write(
    `drew ${n} face(s) at ${s}x${s} from seed ${faces[0].seed} in ${seconds.toFixed(2)} s (${Math.round(n / seconds)} faces/s): ${o.grid || n === 1 ? out : `${numbered(out, 0, n)} ...`}\n`,
  );
}

const TrainFlags = z.object({
  outDir: z
    .string()
    .min(1)
    .default(join('.tmp', 'world', 'classifier')),
  steps: int('--steps')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(8000),
  batch: int('--batch')
    .refine((n) => n >= 1 && n <= 1024, { message: 'must be in [1, 1024]' })
    .default(32),
  lr: num('--lr')
    .refine((x) => x > 0 && x < 1, { message: 'must be in (0, 1)' })
    .default(1e-3),
  seed: seedFlag.default(0),
  threads: int('--threads')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(1),
  evalCount: int('--eval-count')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(2000),
  evalEvery: int('--eval-every')
    .refine((n) => n >= 0, { message: 'must be 0 (never) or more' })
    .default(1000),
  saveEvery: int('--save-every')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(100),
  logEvery: int('--log-every')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(50),
  release: z.string().optional(),
  augment: z.boolean().default(false),
});

async function trainCmd(o: z.infer<typeof TrainFlags>): Promise<void> {
  checkOutputs({ '--release': o.release });
  configureRuntime({ threads: o.threads });
  const stop = interruptible('stopping after this step (a checkpoint is written); Ctrl-C again to quit now', [
    'SIGINT',
    'SIGTERM',
  ]);
  try {
    const r = await trainClassifier(o, {
      onLog: (rec) => process.stderr.write(`${JSON.stringify(rec)}\n`),
      shouldStop: stop.requested,
    });
    if (r.interrupted) {
      process.stderr.write(`stopped at step ${r.step}; run the same command again to resume\n`);
      return;
    }
    const file = join(o.outDir, 'classifier.safetensors');
    if (o.release) {
      mkdirSync(dirname(o.release), { recursive: true });
      copyFileSync(file, o.release);
    }
    process.stdout.write(
      `${JSON.stringify({ step: r.step, seconds: Math.round(r.seconds), accuracy: r.accuracy })}\n`,
    );
    process.stderr.write(`classifier: ${o.release ?? file}\n`);
  } finally {
    stop.dispose();
  }
}

const EvalFlags = z.object({
  classifier: inputFile('classifier file').optional(),
  count: int('--count')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(2000),
  threads: int('--threads')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .optional(),
});

async function evalCmd(o: z.infer<typeof EvalFlags>): Promise<void> {
  const file = o.classifier ?? worldModelPath('classifier');
  if (!file)
    throw new UserError(
      'no classifier: give --classifier FILE, or train one (styleclip world train-classifier)',
    );
  const clf = AttributeClassifier.load(file, o.threads);
  const acc = await evaluateClassifier(clf, o.count);
  process.stdout.write(`${JSON.stringify({ classifier: file, heldOut: o.count, accuracy: acc })}\n`);
}

const FidFlags = z.object({
  generator: inputFile('generator file').optional(),
  clip: inputFile('CLIP file').optional(),
  count: int('--count')
    .refine((n) => n >= 2, { message: 'must be at least 2 (a covariance needs 2 images per side)' })
    .default(2000),
  seed: seedFlag.default(0),
  truncation: num('--truncation')
    .refine((x) => x >= 0 && x <= 2, { message: 'must be in [0, 2]' })
    .default(1),
  dataSeed: seedFlag.default(0),
  batch: int('--batch')
    .refine((n) => n >= 1 && n <= 1024, { message: 'must be in [1, 1024]' })
    .default(64),
  json: z.boolean().default(false),
  threads: int('--threads')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .optional(),
});

/** A model flag's file, else the world's model of that kind, else a message saying how to get one. */
function modelFile(given: string | undefined, kind: 'generator' | 'clip'): string {
  const file = resolveModel(given, kind);
  if (!file) throw new UserError(missingModelMessage(kind, `--${kind}`));
  return file;
}

/** A loader's complaint about a file names the flag that gave it (exit 1, as other bad checkpoints). */
function loadModel<T>(flag: string, file: string, load: (f: string) => T): T {
  try {
    return load(file);
  } catch (e) {
    const name = (e as Error).name;
    if (['ClipWeightsError', 'GeneratorWeightsError', 'CheckpointError', 'ShapeError'].includes(name))
      throw new UserError(`${flag} ${file}: ${(e as Error).message}`, 1);
    throw e;
  }
}

async function fidCmd(o: z.infer<typeof FidFlags>): Promise<void> {
  const generator = modelFile(o.generator, 'generator');
  const clipFile = modelFile(o.clip, 'clip');
  try {
    fidSettings(o); // seed ranges, before the models load
  } catch (e) {
    if (e instanceof WorldFidError) throw new UserError(e.message);
    throw e;
  }
  if (o.threads) configureRuntime({ threads: o.threads });
  const G = loadModel('--generator', generator, (f) => StyleGAN2.load(f));
  const clip: ClipModel = loadModel('--clip', clipFile, (f) => loadClip(f));
  const bar = progressBar(2 * o.count, 'fid');
  let r: Awaited<ReturnType<typeof worldFid>>;
  try {
    r = await worldFid(G, clip, { ...o, onProgress: (done) => bar.update(done) });
  } catch (e) {
    if (e instanceof WorldFidError) throw new UserError(e.message);
    throw e;
  } finally {
    bar.stop();
  }
  const seconds = Math.round(r.seconds.total * 10) / 10;
  if (o.json) {
    const { distance: _, ...rest } = r;
    process.stdout.write(
      `${JSON.stringify({ ...rest, generator, clip: clipFile, seconds, timings: r.seconds })}\n`,
    );
    return;
  }
  process.stdout.write(
    `FID ${r.fid.toFixed(4)} (mean ${r.meanTerm.toFixed(4)} + cov ${r.covTerm.toFixed(4)}) over ${r.count} generated (seeds ${r.seed}..${r.seed + r.count - 1}, psi ${r.truncation}) vs ${r.count} world faces (seeds ${r.dataSeeds[0]}..${r.dataSeeds[1]}), CLIP ${r.featureDim}-d features at ${r.clipResolution}px, ${seconds} s\n`,
  );
}

export function worldCommand(): Command {
  const world = new CliCommand('world').description(
    'the built-in world of cartoon faces: draw the dataset, train and measure its attribute classifier, measure a generator (FID)',
  );
  world
    .command('sample')
    .description('draw faces of the world (deterministic from the seed)')
    .option('--count <n>', 'number of faces', '16')
    .option('--seed <n>', 'first seed; face i uses seed + i', '0')
    .option('--size <px>', 'image side in pixels (the dataset is 64)', '64')
    .option('--grid', 'write all faces as one grid image')
    .option('--cols <n>', 'faces per grid row (default: a square grid)')
    .option(
      '--out <file>',
      'image file (.png/.jpg/.webp); several faces without --grid get _000, _001, ... (default world-sample.png unless --labels/--captions)',
    )
    .option('--labels', "print each face's attributes as JSON lines")
    .option('--captions', 'print a caption per face as JSON lines (with --labels: on the same line)')
    .option('--where <filters>', 'only faces with these attributes, e.g. hairColor=purple,glasses=none')
    .option(
      '--vary <family>',
      `one face drawn with every value of a family (${FAMILY_NAMES.join(', ')}); --count is ignored`,
    )
    .action(async (raw: Record<string, unknown>) => {
      await sample(parseFlags(SampleFlags, raw));
    });
  world
    .command('train-classifier')
    .description('train the attribute classifier on freshly drawn faces (resumable: run again to continue)')
    .option('--out-dir <dir>', 'checkpoint, log and result folder', join('.tmp', 'world', 'classifier'))
    .option('--steps <n>', 'optimizer steps', '8000')
    .option('--batch <n>', 'faces per step', '32')
    .option('--lr <x>', 'Adam learning rate (divided by 10 for the last quarter)', '0.001')
    .option('--seed <n>', 'weight initialization seed', '0')
    .option('--threads <n>', 'ONNX Runtime threads', '1')
    .option('--eval-count <n>', 'held-out faces measured at the end', '2000')
    .option('--eval-every <n>', 'also measure every n steps (0: only at the end)', '1000')
    .option('--save-every <n>', 'checkpoint every n steps', '100')
    .option('--log-every <n>', 'log the mean loss every n steps', '50')
    .option(
      '--release <file>',
      'copy the final float16 classifier here (e.g. models/world/classifier.safetensors)',
    )
    .action(async (raw: Record<string, unknown>) => {
      await trainCmd(parseFlags(TrainFlags, raw));
    });
  world
    .command('eval-classifier')
    .description('per-family accuracy of a classifier on held-out faces')
    .option('--classifier <file>', 'classifier .safetensors (default: the world one)')
    .option('--count <n>', 'held-out faces', '2000')
    .option('--threads <n>', 'ONNX Runtime threads')
    .action(async (raw: Record<string, unknown>) => {
      await evalCmd(parseFlags(EvalFlags, raw));
    });
  world
    .command('fid')
    .description(
      "Fréchet distance between generated and held-out world faces in the world CLIP's image features",
    )
    .option('--generator <file>', 'generator .pt/.pkl (default: the world one)')
    .option('--clip <file>', 'CLIP checkpoint (default: the world one)')
    .option('--count <n>', 'images on each side', '2000')
    .option('--seed <n>', 'generated image i uses z and noise of seed + i', '0')
    .option('--truncation <psi>', 'truncation towards the mean latent, 1 = none', '1')
    .option('--data-seed <n>', 'dataset image i is the held-out world face 2,000,000,000 + n + i', '0')
    .option('--batch <n>', 'images per generator / CLIP call', '64')
    .option('--json', 'print the result as one JSON object')
    .option('--threads <n>', 'ONNX Runtime threads')
    .action(async (raw: Record<string, unknown>) => {
      await fidCmd(parseFlags(FidFlags, raw));
    });
  return world;
}
