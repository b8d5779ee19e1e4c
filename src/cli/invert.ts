/**
 * `styleclip invert`: a photo to a W+ latent. Aligns the face (--align: face-api's detector and 68
 * landmarks, then FFHQ's align_face at the generator's size), encodes it with e4e (--encoder) and/or
 * inverts it by optimization (--steps), and writes the W+ latent (.npy [1, L, D], which every command
 * reads), `<stem>_aligned.png` and `<stem>.png` (the aligned crop and the reconstruction side by side).
 * Prints the reconstruction's PSNR, and with --arcface the identity similarity. Ctrl-C stops after the
 * current step and keeps the latent reached so far.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, parse, resolve } from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { ImageError, rgbToSigned } from '../align/index.js';
import { type InvertPhotoResult, invertPhoto } from '../edit/invert-photo.js';
import { writeImage } from '../io/image.js';
import { writeNpy } from '../io/npy.js';
import { loadArcFace } from '../models/arcface/load.js';
import { loadClip } from '../models/clip/load.js';
import { loadE4e } from '../models/e4e/load.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import { arcfaceUnits, int, interruptible, num, parseFlags, progressBar, UserError } from './common.js';

/** The images written beside the latent: `<stem>_aligned.png` and `<stem>.png`. */
function sideFiles(out: string): { aligned: string; pair: string } {
  const { dir, name } = parse(out);
  return { aligned: join(dir, `${name}_aligned.png`), pair: join(dir, `${name}.png`) };
}

const file = (what: string) =>
  z
    .string()
    .min(1)
    .refine((f) => existsSync(f) && statSync(f).isFile(), { message: `${what} not found` });

const Flags = z
  .object({
    photo: file('photo'),
    align: z.boolean().default(false),
    face: int('--face').pipe(z.number().min(1)).optional(),
    generator: file('generator checkpoint').optional(),
    encoder: file('e4e checkpoint').optional(),
    steps: int('--steps').pipe(z.number().min(0).max(100_000)).optional(),
    space: z.enum(['w', 'w+']).default('w+'),
    lr: num('--lr').pipe(z.number().gt(0)).default(0.1),
    mseLambda: num('--mse-lambda').pipe(z.number().min(0)).default(1),
    clipLambda: num('--clip-lambda').pipe(z.number().min(0)).default(0.5),
    clip: file('CLIP checkpoint').optional(),
    noise: z.boolean().default(false),
    latentNoise: num('--latent-noise').pipe(z.number().min(0)).default(0),
    arcface: file('ArcFace weights').optional(),
    arcfaceUnits: arcfaceUnits.optional(),
    out: z
      .string()
      .regex(/\.npy$/, 'must end in .npy')
      .refine((f) => existsSync(dirname(f) || '.'), { message: 'its folder does not exist' }),
  })
  .superRefine((o, ctx) => {
    if (!o.generator && !o.encoder)
      ctx.addIssue({
        code: 'custom',
        path: ['generator'],
        message: 'give --generator, or --encoder (its decoder is used)',
      });
    if (o.steps === 0 && !o.encoder)
      ctx.addIssue({
        code: 'custom',
        path: ['steps'],
        message: '--steps 0 needs --encoder (nothing else gives a latent)',
      });
    if (o.face !== undefined && !o.align)
      ctx.addIssue({ code: 'custom', path: ['face'], message: '--face picks a face to align: add --align' });
    // `--photo face.png --out face.npy` would write the pair image over the photo itself.
    const side = sideFiles(o.out);
    const clash = [side.pair, side.aligned].find((f) => resolve(f) === resolve(o.photo));
    if (clash)
      ctx.addIssue({
        code: 'custom',
        path: ['out'],
        message: `it would write ${clash} over the photo; give the latent another name (e.g. ${join(dirname(o.out), `${parse(o.out).name}_w.npy`)})`,
      });
  });

type Flags = z.infer<typeof Flags>;

const fmt = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(4));

