/**
 * `styleclip train clip`: contrastive training of a CLIP ViT on image–caption pairs (a JSON-lines file,
 * or the procedural world's captioned faces), from scratch with the architecture given by flags or from
 * a checkpoint's weights. The result loads wherever a CLIP does (`--clip run/clip.pt`).
 */
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { z } from 'zod';
import { loadClipStateDict } from '../models/clip/load.js';
import { type ClipConfig, ClipModel } from '../models/clip/model.js';
import { configureRuntime } from '../runtime/session.js';
import { type ClipStepInfo, ClipTrainer, type CurrentFeatures } from '../train/clip.js';
import { CachedDataset, type ClipDataset, fromSignedImages, JsonlClipDataset } from '../train/clip-data.js';
import { clipConfig, initClipStateDict } from '../train/clip-init.js';
import { FAMILIES, FAMILY_NAMES, type Labels, visible } from '../world/attributes.js';
import { attributePrompt } from '../world/captions.js';
import { WORLD_HELD_OUT_BASE, WorldCaptions } from '../world/dataset.js';
import { int, interruptible, num, parseFlags, progressBar, UserError } from './common.js';

const Flags = z
  .object({
    data: z.string().optional(),
    world: int('--world')
      .refine((n) => n >= 2, 'at least 2 faces')
      .optional(),
    val: z.string().optional(),
    valCount: int('--val-count')
      .refine((n) => n >= 1, 'at least 1')
      .default(512),
    out: z.string().min(1),
    init: z.string().optional(),
    resume: z.string().optional(),
    embedDim: int('--embed-dim').default(128),
    imageSize: int('--image-size').default(64),
    patch: int('--patch').default(8),
    visionWidth: int('--vision-width').default(128),
    visionLayers: int('--vision-layers').default(4),
    textWidth: int('--text-width').default(128),
    textLayers: int('--text-layers').default(4),
    steps: int('--steps')
      .refine((n) => n >= 1, 'at least 1')
      .default(6000),
    batch: int('--batch')
      .refine((n) => n >= 2, 'at least 2 (each pair is the others’ negative)')
      .default(64),
    lr: num('--lr')
      .refine((n) => n > 0, 'must be positive')
      .default(1e-3),
    warmup: int('--warmup')
      .refine((n) => n >= 0, 'must be ≥ 0')
      .default(200),
    weightDecay: num('--weight-decay')
      .refine((n) => n >= 0, 'must be ≥ 0')
      .default(0.1),
    seed: int('--seed').default(0),
    saveEvery: int('--save-every')
      .refine((n) => n >= 0, 'must be ≥ 0')
      .default(500),
    keep: int('--keep')
      .refine((n) => n >= 0, 'must be ≥ 0')
      .default(3),
    logEvery: int('--log-every')
      .refine((n) => n >= 1, 'at least 1')
      .default(10),
    evalEvery: int('--eval-every')
      .refine((n) => n >= 0, 'must be ≥ 0')
      .default(500),
    cacheMb: int('--cache-mb')
      .refine((n) => n >= 0, 'must be ≥ 0')
      .default(2048),
    safetensors: z.boolean().default(false),
    threads: int('--threads')
      .refine((n) => n >= 1, 'at least 1')
      .optional(),
  })
  .refine((o) => (o.data === undefined) !== (o.world === undefined), {
    message: 'give the training pairs with exactly one of --data FILE.jsonl or --world COUNT',
  });

type Flags = z.infer<typeof Flags>;

/**
 * Zero-shot attribute accuracy on held-out world faces: for each visible attribute family, the face is
 * classified among the family's values by the prompts "a face with <value>" (the method's prompts).
 */
function worldZeroShot(count: number): (f: CurrentFeatures) => Promise<Record<string, number>> {
  let faces: { pixels: Float32Array; labels: Labels[] } | undefined;
  return async (f) => {
    const r = f.config.imageResolution;
    if (!faces) {
      const world = new WorldCaptions(count, { size: r, base: WORLD_HELD_OUT_BASE, cacheBytes: 0 });
      const pairs = fromSignedImages(world);
      const pixels = new Float32Array(count * 3 * r * r);
      for (let i = 0; i < count; i++) pixels.set((await pairs.get(i, 0)).image, i * 3 * r * r);
      faces = { pixels, labels: Array.from({ length: count }, (_, i) => world.images.labels(i)) };
    }
    const { pixels, labels } = faces;
    const img = await f.images(pixels, count);
    const e = f.config.embedDim;
    const res: Record<string, number> = {};
    let hits = 0;
    let total = 0;
    for (const fam of FAMILY_NAMES) {
      const values = FAMILIES[fam] as readonly string[];
      const txt = await f.texts(values.map((v) => attributePrompt(fam, v as never)));
      let h = 0;
      let n = 0;
      for (let i = 0; i < count; i++) {
        if (!visible(labels[i], fam)) continue;
        let best = 0;
        let bestSim = Number.NEGATIVE_INFINITY;
        for (let v = 0; v < values.length; v++) {
          let s = 0;
          for (let j = 0; j < e; j++) s += img[i * e + j] * txt[v * e + j];
          if (s > bestSim) [best, bestSim] = [v, s];
        }
        if (values[best] === labels[i][fam]) h++;
        n++;
      }
      res[`zero_shot_${fam}`] = h / n;
      hits += h;
      total += n;
    }
    res.zero_shot_attributes = hits / total;
    return res;
  };
}

