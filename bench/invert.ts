/**
 * `npm run bench -- invert [case]`: photo inversion figures (src/align, src/models/e4e, src/edit/invert.ts)
 * on full-size random weights. Each case runs in its own child process. JSON lines {"bench":"invert",…}:
 *
 *   align_1024    detection + 68 landmarks + FFHQ warp of a 1024² photo (the astronaut fixture upscaled)
 *                 to 1024² (limit 0.3 s); anchor: one sharp Lanczos resize of the same photo to 256²
 *   e4e_256       Encoder4Editing forward at 256² with e4e_ffhq_encode's shapes (IR-SE50, 18 style
 *                 blocks of 512; limit 0.4 s); anchor: the IR-SE50 body alone on the same input
 *   invert_step   one optimization step at 1024² (W+, pixel MSE + CLIP ViT-B/32 image features), config-f
 *                 generator (limit 2.5 s); anchor: one generator forward (blocked kernels) in the same run
 *   world         reconstruction quality on the world's trained generator: `--count` (20) held-out world
 *                 faces (seeds from WORLD_HELD_OUT_BASE, never seen by the GAN) inverted by optimization
 *                 for `--steps` (300) each with `styleclip invert`'s settings; one line per face (PSNR at
 *                 the mean latent and after), then the mean PSNR (target ≥ 25 dB), median, min, s/step.
 *                 Flags (world only): --generator FILE (default models/world/generator.pt; the case is
 *                 skipped when there is none), --clip FILE (default models/world/clip.pt when there, else
 *                 pixel loss only), --count N, --steps N, and the inversion settings --space w|w+, --lr X,
 *                 --mse-lambda X, --clip-lambda X, --noise, --noise-reg X, --latent-noise X.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { alignPhoto, readPhoto } from '../src/align/index.js';
import { INVERT_DEFAULTS, type InvertConfig, Inverter, psnr, runInversion } from '../src/edit/invert.js';
import { Graph } from '../src/graph/graph.js';
import type { Tensor } from '../src/io/tensor.js';
import { loadClip } from '../src/models/clip/load.js';
import { e4eSession } from '../src/models/e4e/load.js';
import { E4eEncoder } from '../src/models/e4e/model.js';
import { StyleGAN2 } from '../src/models/stylegan2/generator.js';
import { loadGenerator } from '../src/models/stylegan2/load.js';
import { fastNormal, randomGeneratorWeights } from '../src/models/stylegan2/weights.js';
import { compile } from '../src/runtime/session.js';
import { WORLD_HELD_OUT_BASE, WorldImages } from '../src/world/dataset.js';
import { worldModelPath } from '../src/world/models.js';
import { buildClip } from './clip.js';
import { report, timeIt } from './report.js';

const B = 'invert';
const load1 = () => Number(loadavg()[0].toFixed(2));
const ms = (x: number) => Number(x.toFixed(1));

async function alignCase(): Promise<void> {
  const png = await sharp(fileURLToPath(new URL('../test/fixtures/photos/astronaut.png', import.meta.url)))
    .resize(1024, 1024, { kernel: 'lanczos3' })
    .png()
    .toBuffer();
  const photo = await readPhoto(png);
  const t = await timeIt(() => alignPhoto(photo, 1024), { runs: 7 });
  // CPU seconds per alignment (all threads): on a loaded machine wall time mostly measures the others, and
  // CPU time over the cores used is a floor for an idle machine's wall time.
  const c0 = process.cpuUsage();
  for (let i = 0; i < 5; i++) await alignPhoto(photo, 1024);
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6 / 5;
  const a = await timeIt(() => sharp(png).resize(256, 256, { kernel: 'lanczos3' }).raw().toBuffer(), {
    runs: 7,
  });
  report(B, 'align_1024', t.median / 1000, 's', {
    first_s: ms(t.first) / 1000,
    min_s: Number((t.min / 1000).toFixed(3)),
    limit: 0.3,
    cpu_s: Number(cpu.toFixed(3)),
    anchor: 'sharp_lanczos_1024_to_256',
    anchor_ms: ms(a.median),
    ratio: Number((t.median / a.median).toFixed(2)),
    load: load1(),
  });
}

/** e4e_ffhq_encode.pt's encoder shapes: IR-SE50 (64, 128, 256, 512; 3, 4, 14, 3 units), 18 style blocks. */
function e4eStateDict(): Map<string, Tensor> {
  const randn = fastNormal(3);
  const sd = new Map<string, Tensor>();
  const put = (k: string, shape: number[], fill?: number, std?: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data =
      fill === undefined
        ? randn(new Float32Array(n), std ?? 1 / Math.sqrt(n / shape[0]))
        : new Float32Array(n).fill(fill);
    sd.set(k, { dtype: 'float32', shape, data });
  };
  const bn = (k: string, c: number) => {
    put(`${k}.weight`, [c], 1);
    put(`${k}.bias`, [c], 0);
    put(`${k}.running_mean`, [c], 0);
    put(`${k}.running_var`, [c], 1);
  };
  put('input_layer.0.weight', [64, 3, 3, 3]);
  bn('input_layer.1', 64);
  put('input_layer.2.weight', [64], 0.25);
  const stages: [number, number, number][] = [
    [64, 64, 3],
    [64, 128, 4],
    [128, 256, 14],
    [256, 512, 3],
  ];
  let u = 0;
  for (const [cin, d, n] of stages)
    for (let k = 0; k < n; k++, u++) {
      const i = k === 0 ? cin : d;
      const p = `body.${u}`;
      if (i !== d) {
        put(`${p}.shortcut_layer.0.weight`, [d, i, 1, 1]);
        bn(`${p}.shortcut_layer.1`, d);
      }
      bn(`${p}.res_layer.0`, i);
      put(`${p}.res_layer.1.weight`, [d, i, 3, 3]);
      put(`${p}.res_layer.2.weight`, [d], 0.25);
      put(`${p}.res_layer.3.weight`, [d, d, 3, 3], undefined, 0.1 / Math.sqrt(d * 9));
      bn(`${p}.res_layer.4`, d);
      put(`${p}.res_layer.5.fc1.weight`, [d / 16, d, 1, 1]);
      put(`${p}.res_layer.5.fc2.weight`, [d, d / 16, 1, 1]);
    }
  for (let s = 0; s < 18; s++) {
    const convs = s < 3 ? 4 : s < 7 ? 5 : 6;
    for (let k = 0; k < convs; k++) {
      put(`styles.${s}.convs.${2 * k}.weight`, [512, 512, 3, 3]);
      put(`styles.${s}.convs.${2 * k}.bias`, [512], 0);
    }
    put(`styles.${s}.linear.weight`, [512, 512], undefined, 1);
    put(`styles.${s}.linear.bias`, [512], 0);
  }
  put('latlayer1.weight', [512, 256, 1, 1]);
  put('latlayer1.bias', [512], 0);
  put('latlayer2.weight', [512, 128, 1, 1]);
  put('latlayer2.bias', [512], 0);
  return sd;
}

