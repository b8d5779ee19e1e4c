/**
 * `styleclip mapper train` and `styleclip mapper apply`: StyleCLIP's latent mapper (method 2).
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { MapperApplier } from '../edit/mapper/apply.js';
import { loadMapper, rosinalityTensorsOf } from '../edit/mapper/checkpoint.js';
import { sampleLatents } from '../edit/mapper/data.js';
import { initMapperWeights, type MapperSpec, styleSpaceSpec, wplusSpec } from '../edit/mapper/model.js';
import { MapperTrainer } from '../edit/mapper/train.js';
import { writeImage } from '../io/image.js';
import { writeNpy } from '../io/npy.js';
import { loadArcFace } from '../models/arcface/load.js';
import { ClipEncoder } from '../models/clip/encoder.js';
import { loadClip } from '../models/clip/load.js';
import { tokenize } from '../models/clip/tokenizer.js';
import { LatentSet, readLatents } from '../models/stylegan2/latents.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { mapperSweepCommand } from '../queue/mapper.js';
import { worldModelPath } from '../world/models.js';
import {
  arcfaceUnits,
  CliCommand,
  checkOutputs,
  inputFile,
  int,
  interruptible,
  num,
  outputProblem,
  parseFlags,
  progressBar,
  UserError,
  writeOutputs,
} from './common.js';

// parseFlags names the flag before each message.
const existing = (_what: string) => inputFile('file', 'no such file');
const positiveInt = (what: string) =>
  int(what).refine((n) => n >= 1, { message: `${what} must be at least 1` });
const nonNegative = (what: string) => num(what).refine((n) => n >= 0, { message: `${what} must be >= 0` });
const IMAGE_EXT = ['.png', '.jpg', '.jpeg', '.webp'];
const imagePath = z
  .string({ message: 'an output image path is required' })
  .refine((p) => IMAGE_EXT.includes(extname(p).toLowerCase()), {
    message: 'must end in .png, .jpg, .jpeg or .webp',
  });
const npyPath = z
  .string()
  .refine((p) => extname(p).toLowerCase() === '.npy', { message: 'must end in .npy' });

const trainSchema = z.object({
  generator: existing('--generator'),
  clip: existing('--clip'),
  arcface: existing('--arcface').optional(),
  arcfaceUnits: arcfaceUnits.optional(),
  prompt: z.string({ message: 'a --prompt is required' }).min(1, 'must not be empty'),
  latentsTrain: existing('--latents-train').optional(),
  latentsTest: existing('--latents-test').optional(),
  mapperType: z.enum(['levels', 'single', 'stylespace']).default('levels'),
  coarse: z.boolean().default(true),
  medium: z.boolean().default(true),
  fine: z.boolean().default(true),
  steps: positiveInt('--steps').default(50000),
  batch: positiveInt('--batch').default(2),
  microBatch: positiveInt('--micro-batch').optional(),
  lr: num('--lr')
    .refine((n) => n > 0, { message: '--lr must be positive' })
    .default(0.5),
  optim: z.enum(['ranger', 'adam']).default('ranger'),
  clipLambda: nonNegative('--clip-lambda').default(1.0),
  l2Lambda: nonNegative('--l2-lambda').default(0.8),
  idLambda: nonNegative('--id-lambda').optional(),
  valInterval: positiveInt('--val-interval').default(2000),
  saveInterval: positiveInt('--save-interval').default(2000),
  imageInterval: positiveInt('--image-interval').default(100),
  logInterval: positiveInt('--log-interval').default(50),
  valSamples: positiveInt('--val-samples').default(200),
  trainSize: positiveInt('--train-size').default(5000),
  testSize: positiveInt('--test-size').default(1000),
  seed: int('--seed')
    .refine((n) => n >= 0 && n < 2 ** 31, { message: '--seed must be in [0, 2^31)' })
    .default(0),
  resume: existing('--resume').optional(),
  overwrite: z.boolean().default(false),
  out: z.string({ message: 'an output folder is required' }).min(1),
});

type TrainFlags = z.infer<typeof trainSchema>;

/**
 * An --out that holds an earlier run (checkpoints/ or logs/) is refused unless --resume continues it or
 * --overwrite replaces it: a new run would truncate its metrics and mix old iteration_N.pt files with new.
 */
