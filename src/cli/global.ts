/**
 * `styleclip global precompute` and `styleclip global edit`: StyleCLIP's global directions (method 3).
 */
import { extname } from 'node:path';
import type { Command } from 'commander';
import sharp from 'sharp';
import { z } from 'zod';
import { Fs3Interrupted, fs3CheckpointDir, precomputeFs3, removeCheckpoint, writeFs3 } from '../edit/fs3.js';
import {
  applyBoundary,
  fs3Rows,
  GlobalEditor,
  type LayerSelection,
  type StyleStats,
  sampleStyleStats,
  stylesFromWplus,
  wplusFromSeed,
} from '../edit/global.js';
import { loadFs3, loadStyleStats, saveStyleStats } from '../edit/global-io.js';
import { cachedStyleStats } from '../edit/stats-cache.js';
import { writeFileAtomic } from '../io/atomic.js';
import { toUint8, writeImage } from '../io/image.js';
import { writeNpy } from '../io/npy.js';
import { ClipEncoder, ZeroDirectionError } from '../models/clip/encoder.js';
import { loadClip } from '../models/clip/load.js';
import { expandTemplates } from '../models/clip/templates.js';
import { CONTEXT_LENGTH, TextTooLongError, tokenize } from '../models/clip/tokenizer.js';
import { readLatents } from '../models/stylegan2/latents.js';
import { loadGenerator } from '../models/stylegan2/load.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { precomputeOnQueue } from '../queue/fs3.js';
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

// parseFlags puts the flag in front of each message, so the messages do not repeat it.
const file = (_what: string) => inputFile();

const outFile = (what: string, exts: readonly string[]) =>
  z.string({ error: 'is required' }).refine((f) => exts.includes(extname(f).toLowerCase()), {
    message: `${what} must end with ${exts.join(', ')}`,
  });

const IMAGE_EXTS = ['.png', '.jpg', '.jpeg', '.webp'] as const;

const alphaList = z.string().transform((v, ctx) => {
  const parts = v.split(',').map((s) => s.trim());
  const xs = parts.map(Number);
  if (parts.length === 0 || parts.some((p) => p === '') || xs.some((x) => !Number.isFinite(x))) {
    ctx.addIssue({ code: 'custom', message: `must be comma-separated numbers like -4,0,4,8, got "${v}"` });
    return z.NEVER;
  }
  return xs;
});

const statsFlags = {
  stats: file('--stats').optional(),
  statsSamples: int('--stats-samples')
    .refine((n) => n >= 2, { message: 'needs at least 2 samples' })
    .default(100_000),
  saveStats: outFile('--save-stats', ['.npy']).optional(),
};

function loadModels(generator: string, clipFile: string): { G: GeneratorWeights; clip: ClipEncoder } {
  const G = loadGenerator(generator);
  const clip = new ClipEncoder(loadClip(clipFile));
  return { G, clip };
}

/**
 * Channel statistics: from --stats, else from the cache folder (per generator file content and sample
 * count), else sampled the official way (with a progress bar) and cached.
 */
async function getStats(
  G: GeneratorWeights,
  f: { generator: string; stats?: string; statsSamples: number; saveStats?: string },
): Promise<StyleStats> {
  let stats: StyleStats;
  if (f.stats) stats = loadStyleStats(f.stats, G.config);
  else {
    const sample = async () => {
      const bar = progressBar(f.statsSamples, 'channel statistics');
      try {
        return (await sampleStyleStats(G, { samples: f.statsSamples, onProgress: (d) => bar.update(d) }))
          .stats;
      } finally {
        bar.stop();
      }
    };
    const c = await cachedStyleStats(f.generator, G.config, f.statsSamples, sample);
    stats = c.stats;
    if (c.hit) process.stderr.write(`channel statistics: cached (${c.file})\n`);
  }
  if (f.saveStats) saveStyleStats(f.saveStats, stats);
  return stats;
}

const precomputeSchema = z.object({
  generator: file('--generator'),
  clip: file('--clip'),
  images: int('--images')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(100),
  layers: z.enum(['all', 'upto128'], { error: '--layers must be all or upto128' }).default('all'),
  batch: int('--batch')
    .refine((n) => n >= 1 && n <= 256, { message: 'must be between 1 and 256' })
    .optional(),
  officialCarryover: z.boolean().default(false),
  out: outFile('--out', ['.npy']),
  queue: z.string().optional(),
  status: z.boolean().default(false),
  shardChannels: int('--shard-channels')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(8),
  attempts: int('--attempts')
    .refine((n) => n >= 1, { message: 'must be at least 1' })
    .default(3),
  ...statsFlags,
});