async function e4eCase(): Promise<void> {
  const enc = E4eEncoder.fromStateDict(e4eStateDict());
  const S = 256;
  const x = fastNormal(5)(new Float32Array(3 * S * S), 0.5);
  const t0 = performance.now();
  const net = await e4eSession(enc, S);
  const build = (performance.now() - t0) / 1000;
  const feed = { image: { shape: [1, 3, S, S], data: x } };
  const t = await timeIt(() => net.run(feed), { runs: 5 });
  const c0 = process.cpuUsage();
  await net.run(feed);
  const c = process.cpuUsage(c0);
  const g = new Graph();
  const units = enc.units(g.input('image', [1, 3, S, S]));
  const body = await compile({ c3: units[units.length - 1] });
  const a = await timeIt(() => body.run(feed), { runs: 5 });
  report(B, 'e4e_256', t.median / 1000, 's', {
    first_s: Number((t.first / 1000).toFixed(3)),
    session_build_s: Number(build.toFixed(2)),
    limit: 0.4,
    cpu_s: Number(((c.user + c.system) / 1e6).toFixed(3)),
    anchor: 'irse50_body_256',
    anchor_ms: ms(a.median),
    ratio: Number((t.median / a.median).toFixed(2)),
    load: load1(),
  });
}

async function stepCase(): Promise<void> {
  const generator = randomGeneratorWeights({ size: 1024, seed: 1 });
  const clip = buildClip();
  const S = 1024;
  const t0 = performance.now();
  const inv = await Inverter.create({ generator, clip }, { steps: 300, latentNoise: 0.05 });
  const build = (performance.now() - t0) / 1000;
  const target = fastNormal(7)(new Float32Array(3 * S * S), 0.5);
  const run = await inv.start(target);
  const t1 = performance.now();
  await run.step();
  const first = (performance.now() - t1) / 1000;
  const times: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await run.step();
    times.push((performance.now() - t) / 1000);
  }
  const c = process.cpuUsage(c0);
  times.sort((a, b) => a - b);
  const G = new StyleGAN2(generator);
  const w = run.wplus();
  const a = await timeIt(() => G.synthesize(w), { runs: 3 });
  const median = times[1];
  report(B, 'invert_step_1024', median, 's', {
    first_s: Number(first.toFixed(2)),
    min_s: Number(times[0].toFixed(3)),
    session_build_s: Number(build.toFixed(1)),
    terms: 'mse+clip',
    limit: 2.5,
    cpu_s: Number(((c.user + c.system) / 1e6 / 3).toFixed(2)),
    anchor: 'generator_forward_1024',
    anchor_ms: ms(a.median),
    ratio: Number(((median * 1000) / a.median).toFixed(2)),
    peak_rss_gb: Number((process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)),
    load: load1(),
  });
}

