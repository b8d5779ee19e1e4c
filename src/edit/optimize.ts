/**
 * StyleCLIP latent optimization (optimization/run_optimization.py): minimise
 *
 *   D_CLIP(G(w), t) + λ_L2 ‖w − w_init‖² + λ_ID (1 − ⟨R(G(w)), R(G(w_init))⟩)
 *
 * over a W+ latent, or over the non-toRGB StyleSpace codes (`--work_in_stylespace`), with torch's Adam on
 * the host and the reference's cosine lr ramp. Free-generation mode keeps only the CLIP term and starts
 * from the mean latent.
 *
 * The whole step is one graph, compiled once: latent → generator → CLIP loss (+ L2, + ID) → total, with
 * the gradient with respect to the latent. One engine run per step returns the total, its parts, the
 * gradient, and the image of the latent it was fed (so intermediate images cost no extra render: the image
 * after step i's update comes out of step i+1's run). The starting latent, its codes, the text features,
 * the ID target features and the λs are graph inputs, so one session serves any prompt, start and weights.
 *
 * The reference's order within a step: lr = get_lr(i / steps, lr) is set, then the loss at the current
 * latent is computed, then Adam steps with that lr (so step 0 has lr 0 and moves nothing, but does count in
 * Adam's moments and bias correction).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { grad } from '../autodiff/grad.js';
import { Graph, type Value } from '../graph/graph.js';
import type { ArcFaceModel } from '../models/arcface/model.js';
import { ClipEncoder } from '../models/clip/encoder.js';
import type { ClipModel } from '../models/clip/model.js';
import { StyleGAN2Graph, truncate } from '../models/stylegan2/model.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import { add, mul, sub } from '../ops/elementwise.js';
import { mean, sum } from '../ops/reduce.js';
import { reshape } from '../ops/shape.js';
import { compile, type Executable, type HostTensor } from '../runtime/session.js';
import { RandomState } from '../util/random.js';
import { clipLoss, idFeatures } from './losses.js';
import { Adam, type OptimizerStateJSON, type Param } from './optim.js';
import { getLr } from './schedule.js';

export type OptimizeMode = 'edit' | 'free';
export type OptimizeSpace = 'w+' | 's';

/** The reference's defaults (run_optimization.py's argparse). */
export const OPTIMIZE_DEFAULTS = {
  steps: 300,
  lr: 0.1,
  l2Lambda: 0.008,
  idLambda: 0,
  truncation: 0.7,
  mode: 'edit' as OptimizeMode,
  space: 'w+' as OptimizeSpace,
  rampdown: 0.25,
  rampup: 0.05,
};

export interface OptimizeModels {
  generator: GeneratorWeights;
  clip: ClipModel;
  /** IR-SE backbone; required when the ID term is on (edit mode and idLambda > 0). */
  arcface?: ArcFaceModel;
}

export interface OptimizeConfig {
  mode?: OptimizeMode;
  space?: OptimizeSpace;
  steps?: number;
  lr?: number;
  l2Lambda?: number;
  idLambda?: number;
  rampdown?: number;
  rampup?: number;
}

/** The loss terms of one evaluation; `l2`/`id` are 0 when their term is off (free mode, λ_ID = 0). */
export interface LossParts {
  loss: number;
  clip: number;
  l2: number;
  id: number;
}

export interface StepResult extends LossParts {
  /** 0-based step index. */
  step: number;
  /** The lr Adam used for this step. */
  lr: number;
  /** G(latent) for the latent this step started from, [1, 3, S, S] (step 0: the initial image). */
  image: Float32Array;
}

const f32 = (t: HostTensor) => t.data as Float32Array;

/**
 * A full collection before a run's first step: at 1024² the serialized model and the host copies of the
 * weights compiled into the session (which a caller may drop once `create` returns) are about a gigabyte of
 * garbage that V8 does not reclaim before the first step allocates its activations (measured: 6.0 → 4.8 GB
 * peak RSS).
 */
