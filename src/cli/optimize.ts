/**
 * `styleclip optimize`: StyleCLIP latent optimization (optimization/run_optimization.py) from the command
 * line. Writes, into --out: intermediate images every --save-every steps (`00000.jpg`, `00020.jpg`, …, as
 * the reference names them), `final.png`, `before_after.png`, `latent.npy` and `losses.jsonl`, and what
 * `--resume` needs: `start.npy` (the start latent, the L2 anchor) and `run.json` (step, Adam's moments, the
 * trainable tensors, the flags). Ctrl-C stops after the current step, keeps what is written and saves the
 * latent and state reached so far.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import {
  LatentOptimizer,
  meanWPlus,
  type OptimizationSnapshot,
  type OptimizeMode,
  type OptimizeSpace,
  promptFeatures,
  runOptimization,
  seedLatent,
} from '../edit/optimize.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeImage } from '../io/image.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { toFloat32 } from '../io/tensor.js';
import { loadArcFace } from '../models/arcface/load.js';
import { loadClip } from '../models/clip/load.js';
import { TextTooLongError, tokenize } from '../models/clip/tokenizer.js';
import { readLatents } from '../models/stylegan2/latents.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
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

const file = (what: string) => inputFile(what);

// A missing folder is created when the file is written (the same rule in every command).
const outFile = (ext: RegExp, what: string) => z.string().regex(ext, `must end in ${what}`);

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
    resume: z.boolean().default(false),
  })
  .superRefine((o, ctx) => {
    if (o.resume && (o.latent !== undefined || o.seed !== undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['resume'],
        message: 'continues from the start latent saved in --out (start.npy); leave out --latent and --seed',
      });
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
  if (o.resume) {
    const { nLatent: L, styleDim: D } = generator.config;
    start = toFloat32(readNpy(join(o.out, START_FILE))).data;
    if (start.length !== L * D)
      throw new UserError(
        `${join(o.out, START_FILE)} holds ${start.length} values, not a W+ [1, ${L}, ${D}] of this generator: was the run made with another --generator?`,
      );
    from = `the start saved in ${join(o.out, START_FILE)}`;
  } else if (o.latent) {
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

const START_FILE = 'start.npy';
const STATE_FILE = 'run.json';
const STATE_FORMAT = 'styleclip-ts/optimize/1';

/** run.json: the flags that shape the run, and its resumable state. */
interface RunFile {
  format: typeof STATE_FORMAT;
  prompt: string;
  mode: string;
  space: string;
  steps: number;
  lr: number;
  l2Lambda: number;
  idLambda: number;
  snapshot: OptimizationSnapshot;
}

/** Reads --out's run.json for --resume and refuses flags that differ from the run's. */
function readRunFile(o: Flags): RunFile {
  const f = join(o.out, STATE_FILE);
  if (!existsSync(f) || !existsSync(join(o.out, START_FILE)))
    throw new UserError(
      `--resume: ${o.out} holds no run to continue (${STATE_FILE} and ${START_FILE} are written as a run goes)`,
    );
  let r: RunFile;
  try {
    r = JSON.parse(readFileSync(f, 'utf8')) as RunFile;
  } catch (e) {
    throw new UserError(`--resume: ${f} is not readable JSON (${(e as Error).message})`, 1);
  }
  if (r?.format !== STATE_FORMAT || !r.snapshot)
    throw new UserError(`--resume: ${f} is not the state of a \`styleclip optimize\` run`, 1);
  const checks: [string, unknown, unknown][] = [
    ['--prompt', o.prompt, r.prompt],
    ['--mode', o.mode, r.mode],
    ['--space', o.space, r.space],
    ['--steps', o.steps, r.steps],
    ['--lr', o.lr, r.lr],
    ['--l2-lambda', o.l2Lambda, r.l2Lambda],
    ['--id-lambda', o.idLambda, r.idLambda],
  ];
  const bad = checks
    .filter(([, a, b]) => a !== b)
    .map(([flag, a, b]) => `${flag} ${JSON.stringify(a)} (the run has ${JSON.stringify(b)})`);
  if (bad.length)
    throw new UserError(
      `--resume: these flags differ from the run in ${o.out}: ${bad.join('; ')}. Pass the run's values ` +
        '(the learning-rate ramp and the losses depend on them), or start a new run in another --out.',
    );
  return r;
}

