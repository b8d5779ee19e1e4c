/**
 * Optimization-based GAN inversion for any generator, after rosinality's projector.py (the StyleGAN2
 * paper's projection): starting from the mean latent (or an encoder's W+), minimise
 *
 *   λ_MSE ‖G(w) − x‖² / N  +  λ_CLIP (1 − cos(E_img(G(w)), E_img(x)))  +  λ_noise Σ_i R(n_i)
 *
 * over w ∈ W (one w on every layer) or W+, and optionally over the noise maps n_i. The perceptual term is
 * CLIP's image embedding (LPIPS's VGG weights are not something this project can obtain); both images go
 * to CLIP through StyleCLIP's resample to the CLIP's input resolution (losses.ts clipInput, with the CLIP's own pixel normalization when it has one). R is
 * StyleGAN2's noise regularization: the squared autocorrelation at one pixel shift, horizontally and
 * vertically, at every scale down to 8×8; after each step the maps are renormalized to zero mean and unit
 * variance. The projector also feeds G a latent with Gaussian noise of strength σ_w·k·max(0, 1 − t/0.75)²
 * (k = 0.05); here k is `latentNoise`, 0 by default (see INVERT_DEFAULTS). The lr follows the same cosine
 * ramp as latent optimization (schedule.ts); Adam is torch's (optim.ts).
 *
 * The saved W+ renders with the checkpoint's own noise everywhere else in the project, so the noise maps
 * are only optimized on request (they make the reconstruction here sharper, not the latent better).
 */
import { grad } from '../autodiff/grad.js';
import { Graph, type Value } from '../graph/graph.js';
import type { ClipModel } from '../models/clip/model.js';
import { StyleGAN2Graph } from '../models/stylegan2/model.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { add, div, mul, sqrt, sub } from '../ops/elementwise.js';
import { mean, sum } from '../ops/reduce.js';
import { concat, reshape, slice } from '../ops/shape.js';
import { compile, type Executable, type HostTensor } from '../runtime/session.js';
import { RandomState } from '../util/random.js';
import { clipInput } from './losses.js';
import { Adam, type Param } from './optim.js';
import { meanLatent } from './optimize.js';
import { getLr } from './schedule.js';

export type InvertSpace = 'w' | 'w+';

export interface InvertConfig {
  space?: InvertSpace;
  steps?: number;
  /** Peak lr of the cosine ramp (projector.py: 0.1). */
  lr?: number;
  mseLambda?: number;
  /** Weight of the CLIP image-feature distance (needs a CLIP model; 0 turns it off). */
  clipLambda?: number;
  /** Optimize the noise maps too (with the regularization below). */
  noise?: boolean;
  /** Weight of the noise regularization (projector.py: 1e5). */
  noiseRegLambda?: number;
  /** Latent noise strength, as a fraction of the latents' spread (projector.py: 0.05), ramped to 0 at 0.75. */
  latentNoise?: number;
  /** Seed of the latent noise. */
  seed?: number;
}

export const INVERT_DEFAULTS: Required<InvertConfig> = {
  space: 'w+',
  steps: 300,
  lr: 0.1,
  mseLambda: 1,
  clipLambda: 0.5,
  noise: false,
  noiseRegLambda: 1e5,
  // Off, unlike projector.py's 0.05 (made for 1000 steps): over 300 steps its noisy first 75 % cost PSNR.
  // On 20 held-out world faces (bench invert world) 0 gave +0.75 dB mean, better on 19 of 20 faces.
  latentNoise: 0,
  seed: 0,
};

export interface InvertLosses {
  loss: number;
  mse: number;
  clip: number;
  noise: number;
}

export interface InvertStep extends InvertLosses {
  step: number;
  lr: number;
}

const f32 = (t: HostTensor) => t.data as Float32Array;
const nn = (i: number) => String(i).padStart(2, '0');

/** torch.roll(x, 1, axis) for axis 2 or 3 of NCHW: the last row/column moves to the front. */
function roll1(x: Value, axis: 2 | 3): Value {
  const n = x.shape[axis];
  const start = [0, 0, 0, 0];
  const end = [...x.shape];
  const lastStart = [...start];
  lastStart[axis] = n - 1;
  const headEnd = [...end];
  headEnd[axis] = n - 1;
  return concat([slice(x, lastStart, end), slice(x, start, headEnd)], axis);
}

