/**
 * `styleclip train export <checkpoint> --out generator.pt [--half]`: the generator a training run ships.
 * A training checkpoint holds g, d, g_ema and both Adam states (74 MB for the world's 64² model); what every
 * other command needs is `g_ema` and the mean latent, as e4e and StyleCLIP store it (`latent_avg`). The
 * mean is that of mapping(z) over `--mean-samples` seeded z, as rosinality's `mean_latent`. With `--half`
 * the weights are stored in float16 (the loaders widen them to float32); the mean stays float32.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { float32ToHalf, type Tensor } from '../io/tensor.js';
import { loadTorch } from '../io/torch.js';
import { saveTorch } from '../io/torch-write.js';
import { StyleGAN2 } from '../models/stylegan2/generator.js';
import { CliCommand, inputFile, int, parseFlags, UserError } from './common.js';

const schema = z.object({
  out: z.string({ error: 'is required (the generator file to write)' }).min(1),
  half: z.boolean().optional(),
  meanSamples: int('--mean-samples').pipe(z.number().min(1)),
  seed: int('--seed'),
});

function toHalf(t: Tensor): Tensor {
  const src = t.data as Float32Array;
  const bits = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = float32ToHalf(src[i]);
  return { dtype: 'float16', shape: t.shape, data: bits };
}

async function exportGenerator(file: string, opts: unknown): Promise<void> {
  const o = parseFlags(schema, opts);
  const checked = inputFile('checkpoint', 'checkpoint not found').safeParse(file);
  if (!checked.success) throw new UserError(checked.error.issues[0].message, 2);
  const path = checked.data;
  const tensors = loadTorch(path).tensors;
  const gEma = new Map<string, Tensor>();
  for (const [k, t] of tensors)
    if (k.startsWith('g_ema.')) gEma.set(k.slice('g_ema.'.length), o.half ? toHalf(t) : t);
  if (gEma.size === 0)
    throw new UserError(
      `${path} has no g_ema: give a training checkpoint (styleclip train gan, or rosinality's)`,
      1,
    );
  // The same load path as every command, so a file that would not load is refused here.
  const G = StyleGAN2.load(path);
  const mean = await G.meanLatent(o.meanSamples, o.seed);
  if (existsSync(o.out)) process.stderr.write(`styleclip: replacing ${o.out}\n`);
  saveTorch(o.out, { g_ema: gEma, latent_avg: { dtype: 'float32', shape: [mean.length], data: mean } });
  const c = G.config;
  process.stderr.write(
    `styleclip: wrote ${o.out}: ${c.size}² generator, ${gEma.size} tensors${o.half ? ' in float16' : ''}, ` +
      `latent_avg from ${o.meanSamples} samples (seed ${o.seed})\n`,
  );
}

export function trainExportCommand(): Command {
  return new CliCommand('export')
    .description(
      "write a training checkpoint's g_ema and mean latent as a generator file every command loads",
    )
    .argument('<checkpoint>', 'a checkpoint of styleclip train gan (or of rosinality train.py)')
    .option('--out <file>', 'the generator file to write (g_ema + latent_avg)')
    .option('--half', 'store the weights in float16 (half the size; loaders widen them)')
    .option('--mean-samples <n>', 'z samples for the mean latent', '4096')
    .option('--seed <n>', 'seed of those samples', '0')
    .action(exportGenerator);
}
