/**
 * `npm run bench -- edit [case]`: editing figures on random-weight, full-size models (FFHQ config-f 1024
 * generator, ViT-B/32, IR-SE50). Each case runs in its own child process, so its peak RSS is its own and
 * no other session's threads or arena disturb it. Prints JSON lines {"bench":"edit","name",...}.
 *
 * optimize_* (latent optimization, src/edit/optimize.ts): one Adam step in W+ at 1024², batch 1
 *   optimize_clip_l2     CLIP + L2 (limit 3 s/step)
 *   optimize_clip_l2_id  CLIP + L2 + ID (limit 3.5 s/step)
 *   each reports session build time, first step, median step, and peak RSS (limit 5 GB).
 *
 * global_* / fs3_* (global directions, src/edit/global.ts and fs3.ts):
 *   global_edit   one edit from a cached Δt: boundary (6048-row fs3) + s + α·Δs + one 1024² render (limit 1.1 s)
 *   global_dt     a new Δt: 2 × 79 template prompts through the ViT-B/32 text tower (limit 1.5 s)
 *   global_stats  the official channel statistics, samples/s at 1024 (100,000 samples in the official code)
 *   fs3_1024, fs3_256  precompute throughput (render, uint8, CLIP preprocessing, encode_image), renders/s,
 *                 and the projected hours of the official setting (100 images × 2 renders per channel)
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Fs3Interrupted, precomputeFs3 } from '../src/edit/fs3.js';
import {
  fs3Rows,
  GlobalEditor,
  renderStyles,
  type StyleStats,
  sampleStyleStats,
  stylesFromWplus,
} from '../src/edit/global.js';
import { LatentOptimizer } from '../src/edit/optimize.js';
import { ClipEncoder } from '../src/models/clip/encoder.js';
import {
  configFChannels,
  fastNormal,
  type GeneratorWeights,
  randomGeneratorWeights,
} from '../src/models/stylegan2/weights.js';
import { buildClip, buildIrse50 } from './clip.js';
import { report } from './report.js';

const B = 'edit';
const rssGB = () => process.resourceUsage().maxRSS / 1024 / 1024;

/** Builds the random models and compiles the step graph; the models' host copies die with this frame. */
async function buildOptimizer(withId: boolean) {
  const t0 = performance.now();
  const generator = randomGeneratorWeights({ size: 1024, seed: 1 });
  const clip = buildClip();
  const arcface = withId ? buildIrse50() : undefined;
  const tModels = (performance.now() - t0) / 1000;
  const rssModels = rssNowGB();
  const t1 = performance.now();
  const opt = await LatentOptimizer.create(
    { generator, clip, arcface },
    { steps: 300, l2Lambda: 0.008, idLambda: withId ? 0.005 : 0 },
  );
  return { opt, tModels, tBuild: (performance.now() - t1) / 1000, rssModels };
}

const rssNowGB = () => process.memoryUsage.rss() / 2 ** 30;

async function optimizeStep(name: string, withId: boolean, steps: number): Promise<void> {
  const { opt, tModels, tBuild, rssModels } = await buildOptimizer(withId);
  const rssSession = rssNowGB();
  const peakBuild = rssGB();
  const randn = fastNormal(11);
  const { nLatent: L, styleDim: D } = opt.generator.config;
  const init = randn(new Float32Array(L * D));
  const text = randn(new Float32Array(opt.clipDim), 1 / Math.sqrt(opt.clipDim));
  const run = await opt.start(init, text);
  const rssStart = rssNowGB(); // after start's garbage collection: weights in the session, no activations
  const t2 = performance.now();
  await run.step(); // with ID: includes the pre-run that computes the target features
  const tFirst = (performance.now() - t2) / 1000;
  const peakFirst = rssGB();
  const times: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < steps; i++) {
    const c0 = process.cpuUsage();
    const t = performance.now();
    await run.step();
    times.push((performance.now() - t) / 1000);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  times.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  const tag = { size: 1024, space: 'w+', clip: 'ViT-B/32', id: withId ? 'IR-SE50' : null };
  report(B, `${name}_step`, times[Math.floor(times.length / 2)], 's', {
    ...tag,
    min: Number(times[0].toFixed(3)),
    max: Number(times[times.length - 1].toFixed(3)),
    cpu_s: Number(cpu[Math.floor(cpu.length / 2)].toFixed(3)),
    runs: steps,
    limit: withId ? 3.5 : 3,
    load: Number(loadavg()[0].toFixed(2)),
  });
  report(B, `${name}_first_step`, tFirst, 's', tag);
  report(B, `${name}_session_build`, tBuild, 's', { ...tag, random_models_s: Number(tModels.toFixed(2)) });
  report(B, `${name}_peak_rss`, rssGB(), 'GB', {
    ...tag,
    limit: 5,
    rss_models_gb: Number(rssModels.toFixed(2)),
    rss_session_gb: Number(rssSession.toFixed(2)),
    peak_build_gb: Number(peakBuild.toFixed(2)),
    rss_after_start_gb: Number(rssStart.toFixed(2)),
    peak_first_step_gb: Number(peakFirst.toFixed(2)),
  });
}

