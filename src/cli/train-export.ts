/**
 * `styleclip train export <checkpoint> --out FILE [--half]`: what a training run ships, without its
 * optimizer state and the parts only training needs.
 *
 * - a GAN checkpoint (`g_ema.*`; 74 MB for the world's 64² model): `g_ema` and the mean latent, as e4e and
 *   StyleCLIP store it (`latent_avg`), the mean of mapping(z) over `--mean-samples` seeded z (rosinality's
 *   `mean_latent`); what `--generator` takes;
 * - a CLIP checkpoint of `train clip` (`state_dict.visual.*`) or a CLIP state dict: the state dict under
 *   OpenAI's names; what `--clip` takes;
 * - a mapper checkpoint (`state_dict.mapper.*`): the mapper and its `opts`; what `mapper apply` takes.
 *
 * With `--half` float32 weights are stored in float16 (every loader widens them to float32 on load); the mean
 * latent stays float32. The written file is loaded back before the command reports success.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { loadMapper } from '../edit/mapper/checkpoint.js';
import { float32ToHalf, type Tensor } from '../io/tensor.js';
import { loadTorch } from '../io/torch.js';
import { saveTorch } from '../io/torch-write.js';
import { loadClip } from '../models/clip/load.js';
import { clipNormalizationTensor, INPUT_NORMALIZATION_KEY } from '../models/clip/model.js';
import { StyleGAN2 } from '../models/stylegan2/generator.js';
import { CliCommand, inputFile, int, parseFlags, UserError } from './common.js';

const schema = z.object({
  out: z.string({ error: 'is required (the file to write)' }).min(1),
  half: z.boolean().optional(),
  normalizedInput: z.boolean().optional(),
  meanSamples: int('--mean-samples').pipe(z.number().min(1)),
  seed: int('--seed'),
});

function toHalf(t: Tensor): Tensor {
  if (t.dtype !== 'float32') return t;
  const src = t.data as Float32Array;
  const bits = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = float32ToHalf(src[i]);
  return { dtype: 'float16', shape: t.shape, data: bits };
}

/** The tensors under `prefix` (prefix removed), in file order, float16 when asked. */
function under(tensors: Map<string, Tensor>, prefix: string, half: boolean): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of tensors)
    if (k.startsWith(prefix)) out.set(k.slice(prefix.length), half ? toHalf(t) : t);
  return out;
}

const has = (tensors: Map<string, Tensor>, re: RegExp) => [...tensors.keys()].some((k) => re.test(k));

async function exportRun(file: string, opts: unknown): Promise<void> {
  const o = parseFlags(schema, opts);
  const checked = inputFile('checkpoint', 'checkpoint not found').safeParse(file);
  if (!checked.success) throw new UserError(checked.error.issues[0].message, 2);
  const path = checked.data;
  const ckpt = loadTorch(path, { widen: false });
  const half = o.half === true;
  if (o.normalizedInput && !has(ckpt.tensors, /^(state_dict\.)?visual\./))
    throw new UserError(
      '--normalized-input marks a CLIP; this checkpoint holds no CLIP (no visual.* tensors)',
      2,
    );
  // Written beside the output and loaded back there, so a file that would not load never replaces one that does.
  const tmp = join(dirname(o.out), `.${basename(o.out)}.${process.pid}.tmp${extname(o.out)}`);
  let what: string;
  let verify: () => unknown;
  if (has(ckpt.tensors, /^g_ema\./)) {
    const G = StyleGAN2.load(path); // the load path of every command: a file it refuses is refused here
    const mean = await G.meanLatent(o.meanSamples, o.seed);
    const gEma = under(ckpt.tensors, 'g_ema.', half);
    saveTorch(tmp, { g_ema: gEma, latent_avg: { dtype: 'float32', shape: [mean.length], data: mean } });
    what = `${G.config.size}² generator (g_ema, ${gEma.size} tensors, and latent_avg from ${o.meanSamples} samples, seed ${o.seed})`;
    verify = () => StyleGAN2.load(tmp);
  } else if (has(ckpt.tensors, /^(state_dict\.)?visual\./)) {
    const prefix = has(ckpt.tensors, /^state_dict\.visual\./) ? 'state_dict.' : '';
    const sd = under(ckpt.tensors, prefix, half);
    for (const k of sd.keys()) if (k.startsWith('optimizer.') || k.startsWith('train_state.')) sd.delete(k);
    if (o.normalizedInput) sd.set(INPUT_NORMALIZATION_KEY, clipNormalizationTensor());
    saveTorch(tmp, sd);
    what = `CLIP (${sd.size} tensors)`;
    verify = () => loadClip(tmp);
  } else if (has(ckpt.tensors, /^state_dict\.mapper\./)) {
    const value = ckpt.value as { opts?: unknown };
    const mapper = new Map<string, Tensor>();
    for (const [k, t] of under(ckpt.tensors, 'state_dict.mapper.', half)) mapper.set(`mapper.${k}`, t);
    saveTorch(tmp, { state_dict: mapper, opts: value.opts ?? {} });
    what = `mapper (${mapper.size} tensors)`;
    verify = () => loadMapper(tmp);
  } else
    throw new UserError(
      `${path} is not a training checkpoint this command knows: it has no g_ema (train gan), no ` +
        'state_dict.visual (train clip) and no state_dict.mapper (mapper train)',
      1,
    );
  try {
    verify();
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new UserError(
      `the exported file did not load back (${(e as Error).message}); ${o.out} was left as it was`,
      1,
    );
  }
  if (existsSync(o.out)) process.stderr.write(`styleclip: replacing ${o.out}\n`);
  renameSync(tmp, o.out);
  process.stderr.write(`styleclip: wrote ${o.out}: ${what}${half ? ', weights in float16' : ''}\n`);
}

export function trainExportCommand(): Command {
  return new CliCommand('export')
    .description(
      'write what a training run ships: a generator (g_ema + mean latent), a CLIP or a mapper, without optimizer state',
    )
    .argument(
      '<checkpoint>',
      'a checkpoint of styleclip train gan|clip or mapper train (or of rosinality train.py)',
    )
    .option('--out <file>', 'the file to write')
    .option('--half', 'store the weights in float16 (half the size; loaders widen them)')
    .option(
      '--normalized-input',
      "mark a CLIP as trained on CLIP-normalized pixels (train clip's own files carry the mark): the CLIP loss then normalizes images for it",
    )
    .option('--mean-samples <n>', 'z samples for the mean latent', '4096')
    .option('--seed <n>', 'seed of those samples', '0')
    .action(exportRun);
}
