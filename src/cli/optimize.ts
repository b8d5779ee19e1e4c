/**
 * `styleclip optimize`: StyleCLIP latent optimization (optimization/run_optimization.py) from the command
 * line. Writes, into --out: intermediate images every --save-every steps (`00000.jpg`, `00020.jpg`, …, as
 * the reference names them), `final.png`, `before_after.png`, `latent.npy` and `losses.jsonl`. Ctrl-C stops
 * after the current step, keeps what is written and saves the latent reached so far.
 */
import { appendFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import {
  LatentOptimizer,
  meanWPlus,
  type OptimizeMode,
  type OptimizeSpace,
  promptFeatures,
  runOptimization,
  seedLatent,
} from '../edit/optimize.js';
import { writeImage } from '../io/image.js';
import { writeNpy } from '../io/npy.js';
import { loadArcFace } from '../models/arcface/load.js';
import { loadClip } from '../models/clip/load.js';
import { TextTooLongError, tokenize } from '../models/clip/tokenizer.js';
import { readLatents } from '../models/stylegan2/latents.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { arcfaceUnits, int, interruptible, num, parseFlags, progressBar, UserError } from './common.js';

const file = (what: string) =>
  z
    .string()
    .min(1)
    .refine((f) => existsSync(f) && statSync(f).isFile(), { message: `${what} not found` });

const outFile = (ext: RegExp, what: string) =>
  z
    .string()
    .regex(ext, `must end in ${what}`)
    .refine((f) => existsSync(dirname(f) || '.'), { message: 'its folder does not exist' });

const Flags = z
  .object({
    generator: file('generator checkpoint'),
    clip: file('CLIP checkpoint'),
    prompt: z.string().trim().min(1, 'the prompt must not be empty'),
    latent: file('latent file').optional(),
    latentIndex: int('--latent-index').pipe(z.number().min(0)).default(0),
    seed: int('--seed')
      .pipe(
        z
          .number()
          .min(0)
          .max(2 ** 32 - 1),
      )
      .optional(),
    truncation: num('--truncation').pipe(z.number().min(0).max(1)).default(0.7),
    mode: z.enum(['edit', 'free']).default('edit'),
    space: z.enum(['w+', 's']).default('w+'),
    steps: int('--steps').pipe(z.number().min(1).max(100_000)).default(300),
    lr: num('--lr').pipe(z.number().gt(0)).default(0.1),
    l2Lambda: num('--l2-lambda').pipe(z.number().min(0)).default(0.008),
    idLambda: num('--id-lambda').pipe(z.number().min(0)).default(0),
    arcface: file('ArcFace weights').optional(),
    arcfaceUnits: arcfaceUnits.optional(),
    saveEvery: int('--save-every').pipe(z.number().min(0)).default(20),
    out: z.string().min(1),
    outNpy: outFile(/\.npy$/, '.npy').optional(),
    saveLatent: outFile(/\.npy$/, '.npy').optional(),
  })
  .superRefine((o, ctx) => {
    if (o.latent !== undefined && o.seed !== undefined)
      ctx.addIssue({ code: 'custom', path: ['seed'], message: 'give --latent or --seed, not both' });
    if (o.idLambda > 0 && o.mode === 'free')
      ctx.addIssue({ code: 'custom', path: ['idLambda'], message: 'the ID loss applies in edit mode only' });
    if (o.idLambda > 0 && !o.arcface)
      ctx.addIssue({
        code: 'custom',
        path: ['arcface'],
        message: '--id-lambda > 0 needs the IR-SE50 weights (model_ir_se50.pth)',
      });
    if (existsSync(o.out) && !statSync(o.out).isDirectory())
      ctx.addIssue({ code: 'custom', path: ['out'], message: `${o.out} exists and is not a folder` });
  });

type Flags = z.infer<typeof Flags>;

/** The W+ start [1, L, D]: latent `index` of a latent file (see readLatents; a w is used on every layer). */
export function readStartLatent(path: string, index: number, W: GeneratorWeights): Float32Array {
  const lat = readLatents(path, W.config.nLatent, W.config.styleDim);
  if (index >= lat.count)
    throw new UserError(`${path} holds ${lat.count} latents; --latent-index ${index} is out of range`);
  return lat.gather([index]);
}

const fmt = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(4));