/** Image → caption top-1 retrieval among the distinct captions of a held-out JSON-lines set. */
async function retrieval(f: CurrentFeatures, val: ClipDataset): Promise<Record<string, number>> {
  const r = f.config.imageResolution;
  const n = val.length;
  const pixels = new Float32Array(n * 3 * r * r);
  const captions: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = await val.get(i, 0);
    pixels.set(s.image, i * 3 * r * r);
    captions.push(s.caption);
  }
  const distinct = [...new Set(captions)];
  const img = await f.images(pixels, n);
  const txt = await f.texts(distinct);
  const e = f.config.embedDim;
  let hits = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestSim = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < distinct.length; c++) {
      let s = 0;
      for (let j = 0; j < e; j++) s += img[i * e + j] * txt[c * e + j];
      if (s > bestSim) [best, bestSim] = [c, s];
    }
    if (distinct[best] === captions[i]) hits++;
  }
  return { val_retrieval_top1: hits / n, val_captions: distinct.length };
}

/** A fresh model's config from the flags, checked before anything slow happens. */
function architecture(o: Flags): ClipConfig | null {
  if (o.init) return null;
  return clipConfig({
    embedDim: o.embedDim,
    imageResolution: o.imageSize,
    visionPatchSize: o.patch,
    visionWidth: o.visionWidth,
    visionLayers: o.visionLayers,
    textWidth: o.textWidth,
    textLayers: o.textLayers,
  });
}

/** The trainer's own errors say what was wrong; they reach the user as such (exit 1), never as a bug. */
const KNOWN = new Set(['ClipTrainError', 'ClipDataError', 'ClipArchitectureError', 'ClipWeightsError']);

const ARCHITECTURE_FLAGS = [
  'embedDim',
  'imageSize',
  'patch',
  'visionWidth',
  'visionLayers',
  'textWidth',
  'textLayers',
];

async function run(this: Command, raw: Record<string, unknown>): Promise<void> {
  try {
    const given = ARCHITECTURE_FLAGS.filter((k) => this.getOptionValueSource(k) === 'cli');
    if (raw.init !== undefined && given.length)
      throw new UserError(
        `--init takes the architecture from the checkpoint; drop ${given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}`,
      );
    await train(parseFlags(Flags, raw));
  } catch (e) {
    if (e instanceof Error && KNOWN.has(e.name))
      throw new UserError(e.message, e.name === 'ClipArchitectureError' ? 2 : 1);
    throw e;
  }
}