/** The world case's flags (see the header). */
export interface WorldFlags {
  generator?: string;
  clip?: string;
  count: number;
  steps: number;
  invert: InvertConfig;
}

const quantile = (sorted: number[], q: number) => {
  const k = (sorted.length - 1) * q;
  const lo = Math.floor(k);
  return sorted[lo] + (sorted[Math.ceil(k)] - sorted[lo]) * (k - lo);
};
const db = (x: number) => Number(x.toFixed(2));

async function worldCase(f: WorldFlags): Promise<void> {
  const genFile = f.generator ?? worldModelPath('generator');
  if (!genFile) {
    console.error(
      'invert world: skipped: no models/world/generator.pt yet (train it with `styleclip train gan`, or give --generator FILE)',
    );
    return;
  }
  const clipFile = f.clip ?? worldModelPath('clip') ?? undefined;
  const generator = loadGenerator(genFile);
  const clip = clipFile ? loadClip(clipFile) : undefined;
  const S = generator.config.size;
  // `styleclip invert`'s settings, with the perceptual term only where there is a CLIP (as the command does).
  const config: Required<InvertConfig> = {
    ...INVERT_DEFAULTS,
    ...f.invert,
    steps: f.steps,
  };
  if (!clip) config.clipLambda = 0;
  const t0 = performance.now();
  const inv = await Inverter.create({ generator, clip }, config);
  const build = (performance.now() - t0) / 1000;
  const faces = new WorldImages(f.count, { size: S, base: WORLD_HELD_OUT_BASE, cacheBytes: 0 });
  const G = new StyleGAN2(generator);
  const scores: number[] = [];
  let optSeconds = 0;
  const c0 = process.cpuUsage();
  for (let i = 0; i < f.count; i++) {
    const target = await faces.get(i);
    const run = await inv.start(target);
    const start = psnr((await run.evaluate()).image, target);
    const t = performance.now();
    const res = await runInversion(run);
    optSeconds += (performance.now() - t) / 1000;
    const p = psnr(res.final.image, target);
    scores.push(p);
    const extra: Record<string, unknown> = {};
    // With --noise the reconstruction uses the optimized noise maps; the saved W+ renders with the
    // checkpoint's own noise everywhere else, so that figure is given too.
    if (config.noise)
      extra.psnr_checkpoint_noise = db(psnr((await G.synthesize(res.wplus)).data as Float32Array, target));
    report(B, 'world_face', p, 'dB', {
      seed: WORLD_HELD_OUT_BASE + i,
      psnr_start: db(start),
      mse: Number(res.final.mse.toPrecision(4)),
      ...extra,
    });
  }
  const c = process.cpuUsage(c0);
  await inv.release();
  const sorted = [...scores].sort((a, b) => a - b);
  const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
  const totalSteps = f.count * f.steps;
  report(B, `world_psnr_${f.steps}`, mean, 'dB', {
    target: 25,
    median: db(quantile(sorted, 0.5)),
    min: db(sorted[0]),
    max: db(sorted[sorted.length - 1]),
    count: f.count,
    steps: f.steps,
    s_per_step: totalSteps ? Number((optSeconds / totalSteps).toFixed(4)) : 0,
    cpu_s_per_step: totalSteps ? Number(((c.user + c.system) / 1e6 / totalSteps).toFixed(4)) : 0,
    session_build_s: Number(build.toFixed(2)),
    size: S,
    generator: genFile,
    clip: clipFile ?? null,
    space: config.space,
    lr: config.lr,
    mse_lambda: config.mseLambda,
    clip_lambda: config.clipLambda,
    noise: config.noise,
    noise_reg: config.noiseRegLambda,
    latent_noise: config.latentNoise,
    load: load1(),
  });
}