function prepareOut(o: TrainFlags): void {
  const why = outputProblem(o.out, true);
  if (why) throw new UserError(`--out ${o.out}: ${why}`);
  const earlier = ['checkpoints', 'logs'].filter((d) => {
    const p = join(o.out, d);
    return existsSync(p) && statSync(p).isDirectory() && readdirSync(p).length > 0;
  });
  if (!earlier.length || o.resume) return;
  if (!o.overwrite) {
    const dir = join(o.out, 'checkpoints');
    const steps = existsSync(dir)
      ? readdirSync(dir)
          .flatMap((f) => /^iteration_(\d+)\.pt$/.exec(f)?.[1] ?? [])
          .map(Number)
      : [];
    const last = steps.length ? `iteration_${Math.max(...steps)}.pt` : 'iteration_N.pt';
    throw new UserError(
      `--out ${o.out} holds an earlier run (${earlier.join('/, ')}/): continue it with --resume ` +
        `${join(dir, last)}, replace it with --overwrite, or pick another --out`,
    );
  }
  for (const d of earlier) rmSync(join(o.out, d), { recursive: true, force: true });
  process.stderr.write(
    `styleclip: --overwrite: removed the earlier run's ${earlier.join('/, ')}/ in ${o.out}\n`,
  );
}

/** Flags that must match the checkpoint's `opts` on --resume (a resumed run is the same run). */
function checkResumeFlags(
  o: TrainFlags,
  opts: Record<string, unknown>,
  idLambda: number,
  spec: MapperSpec,
): void {
  const same = (a: unknown, b: unknown) =>
    typeof b === 'number' ? Math.abs(Number(a) - b) <= 1e-9 * Math.max(1, Math.abs(b)) : a === b;
  const checks: [flag: string, key: string, given: unknown, shown?: (v: unknown) => string][] = [
    ['--prompt', 'description', o.prompt, (v) => JSON.stringify(v)],
    ['--lr', 'learning_rate', o.lr],
    ['--optim', 'optim_name', o.optim],
    ['--batch', 'batch_size', o.batch],
    ['--clip-lambda', 'clip_lambda', o.clipLambda],
    ['--l2-lambda', 'latent_l2_lambda', o.l2Lambda],
    ['--id-lambda', 'id_lambda', idLambda],
  ];
  const bad: string[] = [];
  for (const [flag, key, given, show = String] of checks)
    if (given !== undefined && opts[key] !== undefined && !same(opts[key], given))
      bad.push(`${flag} ${show(given)} (the checkpoint has ${show(opts[key])})`);
  const type =
    spec.type === 'SingleMapper' ? 'single' : spec.type === 'LevelsMapper' ? 'levels' : 'stylespace';
  const ckType =
    opts.work_in_stylespace === true
      ? 'stylespace'
      : opts.mapper_type === 'SingleMapper'
        ? 'single'
        : 'levels';
  if (opts.mapper_type !== undefined && ckType !== type)
    bad.push(`--mapper-type ${type} (the checkpoint has ${ckType})`);
  if (bad.length)
    throw new UserError(
      `--resume ${o.resume}: these flags differ from the run being resumed: ${bad.join('; ')}. ` +
        "Pass the checkpoint's values (a resumed run continues the same training), or start a new run.",
    );
}

const applySchema = z
  .object({
    mapper: existing('--mapper'),
    generator: existing('--generator').optional(),
    latent: existing('--latent').optional(),
    seed: z
      .string()
      .regex(/^\d+(,\d+)*$/, 'one seed or a comma-separated list')
      .transform((s) => s.split(',').map(Number))
      .optional(),
    truncation: num('--truncation').default(0.7),
    strength: z
      .string()
      .regex(/^-?\d*\.?\d+(,-?\d*\.?\d+)*$/, 'a number or a comma-separated list of numbers')
      .transform((s) => s.split(',').map(Number))
      .default([1]),
    before: z.boolean().default(true),
    out: imagePath,
    outNpy: npyPath.optional(),
    saveLatent: npyPath.optional(),
  })
  .refine((o) => (o.latent === undefined) !== (o.seed === undefined), {
    message: 'give exactly one of --latent w.npy and --seed N',
    path: ['latent'],
  });