async function train(o: Flags): Promise<void> {
  if (o.threads) configureRuntime({ threads: o.threads });
  const fresh = architecture(o);
  if (o.init && !existsSync(o.init)) throw new UserError(`--init: ${o.init} not found`);
  if (o.resume && !existsSync(o.resume)) throw new UserError(`--resume: ${o.resume} not found`);
  const init = o.init ? loadClipStateDict(o.init).tensors : null;
  const r = fresh?.imageResolution ?? ClipModel.fromStateDict(init!).config.imageResolution;
  let data: ClipDataset;
  if (o.data) {
    if (!existsSync(o.data)) throw new UserError(`--data: ${o.data} not found`);
    data = new CachedDataset(new JsonlClipDataset(o.data, r), o.cacheMb * 2 ** 20);
  } else {
    data = fromSignedImages(new WorldCaptions(o.world!, { size: r, cacheBytes: o.cacheMb * 2 ** 20 }));
  }
  if (data.length < o.batch)
    throw new UserError(`the dataset has ${data.length} pairs, fewer than one batch of ${o.batch}`, 1);
  const model = ClipModel.fromStateDict(init ?? initClipStateDict(fresh!, o.seed));
  let evaluate: ((f: CurrentFeatures) => Promise<Record<string, number>>) | undefined;
  if (o.val) {
    if (!existsSync(o.val)) throw new UserError(`--val: ${o.val} not found`);
    const val = new CachedDataset(new JsonlClipDataset(o.val, r), o.cacheMb * 2 ** 20);
    evaluate = (f) => retrieval(f, val);
  } else if (o.world) evaluate = worldZeroShot(o.valCount);

  const trainer = new ClipTrainer(model, data, {
    outDir: o.out,
    steps: o.steps,
    batch: o.batch,
    lr: o.lr,
    warmup: o.warmup,
    weightDecay: o.weightDecay,
    seed: o.seed,
    saveEvery: o.saveEvery,
    keep: o.keep,
    logEvery: o.logEvery,
    evalEvery: o.evalEvery,
    evaluate,
  });
  if (o.resume) trainer.resume(o.resume);
  const c = model.config;
  process.stderr.write(
    `styleclip: CLIP ViT ${c.imageResolution}² patch ${c.visionPatchSize}, vision ${c.visionWidth}×${c.visionLayers}, text ${c.textWidth}×${c.textLayers}, embed ${c.embedDim}; ${data.length} pairs, batch ${o.batch}, ${o.steps} steps${trainer.step ? ` (resuming at ${trainer.step})` : ''}\n`,
  );
  if (trainer.step >= o.steps) {
    process.stderr.write(`styleclip: the checkpoint is already at step ${trainer.step} of ${o.steps}\n`);
    return;
  }
  const interrupt = interruptible(
    'styleclip: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)',
  );
  const bar = progressBar(o.steps, 'clip', 'loss {loss} | acc {acc} | {ips} img/s | {evalNote}');
  bar.update(trainer.step, { loss: '-', acc: '-', ips: '-', evalNote: '' });
  // images per second over the last steps (the first step also compiles the graph)
  const recent: ClipStepInfo[] = [];
  let evalNote = '';
  try {
    const res = await trainer.train({
      onStep: (i) => {
        recent.push(i);
        if (recent.length > 20) recent.shift();
        const secs = recent.reduce((a, b) => a + b.seconds, 0);
        bar.update(i.step, {
          loss: i.loss.toFixed(3),
          acc: ((i.accImageToText + i.accTextToImage) / 2).toFixed(2),
          ips: ((recent.length * o.batch) / secs).toFixed(1),
          evalNote,
        });
      },
      onEval: (e) => {
        const key = 'zero_shot_attributes' in e ? 'zero_shot_attributes' : 'val_retrieval_top1';
        evalNote = `${key === 'zero_shot_attributes' ? 'zero-shot' : 'val top-1'} ${(100 * e[key]).toFixed(1)}%`;
      },
      shouldStop: interrupt.requested,
    });
    bar.stop();
    if (res.interrupted)
      throw new UserError(`interrupted at step ${res.step}; resume with --resume ${res.lastCheckpoint}`, 130);
    if (o.safetensors) trainer.saveModel(`${o.out}/model.safetensors`);
    process.stderr.write(
      `styleclip: done, ${res.step} steps; model ${res.model}${o.safetensors ? ` and ${o.out}/model.safetensors` : ''}, metrics ${o.out}/logs/metrics.jsonl\n`,
    );
  } finally {
    bar.stop();
    interrupt.dispose();
    await trainer.release();
  }
}

export function trainClipCommand(): Command {
  return new Command('clip')
    .description('train a CLIP ViT by contrastive learning on image–caption pairs (saved in OpenAI’s layout)')
    .requiredOption('--out <dir>', 'run folder: clip.pt, checkpoints/, logs/metrics.jsonl')
    .option(
      '--data <file.jsonl>',
      'training pairs: one {"image": path, "caption": text} per line (paths relative to the file)',
    )
    .option(
      '--world <count>',
      'training pairs: the first COUNT faces of the procedural world, with generated captions',
    )
    .option('--val <file.jsonl>', 'held-out pairs for image→caption retrieval accuracy (with --data)')
    .option('--val-count <n>', 'held-out world faces for zero-shot attribute accuracy (with --world)', '512')
    .option(
      '--init <checkpoint>',
      'start from these CLIP weights (any file --clip takes); else a fresh model from the flags below',
    )
    .option(
      '--resume <checkpoint>',
      'continue a run from its checkpoints/clip_N.pt (weights, AdamW state, step)',
    )
    .option('--embed-dim <n>', 'joint embedding size', '128')
    .option('--image-size <px>', 'input resolution (a multiple of the patch size)', '64')
    .option('--patch <px>', 'vision patch size', '8')
    .option('--vision-width <n>', 'vision transformer width (a multiple of 64; heads = width / 64)', '128')
    .option('--vision-layers <n>', 'vision transformer blocks', '4')
    .option('--text-width <n>', 'text transformer width (a multiple of 64; heads = width / 64)', '128')
    .option('--text-layers <n>', 'text transformer blocks', '4')
    .option(
      '--steps <n>',
      'optimizer steps (the cosine decay ends after the last; 6000 of the default model ≈ 1 hour on 2 cores)',
      '6000',
    )
    .option('--batch <n>', 'pairs per step', '64')
    .option('--lr <x>', 'peak learning rate', '1e-3')
    .option('--warmup <n>', 'linear warm-up steps', '200')
    .option('--weight-decay <x>', 'AdamW weight decay on matrices', '0.1')
    .option('--seed <n>', 'seed of the initialization and the batch order', '0')
    .option('--save-every <n>', 'checkpoint every N steps (0: only at the end)', '500')
    .option('--keep <n>', 'keep the newest N checkpoints of this run (0: all)', '3')
    .option('--log-every <n>', 'metrics line every N steps', '10')
    .option('--eval-every <n>', 'held-out evaluation every N steps (0: never)', '500')
    .option('--cache-mb <n>', 'keep decoded training images in memory up to this many MiB', '2048')
    .option('--safetensors', 'also write the model as Hugging Face model.safetensors')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)')
    .action(run);
}
