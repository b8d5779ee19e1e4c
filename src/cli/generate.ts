/**
 * `styleclip generate`: images from a StyleGAN2 generator, from seeds, z arrays, or W / W+ latents.
 */
import { extname } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { CheckpointError } from '../io/errors.js';
import { writeImage } from '../io/image.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { toFloat32 } from '../io/tensor.js';
import { StyleGAN2, seededZ } from '../models/stylegan2/index.js';
import { readLatents } from '../models/stylegan2/latents.js';
import {
  CliCommand,
  checkOutputs,
  inputFile,
  int,
  num,
  parseFlags,
  progressBar,
  writeOutputs,
} from './common.js';

// A missing output folder is created when the file is written (the same rule in every command).
const outFile = (exts: RegExp, what: string) => z.string().regex(exts, `must end in ${what}`);

const Flags = z
  .object({
    generator: inputFile('generator file'),
    seed: int('--seed')
      .refine((n) => n >= 0 && n < 2 ** 32, { message: 'must be in [0, 2^32)' })
      .optional(),
    z: inputFile('z file').optional(),
    latent: inputFile('latent file').optional(),
    truncation: num('--truncation')
      .refine((p) => p >= 0 && p <= 1, { message: 'must be in [0, 1]' })
      .default(1),
    noise: z.enum(['const', 'random']).default('const'),
    out: outFile(/\.(png|jpe?g|webp)$/i, '.png, .jpg or .webp').optional(),
    outNpy: outFile(/\.npy$/, '.npy').optional(),
    saveLatent: outFile(/\.npy$/, '.npy').optional(),
    count: int('--count')
      .refine((n) => n >= 1 && n <= 10000, { message: 'must be in [1, 10000]' })
      .default(1),
    grid: z.boolean().default(false),
  })
  .refine((o) => [o.seed, o.z, o.latent].filter((v) => v !== undefined).length <= 1, {
    message: 'give at most one of --seed, --z, --latent',
  })
  .refine((o) => o.count === 1 || (o.z === undefined && o.latent === undefined), {
    message: '--count applies to --seed only (a --z or --latent file renders every row)',
  });

type Opts = z.infer<typeof Flags>;

/** z rows from a .npy: [D] or [N, D], finite, as --latent is checked (a [3, 7, 512] is not 21 images). */
export function readZ(file: string, D: number): { data: Float32Array; count: number } {
  const t = readNpy(file);
  if (t.dtype !== 'float32' && t.dtype !== 'float64' && t.dtype !== 'float16')
    throw new CheckpointError(file, 'floating-point z vectors', `${t.dtype} values`);
  const s = t.shape;
  const ok = (s.length === 1 && s[0] === D) || (s.length === 2 && s[1] === D && s[0] >= 1);
  if (!ok) throw new CheckpointError(file, `z of shape [${D}] or [N, ${D}]`, `shape [${s.join(', ')}]`);
  const data = toFloat32(t).data;
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new CheckpointError(file, 'finite z values', `${data[bad]} at flat index ${bad}`);
  return { data, count: data.length / D };
}

