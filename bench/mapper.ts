/**
 * `npm run bench -- mapper [case]`: latent-mapper figures on random-weight, full-size models (LevelsMapper
 * 3 × 4 × 512², FFHQ config-f 1024 generator, ViT-B/32, IR-SE50). Each case runs in its own process.
 *
 *   inference  mapper only (no render), ms per latent at batch 1 and 8           target ≤ 2 ms
 *   apply      w_hat = w + 0.1·M(w) and the 1024² render, batch 1                   target ≤ 1.1 s
 *   train      one training step, batch 2, 1024², CLIP + L2 + ID, with the Ranger update  target ≤ 6 s
 *              (and the hours for 50,000 steps; the paper: 10–12 h on one GPU)
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MapperApplier } from '../src/edit/mapper/apply.js';
import { DEFAULT_LAMBDAS, MapperObjective, MapperTargets } from '../src/edit/mapper/loss.js';
import { initMapperWeights, wplusSpec } from '../src/edit/mapper/model.js';
import { type Param, Ranger } from '../src/edit/optim.js';
import { ClipEncoder } from '../src/models/clip/encoder.js';
import { fastNormal, randomGeneratorWeights } from '../src/models/stylegan2/weights.js';
import { buildClip, buildIrse50 } from './clip.js';
import { report, timeIt } from './report.js';

const B = 'mapper';
/** Micro-batch of the training step (the trainer's default at 1024²: 1); MAPPER_MICRO=2 for one batch-2 graph. */
const MICRO = Number(process.env.MAPPER_MICRO ?? 1);
const load = () => Number(loadavg()[0].toFixed(2));
const rssGB = () => Number((process.resourceUsage().maxRSS / 1024 / 1024).toFixed(2));

function latents(n: number, L: number, seed: number): Float32Array {
  return fastNormal(seed)(new Float32Array(n * L * 512));
}

async function inference() {
  const G = randomGeneratorWeights({ size: 1024, seed: 1 });
  const M = initMapperWeights(wplusSpec(), 2);
  for (const batch of [1, 8]) {
    const ap = await MapperApplier.create(M, G, { batch, render: false });
    const w = latents(batch, 18, 3);
    const t = await timeIt(() => ap.run(w), { runs: 50, warmup: 5 });
    report(B, `mapper_only_b${batch}_per_latent`, t.median / batch, 'ms', {
      batch,
      limit_ms: 2,
      load1: load(),
    });
  }
}

async function apply() {
  const G = randomGeneratorWeights({ size: 1024, seed: 1 });
  const M = initMapperWeights(wplusSpec(), 2);
  const t0 = performance.now();
  const ap = await MapperApplier.create(M, G, { batch: 1 });
  const build = (performance.now() - t0) / 1000;
  const w = latents(1, 18, 3);
  const t = await timeIt(() => ap.run(w), { runs: 5 });
  report(B, 'apply_with_render_1024_b1', t.median / 1000, 's', {
    first_s: Number((t.first / 1000).toFixed(2)),
    session_build_s: Number(build.toFixed(1)),
    limit_s: 1.1,
    peak_rss_gb: rssGB(),
    load1: load(),
  });
}

async function train() {
  const tm = performance.now();
  const G = randomGeneratorWeights({ size: 1024, seed: 1 });
  const clip = buildClip();
  const arcface = buildIrse50();
  const textFeatures = await new ClipEncoder(clip).encodeTexts(['a person with purple hair']);
  const M = initMapperWeights(wplusSpec(), 2);
  const models_s = (performance.now() - tm) / 1000;
  const models = { generator: G, clip, textFeatures, arcface };
  const t0 = performance.now();
  const obj = await MapperObjective.create(M, models, {
    batch: 2,
    microBatch: MICRO,
    lambdas: DEFAULT_LAMBDAS,
    targets: true,
  });
  const targets = await MapperTargets.create(models, { microBatch: 1, features: true });
  const build = (performance.now() - t0) / 1000;
  const opt = new Ranger({ lr: 0.5 });
  const params: Param[] = [...M.params].map(([name, p]) => ({
    name,
    data: p.data,
    grad: new Float32Array(p.data.length),
    shape: p.shape,
  }));
  const w = latents(2, 18, 4);
  let optMs = 0;
  let features = (await targets.compute(w)).features;
  // As the trainer does: the ID targets of G(w) are rendered the first time a latent is seen (first
  // epoch) and read from its cache after that.
  const step = async (render: boolean) => {
    if (render) features = (await targets.compute(w)).features;
    const r = await obj.run(M.params, w, features);
    const t = performance.now();
    for (const p of params) p.grad = r.grads.get(p.name)!;
    opt.step(params);
    optMs = performance.now() - t;
  };
  const fresh = await timeIt(() => step(true), { runs: 3 });
  const cached = await timeIt(() => step(false), { runs: 3 });
  const [s1, s2] = [fresh.median / 1000, cached.median / 1000];
  report(B, 'train_step_1024_b2_clip_l2_id', s2, 's', {
    targets: 'cached (every epoch after the first)',
    first_epoch_s: Number(s1.toFixed(2)),
    first_s: Number((fresh.first / 1000).toFixed(2)),
    ranger_update_ms: Number(optMs.toFixed(0)),
    session_build_s: Number(build.toFixed(1)),
    random_models_s: Number(models_s.toFixed(1)),
    limit_s: 6,
    micro_batch: MICRO,
    peak_rss_gb: rssGB(),
    load1: load(),
  });
  // The default run: 50,000 steps of 2 over 5,000 sampled latents, so 20 epochs, the first uncached.
  const firstEpochSteps = 5000 / 2;
  const hours = (firstEpochSteps * s1 + (50000 - firstEpochSteps) * s2) / 3600;
  report(B, 'train_50000_steps_hours', hours, 'h', {
    latents: 5000,
    paper_gpu_h: '10-12',
    load1: load(),
  });
}

const cases: Record<string, () => Promise<void>> = { inference, apply, train };

export default async function main(): Promise<void> {
  const only = process.argv[3];
  if (only) {
    if (!cases[only]) throw new Error(`unknown case ${only}; one of ${Object.keys(cases).join(', ')}`);
    await cases[only]();
    return;
  }
  const self = fileURLToPath(new URL('./main.ts', import.meta.url));
  // Every case runs (each in its own process); any that failed fails the benchmark afterwards.
  const failed: string[] = [];
  for (const name of Object.keys(cases)) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, 'mapper', name], { stdio: 'inherit' });
    if (r.status !== 0) failed.push(`${name} (exit ${r.status ?? r.signal})`);
  }
  if (failed.length) throw new Error(`mapper bench: ${failed.join(', ')} failed`);
}