async function invertAction(o: Flags): Promise<void> {
  const encoder = o.encoder ? loadE4e(o.encoder, { stageUnits: o.arcfaceUnits }) : undefined;
  const generator = o.generator ? loadGenerator(o.generator) : encoder!.decoder;
  const S = generator.config.size;
  if (o.clipLambda > 0 && !o.clip && (o.steps ?? (encoder ? 0 : 300)) > 0)
    process.stderr.write('no --clip: the perceptual (CLIP image feature) term is off; pixel loss only\n');
  const clip = o.clip && o.clipLambda > 0 ? loadClip(o.clip) : undefined;
  const arcface = o.arcface ? loadArcFace(o.arcface, { stageUnits: o.arcfaceUnits }) : undefined;
  const steps = o.steps ?? (encoder ? 0 : 300);

  const interrupt = interruptible('stopping after this step (Ctrl-C again to quit at once)…');
  const bar = steps > 0 ? progressBar(steps, 'invert', 'loss {loss} | mse {mse} | clip {clip}') : undefined;
  let r: InvertPhotoResult;
  try {
    r = await invertPhoto(o.photo, {
      generator,
      align: o.align,
      face: o.face,
      encoder,
      clip,
      arcface,
      invert: {
        steps,
        space: o.space,
        lr: o.lr,
        mseLambda: o.mseLambda,
        clipLambda: clip ? o.clipLambda : 0,
        noise: o.noise,
        latentNoise: o.latentNoise,
      },
      onStage: (stage, detail) => {
        const what = {
          align: 'aligning the face',
          encode: 'encoding (e4e)',
          optimize: 'optimizing',
          render: 'rendering',
        };
        process.stderr.write(`${what[stage]}${detail ? ` (${detail})` : ''}…\n`);
      },
      onStep: (s) => bar?.update(s.step + 1, { loss: fmt(s.loss), mse: fmt(s.mse), clip: fmt(s.clip) }),
      shouldStop: interrupt.requested,
    });
  } catch (e) {
    if (e instanceof ImageError) throw new UserError(`${o.photo}: ${e.message}`, 1);
    if (e instanceof RangeError) throw new UserError(e.message);
    throw e;
  } finally {
    bar?.stop();
    interrupt.dispose();
  }

  const { nLatent: L, styleDim: D } = generator.config;
  writeNpy(o.out, { dtype: 'float32', shape: [1, L, D], data: r.wplus });
  const { aligned: alignedFile, pair: pairFile } = sideFiles(o.out);
  const crop = rgbToSigned(r.aligned);
  await writeImage(alignedFile, { dtype: 'float32', shape: [1, 3, S, S], data: crop });
  const pair = new Float32Array(2 * 3 * S * S);
  pair.set(crop);
  pair.set(r.image, 3 * S * S);
  await writeImage(pairFile, { dtype: 'float32', shape: [2, 3, S, S], data: pair });
  if (r.stopped)
    throw new UserError(
      `interrupted after ${r.steps} of ${steps} steps; kept the W+ reached so far in ${o.out}, and ${pairFile}`,
      130,
    );
  process.stdout.write(
    `PSNR ${r.psnr.toFixed(2)} dB${r.idSimilarity !== undefined ? `, identity similarity ${r.idSimilarity.toFixed(4)}` : ''}\n` +
      `wrote ${o.out} (W+ [1, ${L}, ${D}]), ${alignedFile}, ${pairFile} (aligned crop | reconstruction)\n`,
  );
}

export function invertCommand(): Command {
  return new Command('invert')
    .description('invert a photo into the generator: align the face, encode (e4e) and/or optimize, write W+')
    .requiredOption('--photo <file>', 'the photo (JPEG, PNG, WebP)')
    .option(
      '--align',
      'detect the face and FFHQ-align it (as e4e/StyleCLIP do); without it the centre square is used (right for images already framed like the training set, e.g. world faces)',
    )
    .option('--face <n>', 'which face to align when the photo has several (1 = leftmost)')
    .option(
      '--generator <file>',
      'StyleGAN2 generator (rosinality .pt, mapper .pt or NVIDIA .pkl); default: the e4e decoder',
    )
    .option(
      '--encoder <file>',
      'e4e checkpoint (e4e_ffhq_encode.pt): its W+ is the result, or the start with --steps',
    )
    .option('--steps <n>', 'optimization steps (default 300, or 0 with --encoder)')
    .option('--space <space>', 'optimize one w for every layer (w) or a W+ latent (w+)', 'w+')
    .option('--lr <x>', 'peak learning rate', '0.1')
    .option('--mse-lambda <x>', 'weight of the pixel MSE', '1')
    .option('--clip-lambda <x>', 'weight of the CLIP image-feature distance (needs --clip)', '0.5')
    .option('--clip <file>', 'CLIP ViT checkpoint, for the perceptual term')
    .option(
      '--noise',
      "also optimize the noise maps (sharper reconstruction here; the saved W+ renders with the checkpoint's noise)",
    )
    .option(
      '--latent-noise <x>',
      "noise on the latent fed to G, as a fraction of the latents' spread, fading out by 75 % of the steps (projector.py: 0.05)",
      '0',
    )
    .option(
      '--arcface <file>',
      'ArcFace IR-SE50 weights: print the identity similarity of the reconstruction',
    )
    .option('--arcface-units <list>', 'units per IR-SE stage when the weights cannot tell (e.g. 1,1,2,1)')
    .requiredOption('--out <file.npy>', 'the W+ latent; <stem>_aligned.png and <stem>.png go beside it')
    .action(async (raw: Record<string, unknown>) => {
      await invertAction(parseFlags(Flags, raw));
    });
}