// --- global directions ------------------------------------------------------------------------------

const load1 = () => Number(loadavg()[0].toFixed(2));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A random config-f generator with a mean latent (random weights have none; truncation needs one). */
function randomGenerator(size: number): GeneratorWeights {
  const G = randomGeneratorWeights({ size, seed: 1, channels: configFChannels(size) });
  G.latentAvg = fastNormal(21)(new Float32Array(G.config.styleDim), 0.1);
  return G;
}

/** Random positive channel stds and means, so the bench needs no 100k-sample pass. */
function randomStats(G: GeneratorWeights): StyleStats {
  const randn = fastNormal(17);
  return {
    mean: G.config.styleDims.map((c) => randn(new Float32Array(c), 0.5)),
    std: G.config.styleDims.map((c) => randn(new Float32Array(c)).map((v) => 0.2 + Math.abs(v) * 0.2)),
    samples: 0,
  };
}

/** Random unit rows [rows, 512] like an fs3. */
function randomFs3(rows: number, e: number): Float32Array {
  const f = fastNormal(19)(new Float32Array(rows * e));
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < e; j++) s += f[r * e + j] ** 2;
    for (let j = 0; j < e; j++) f[r * e + j] /= Math.sqrt(s);
  }
  return f;
}

async function globalEdit(runs: number): Promise<void> {
  const G = randomGenerator(1024);
  const clip = new ClipEncoder(buildClip());
  const fs3 = randomFs3(fs3Rows(G.config), clip.embedDim);
  const editor = new GlobalEditor(G, clip, fs3, randomStats(G));
  const dt = fastNormal(23)(new Float32Array(clip.embedDim), 1 / Math.sqrt(clip.embedDim)); // a cached Δt
  const wplus = fastNormal(29)(new Float32Array(G.config.nLatent * G.config.styleDim));
  const codes = await stylesFromWplus(G, wplus, 1);
  const t0 = performance.now();
  await renderStyles(G, codes, 1); // graph build, serialization, session creation, first run
  const tFirst = (performance.now() - t0) / 1000;
  const total: number[] = [];
  const bound: number[] = [];
  let channels = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const b = editor.boundary(dt, 0.05);
    bound.push((performance.now() - t) / 1000);
    channels = b.numChannels;
    await editor.render(codes, b, [4.1]);
    total.push((performance.now() - t) / 1000);
  }
  const tag = { size: 1024, fs3_rows: fs3Rows(G.config), channels, runs, load: load1() };
  report(B, 'global_edit_cached_dt', median(total), 's', {
    ...tag,
    min: Number(Math.min(...total).toFixed(3)),
    boundary_s: Number(median(bound).toFixed(4)),
    limit: 1.1,
  });
  report(B, 'global_edit_first_render', tFirst, 's', { size: 1024 });
  report(B, 'global_edit_peak_rss', rssGB(), 'GB', { size: 1024 });
}