function collectGarbage(): void {
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

/** Which terms a step graph has, decided by mode and λ_ID. */
function termsOf(config: Required<OptimizeConfig>) {
  return { l2: config.mode === 'edit', id: config.mode === 'edit' && config.idLambda > 0 };
}

/**
 * The step graph's inputs and outputs. Inputs: `latent` [1, L, D] (w+) or `style_NN` [1, C_i] (s, all
 * layers; only the non-toRGB ones are differentiated), `*_init` twins for the L2 term, `text_features`
 * [1, E], `id_target` [1, R] and the scalars `l2_lambda`, `id_lambda`. Outputs: `loss`, `clip`, `l2`,
 * `id`, `image`, `id_feats` (the image's ArcFace features) and `grad_NN` per trainable input.
 */
export function buildStepGraph(
  models: OptimizeModels,
  space: OptimizeSpace,
  terms: { l2: boolean; id: boolean },
): { outputs: Record<string, Value>; trainable: Value[] } {
  const W = models.generator;
  const cfg = W.config;
  const g = new Graph();
  const G = new StyleGAN2Graph(g, W);
  const text = g.input('text_features', [1, models.clip.config.embedDim]);

  let image: Value;
  let trainable: Value[];
  let l2: Value | null = null;
  const sqDist = (a: Value, b: Value) => {
    const d = sub(a, b);
    return sum(mul(d, d));
  };
  if (space === 'w+') {
    const latent = g.input('latent', [1, cfg.nLatent, cfg.styleDim]);
    trainable = [latent];
    image = G.image(latent);
    if (terms.l2) l2 = sqDist(g.input('latent_init', latent.shape), latent);
  } else {
    const styles = cfg.styleDims.map((c, i) => g.input(`style_${nn(i)}`, [1, c]));
    trainable = styles.filter((_, i) => !cfg.styleIsToRGB[i]);
    image = G.synthesis(styles);
    if (terms.l2)
      // The reference sums over every layer; the toRGB codes never move, so their terms are exactly 0.
      for (const s of trainable) {
        const d = sqDist(g.input(`${s.name}_init`, s.shape), s);
        l2 = l2 ? add(l2, d) : d;
      }
  }

  const clip = reshape(clipLoss(models.clip, image, text), []); // [1, 1] → scalar
  let total = clip;
  const outputs: Record<string, Value> = { clip, image };
  if (l2) {
    total = add(total, mul(g.input('l2_lambda', []), l2));
    outputs.l2 = l2;
  }
  if (terms.id) {
    if (!models.arcface) throw new TypeError('the ID term needs ArcFace (IR-SE) weights');
    const feats = idFeatures(models.arcface, image); // [1, R]
    const target = g.input('id_target', feats.shape);
    const id = mean(sub(1, sum(mul(feats, target), 1))); // IDLoss(y_hat, y)[0], y's features detached
    total = add(total, mul(g.input('id_lambda', []), id));
    outputs.id = id;
    outputs.id_feats = feats;
  }
  outputs.loss = total;
  const grads = grad(total, trainable);
  grads.forEach((gr, k) => {
    outputs[`grad_${nn(k)}`] = gr;
  });
  return { outputs, trainable };
}

const nn = (i: number) => String(i).padStart(2, '0');

/** The mean latent [D]: the checkpoint's latent_avg, else the mean of 4096 mapped z (RandomState(0)). */
export async function meanLatent(W: GeneratorWeights): Promise<Float32Array> {
  if (W.latentAvg) return W.latentAvg.slice();
  const n = 4096;
  const d = W.config.styleDim;
  const g = new Graph();
  const G = new StyleGAN2Graph(g, W);
  const z = g.input('z', [n, d]);
  const exe = await compile({ w: mean(G.mapping(z), 0, true) });
  const out = await exe.run({
    z: { shape: [n, d], data: Float32Array.from(new RandomState(0).randn(n, d)) },
  });
  await exe.release();
  return f32(out.w).slice();
}

/**
 * The edit-mode start for a seed: z = RandomState(seed).randn(1, D) (numpy's stream; the reference's
 * torch.randn cannot be reproduced), w = mapping(z) truncated towards the mean latent with `psi`, as a W+
 * latent [1, L, D].
 */
export async function seedLatent(W: GeneratorWeights, seed: number, psi = 0.7): Promise<Float32Array> {
  const d = W.config.styleDim;
  const avg = await meanLatent(W);
  const g = new Graph();
  const G = new StyleGAN2Graph(g, W);
  const z = g.input('z', [1, d]);
  const a = g.input('avg', [1, d]);
  const exe = await compile({ wplus: G.broadcast(truncate(G.mapping(z), a, psi)) });
  const out = await exe.run({
    z: { shape: [1, d], data: Float32Array.from(new RandomState(seed).randn(1, d)) },
    avg: { shape: [1, d], data: avg },
  });
  await exe.release();
  return f32(out.wplus).slice();
}

/** The free-generation start: the mean latent on every W+ row, [1, L, D]. */
export async function meanWPlus(W: GeneratorWeights): Promise<Float32Array> {
  const avg = await meanLatent(W);
  const { nLatent: L, styleDim: d } = W.config;
  const out = new Float32Array(L * d);
  for (let l = 0; l < L; l++) out.set(avg, l * d);
  return out;
}

/** W+ [1, L, D] → every StyleSpace code [1, C_i], in StyleCLIP's layer order. */
export async function stylesOf(W: GeneratorWeights, wplus: Float32Array): Promise<Float32Array[]> {
  const shape = [1, W.config.nLatent, W.config.styleDim];
  const g = new Graph();
  const G = new StyleGAN2Graph(g, W);
  const styles = G.styles(g.input('wplus', shape));
  const exe = await compile(Object.fromEntries(styles.map((s, i) => [`s${nn(i)}`, s])));
  const out = await exe.run({ wplus: { shape, data: wplus } });
  await exe.release();
  return styles.map((_, i) => f32(out[`s${nn(i)}`]).slice());
}

/** CLIP text features [1, E] for a prompt (throws TextTooLongError past 77 tokens). */
export async function promptFeatures(clip: ClipModel, prompt: string): Promise<Float32Array> {
  const enc = new ClipEncoder(clip);
  try {
    return (await enc.encodeTexts([prompt])).slice();
  } finally {
    await enc.release();
  }
}

/**
 * A compiled step graph for one generator, CLIP, ArcFace, space and set of terms; start any number of runs
 * from it. It keeps the generator (for StyleSpace starts) but not CLIP or ArcFace: once compiled, their
 * weights live in the session, and the caller may drop its copies.
 */
export class LatentOptimizer {
  private constructor(
    readonly generator: GeneratorWeights,
    readonly config: Required<OptimizeConfig>,
    private readonly exe: Executable,
    /** CLIP's embedding size (text features are [1, clipDim]). */
    readonly clipDim: number,
    /** ArcFace's embedding size, or 0 without the ID term. */
    readonly idDim: number,
  ) {}

  static async create(models: OptimizeModels, config: OptimizeConfig = {}): Promise<LatentOptimizer> {
    const c: Required<OptimizeConfig> = {
      mode: config.mode ?? OPTIMIZE_DEFAULTS.mode,
      space: config.space ?? OPTIMIZE_DEFAULTS.space,
      steps: config.steps ?? OPTIMIZE_DEFAULTS.steps,
      lr: config.lr ?? OPTIMIZE_DEFAULTS.lr,
      l2Lambda: config.l2Lambda ?? OPTIMIZE_DEFAULTS.l2Lambda,
      idLambda: config.idLambda ?? OPTIMIZE_DEFAULTS.idLambda,
      rampdown: config.rampdown ?? OPTIMIZE_DEFAULTS.rampdown,
      rampup: config.rampup ?? OPTIMIZE_DEFAULTS.rampup,
    };
    if (!(Number.isInteger(c.steps) && c.steps >= 1))
      throw new RangeError(`steps must be ≥ 1, got ${c.steps}`);
    for (const k of ['lr', 'l2Lambda', 'idLambda'] as const)
      if (!(Number.isFinite(c[k]) && c[k] >= 0)) throw new RangeError(`${k} must be ≥ 0, got ${c[k]}`);
    const terms = termsOf(c);
    if (terms.id && !models.arcface)
      throw new TypeError('idLambda > 0 needs ArcFace (IR-SE) weights (models.arcface)');
    const exe = await compile(buildStepGraph(models, c.space, terms).outputs);
    return new LatentOptimizer(
      models.generator,
      c,
      exe,
      models.clip.config.embedDim,
      terms.id ? models.arcface!.config.embedDim : 0,
    );
  }

  /** Starts an optimization from a W+ latent [1, L, D] towards CLIP text features [1, E]. */
  async start(init: Float32Array, textFeatures: Float32Array): Promise<OptimizationRun> {
    const { nLatent: L, styleDim: d } = this.generator.config;
    if (init.length !== L * d)
      throw new RangeError(
        `the starting latent must be W+ [1, ${L}, ${d}] (${L * d} values), got ${init.length}`,
      );
    if (textFeatures.length !== this.clipDim)
      throw new RangeError(`text features must be [1, ${this.clipDim}], got ${textFeatures.length} values`);
    const styles = this.config.space === 's' ? await stylesOf(this.generator, init) : null;
    collectGarbage();
    return new OptimizationRun(this, this.exe, init.slice(), styles, textFeatures.slice());
  }

  async release(): Promise<void> {
    await this.exe.release();
  }
}

/** One optimization in progress: call `step()` up to `config.steps` times, then `evaluate()`. */
export class OptimizationRun {
  /** Steps taken so far. */
  stepsDone = 0;
  /** G(initial latent), known after the first step (or the ID target's pre-run). */
  initialImage: Float32Array | null = null;
  private readonly params: Param[];
  private readonly fixed: Record<string, HostTensor> = {};
  private adam: Adam;
  private idTarget: Float32Array | null = null;

  constructor(
    private readonly opt: LatentOptimizer,
    private readonly exe: Executable,
    private readonly initWPlus: Float32Array,
    private readonly initStyles: Float32Array[] | null,
    textFeatures: Float32Array,
  ) {
    const c = opt.config;
    const W = opt.generator.config;
    const terms = termsOf(c);
    this.fixed.text_features = { shape: [1, textFeatures.length], data: textFeatures };
    if (terms.l2) this.fixed.l2_lambda = { shape: [], data: Float32Array.of(c.l2Lambda) };
    if (terms.id) this.fixed.id_lambda = { shape: [], data: Float32Array.of(c.idLambda) };
    if (c.space === 'w+') {
      const shape = [1, W.nLatent, W.styleDim];
      if (terms.l2) this.fixed.latent_init = { shape, data: initWPlus };
      this.params = [
        { name: 'latent', data: initWPlus.slice(), grad: new Float32Array(initWPlus.length), shape },
      ];
    } else {
      const styles = initStyles!;
      this.params = [];
      styles.forEach((s, i) => {
        const name = `style_${nn(i)}`;
        const shape = [1, s.length];
        if (W.styleIsToRGB[i]) this.fixed[name] = { shape, data: s };
        else {
          this.params.push({ name, data: s.slice(), grad: new Float32Array(s.length), shape });
          if (terms.l2) this.fixed[`${name}_init`] = { shape, data: s };
        }
      });
    }
    this.adam = new Adam({ lr: c.lr });
  }

  get config(): Required<OptimizeConfig> {
    return this.opt.config;
  }

  private async run(): Promise<Record<string, HostTensor>> {
    const feeds: Record<string, HostTensor> = { ...this.fixed };
    for (const p of this.params) feeds[p.name] = { shape: [...p.shape], data: p.data };
    if ('id_lambda' in this.fixed) {
      if (!this.idTarget) {
        // The ID target is the initial image's features: a pre-run on the initial latent yields them.
        const r0 = await this.exe.run({
          ...feeds,
          id_target: { shape: [1, this.idDim], data: new Float32Array(this.idDim) },
        });
        this.idTarget = f32(r0.id_feats).slice();
      }
      feeds.id_target = { shape: [1, this.idDim], data: this.idTarget };
    }
    return this.exe.run(feeds);
  }

  private get idDim(): number {
    return this.opt.idDim;
  }

  private parts(r: Record<string, HostTensor>): LossParts {
    return {
      loss: f32(r.loss)[0],
      clip: f32(r.clip)[0],
      l2: r.l2 ? f32(r.l2)[0] : 0,
      id: r.id ? f32(r.id)[0] : 0,
    };
  }

  /** One step: losses and gradient at the current latent, then Adam with lr = get_lr(i / steps). */
  async step(): Promise<StepResult> {
    const c = this.config;
    const i = this.stepsDone;
    if (i >= c.steps) throw new RangeError(`all ${c.steps} steps are done`);
    const lr = getLr(i / c.steps, c.lr, c.rampdown, c.rampup);
    const r = await this.run();
    this.params.forEach((p, k) => {
      p.grad.set(f32(r[`grad_${nn(k)}`]));
    });
    this.adam.lr = lr;
    this.adam.step(this.params);
    this.stepsDone++;
    const image = f32(r.image).slice();
    if (i === 0) this.initialImage = image;
    return { step: i, lr, image, ...this.parts(r) };
  }

  /** The losses and image at the current latent, without a step. */
  async evaluate(): Promise<LossParts & { image: Float32Array }> {
    const r = await this.run();
    const image = f32(r.image).slice();
    if (!this.initialImage && this.stepsDone === 0) this.initialImage = image;
    return { image, ...this.parts(r) };
  }

  /** The current W+ latent [1, L, D] (space w+), or null in StyleSpace. */
  get wplus(): Float32Array | null {
    return this.config.space === 'w+' ? this.params[0].data : null;
  }

  /** The current StyleSpace codes, every layer in order (toRGB ones unchanged); null in W+. */
  get styles(): Float32Array[] | null {
    if (this.config.space !== 's') return null;
    const byName = new Map(this.params.map((p) => [p.name, p.data]));
    return this.initStyles!.map((s, i) => byName.get(`style_${nn(i)}`) ?? s);
  }

  /** What to save: W+ [1, L, D], or all StyleSpace codes concatenated in layer order [1, ΣC]. */
  latent(): { shape: number[]; data: Float32Array } {
    const W = this.opt.generator.config;
    if (this.config.space === 'w+')
      return { shape: [1, W.nLatent, W.styleDim], data: this.params[0].data.slice() };
    const styles = this.styles!;
    const n = styles.reduce((a, s) => a + s.length, 0);
    const out = new Float32Array(n);
    let o = 0;
    for (const s of styles) {
      out.set(s, o);
      o += s.length;
    }
    return { shape: [1, n], data: out };
  }

  /** The starting W+ latent. */
  get initialLatent(): Float32Array {
    return this.initWPlus;
  }

  /** What resuming needs besides the start latent: the step, Adam's moments and the trainable tensors. */
  snapshot(): OptimizationSnapshot {
    return {
      step: this.stepsDone,
      adam: this.adam.toJSON(),
      params: Object.fromEntries(this.params.map((p) => [p.name, Array.from(p.data)])),
    };
  }

  /**
   * Continues from a snapshot of a run with the same start latent and config. Call it after `evaluate()` at
   * the start (which sets the initial image and, with the ID term, its target features).
   */
  restore(s: OptimizationSnapshot): void {
    if (!(Number.isInteger(s.step) && s.step >= 0 && s.step <= this.config.steps))
      throw new RangeError(`the saved step ${s.step} is not in 0..${this.config.steps}`);
    for (const p of this.params) {
      const v = s.params[p.name];
      if (!v || v.length !== p.data.length)
        throw new RangeError(`the saved state has no ${p.name} of ${p.data.length} values`);
    }
    for (const p of this.params) p.data.set(s.params[p.name]);
    this.adam = Adam.fromState(s.adam);
    this.stepsDone = s.step;
  }
}

/** A run's resumable state (JSON-safe; float32 values survive JSON's shortest round trip exactly). */
export interface OptimizationSnapshot {
  step: number;
  adam: OptimizerStateJSON;
  params: Record<string, number[]>;
}

export interface OptimizeHooks {
  /** After each step (its image is G of the latent the step started from). */
  onStep?: (r: StepResult) => void | Promise<void>;
  /**
   * The image after step `step`'s update, for every step with step % every === 0 (as the reference's
   * save_intermediate_image_every); `every` ≤ 0 turns it off.
   */
  onIntermediate?: (step: number, image: Float32Array) => void | Promise<void>;
  every?: number;
  /** Checked before each step; when set, the loop stops and the result says how many steps ran. */
  shouldStop?: () => boolean;
}

export interface OptimizeResult {
  /** Steps completed (fewer than config.steps when stopped). */
  steps: number;
  stopped: boolean;
  /** Every step's losses, in order. */
  history: (LossParts & { step: number; lr: number })[];
  initialImage: Float32Array | null;
  /** G(final latent) and its losses; null when stopped early (no extra render is spent then). */
  final: (LossParts & { image: Float32Array }) | null;
  latent: { shape: number[]; data: Float32Array };
  run: OptimizationRun;
}

/** The reference's loop: `steps` Adam steps with intermediate images, then G(final latent). */
export async function runOptimization(
  run: OptimizationRun,
  hooks: OptimizeHooks = {},
): Promise<OptimizeResult> {
  const every = hooks.every ?? 0;
  const history: OptimizeResult['history'] = [];
  const wants = (i: number) => every > 0 && i % every === 0 && hooks.onIntermediate;
  let stopped = false;
  while (run.stepsDone < run.config.steps) {
    if (hooks.shouldStop?.()) {
      stopped = true;
      break;
    }
    const r = await run.step();
    // This run's image is the one after the previous step's update.
    if (r.step > 0 && wants(r.step - 1)) await hooks.onIntermediate!(r.step - 1, r.image);
    history.push({ step: r.step, lr: r.lr, loss: r.loss, clip: r.clip, l2: r.l2, id: r.id });
    await hooks.onStep?.(r);
  }
  let final: OptimizeResult['final'] = null;
  if (!stopped) {
    final = await run.evaluate();
    const last = run.stepsDone - 1;
    if (wants(last)) await hooks.onIntermediate!(last, final.image);
  }
  return {
    steps: run.stepsDone,
    stopped,
    history,
    initialImage: run.initialImage,
    final,
    latent: run.latent(),
    run,
  };
}