async function optimizeAction(o: Flags): Promise<void> {
  try {
    tokenize([o.prompt]);
  } catch (e) {
    if (e instanceof TextTooLongError)
      throw new UserError(`--prompt: ${e.message.replace(/; shorten it or truncate it$/, '; shorten it')}`);
    throw e;
  }
  // Every output is checked before the models load: a bad path must not cost the whole run.
  const outWhy = outputProblem(o.out, true);
  if (outWhy) throw new UserError(`--out ${o.out}: ${outWhy}`);
  checkOutputs({ '--out-npy': o.outNpy, '--save-latent': o.saveLatent });
  const saved = o.resume ? readRunFile(o) : null;
  const { opt, start, from, text, S } = await prepare(o);
  mkdirSync(o.out, { recursive: true });
  const logFile = join(o.out, 'losses.jsonl');
  const run = await opt.start(start, text);
  if (saved) {
    await run.evaluate(); // the initial image (and ID target) come from the start latent
    try {
      run.restore(saved.snapshot);
    } catch (e) {
      throw new UserError(
        `--resume: ${join(o.out, STATE_FILE)} does not fit this run: ${(e as Error).message}`,
        1,
      );
    }
    // Losses of steps after the saved state are logged again.
    const kept = existsSync(logFile)
      ? readFileSync(logFile, 'utf8')
          .split('\n')
          .filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step < run.stepsDone)
      : [];
    writeFileSync(logFile, kept.map((l) => `${l}\n`).join(''));
  } else {
    writeFileSync(logFile, '');
    writeNpy(join(o.out, START_FILE), {
      dtype: 'float32',
      shape: [1, opt.generator.config.nLatent, opt.generator.config.styleDim],
      data: start,
    });
  }
  const runFile = (): RunFile => ({
    format: STATE_FORMAT,
    prompt: o.prompt,
    mode: o.mode,
    space: o.space,
    steps: o.steps,
    lr: o.lr,
    l2Lambda: o.l2Lambda,
    idLambda: o.idLambda,
    snapshot: run.snapshot(),
  });
  const stateFile = join(o.out, STATE_FILE);
  const saveState = () => writeFileAtomic(stateFile, new TextEncoder().encode(JSON.stringify(runFile())));
  process.stderr.write(
    `optimizing ${o.mode === 'edit' ? 'an edit' : 'a free generation'} in ${o.space === 's' ? 'StyleSpace' : 'W+'} from ${from}: ` +
      `"${o.prompt}", ${o.steps} steps${saved ? `, resuming after step ${run.stepsDone}` : ''}\n`,
  );

  const interrupt = interruptible('stopping after this step (Ctrl-C again to quit at once)…');
  const img = (data: Float32Array) => ({ dtype: 'float32' as const, shape: [1, 3, S, S], data });
  const bar = progressBar(o.steps, 'optimize', 'loss {loss} | clip {clip} | l2 {l2} | id {id}');
  bar.update(run.stepsDone);
  let result: Awaited<ReturnType<typeof runOptimization>>;
  try {
    result = await runOptimization(run, {
      every: o.saveEvery,
      onIntermediate: async (i, image) => {
        await writeImage(join(o.out, `${String(i).padStart(5, '0')}.jpg`), img(image));
        saveState(); // a crash loses at most the steps since the last intermediate image
      },
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
  const latent = { dtype: 'float32' as const, ...result.latent };
  // Each output is written even when another fails; a failure names the user's path afterwards.
  const writes: [string, () => unknown][] = [
    [latentFile, () => writeNpy(latentFile, latent)],
    [stateFile, saveState],
  ];
  const { saveLatent, outNpy } = o;
  if (saveLatent) writes.push([saveLatent, () => writeNpy(saveLatent, latent)]);
  const kind = o.space === 's' ? 'StyleSpace codes (all layers, concatenated)' : 'W+ latent';
  if (result.stopped) {
    await opt.release();
    await writeOutputs(writes);
    // Exit 130 like any program stopped by Ctrl-C, after saying what is kept and where.
    throw new UserError(
      `interrupted after ${result.steps} of ${o.steps} steps; kept in ${o.out}: losses.jsonl, the intermediate ` +
        `images, and the ${kind} reached so far in ${latentFile}${o.saveLatent ? ` and ${o.saveLatent}` : ''}; ` +
        'continue with the same command and --resume',
      130,
    );
  }
  const final = result.final!;
  const finalFile = join(o.out, 'final.png');
  writes.push([finalFile, () => writeImage(finalFile, img(final.image))]);
  const initial = result.initialImage;
  if (initial) {
    const ba = join(o.out, 'before_after.png');
    writes.push([
      ba,
      () => writeImage(ba, { dtype: 'float32', shape: [2, 3, S, S], data: concat(initial, final.image) }),
    ]);
  }
  if (outNpy) writes.push([outNpy, () => writeNpy(outNpy, img(final.image))]);
  await opt.release();
  await writeOutputs(writes);
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
  return new CliCommand('optimize')
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
    .option(
      '--resume',
      'continue the run saved in --out (start.npy, run.json: step, Adam state, latent) with the same flags',
    )
    .action(async (raw: Record<string, unknown>) => {
      await optimizeAction(parseFlags(Flags, raw));
    });
}