async function precompute(opts: unknown): Promise<void> {
  const f = parseFlags(precomputeSchema, opts);
  if (f.status && !f.queue) throw new UserError('--status needs --queue redis://HOST:PORT');
  if (!f.status) checkOutputs({ '--out': f.out, '--save-stats': f.saveStats });
  if (f.queue) return precomputeOnQueue({ ...f, queue: f.queue }); // shards on a BullMQ queue: src/queue/
  const { G, clip } = loadModels(f.generator, f.clip);
  const layers = f.layers as LayerSelection;
  const rows = fs3Rows(G.config, layers);
  const renders = rows * 2 * f.images;
  process.stderr.write(
    `fs3: ${rows} channels (${layers === 'all' ? 'all non-toRGB layers' : 'layers up to 128²'}) × ${f.images} images × 2 = ${renders} renders at ${G.config.size}²\n`,
  );
  const stats = f.stats || f.saveStats ? await getStats(G, f) : undefined;
  const dir = fs3CheckpointDir(f.out);
  const interrupt = interruptible('stopping after this batch (Ctrl-C again to quit at once)...', [
    'SIGINT',
    'SIGTERM',
  ]);
  const bar = progressBar(renders, 'fs3 renders');
  const t0 = performance.now();
  let resumedAt = -1;
  try {
    const r = await precomputeFs3(G, clip, {
      images: f.images,
      layers,
      statsSamples: f.statsSamples,
      stats,
      batch: f.batch,
      carryOver: f.officialCarryover,
      checkpointDir: dir,
      shouldStop: interrupt.requested,
      onProgress: (done, _total, info) => {
        if (resumedAt < 0 && info.resumed > 0) {
          resumedAt = info.resumed;
          bar.start(renders, info.resumed);
        }
        bar.update(done);
      },
    });
    bar.stop();
    writeFs3(f.out, r);
    removeCheckpoint(dir);
    const s = (performance.now() - t0) / 1000;
    const fresh = r.renders - r.resumedRenders;
    process.stdout.write(
      `wrote ${f.out}: ${r.rows} x ${r.embedDim} (${fresh} renders in ${s.toFixed(1)} s${fresh > 0 ? `, ${(fresh / s).toFixed(2)} renders/s` : ''}${r.resumedRenders ? `; ${r.resumedRenders} resumed from the checkpoint` : ''})\n`,
    );
  } catch (e) {
    bar.stop();
    if (e instanceof Fs3Interrupted) throw new UserError(e.message, 130);
    throw e;
  } finally {
    interrupt.dispose();
  }
}

/** StyleCLIP's notebook edits faces from the neutral text "face"; the world's prompts read "a face with …". */
const DEFAULT_NEUTRAL = 'a face';

const editSchema = z
  .object({
    generator: file('--generator'),
    clip: file('--clip'),
    fs3: file('--fs3'),
    neutral: z.string().min(1, '--neutral must not be empty').default(DEFAULT_NEUTRAL),
    target: z.string({ error: '--target is required' }).min(1, '--target must not be empty'),
    alpha: num('--alpha').optional(),
    alphas: alphaList.optional(),
    beta: num('--beta')
      .refine((b) => b >= 0 && b < 1, { message: 'must be in [0, 1): a threshold on |cos| relevance' })
      .default(0.15),
    latent: file('--latent').optional(),
    index: int('--index')
      .refine((n) => n >= 0, { message: 'must be 0 or more' })
      .default(0),
    seed: int('--seed')
      .refine((n) => n >= 0 && n <= 0xffffffff, { message: 'must be between 0 and 2**32 - 1' })
      .optional(),
    strip: z.boolean().default(false),
    animation: outFile('--animation', ['.gif', '.webp']).optional(),
    out: outFile('--out', IMAGE_EXTS),
    outNpy: outFile('--out-npy', ['.npy']).optional(),
    saveLatent: outFile('--save-latent', ['.npy']).optional(),
    ...statsFlags,
  })
  .superRefine((f, ctx) => {
    if ((f.latent === undefined) === (f.seed === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['latent'],
        message: 'give exactly one of --latent FILE or --seed N',
      });
    if (f.strip && !f.alphas)
      ctx.addIssue({
        code: 'custom',
        path: ['strip'],
        message: 'needs --alphas (the α of each image in the strip)',
      });
    if (f.animation && !f.alphas)
      ctx.addIssue({ code: 'custom', path: ['animation'], message: 'needs --alphas (the α of each frame)' });
    if (f.alpha !== undefined && f.alphas)
      ctx.addIssue({ code: 'custom', path: ['alpha'], message: 'give --alpha or --alphas, not both' });
  });

/** --out for one α, or the file of α number k when there are several and no --strip: edited_a-4.png, … */
function alphaFile(out: string, alpha: number): string {
  const ext = extname(out);
  return `${out.slice(0, out.length - ext.length)}_a${alpha}${ext}`;
}