/** projector.py's noise_regularize: Σ over maps and scales (down to 8×8) of the squared shift-1 autocorrelations. */
export function noiseRegularize(noises: readonly Value[]): Value {
  let loss: Value | undefined;
  for (let n of noises) {
    let size = n.shape[2];
    for (;;) {
      const h = mean(mul(n, roll1(n, 3)));
      const v = mean(mul(n, roll1(n, 2)));
      const term = add(mul(h, h), mul(v, v));
      loss = loss ? add(loss, term) : term;
      if (size <= 8) break;
      n = mean(reshape(n, [1, 1, size / 2, 2, size / 2, 2]), [3, 5]); // [1, 1, s, s] -> [1, 1, s/2, s/2]
      size /= 2;
    }
  }
  return loss!;
}

/** CLIP image features [1, E] of an image as the CLIP loss sees it (clipInput), L2-normalized. */
function clipImageFeatures(clip: ClipModel, image: Value): Value {
  const f = clip.encodeImage(clipInput(clip, image));
  return div(f, sqrt(sum(mul(f, f), 1, true)));
}

export interface InvertModels {
  generator: GeneratorWeights;
  /** For the perceptual term; without it λ_CLIP must be 0. */
  clip?: ClipModel;
}

/**
 * The step graph: inputs `latent` ([1, D] in W, [1, L, D] in W+), `target` [1, 3, S, S], `target_feats`
 * [1, E] (with CLIP) and `noise_NN` [1, 1, r, r] (with noise); outputs the loss, its parts, `image` and
 * `grad_NN` for the latent (00) and each noise map.
 */
export function buildInvertGraph(models: InvertModels, c: Required<InvertConfig>): Record<string, Value> {
  const W = models.generator;
  const cfg = W.config;
  const g = new Graph();
  const G = new StyleGAN2Graph(g, W);
  const latent =
    c.space === 'w'
      ? g.input('latent', [1, cfg.styleDim])
      : g.input('latent', [1, cfg.nLatent, cfg.styleDim]);
  const wplus = c.space === 'w' ? G.broadcast(latent) : latent;
  const noises = c.noise
    ? W.convs.map((L, i) => g.input(`noise_${nn(i)}`, [1, 1, L.resolution, L.resolution]))
    : [];
  const image = G.image(wplus, c.noise ? noises : 'const');
  const target = g.input('target', image.shape);
  const d = sub(image, target);
  const mse = mean(mul(d, d));
  let loss = mul(mse, c.mseLambda);
  const out: Record<string, Value> = { mse, image };
  if (c.clipLambda > 0) {
    if (!models.clip) throw new TypeError('the CLIP term needs a CLIP model (or clipLambda 0)');
    const feats = clipImageFeatures(models.clip, image);
    const targetFeats = g.input('target_feats', feats.shape);
    const clip = reshape(sub(1, sum(mul(feats, targetFeats), 1)), []); // [1] -> scalar
    loss = add(loss, mul(clip, c.clipLambda));
    out.clip = clip;
  }
  if (c.noise) {
    const reg = noiseRegularize(noises);
    loss = add(loss, mul(reg, c.noiseRegLambda));
    out.noise = reg;
  }
  out.loss = loss;
  grad(loss, [latent, ...noises]).forEach((gr, k) => {
    out[`grad_${nn(k)}`] = gr;
  });
  return out;
}

/** σ_w of projector.py: sqrt(Σ‖w − w̄‖² / n) over 4096 mapped z (RandomState(0)). */
export async function latentSpread(W: GeneratorWeights, avg: Float32Array): Promise<number> {
  const n = 4096;
  const dim = W.config.styleDim;
  const g = new Graph();
  const G = new StyleGAN2Graph(g, W);
  const z = g.input('z', [n, dim]);
  const d = sub(G.mapping(z), g.input('avg', [1, dim]));
  const exe = await compile({ ss: sum(mul(d, d)) });
  const out = await exe.run({
    z: { shape: [n, dim], data: Float32Array.from(new RandomState(0).randn(n, dim)) },
    avg: { shape: [1, dim], data: avg },
  });
  await exe.release();
  return Math.sqrt(f32(out.ss)[0] / n);
}

/** The compiled pieces of an inversion for one generator and config; start any number of runs from it. */
export class Inverter {
  private constructor(
    readonly models: InvertModels,
    readonly config: Required<InvertConfig>,
    private readonly exe: Executable,
    private readonly features: Executable | null,
    private readonly avg: Float32Array,
    private readonly spread: number,
  ) {}

