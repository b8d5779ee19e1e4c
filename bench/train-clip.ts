/**
 * CLIP training throughput at the small world configurations (64² images, patch 8, 4 + 4 blocks,
 * embedding 128, batch 64, captions on a 40-token context as the world's are): images per second of whole
 * `ClipTrainer` steps (graph run, AdamW on the host, batch assembly and tokenization from an in-memory
 * dataset), by wall time and by CPU time (images per CPU-second × cores: what the step reaches with the
 * cores to itself, the figure that survives a busy shared machine), with the graph run and the AdamW
 * update timed apart, and the achieved GFLOP/s of the step's matrix products. The anchor, measured in the same run, is the same architecture and step in PyTorch
 * (tools/clip_train_anchor.py, /usr/bin/python3 with torch); its line is skipped when torch is missing.
 *
 *   npm run bench -- train-clip            (width 128; BENCH_CLIP_WIDTHS=128,256 for more)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../src/models/clip/model.js';
import { ClipTrainer } from '../src/train/clip.js';
import type { ClipDataset } from '../src/train/clip-data.js';
import { clipConfig, initClipStateDict } from '../src/train/clip-init.js';
import { AdamW } from '../src/train/clip-optim.js';
import { ClipStep, TABLE } from '../src/train/clip-step.js';
import { seededNormal } from '../src/util/random.js';
import { report, timeIt } from './report.js';

const BATCH = 64;
const SIZE = 64;
const PATCH = 8;
const LAYERS = 4;
const EMBED = 128;
/** A caption of 38 tokens plus start and end: the trimmed context is 40, as for the world's longest. */
const CAPTION = `a cartoon of a face with ${'red hair and '.repeat(11)}glasses.`;

/** Multiply-adds ×2 of the step's matrix products (forward, and twice that backward). */
function stepFlops(width: number, textWidth: number, context: number): number {
  const tokens = (SIZE / PATCH) ** 2 + 1;
  const tower = (w: number, l: number) => LAYERS * (2 * BATCH * l * 12 * w * w + 2 * 2 * BATCH * l * l * w); // projections + MLP, scores + mix
  const forward =
    tower(width, tokens) +
    tower(textWidth, context) +
    2 * BATCH * 3 * PATCH * PATCH * width * (tokens - 1) +
    2 * BATCH * (width + textWidth) * EMBED;
  return 3 * forward;
}

function torchAnchor(width: number): { images_per_s: number; cpu_s_per_step: number; torch: string } | null {
  const r = spawnSync(
    '/usr/bin/python3',
    [
      'tools/clip_train_anchor.py',
      ...['--size', SIZE, '--patch', PATCH, '--width', width, '--layers', LAYERS, '--text-width', width],
      ...[
        '--text-layers',
        LAYERS,
        '--embed',
        EMBED,
        '--batch',
        BATCH,
        '--context',
        40,
        '--steps',
        2,
        '--threads',
        availableParallelism(),
      ],
    ].map(String),
    // Idle OpenMP workers must sleep, not spin: on a busy machine spinning multiplies torch's time.
    { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } },
  );
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

export default async function main(): Promise<void> {
  const widths = (process.env.BENCH_CLIP_WIDTHS ?? '128').split(',').map(Number);
  const out = mkdtempSync(join(tmpdir(), 'bench-train-clip-'));
  try {
    for (const width of widths) {
      const config = clipConfig({
        embedDim: EMBED,
        imageResolution: SIZE,
        visionPatchSize: PATCH,
        visionWidth: width,
        visionLayers: LAYERS,
        textWidth: width,
        textLayers: LAYERS,
      });
      const fields = {
        size: SIZE,
        patch: PATCH,
        width,
        text_width: width,
        layers: LAYERS,
        embed: EMBED,
        batch: BATCH,
      };
      const model = ClipModel.fromStateDict(initClipStateDict(config, 0));
      const px = 3 * SIZE * SIZE;
      const pixels = seededNormal(1, 256 * px);
      const data: ClipDataset = {
        length: 256,
        get: async (i) => ({ image: pixels.subarray(i * px, (i + 1) * px), caption: CAPTION }),
      };
      const trainer = new ClipTrainer(model, data, {
        outDir: join(out, String(width)),
        steps: 1000,
        batch: BATCH,
        lr: 5e-4,
        warmup: 10,
        weightDecay: 0.1,
        seed: 0,
        saveEvery: 0,
        logEvery: 1000,
        evalEvery: 0,
      });
      await trainer.trainStep(); // compiles
      const cpu0 = process.cpuUsage();
      const whole = await timeIt(() => trainer.trainStep(), { warmup: 0, runs: 5 });
      const cpu = process.cpuUsage(cpu0);
      const cpuPerStep = (cpu.user + cpu.system) / 1e6 / 5;
      report('train-clip', 'step', (BATCH * 1000) / whole.median, 'images/s', {
        ...fields,
        step_ms: Math.round(whole.median),
        cpu_s_per_step: Number(cpuPerStep.toFixed(3)),
      });
      // On a shared machine wall time depends on the neighbours; CPU time much less so. Images per
      // CPU-second × the cores gives what the step would reach with the cores to itself.
      report('train-clip', 'step_per_cpu', (BATCH / cpuPerStep) * availableParallelism(), 'images/s', {
        ...fields,
        cores: availableParallelism(),
      });

      // the graph run alone, and AdamW alone, on the trainer's own weights
      const step = new ClipStep(model);
      const weights = new Map(trainer.params.map((p) => [p.name, p.data]));
      const batch = pixels.subarray(0, BATCH * px);
      const { tokenize } = await import('../src/models/clip/tokenizer.js');
      const tokens = tokenize(Array(BATCH).fill(CAPTION));
      let grads = new Map<string, Float32Array>();
      const graph = await timeIt(
        async () => {
          grads = (await step.run(weights, batch, tokens)).grads;
        },
        { warmup: 1, runs: 3 },
      );
      const flops = stepFlops(width, width, step.contextFor(tokens, 77));
      report('train-clip', 'graph', graph.median, 'ms', {
        ...fields,
        gflops_per_s: flops / graph.median / 1e6,
      });
      const opt = new AdamW({ lr: 1e-4 });
      const params = trainer.params.map((p) => ({ ...p, data: p.data.slice(), grad: grads.get(p.name)! }));
      // as the trainer runs it: the token table's unread rows are decayed lazily
      const sparse = new Map([[TABLE, { rowSize: width, rows: step.lastRows }]]);
      const adam = await timeIt(async () => opt.step(params, sparse), { warmup: 1, runs: 3 });
      const count = params.reduce((a, p) => a + p.data.length, 0);
      report('train-clip', 'adamw', adam.median, 'ms', { ...fields, parameters: count });

      const anchor = torchAnchor(width);
      if (anchor) {
        report('train-clip', 'torch_step', anchor.images_per_s, 'images/s', {
          ...fields,
          torch: anchor.torch,
          cpu_s_per_step: Number(anchor.cpu_s_per_step.toFixed(3)),
        });
        report(
          'train-clip',
          'speedup_vs_torch',
          (BATCH * 1000) / whole.median / anchor.images_per_s,
          'x',
          fields,
        );
        report('train-clip', 'speedup_vs_torch_cpu', anchor.cpu_s_per_step / cpuPerStep, 'x', fields);
      }
      await trainer.release();
      await step.release();
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