/** Fails early, before any model loads, when a prompt with a template is longer than CLIP's context. */
function checkPrompt(flag: string, text: string): void {
  try {
    tokenize(expandTemplates(text));
  } catch (e) {
    if (e instanceof TextTooLongError)
      throw new UserError(
        `${flag} is too long: with the prompt templates (e.g. "a black and white photo of the ...") it exceeds CLIP's ${CONTEXT_LENGTH}-token context; shorten it`,
      );
    throw e;
  }
}

async function edit(opts: unknown): Promise<void> {
  const f = parseFlags(editSchema, opts);
  checkPrompt('--target', f.target);
  checkPrompt('--neutral', f.neutral);
  const alphas = f.alphas ?? [f.alpha ?? 4.1];
  const A = alphas.length;
  const imageFiles = A === 1 || f.strip ? [f.out] : alphas.map((a) => alphaFile(f.out, a));
  checkOutputs({
    ...Object.fromEntries(
      imageFiles.map((p, k) => [`--out${imageFiles.length > 1 ? ` (α ${alphas[k]})` : ''}`, p]),
    ),
    '--animation': f.animation,
    '--out-npy': f.outNpy,
    '--save-latent': f.saveLatent,
    '--save-stats': f.saveStats,
  });
  const { G, clip } = loadModels(f.generator, f.clip);
  const cfg = G.config;
  const fs3 = loadFs3(f.fs3, cfg, clip.embedDim);

  // The starting image: a latent from a file, or a seed sampled the official way.
  let wplus: Float32Array;
  const _n = cfg.nLatent * cfg.styleDim;
  if (f.latent) {
    const lat = readLatents(f.latent, cfg.nLatent, cfg.styleDim);
    if (f.index >= lat.count)
      throw new UserError(
        `--index ${f.index}: ${f.latent} holds ${lat.count} latent(s) (indices 0..${lat.count - 1})`,
      );
    wplus = lat.gather([f.index]);
  } else wplus = await wplusFromSeed(G, f.seed!);

  // Δt first: texts that mean the same are refused before the statistics are sampled.
  let dt: Float32Array;
  try {
    dt = await clip.textDirection(f.target, f.neutral);
  } catch (e) {
    if (e instanceof ZeroDirectionError) throw new UserError(`--target: ${e.message}`);
    throw e;
  }
  const stats = await getStats(G, f);
  const editor = new GlobalEditor(G, clip, fs3.data, stats);
  const boundary = editor.boundary(dt, f.beta);
  const total = fs3.rows;
  if (boundary.numChannels === 0) {
    let max = 0;
    for (const r of boundary.relevance) max = Math.max(max, Math.abs(r));
    throw new UserError(
      `no channel reaches --beta ${f.beta}: the largest relevance |fs3·Δt| is ${max.toFixed(4)}; lower --beta`,
    );
  }
  process.stdout.write(
    `channels: ${boundary.numChannels} of ${total} move (β = ${f.beta}${fs3.rows < fs3Rows(cfg) ? `; fs3 covers ${fs3.rows} of ${fs3Rows(cfg)} channels` : ''})\n`,
  );

  const codes = await stylesFromWplus(G, wplus, 1);
  const images = await editor.render(codes, boundary, alphas);
  const size = cfg.size;
  const tensor = { dtype: 'float32' as const, shape: [A, 3, size, size], data: images };
  const writes: [string, () => unknown][] = [];
  if (A === 1 || f.strip) writes.push([f.out, () => writeImage(f.out, tensor, { cols: A })]);
  else
    imageFiles.forEach((p, k) => {
      const one = {
        ...tensor,
        shape: [1, 3, size, size],
        data: images.subarray(k * 3 * size * size, (k + 1) * 3 * size * size),
      };
      writes.push([p, () => writeImage(p, one)]);
    });
  const { animation, outNpy, saveLatent } = f;
  if (animation) writes.push([animation, () => writeAnimation(animation, tensor)]);
  if (outNpy) writes.push([outNpy, () => writeNpy(outNpy, tensor)]);
  if (saveLatent) {
    // The edited StyleSpace codes, all layers concatenated in StyleCLIP's order: [A, total channels].
    const moved = applyBoundary(codes, boundary.delta, alphas);
    const width = cfg.styleDims.reduce((a, b) => a + b, 0);
    const flat = new Float32Array(A * width);
    let off = 0;
    moved.forEach((s, i) => {
      const c = cfg.styleDims[i];
      for (let k = 0; k < A; k++) flat.set(s.subarray(k * c, (k + 1) * c), k * width + off);
      off += c;
    });
    writes.push([
      saveLatent,
      () => writeNpy(saveLatent, { dtype: 'float32', shape: [A, width], data: flat }),
    ]);
  }
  const written = await writeOutputs(writes);
  process.stdout.write(`wrote ${written.join(', ')}\n`);
}