async function globalDt(runs: number): Promise<void> {
  const clip = new ClipEncoder(buildClip());
  let k = 0;
  // Fresh words every time, so neither text hits the encoder's cache.
  const fresh = async () => {
    k++;
    return clip.textDirection(`smiling face number ${k}`, `face number ${k}`);
  };
  const t0 = performance.now();
  await fresh();
  const tFirst = (performance.now() - t0) / 1000;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fresh();
    times.push((performance.now() - t) / 1000);
  }
  report(B, 'global_new_dt_158_prompts', median(times), 's', {
    min: Number(Math.min(...times).toFixed(3)),
    first_s: Number(tFirst.toFixed(2)),
    runs,
    limit: 1.5,
    load: load1(),
  });
}

async function globalStats(): Promise<void> {
  const G = randomGenerator(1024);
  const n = 5000;
  await sampleStyleStats(G, { samples: 1000, batch: 1000 }); // session build
  const t = performance.now();
  await sampleStyleStats(G, { samples: n, batch: 1000 });
  const s = (performance.now() - t) / 1000;
  report(B, 'global_stats_samples_per_s', n / s, 'samples/s', {
    size: 1024,
    official_100k_s: Number((100_000 / (n / s)).toFixed(1)),
    load: load1(),
  });
}

async function fs3Throughput(size: number, batches: number): Promise<void> {
  const G = randomGenerator(size);
  const clip = new ClipEncoder(buildClip());
  const stamps: number[] = [];
  let renders = 0;
  let batch = 0;
  try {
    await precomputeFs3(G, clip, {
      images: 100,
      stats: randomStats(G),
      shouldStop: () => stamps.length > batches,
      onProgress: (done) => {
        stamps.push(performance.now());
        renders = done;
        if (stamps.length === 1) batch = done;
      },
    });
  } catch (e) {
    if (!(e instanceof Fs3Interrupted)) throw e;
  }
  // The first batch includes session creation; rate over the batches after it.
  const s = (stamps[stamps.length - 1] - stamps[0]) / 1000;
  const rate = (renders - batch) / s;
  const all = fs3Rows(G.config, 'all') * 200;
  const upto = fs3Rows(G.config, 'upto128') * 200;
  report(B, `fs3_${size}_renders_per_s`, rate, 'renders/s', {
    size,
    batch,
    batches_timed: stamps.length - 1,
    official_all_rows: fs3Rows(G.config, 'all'),
    official_all_hours: Number((all / rate / 3600).toFixed(1)),
    upto128_rows: fs3Rows(G.config, 'upto128'),
    upto128_hours: Number((upto / rate / 3600).toFixed(1)),
    load: load1(),
  });
  report(B, `fs3_${size}_peak_rss`, rssGB(), 'GB', { size });
}

const cases: Record<string, (steps: number) => Promise<void>> = {
  optimize_clip_l2: (n) => optimizeStep('optimize_clip_l2', false, n),
  optimize_clip_l2_id: (n) => optimizeStep('optimize_clip_l2_id', true, n),
  global_edit: (n) => globalEdit(Math.max(n, 5)),
  global_dt: (n) => globalDt(Math.max(n, 5)),
  global_stats: () => globalStats(),
  fs3_1024: () => fs3Throughput(1024, 4),
  fs3_256: () => fs3Throughput(256, 2),
};

export default async function main(): Promise<void> {
  const args = process.argv.slice(3);
  const flag = (k: string, d: string) => {
    const i = args.indexOf(`--${k}`);
    return i >= 0 ? args[i + 1] : d;
  };
  const steps = Number(flag('steps', '5'));
  const only = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
  if (process.env.STYLECLIP_BENCH_CHILD) {
    for (const c of only) await cases[c](steps);
    return;
  }
  const names = only.length ? only : Object.keys(cases);
  for (const c of names)
    if (!cases[c]) throw new Error(`unknown case ${c}; one of ${Object.keys(cases).join(', ')}`);
  const self = fileURLToPath(new URL('./main.ts', import.meta.url));
  for (const c of names) {
    const r = spawnSync(process.execPath, [...process.execArgv, self, B, c, '--steps', String(steps)], {
      stdio: 'inherit',
      env: { ...process.env, STYLECLIP_BENCH_CHILD: '1' },
    });
    if (r.status !== 0) throw new Error(`edit bench case ${c} failed (exit ${r.status})`);
  }
}