  static async create(models: InvertModels, config: InvertConfig = {}): Promise<Inverter> {
    const given = Object.entries(config).filter(([, v]) => v !== undefined); // undefined keeps the default
    const c: Required<InvertConfig> = { ...INVERT_DEFAULTS, ...Object.fromEntries(given) };
    if (!(Number.isInteger(c.steps) && c.steps >= 0))
      throw new RangeError(`steps must be ≥ 0, got ${c.steps}`);
    for (const k of ['lr', 'mseLambda', 'clipLambda', 'noiseRegLambda', 'latentNoise'] as const)
      if (!(Number.isFinite(c[k]) && c[k] >= 0)) throw new RangeError(`${k} must be ≥ 0, got ${c[k]}`);
    if (c.clipLambda > 0 && !models.clip) throw new TypeError('clipLambda > 0 needs a CLIP model');
    const W = models.generator;
    const exe = await compile(buildInvertGraph(models, c));
    let features: Executable | null = null;
    if (c.clipLambda > 0) {
      const g = new Graph();
      const S = W.config.size;
      features = await compile({ feats: clipImageFeatures(models.clip!, g.input('image', [1, 3, S, S])) });
    }
    const avg = await meanLatent(W);
    const spread = c.latentNoise > 0 && c.steps > 0 ? await latentSpread(W, avg) : 0;
    return new Inverter(models, c, exe, features, avg, spread);
  }

  /**
   * Starts an inversion of `target` ([1, 3, S, S] in [−1, 1]) from `init`: a W+ latent [1, L, D] (an
   * encoder's), or the mean latent when omitted. In W space a W+ start is averaged over its layers.
   */
  async start(target: Float32Array, init?: Float32Array): Promise<InversionRun> {
    const { size: S, nLatent: L, styleDim: D } = this.models.generator.config;
    if (target.length !== 3 * S * S) throw new RangeError(`the target must be [1, 3, ${S}, ${S}]`);
    if (init && init.length !== L * D)
      throw new RangeError(`the start must be W+ [1, ${L}, ${D}], got ${init.length} values`);
    let latent: Float32Array;
    if (this.config.space === 'w') {
      latent = new Float32Array(D);
      if (init) {
        for (let l = 0; l < L; l++) for (let k = 0; k < D; k++) latent[k] += init[l * D + k] / L;
      } else latent.set(this.avg);
    } else {
      latent = new Float32Array(L * D);
      if (init) latent.set(init);
      else for (let l = 0; l < L; l++) latent.set(this.avg, l * D);
    }
    let targetFeats: Float32Array | null = null;
    if (this.features) {
      const r = await this.features.run({ image: { shape: [1, 3, S, S], data: target } });
      targetFeats = f32(r.feats).slice();
    }
    return new InversionRun(this, this.exe, latent, target, targetFeats, this.spread);
  }

  async release(): Promise<void> {
    await this.exe.release();
    await this.features?.release();
  }
}

/** One inversion in progress: `step()` up to `config.steps` times, then `evaluate()`. */
export class InversionRun {
  stepsDone = 0;
  private readonly params: Param[];
  private readonly adam: Adam;
  private readonly rng: RandomState;
  private readonly fixed: Record<string, HostTensor> = {};

  constructor(
    private readonly inv: Inverter,
    private readonly exe: Executable,
    latent: Float32Array,
    target: Float32Array,
    targetFeats: Float32Array | null,
    private readonly spread: number,
  ) {
    const c = inv.config;
    const cfg = inv.models.generator.config;
    const S = cfg.size;
    this.fixed.target = { shape: [1, 3, S, S], data: target };
    if (targetFeats) this.fixed.target_feats = { shape: [1, targetFeats.length], data: targetFeats };
    const latentShape = c.space === 'w' ? [1, cfg.styleDim] : [1, cfg.nLatent, cfg.styleDim];
    this.params = [
      { name: 'latent', data: latent, grad: new Float32Array(latent.length), shape: latentShape },
    ];
    if (c.noise) {
      // From the checkpoint's own noise buffers, normalized: the start renders as G(w) does elsewhere.
      inv.models.generator.convs.forEach((conv, i) => {
        const r = conv.resolution;
        const data = normalize(Float32Array.from(conv.noiseConst));
        this.params.push({
          name: `noise_${nn(i)}`,
          data,
          grad: new Float32Array(r * r),
          shape: [1, 1, r, r],
        });
      });
    }
    this.adam = new Adam({ lr: c.lr });
    this.rng = new RandomState(c.seed);
  }

  get config(): Required<InvertConfig> {
    return this.inv.config;
  }