/** Frames [A, 3, S, S] → an animated GIF or WebP (loops forever, 0.5 s per frame), written atomically. */
async function writeAnimation(out: string, t: { shape: number[]; data: Float32Array }): Promise<void> {
  const [A, , S] = t.shape;
  const stacked = new Uint8Array(A * S * S * 3);
  for (let k = 0; k < A; k++)
    stacked.set(toUint8({ dtype: 'float32', shape: t.shape, data: t.data }, k).data, k * S * S * 3);
  const img = sharp(stacked, { raw: { width: S, height: S * A, channels: 3, pageHeight: S } });
  const delay = Array.from({ length: A }, () => 500);
  const buf =
    extname(out).toLowerCase() === '.gif'
      ? await img.gif({ loop: 0, delay }).toBuffer()
      : await img.webp({ loop: 0, delay, lossless: true }).toBuffer();
  writeFileAtomic(out, buf);
}

export function globalCommand(): Command {
  const cmd = new CliCommand('global').description(
    "StyleCLIP global directions: edit with a text direction in StyleSpace, or precompute a generator's fs3",
  );
  cmd
    .command('precompute')
    .description(
      'measure each StyleSpace channel in CLIP space (fs3.npy); resumable: rerun the same command after a crash or Ctrl-C',
    )
    .option('--generator <file>', 'StyleGAN2 generator (rosinality .pt, StyleCLIP mapper .pt, NVIDIA .pkl)')
    .option('--clip <file>', 'CLIP ViT checkpoint (OpenAI ViT-B-32.pt or Hugging Face safetensors)')
    .option('--images <n>', 'K: images each channel is measured on (official: 100)')
    .option(
      '--layers <which>',
      'all | upto128 (the official shortcut: layers up to 128², 5376 rows for FFHQ 1024)',
    )
    .option('--stats <file>', 'channel statistics (StyleCLIP S_mean_std pickle, or a --save-stats .npy)')
    .option(
      '--stats-samples <n>',
      'samples for the channel statistics when --stats is not given (official: 100000)',
    )
    .option('--save-stats <file>', 'also write the channel statistics (.npy) for later edits')
    .option('--batch <n>', 'renders per engine run (default: by image size)')
    .option('--official-carryover', "reproduce the official script's in-place update of the base codes")
    .option('--out <file>', 'output fs3 .npy [channels, CLIP dim]')
    .option(
      '--queue <url>',
      'run as shards on a BullMQ queue at redis://HOST:PORT (`styleclip worker` runs them)',
    )
    .option('--status', 'with --queue: print where the run stands and exit')
    .option('--shard-channels <n>', 'with --queue: channels per shard (default 8)')
    .option('--attempts <n>', 'with --queue: tries per shard before it is reported failed (default 3)')
    .action(precompute);
  cmd
    .command('edit')
    .description(
      'edit an image along the text direction neutral → target; prints the number of channels that move',
    )
    .option('--generator <file>', 'StyleGAN2 generator (rosinality .pt, StyleCLIP mapper .pt, NVIDIA .pkl)')
    .option('--clip <file>', 'CLIP ViT checkpoint')
    .option('--fs3 <file>', "fs3.npy for this generator and CLIP (StyleCLIP's, or from `global precompute`)")
    .option('--neutral <text>', `what the image shows now (default "${DEFAULT_NEUTRAL}")`)
    .option('--target <text>', 'what it should show, e.g. "smiling face"')
    .option('--alpha <a>', 'edit strength α (negative reverses the edit; default 4.1)')
    .option('--alphas <list>', 'several strengths, e.g. -4,0,4,8 (one image each, or a strip with --strip)')
    .option('--beta <b>', 'disentanglement threshold β: channels with relevance below it stay put', '0.15')
    .option('--latent <file>', 'W+ or w latents (.npy, e4e latents.pt)')
    .option('--index <i>', 'which latent of --latent', '0')
    .option('--seed <n>', 'start from z = RandomState(n).randn(1, 512), truncation 0.7 on the first 8 layers')
    .option('--strip', 'write all --alphas as one row in --out')
    .option('--animation <file>', 'also write the --alphas frames as an animated .gif or .webp')
    .option('--stats <file>', 'channel statistics (StyleCLIP S_mean_std pickle, or a --save-stats .npy)')
    .option('--stats-samples <n>', 'samples for the channel statistics when --stats is not given')
    .option('--save-stats <file>', 'write the channel statistics (.npy) to reuse with --stats')
    .option('--out <file>', 'output image (.png, .jpg, .webp)')
    .option('--out-npy <file>', 'also write the raw images, float32 NCHW in [-1, 1]')
    .option('--save-latent <file>', 'also write the edited StyleSpace codes [images, all channels] (.npy)')
    .action(edit);
  return cmd;
}