function specFor(
  type: string,
  o: { coarse: boolean; medium: boolean; fine: boolean },
  G: GeneratorWeights,
): MapperSpec {
  if (type === 'stylespace') return styleSpaceSpec(G.config.styleDims, G.config.styleIsToRGB);
  try {
    return wplusSpec({
      type: type === 'single' ? 'SingleMapper' : 'LevelsMapper',
      noCoarse: !o.coarse,
      noMedium: !o.medium,
      noFine: !o.fine,
      latentDim: G.config.styleDim,
    });
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

async function train(raw: unknown): Promise<void> {
  const o = parseFlags(trainSchema, raw);
  tokenize(o.prompt); // a too-long prompt fails here, before any model is loaded
  if (o.resume && o.overwrite)
    throw new UserError('--resume continues a run and --overwrite replaces one: give one');
  prepareOut(o);
  let idLambda = o.idLambda ?? 0.1;
  if (idLambda > 0 && !o.arcface) {
    if (o.idLambda !== undefined) throw new UserError('--id-lambda > 0 needs --arcface model_ir_se50.pth');
    process.stderr.write('styleclip: note: no --arcface given, so the ID loss is off (--id-lambda 0)\n');
    idLambda = 0;
  }
  const G = loadGenerator(o.generator);
  const spec = specFor(o.mapperType, o, G);
  const clip = loadClip(o.clip);
  const arcface = o.arcface ? loadArcFace(o.arcface, { stageUnits: o.arcfaceUnits }) : undefined;
  const textFeatures = await new ClipEncoder(clip).encodeTexts([o.prompt]);
  const { nLatent, styleDim } = G.config;
  const trainSet: LatentSet = o.latentsTrain
    ? readLatents(o.latentsTrain, nLatent, styleDim)
    : await sampleLatents(G, o.trainSize, o.seed * 2 + 1);
  const testSet: LatentSet = o.latentsTest
    ? readLatents(o.latentsTest, nLatent, styleDim)
    : await sampleLatents(G, o.testSize, o.seed * 2 + 2);
  if (o.microBatch !== undefined && o.batch % o.microBatch !== 0)
    throw new UserError(`--micro-batch ${o.microBatch} must divide --batch ${o.batch}`);
  if (trainSet.count < o.batch)
    throw new UserError(`${trainSet.count} training latent(s) cannot fill one batch of ${o.batch}`);

  let weights = initMapperWeights(spec, o.seed);
  let resumeState: unknown;
  if (o.resume) {
    const ck = loadMapper(o.resume, { withDecoder: false });
    if (!ck.trainState)
      throw new UserError(
        `${o.resume} has no training state; resume from a checkpoints/iteration_N.pt of a train run`,
      );
    checkResumeFlags(o, ck.opts as Record<string, unknown>, idLambda, spec);
    weights = ck.weights;
    resumeState = ck.trainState;
  }
  const trainer = await MapperTrainer.create(
    weights,
    {
      generator: G,
      clip,
      textFeatures,
      arcface,
      decoderTensors: rosinalityTensorsOf(o.generator) ?? undefined,
    },
    { train: trainSet, test: testSet },
    {
      outDir: o.out,
      prompt: o.prompt,
      steps: o.steps,
      batch: o.batch,
      microBatch: o.microBatch,
      lr: o.lr,
      optim: o.optim,
      lambdas: { clip: o.clipLambda, l2: o.l2Lambda, id: idLambda },
      valInterval: o.valInterval,
      saveInterval: o.saveInterval,
      imageInterval: o.imageInterval,
      logInterval: o.logInterval,
      valSamples: o.valSamples,
      seed: o.seed,
      opts: {
        stylegan_weights: o.generator,
        ir_se50_weights: o.arcface ?? '',
        latents_train_path: o.latentsTrain ?? null,
        latents_test_path: o.latentsTest ?? null,
        train_dataset_size: trainSet.count,
        test_dataset_size: testSet.count,
      },
    },
    resumeState,
  );
  if (trainer.step >= o.steps) {
    process.stderr.write(`styleclip: the checkpoint is already at step ${trainer.step} of ${o.steps}\n`);
    return;
  }
  const interrupt = interruptible(
    'styleclip: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)',
  );
  const bar = progressBar(o.steps, 'mapper', 'loss {loss}');
  bar.update(trainer.step, { loss: '-' });
  try {
    const r = await trainer.train({
      onStep: (i) => bar.update(i.step, { loss: i.losses.loss.toFixed(4) }),
      shouldStop: interrupt.requested,
    });
    bar.stop();
    // Exit 130 like any program stopped by Ctrl-C (as optimize and global precompute do).
    if (r.interrupted)
      throw new UserError(`interrupted at step ${r.step}; resume with --resume ${r.lastCheckpoint}`, 130);
    process.stderr.write(
      `styleclip: done, ${r.step} steps; best validation loss ${trainer.bestValLoss?.toFixed(4)} (${o.out}/checkpoints/best_model.pt)\n`,
    );
  } finally {
    bar.stop();
    interrupt.dispose();
  }
}

async function apply(raw: unknown): Promise<void> {
  const o = parseFlags(applySchema, raw);
  checkOutputs({ '--out': o.out, '--out-npy': o.outNpy, '--save-latent': o.saveLatent });
  const ck = loadMapper(o.mapper, { withDecoder: !o.generator });
  // A mapper-only file (the world's, `train export`'s) renders with the world generator when none is given.
  const fallback = ck.decoder ? null : worldModelPath('generator');
  const generator = o.generator ?? fallback;
  const G = generator ? loadGenerator(generator) : ck.decoder;
  if (!G) throw new UserError(`${o.mapper} is a mapper-only file (no decoder.* weights): pass --generator G`);
  const { nLatent, styleDim, size } = G.config;
  const latents = o.latent
    ? readLatents(o.latent, nLatent, styleDim)
    : await sampledFromSeeds(G, o.seed!, o.truncation);
  const ap = await MapperApplier.create(ck.weights, G, { batch: 1, before: o.before });
  const per = 3 * size * size;
  const cols = o.strength.length + (o.before ? 1 : 0);
  const grid = new Float32Array(latents.count * cols * per);
  const imgs = new Float32Array(latents.count * o.strength.length * per);
  const edited: Float32Array[] = [];
  let editedShape: number[] = [];
  for (let i = 0; i < latents.count; i++) {
    const w = latents.gather([i]);
    for (let j = 0; j < o.strength.length; j++) {
      const r = await ap.run(w, o.strength[j]);
      if (o.before && j === 0) grid.set(r.before!, i * cols * per);
      grid.set(r.image!, (i * cols + j + (o.before ? 1 : 0)) * per);
      imgs.set(r.image!, (i * o.strength.length + j) * per);
      edited.push(r.edited);
      editedShape = r.editedShape.slice(1);
    }
  }
  const n = latents.count * cols;
  // Every output is attempted; a failure is reported afterwards, naming the path.
  const writes: [string, () => unknown][] = [
    [o.out, () => writeImage(o.out, { dtype: 'float32', shape: [n, 3, size, size], data: grid }, { cols })],
  ];
  const { outNpy, saveLatent } = o;
  if (outNpy)
    writes.push([
      outNpy,
      () =>
        writeNpy(outNpy, {
          dtype: 'float32',
          shape: [latents.count * o.strength.length, 3, size, size],
          data: imgs,
        }),
    ]);
  if (saveLatent) {
    const all = new Float32Array(edited.reduce((a, e) => a + e.length, 0));
    let off = 0;
    for (const e of edited) {
      all.set(e, off);
      off += e.length;
    }
    writes.push([
      saveLatent,
      () => writeNpy(saveLatent, { dtype: 'float32', shape: [edited.length, ...editedShape], data: all }),
    ]);
  }
  await writeOutputs(writes);
  process.stderr.write(
    `styleclip: wrote ${o.out} (${latents.count} latent(s) × ${o.strength.length} strength(s))\n`,
  );
}

async function sampledFromSeeds(G: GeneratorWeights, seeds: number[], psi: number): Promise<LatentSet> {
  const sets = await Promise.all(seeds.map((s) => sampleLatents(G, 1, s, psi)));
  const d = G.config.styleDim;
  const data = new Float32Array(seeds.length * d);
  sets.forEach((s, i) => {
    data.set(s.data, i * d);
  });
  return new LatentSet(data, seeds.length, G.config.nLatent, d, true, `seeds ${seeds.join(',')}`);
}

export function mapperCommand(): Command {
  const cmd = new CliCommand('mapper').description('StyleCLIP latent mapper: train one per prompt, apply it');
  cmd
    .command('train')
    .description('train a mapper for a text prompt (loss: λ_CLIP·D_CLIP + λ_L2·MSE(w_hat, w) + λ_ID·L_ID)')
    .option(
      '--generator <file>',
      'StyleGAN2 generator (rosinality .pt, StyleCLIP mapper .pt with decoder, NVIDIA .pkl)',
    )
    .option('--clip <file>', 'CLIP ViT weights (OpenAI ViT-B-32.pt or HF safetensors)')
    .option('--arcface <file>', 'ArcFace IR-SE50 weights (model_ir_se50.pth) for the ID loss')
    .option('--arcface-units <list>', 'IR-SE units per stage when the weights cannot tell (e.g. 1,1,2,1)')
    .option('--prompt <text>', 'the driving text, e.g. "a person with purple hair"')
    .option('--latents-train <file>', 'training W+ latents [N, L, 512] (.pt as e4e train_faces.pt, or .npy)')
    .option('--latents-test <file>', 'validation W+ latents (test_faces.pt or .npy)')
    .option('--mapper-type <type>', 'levels | single | stylespace', 'levels')
    .option('--no-coarse', 'no coarse mapper (W+ rows 0-3 unchanged)')
    .option('--no-medium', 'no medium mapper (W+ rows 4-7 unchanged)')
    .option('--no-fine', 'no fine mapper (W+ rows 8+ unchanged)')
    .option('--steps <n>', 'optimizer steps', '50000')
    .option('--batch <n>', 'batch size', '2')
    .option('--micro-batch <n>', 'run each batch in chunks of n (less memory; default 1 above 256²)')
    .option('--lr <x>', 'learning rate', '0.5')
    .option('--optim <name>', 'ranger | adam', 'ranger')
    .option('--clip-lambda <x>', 'weight of the CLIP loss', '1.0')
    .option('--l2-lambda <x>', 'weight of the latent L2 loss', '0.8')
    .option('--id-lambda <x>', 'weight of the ID loss (default 0.1; 0 without --arcface)')
    .option('--val-interval <n>', 'validate every n steps', '2000')
    .option('--save-interval <n>', 'checkpoint every n steps', '2000')
    .option('--image-interval <n>', 'train image grid every n steps', '100')
    .option('--log-interval <n>', 'train metrics every n steps', '50')
    .option('--val-samples <n>', 'test latents per validation (at most)', '200')
    .option('--train-size <n>', 'sampled training latents when no --latents-train', '5000')
    .option('--test-size <n>', 'sampled test latents when no --latents-test', '1000')
    .option('--seed <n>', 'seed of the mapper init, the sampled latents and the batch order', '0')
    .option(
      '--resume <ckpt>',
      'continue from checkpoints/iteration_N.pt of an earlier run (with the same --prompt, --lr, λs, batch)',
    )
    .option('--overwrite', 'replace an earlier run in --out (its checkpoints/ and logs/ are deleted)')
    .option('--out <dir>', 'output directory (checkpoints/, logs/)')
    .action(async (opts) => train(opts));
  cmd
    .command('apply')
    .description('edit latents with a trained mapper: w_hat = w + 0.1·strength·M(w), rendered')
    .option('--mapper <file>', 'mapper checkpoint (official StyleCLIP .pt, or one of ours)')
    .option('--generator <file>', 'generator to render with (default: the checkpoint decoder)')
    .option('--latent <file>', 'W+ latents .npy/.pt: [N, L, 512], [L, 512] or w [N, 512]')
    .option('--seed <n>', 'sample the latent(s) from seed(s) instead, e.g. 3 or 1,2,3')
    .option('--truncation <psi>', 'truncation of sampled latents', '0.7')
    .option('--strength <k>', 'edit strength k (or a list: 0.5,1,1.5)', '1')
    .option('--no-before', 'leave the unedited image out of the grid')
    .option('--out <file>', 'grid image .png/.jpg: one row per latent, [before, edits...]')
    .option('--out-npy <file>', 'edited images as .npy [N·K, 3, S, S] (raw generator range)')
    .option('--save-latent <file>', 'edited latents w_hat as .npy [N·K, L, 512] (StyleSpace mappers: s_hat)')
    .action(async (opts) => apply(opts));
  cmd.addCommand(mapperSweepCommand(cmd.commands.find((c) => c.name() === 'train')!)); // src/queue/mapper.ts
  return cmd;
}