function numbered(file: string, i: number, n: number): string {
  if (n === 1) return file;
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}_${String(i).padStart(Math.max(3, String(n - 1).length), '0')}${ext}`;
}

async function run(o: Opts): Promise<void> {
  const out = o.out ?? (o.outNpy ? undefined : 'generated.png');
  checkOutputs({ '--out': out, '--out-npy': o.outNpy, '--save-latent': o.saveLatent });
  const G = StyleGAN2.load(o.generator);
  const { nLatent: L, styleDim: D, size } = G.config;
  // Latent rows: w [N, D] (mapped z or a w file) or W+ [N, L, D].
  let rows: { data: Float32Array; shape: number[] };
  const seed = o.seed ?? 0;
  if (o.latent) {
    const lat = readLatents(o.latent, L, D); // w rows [N, D] or W+ rows [N, L, D]
    rows = { data: lat.data, shape: lat.broadcast ? [lat.count, D] : [lat.count, L, D] };
  } else {
    let zs: Float32Array;
    let n = o.count;
    if (o.z) {
      ({ data: zs, count: n } = readZ(o.z, D));
    } else {
      // StyleGAN's convention: image i uses RandomState(seed + i).randn(1, D).
      zs = new Float32Array(n * D);
      for (let i = 0; i < n; i++) zs.set(seededZ(seed + i, 1, D), i * D);
    }
    rows = { data: await G.mapping(zs), shape: [n, D] };
  }
  const n = rows.shape[0];
  const per = rows.data.length / n;
  const wplus = new Float32Array(n * L * D);
  for (let i = 0; i < n; i++) {
    const shape = rows.shape.length === 3 ? [1, L, D] : [1, D];
    const w = await G.toWPlus(rows.data.subarray(i * per, (i + 1) * per), shape, { psi: o.truncation });
    wplus.set(w, i * L * D);
  }
  const images = new Float32Array(n * 3 * size * size);
  const bar = n > 1 ? progressBar(n, 'generate') : null;
  for (let i = 0; i < n; i++) {
    const noise = o.noise === 'random' ? { seed: seed + i } : 'const';
    const img = await G.synthesize(wplus.subarray(i * L * D, (i + 1) * L * D), noise);
    images.set(img.data as Float32Array, i * 3 * size * size);
    bar?.increment();
  }
  bar?.stop();
  const writes: [string, () => unknown][] = [];
  if (out && o.grid)
    writes.push([
      out,
      () =>
        writeImage(
          out,
          { dtype: 'float32', shape: [n, 3, size, size], data: images },
          { cols: Math.ceil(Math.sqrt(n)) },
        ),
    ]);
  else if (out)
    for (let i = 0; i < n; i++) {
      const one = images.slice(i * 3 * size * size, (i + 1) * 3 * size * size);
      writes.push([
        numbered(out, i, n),
        () => writeImage(numbered(out, i, n), { dtype: 'float32', shape: [1, 3, size, size], data: one }),
      ]);
    }
  if (o.outNpy) {
    const f = o.outNpy;
    writes.push([f, () => writeNpy(f, { dtype: 'float32', shape: [n, 3, size, size], data: images })]);
  }
  if (o.saveLatent) {
    const f = o.saveLatent;
    writes.push([f, () => writeNpy(f, { dtype: 'float32', shape: [n, L, D], data: wplus })]);
  }
  await writeOutputs(writes);
  const wrote = [
    out && (o.grid || n === 1 ? out : `${n} images ${numbered(out, 0, n)} ...`),
    o.outNpy,
    o.saveLatent,
  ]
    .filter(Boolean)
    .join(', ');
  process.stderr.write(`generated ${n} image(s) at ${size}x${size}: ${wrote}\n`);
}

/**
 * `styleclip generate --generator FILE [--seed N | --z z.npy | --latent w.npy] [--truncation 0.7]
 * [--noise const|random] [--out img.png] [--out-npy img.npy] [--save-latent w.npy] [--count K --grid]`
 */
export function generateCommand(): Command {
  return new CliCommand('generate')
    .description('generate images with a StyleGAN2 generator from seeds, z vectors or W / W+ latents')
    .requiredOption(
      '--generator <file>',
      'rosinality .pt (g_ema), StyleCLIP mapper .pt, or NVIDIA stylegan2-ada .pkl',
    )
    .option('--seed <n>', 'z = RandomState(seed + i).randn(512) for image i (default 0)')
    .option('--z <file.npy>', 'z vectors [512] or [N, 512]')
    .option(
      '--latent <file>',
      'W or W+ latents (.npy or .pt): [512], [18, 512] or [N, 18, 512]; renders every row',
    )
    .option('--truncation <psi>', 'truncation towards the mean latent, 1 = none', '1')
    .option('--noise <mode>', "const (the checkpoint's fixed noise) or random (seeded)", 'const')
    .option(
      '--out <file>',
      'image file (.png/.jpg/.webp); several images get _000, _001, ... (default generated.png)',
    )
    .option('--out-npy <file.npy>', 'raw NCHW float32 output [N, 3, S, S]')
    .option('--save-latent <file.npy>', 'the W+ latents used [N, n_latent, 512]')
    .option('--count <k>', 'number of images from consecutive seeds', '1')
    .option('--grid', 'write all images as one grid image')
    .action(async (raw: Record<string, unknown>) => {
      await run(parseFlags(Flags, raw));
    });
}