  /** The latent as optimized, W+ [1, L, D] (a W latent repeated on every layer). */
  wplus(): Float32Array {
    const { nLatent: L, styleDim: D } = this.inv.models.generator.config;
    const w = this.params[0].data;
    if (this.config.space === 'w+') return w.slice();
    const out = new Float32Array(L * D);
    for (let l = 0; l < L; l++) out.set(w, l * D);
    return out;
  }

  /** The optimized noise maps (with `noise`), else null. */
  noiseMaps(): Float32Array[] | null {
    return this.config.noise ? this.params.slice(1).map((p) => p.data.slice()) : null;
  }

  private feeds(latent: Float32Array): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = { ...this.fixed };
    for (const p of this.params) feeds[p.name] = { shape: [...p.shape], data: p.data };
    feeds.latent = { shape: [...this.params[0].shape], data: latent };
    return feeds;
  }

  private losses(r: Record<string, HostTensor>): InvertLosses {
    return {
      loss: f32(r.loss)[0],
      mse: f32(r.mse)[0],
      clip: r.clip ? f32(r.clip)[0] : 0,
      noise: r.noise ? f32(r.noise)[0] : 0,
    };
  }

  /** One step: the noisy latent through G and the losses, then Adam (lr from the ramp), then the noise renormalized. */
  async step(): Promise<InvertStep> {
    const c = this.config;
    const i = this.stepsDone;
    if (i >= c.steps) throw new RangeError(`all ${c.steps} steps are done`);
    const t = i / c.steps;
    const lr = getLr(t, c.lr);
    const strength = this.spread * c.latentNoise * Math.max(0, 1 - t / 0.75) ** 2;
    const w = this.params[0].data;
    const noisy = Float32Array.from(w);
    if (strength > 0) {
      const z = this.rng.randn(1, w.length);
      for (let k = 0; k < w.length; k++) noisy[k] += z[k] * strength;
    }
    const r = await this.exe.run(this.feeds(noisy));
    this.params.forEach((p, k) => {
      p.grad.set(f32(r[`grad_${nn(k)}`]));
    });
    this.adam.lr = lr;
    this.adam.step(this.params);
    for (const p of this.params.slice(1)) p.data.set(normalize(p.data));
    this.stepsDone++;
    return { step: i, lr, ...this.losses(r) };
  }

  /** The losses and G(w) at the current latent (no latent noise). */
  async evaluate(): Promise<InvertLosses & { image: Float32Array }> {
    const r = await this.exe.run(this.feeds(this.params[0].data));
    return { ...this.losses(r), image: f32(r.image).slice() };
  }
}

/** (x − mean) / std, torch's unbiased std (noise_normalize_). */
function normalize(x: Float32Array): Float32Array {
  let m = 0;
  for (const v of x) m += v;
  m /= x.length;
  let ss = 0;
  for (const v of x) ss += (v - m) * (v - m);
  const sd = Math.sqrt(ss / Math.max(1, x.length - 1)) || 1;
  return x.map((v) => (v - m) / sd);
}

/** PSNR in dB of two images in [−1, 1] (measured on [0, 1]). */
export function psnr(a: Float32Array, b: Float32Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (Math.min(Math.max(a[i], -1), 1) - Math.min(Math.max(b[i], -1), 1)) / 2;
    se += d * d;
  }
  return 10 * Math.log10(1 / Math.max(se / a.length, 1e-12));
}

export interface InvertHooks {
  onStep?: (r: InvertStep) => void | Promise<void>;
  /** Checked before each step; when it returns true the loop stops early. */
  shouldStop?: () => boolean;
  /** Runs each engine call (a step, the final render): a server puts them on its engine lane. */
  engine?: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** The loop: `steps` steps (or until stopped), then G(final latent). */
export async function runInversion(
  run: InversionRun,
  hooks: InvertHooks = {},
): Promise<{
  steps: number;
  stopped: boolean;
  final: InvertLosses & { image: Float32Array };
  wplus: Float32Array;
}> {
  const engine = hooks.engine ?? (<T>(fn: () => Promise<T>) => fn());
  let stopped = false;
  while (run.stepsDone < run.config.steps) {
    if (hooks.shouldStop?.()) {
      stopped = true;
      break;
    }
    // Stepped outside the optional call: `onStep?.(await step())` skips the step when there is no hook.
    const r = await engine(() => run.step());
    await hooks.onStep?.(r);
  }
  return { steps: run.stepsDone, stopped, final: await engine(() => run.evaluate()), wplus: run.wplus() };
}