/**
 * Loads the models, picks the start and compiles the step graph. CLIP's and ArcFace's host weights are
 * only referenced from this frame, so they are garbage once it returns (the session holds its own copy).
 */
async function prepare(o: Flags) {
  const generator = loadGenerator(o.generator);
  const S = generator.config.size;
  if (S < 32) throw new UserError(`the generator makes ${S}² images; the CLIP loss needs at least 32²`);
  let start: Float32Array;
  let from: string;
  if (o.latent) {
    start = readStartLatent(o.latent, o.latentIndex, generator);
    from = `${o.latent}${o.latentIndex ? ` [${o.latentIndex}]` : ''}`;
  } else if (o.seed !== undefined || o.mode === 'edit') {
    const seed = o.seed ?? 0;
    start = await seedLatent(generator, seed, o.truncation);
    from = `seed ${seed} (truncation ${o.truncation})`;
  } else {
    start = await meanWPlus(generator);
    from = 'the mean latent';
  }
  const clip = loadClip(o.clip);
  const arcface = o.idLambda > 0 ? loadArcFace(o.arcface!, { stageUnits: o.arcfaceUnits }) : undefined;
  const text = await promptFeatures(clip, o.prompt);
  const opt = await LatentOptimizer.create(
    { generator, clip, arcface },
    {
      mode: o.mode as OptimizeMode,
      space: o.space as OptimizeSpace,
      steps: o.steps,
      lr: o.lr,
      l2Lambda: o.l2Lambda,
      idLambda: o.idLambda,
    },
  );
  return { opt, start, from, text, S };
}

