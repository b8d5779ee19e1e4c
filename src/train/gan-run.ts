/**
 * A whole `train gan` run around GanTrainer, usable from the CLI and from code (the world trains its
 * generator through this with its own ImageDataset): the output folder, periodic checkpoints (rosinality's
 * layout, `checkpoint/NNNNNN.pt`, the last few kept), sample grids of fixed z from g_ema, a JSON-lines
 * metrics log, a stop request honoured between iterations (a checkpoint is written), and resume.
 *
 * Layout of `outDir`: checkpoint/NNNNNN.pt, sample/NNNNNN.png, logs/metrics.jsonl.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { writeImage } from '../io/image.js';
import { BatchLoader, DataError, type ImageDataset } from './data.js';
import { type GanConfig, GanError, type GanTrainer, type IterationStats, Stream } from './gan.js';

export interface GanRunOptions {
  outDir: string;
  /** Stop after this many iterations in total (train.py's --iter). */
  iterations: number;
  /** Write a sample grid every this many kimg (images shown to D), and at the start. */
  sampleEveryKimg: number;
  /** Images in the sample grid (a square number reads best). */
  nSample: number;
  /** Write a checkpoint every this many minutes (and at the end, and when stopped). */
  saveEveryMinutes: number;
  /** Checkpoints kept in checkpoint/ (the oldest are deleted). */
  keep: number;
  /** Horizontal flips of the training images. */
  flip: boolean;
}

export interface Progress {
  stats: IterationStats;
  /** Images shown to D so far, in thousands. */
  kimg: number;
  /** Training images per second over the recent iterations. */
  imagesPerSecond: number;
  /** Seconds left at that rate. */
  etaSeconds: number;
}

export interface RunHooks {
  onIteration?: (p: Progress) => void;
  onCheckpoint?: (file: string) => void;
  onSample?: (file: string) => void;
  /** Polled after every iteration: true ends the run (after writing a checkpoint). */
  stopRequested?: () => boolean;
}

const pad6 = (n: number) => String(n).padStart(6, '0');

/** The newest checkpoint/NNNNNN.pt in a run folder, or null. */
export function latestCheckpoint(outDir: string): string | null {
  const dir = join(outDir, 'checkpoint');
  if (!existsSync(dir)) return null;
  const its = readdirSync(dir)
    .flatMap((f) => /^(\d+)\.pt$/.exec(f)?.[1] ?? [])
    .map(Number)
    .sort((a, b) => a - b);
  return its.length ? join(dir, `${pad6(its[its.length - 1])}.pt`) : null;
}

/** Fixed sample inputs (z and per-layer noise) for the grids, a function of the seed alone. */
function sampleInputs(t: GanTrainer, n: number): { z: Float32Array; noise: Float32Array[] } {
  const s = new Stream(t.config.seed, 0x5a3b1e);
  const z = s.normals(n * t.structure.config.styleDim);
  const noise = t.structure.convs.map((L) => s.normals(n * L.resolution ** 2));
  return { z, noise };
}

/**
 * Trains until `options.iterations` or a stop request. The trainer may be fresh or resumed (its `iter`
 * says where); the data must have the trainer's image size.
 */
export async function runGanTraining(
  trainer: GanTrainer,
  data: ImageDataset,
  options: GanRunOptions,
  hooks: RunHooks = {},
): Promise<{ stopped: boolean; lastCheckpoint: string | null }> {
  const c: GanConfig = trainer.config;
  if (data.size !== c.size)
    throw new DataError(`the dataset's images are ${data.size}², the model's ${c.size}²`);
  const out = options.outDir;
  for (const d of ['checkpoint', 'sample', 'logs']) mkdirSync(join(out, d), { recursive: true });
  const metrics = join(out, 'logs', 'metrics.jsonl');
  trimMetrics(metrics, trainer.iter);

  const loader = new BatchLoader(data, c.batch, c.seed, options.flip, trainer.iter);
  const fixed = sampleInputs(trainer, options.nSample);
  const samplePeriod = Math.max(1, Math.round((options.sampleEveryKimg * 1000) / c.batch));
  let lastSave = Date.now();
  let lastCheckpoint: string | null = null;
  const save = () => {
    const file = join(out, 'checkpoint', `${pad6(trainer.iter)}.pt`);
    trainer.save(file);
    lastCheckpoint = file;
    lastSave = Date.now();
    pruneCheckpoints(join(out, 'checkpoint'), options.keep);
    hooks.onCheckpoint?.(file);
  };
  const sample = async () => {
    const img = await trainer.sample(fixed.z, fixed.noise);
    const file = join(out, 'sample', `${pad6(trainer.iter)}.png`);
    const n = options.nSample;
    await writeImage(
      file,
      { dtype: 'float32', shape: [n, 3, c.size, c.size], data: img },
      { cols: Math.ceil(Math.sqrt(n)) },
    );
    hooks.onSample?.(file);
  };

  if (trainer.iter % samplePeriod === 0 || trainer.iter === 0) await sample();
  const recent: { t: number; images: number }[] = [{ t: performance.now(), images: 0 }];
  let shown = 0;
  let stopped = false;
  while (trainer.iter < options.iterations) {
    const real = await loader.next();
    const stats = await trainer.step(trainer.draw(trainer.iter, real));
    if (!Object.values(stats).every(Number.isFinite))
      throw new GanError(`iteration ${stats.iter}: a loss is not finite (${JSON.stringify(stats)})`);
    shown += c.batch;
    const now = performance.now();
    recent.push({ t: now, images: shown });
    while (recent.length > 50) recent.shift();
    const span = (now - recent[0].t) / 1000;
    const ips = span > 0 ? (shown - recent[0].images) / span : 0;
    const kimg = (trainer.iter * c.batch) / 1000;
    appendFileSync(
      metrics,
      `${JSON.stringify({ ...stats, kimg, images_per_s: ips, time: new Date().toISOString() })}\n`,
    );
    hooks.onIteration?.({
      stats,
      kimg,
      imagesPerSecond: ips,
      etaSeconds: ips > 0 ? ((options.iterations - trainer.iter) * c.batch) / ips : Number.POSITIVE_INFINITY,
    });
    if (trainer.iter % samplePeriod === 0) await sample();
    if (hooks.stopRequested?.()) {
      stopped = true;
      break;
    }
    if (Date.now() - lastSave >= options.saveEveryMinutes * 60_000) save();
  }
  save();
  return { stopped, lastCheckpoint };
}

/** Keeps the newest `keep` checkpoints. */
function pruneCheckpoints(dir: string, keep: number): void {
  const its = readdirSync(dir)
    .flatMap((f) => /^(\d+)\.pt$/.exec(f)?.[1] ?? [])
    .map(Number)
    .sort((a, b) => a - b);
  for (const i of its.slice(0, Math.max(0, its.length - keep)))
    rmSync(join(dir, `${pad6(i)}.pt`), { force: true });
}

/** A resumed run drops the log lines of iterations after the checkpoint, so the log reads as one run. */
function trimMetrics(file: string, iter: number): void {
  if (!existsSync(file)) return;
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const kept = lines.filter((l) => {
    try {
      return (JSON.parse(l) as { iter: number }).iter < iter;
    } catch {
      return false;
    }
  });
  if (kept.length !== lines.length)
    writeFileAtomic(file, new TextEncoder().encode(kept.map((l) => `${l}\n`).join('')));
}