/** Case names and the world case's flags from the command line; a bad argument throws with the usage. */
export function parseInvertArgs(argv: string[]): { cases: string[]; world: WorldFlags; flags: string[] } {
  const cases: string[] = [];
  const flags: string[] = [];
  const world: WorldFlags = { count: 20, steps: 300, invert: {} };
  const usage =
    '; flags (world): --generator FILE --clip FILE --count N --steps N --space w|w+ --lr X --mse-lambda X --clip-lambda X --noise --noise-reg X --latent-noise X';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      if (!(a in CASES)) throw new Error(`unknown case ${a}; cases: ${Object.keys(CASES).join(', ')}`);
      cases.push(a);
      continue;
    }
    flags.push(a);
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
      flags.push(v);
      return v;
    };
    const number = (min: number, integer = false) => {
      const v = value();
      const n = Number(v);
      if (!(Number.isFinite(n) && n >= min && (!integer || Number.isInteger(n))))
        throw new Error(`${a} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got ${v}`);
      return n;
    };
    const file = () => {
      const v = value();
      if (!existsSync(v)) throw new Error(`${a}: ${v} not found`);
      return v;
    };
    if (a === '--generator') world.generator = file();
    else if (a === '--clip') world.clip = file();
    else if (a === '--count') world.count = number(1, true);
    else if (a === '--steps') world.steps = number(0, true);
    else if (a === '--space') {
      const v = value();
      if (v !== 'w' && v !== 'w+') throw new Error(`--space must be w or w+, got ${v}`);
      world.invert.space = v;
    } else if (a === '--lr') world.invert.lr = number(0);
    else if (a === '--mse-lambda') world.invert.mseLambda = number(0);
    else if (a === '--clip-lambda') world.invert.clipLambda = number(0);
    else if (a === '--noise') world.invert.noise = true;
    else if (a === '--noise-reg') world.invert.noiseRegLambda = number(0);
    else if (a === '--latent-noise') world.invert.latentNoise = number(0);
    else throw new Error(`unknown flag ${a}${usage}`);
  }
  return { cases, world, flags };
}

let worldFlags: WorldFlags = { count: 20, steps: 300, invert: {} };

const CASES: Record<string, () => Promise<void>> = {
  align: alignCase,
  e4e: e4eCase,
  step: stepCase,
  world: () => worldCase(worldFlags),
};

export default async function main(): Promise<void> {
  let args: ReturnType<typeof parseInvertArgs>;
  try {
    args = parseInvertArgs(process.argv.slice(3));
  } catch (e) {
    console.error(`invert: ${(e as Error).message}`);
    process.exit(2);
  }
  worldFlags = args.world;
  const asked = args.cases;
  if (process.env.STYLECLIP_BENCH_CHILD) {
    for (const c of asked) await CASES[c]();
    return;
  }
  const self = fileURLToPath(new URL('./main.ts', import.meta.url));
  for (const c of asked.length ? asked : Object.keys(CASES)) {
    const r = spawnSync(process.execPath, [...process.execArgv, self, B, c, ...args.flags], {
      stdio: 'inherit',
      env: { ...process.env, STYLECLIP_BENCH_CHILD: '1' },
    });
    if (r.status !== 0) throw new Error(`invert bench case ${c} failed (exit ${r.status})`);
  }
}