async function optimizeAction(o: Flags): Promise<void> {
  try {
    tokenize([o.prompt]);
  } catch (e) {
    if (e instanceof TextTooLongError) throw new UserError(`--prompt: ${e.message}`);
    throw e;
  }
  const { opt, start, from, text, S } = await prepare(o);
  mkdirSync(o.out, { recursive: true });
  const logFile = join(o.out, 'losses.jsonl');
  writeFileSync(logFile, '');
  const run = await opt.start(start, text);
  process.stderr.write(
    `optimizing ${o.mode === 'edit' ? 'an edit' : 'a free generation'} in ${o.space === 's' ? 'StyleSpace' : 'W+'} from ${from}: ` +
      `"${o.prompt}", ${o.steps} steps\n`,
  );

  const interrupt = interruptible('stopping after this step (Ctrl-C again to quit at once)…');
  const img = (data: Float32Array) => ({ dtype: 'float32' as const, shape: [1, 3, S, S], data });
  const bar = progressBar(o.steps, 'optimize', 'loss {loss} | clip {clip} | l2 {l2} | id {id}');
  let result: Awaited<ReturnType<typeof runOptimization>>;
  try {
    result = await runOptimization(run, {
      every: o.saveEvery,
      onIntermediate: (i, image) => writeImage(join(o.out, `${String(i).padStart(5, '0')}.jpg`), img(image)),
      onStep: (r) => {
        appendFileSync(
          logFile,
          `${JSON.stringify({ step: r.step, lr: r.lr, loss: r.loss, clip: r.clip, l2: r.l2, id: r.id })}\n`,
        );
        bar.update(r.step + 1, { loss: fmt(r.loss), clip: fmt(r.clip), l2: fmt(r.l2), id: fmt(r.id) });
      },
      shouldStop: interrupt.requested,
    });
  } finally {
    bar.stop();
    interrupt.dispose();
  }

  const latentFile = join(o.out, 'latent.npy');
  writeNpy(latentFile, { dtype: 'float32', ...result.latent });
  if (o.saveLatent) writeNpy(o.saveLatent, { dtype: 'float32', ...result.latent });
  const kind = o.space === 's' ? 'StyleSpace codes (all layers, concatenated)' : 'W+ latent';
  if (result.stopped) {
    await opt.release();
    // Exit 130 like any program stopped by Ctrl-C, after saying what is kept and where.
    throw new UserError(
      `interrupted after ${result.steps} of ${o.steps} steps; kept in ${o.out}: losses.jsonl, the intermediate ` +
        `images, and the ${kind} reached so far in ${latentFile}${o.saveLatent ? ` and ${o.saveLatent}` : ''}`,
      130,
    );
  }
  const final = result.final!;
  await writeImage(join(o.out, 'final.png'), img(final.image));
  if (result.initialImage)
    await writeImage(join(o.out, 'before_after.png'), {
      dtype: 'float32',
      shape: [2, 3, S, S],
      data: concat(result.initialImage, final.image),
    });
  if (o.outNpy) writeNpy(o.outNpy, img(final.image));
  await opt.release();
  process.stdout.write(
    `final loss ${fmt(final.loss)} (clip ${fmt(final.clip)}, l2 ${fmt(final.l2)}, id ${fmt(final.id)})\n` +
      `wrote ${join(o.out, 'final.png')}, before_after.png, latent.npy (${kind}), losses.jsonl` +
      `${o.saveEvery > 0 ? ', intermediate images' : ''}${o.outNpy ? `, ${o.outNpy}` : ''}${o.saveLatent ? `, ${o.saveLatent}` : ''}\n`,
  );
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

export function optimizeCommand(): Command {
  return new Command('optimize')
    .description(
      'edit (or freely generate) an image by optimizing its latent towards a text prompt (StyleCLIP)',
    )
    .requiredOption(
      '--generator <file>',
      'StyleGAN2 generator: rosinality .pt, StyleCLIP mapper .pt or NVIDIA .pkl',
    )
    .requiredOption(
      '--clip <file>',
      "CLIP ViT checkpoint: OpenAI's ViT-B-32.pt or Hugging Face model.safetensors",
    )
    .requiredOption('--prompt <text>', 'the text that guides the edit, e.g. "a person with purple hair"')
    .option(
      '--latent <file>',
      'start from this latent (.npy or torch .pt): W+ [L, 512], [N, L, 512] or w [512]',
    )
    .option('--latent-index <n>', 'which latent of a batch file to start from', '0')
    .option(
      '--seed <n>',
      'start from a random latent: z from numpy RandomState(seed), truncated (edit mode: default 0)',
    )
    .option('--truncation <psi>', 'truncation of the seed latent towards the mean latent', '0.7')
    .option('--mode <mode>', 'edit (CLIP + L2 + ID) or free (CLIP only, from the mean latent)', 'edit')
    .option('--space <space>', 'optimize the W+ latent (w+) or the non-toRGB StyleSpace codes (s)', 'w+')
    .option('--steps <n>', 'optimization steps', '300')
    .option('--lr <x>', 'peak learning rate of the cosine ramp', '0.1')
    .option('--l2-lambda <x>', 'weight of ‖latent − start‖² (edit mode)', '0.008')
    .option('--id-lambda <x>', 'weight of the ArcFace identity loss (edit mode; needs --arcface)', '0')
    .option('--arcface <file>', 'ArcFace IR-SE50 weights (model_ir_se50.pth) for the identity loss')
    .option('--arcface-units <list>', 'units per IR-SE stage when the weights cannot tell (e.g. 1,1,2,1)')
    .option('--save-every <n>', 'save the image every n steps (0: never)', '20')
    .requiredOption('--out <dir>', 'folder for the images, latent.npy and losses.jsonl')
    .option('--out-npy <file>', 'also save the final image as raw NCHW float32 .npy')
    .option('--save-latent <file>', 'also save the final latent (.npy) here')
    .action(async (raw: Record<string, unknown>) => {
      await optimizeAction(parseFlags(Flags, raw));
    });
}
