/**
 * StyleGAN2 training throughput (`styleclip train gan`) against rosinality's train.py in PyTorch, side by
 * side in one run, at the configuration: 64², channels {4: 128, 8: 128, 16: 128, 32: 64, 64: 32},
 * n_mlp 8, batch 16, R1 every 16, path length every 4, style mixing 0.9.
 *
 * Like the anchor (../shared/anchors/train_reference.py), it times plain iterations, iterations with the
 * path-length step and iterations with R1, and weights them by their real frequency:
 *   s/iter = plain + (pl − plain)/4 + (r1 − plain)/16,  images/s = batch / (s/iter).
 * Each case runs in its own child process, so its peak RSS is its own. Besides wall time it reports images
 * per CPU-second × cores, the figure that survives a busy shared machine (the anchor's torch threads spin,
 * so its CPU time is not comparable; its line has wall time only).
 *
 *   npm run bench -- train                      (ours; the anchor too when REF is set)
 *   REF=<dir with orpatashnik+StyleCLIP> npm run bench -- train
 *   BENCH_TRAIN_256=1 npm run bench -- train    (also 256², channels {4..32: 256, 64: 128, 128: 64, 256: 32}, batch 8)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultGanConfig, GanTrainer } from '../src/train/gan.js';
import { peakRssMB, report } from './report.js';

interface Case {
  size: number;
  channels: Record<number, number>;
  batch: number;
  /** Plain iterations timed (after a warm-up). */
  iters: number;
}

const SMALL: Case = { size: 64, channels: { 4: 128, 8: 128, 16: 128, 32: 64, 64: 32 }, batch: 16, iters: 4 };
const LARGE: Case = {
  size: 256,
  channels: { 4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 32 },
  batch: 8,
  iters: 2,
};
const R1_EVERY = 16;
const PL_EVERY = 4;

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Runs in the child: times whole GanTrainer steps of each kind, prints one JSON object. */
async function child(c: Case): Promise<void> {
  const cfg = {
    ...defaultGanConfig(c.size, c.channels),
    batch: c.batch,
    d_reg_every: R1_EVERY,
    g_reg_every: PL_EVERY,
  };
  const t = GanTrainer.fresh(cfg);
  const n = 3 * c.size * c.size;
  const real = new Float32Array(c.batch * n);
  for (let i = 0; i < real.length; i++) real[i] = Math.sin(i * 0.37) * 0.9;
  const w0 = performance.now();
  t.iter = R1_EVERY; // the first step builds all four phase graphs (R1 and path length both run)
  await t.step(t.draw(t.iter, real));
  const firstS = (performance.now() - w0) / 1000;
  const time = async (iters: number[]) => {
    const w = performance.now();
    const cp = cpuMs();
    for (const i of iters) {
      t.iter = i;
      await t.step(t.draw(i, real));
    }
    return { wall: (performance.now() - w) / 1000 / iters.length, cpu: (cpuMs() - cp) / 1000 / iters.length };
  };
  const plainIters = Array.from({ length: c.iters }, (_, k) => 1 + k + Math.floor(k / 3)); // 1, 2, 3, 5, ...
  const plain = await time(plainIters);
  const pl = await time([PL_EVERY, 2 * PL_EVERY].slice(0, Math.max(1, Math.ceil(c.iters / 3))));
  // an R1 iteration that is not a path-length one: R1 every 16 is always on a multiple of 4, so time R1 by
  // (R1 + path length) − (path length)
  const both = await time([R1_EVERY * 2]);
  const perIter = (k: 'wall' | 'cpu') =>
    plain[k] + (pl[k] - plain[k]) / PL_EVERY + (both[k] - pl[k]) / R1_EVERY;
  console.log(
    JSON.stringify({
      first_s: firstS,
      plain,
      pl,
      r1_pl: both,
      s_per_iter: perIter('wall'),
      cpu_s_per_iter: perIter('cpu'),
      peak_rss_mb: peakRssMB(),
    }),
  );
}

function runChild(c: Case): Record<string, number & Record<string, number>> | null {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, BENCH_TRAIN_CHILD: JSON.stringify(c) },
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !line) {
    console.error(`train bench child failed (${c.size}²): ${r.stderr.slice(-2000)}`);
    return null;
  }
  return JSON.parse(line);
}

/** rosinality's train.py iteration in torch (the anchor), or null without REF or torch. */
function anchor(c: Case): { images_per_s: number; s_per_iter: number; torch: string } | null {
  const ref = process.env.REF;
  const script = join(
    fileURLToPath(new URL('../..', import.meta.url)),
    'shared',
    'anchors',
    'train_reference.py',
  );
  if (!ref || !existsSync(script) || !existsSync('/usr/bin/python3')) {
    console.error(
      'train bench: the anchor needs REF=<dir holding orpatashnik+StyleCLIP> and ../shared/anchors/train_reference.py',
    );
    return null;
  }
  const channels = Object.entries(c.channels)
    .map(([k, v]) => `${k}:${v}`)
    .join(',');
  const r = spawnSync(
    '/usr/bin/python3',
    [script, '--size', `${c.size}`, '--channels', channels, '--batch', `${c.batch}`, '--iters', `${c.iters}`],
    { env: { ...process.env, REF: ref }, encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  const line = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !line) {
    console.error(`train bench: the anchor failed: ${r.stderr.slice(-1500)}`);
    return null;
  }
  return JSON.parse(line);
}

export default async function main(): Promise<void> {
  const cores = availableParallelism();
  const cases = process.env.BENCH_TRAIN_256 ? [SMALL, LARGE] : [SMALL];
  let ours: number | null = null;
  for (const c of cases) {
    const r = runChild(c);
    if (!r) continue;
    const ips = c.batch / r.s_per_iter;
    if (c === SMALL) ours = ips;
    const common = { size: c.size, channels: c.channels, batch: c.batch };
    report('train', `stylegan2 ${c.size}² iteration (ours)`, ips, 'images/s', {
      ...common,
      s_per_iter: r.s_per_iter,
      s_plain: r.plain.wall,
      s_pl: r.pl.wall,
      s_r1_pl: r.r1_pl.wall,
      first_step_s: r.first_s,
    });
    report(
      'train',
      `stylegan2 ${c.size}² iteration (ours, by CPU time × ${cores} cores)`,
      (c.batch / r.cpu_s_per_iter) * cores,
      'images/s',
      {
        ...common,
        cpu_s_per_iter: r.cpu_s_per_iter,
      },
    );
    report('train', `stylegan2 ${c.size}² peak RSS`, r.peak_rss_mb / 1024, 'GB', common);
  }
  const a = anchor(SMALL);
  if (a) {
    const common = { size: SMALL.size, channels: SMALL.channels, batch: SMALL.batch };
    report('train', 'stylegan2 64² iteration (rosinality train.py, torch)', a.images_per_s, 'images/s', {
      ...common,
      s_per_iter: a.s_per_iter,
      torch: a.torch,
    });
    if (ours !== null) report('train', 'ours / rosinality (wall)', ours / a.images_per_s, 'x', common);
  }
}

if (process.env.BENCH_TRAIN_CHILD) await child(JSON.parse(process.env.BENCH_TRAIN_CHILD));
