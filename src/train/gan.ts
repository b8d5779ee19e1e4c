/**
 * StyleGAN2 training as rosinality's `train.py` does it, on the engine: each phase of an iteration is one
 * compiled graph (forward, loss, and the gradients of every trained parameter, double backward included),
 * run with the current weights as inputs; Adam, the EMA and the schedule run on the host.
 *
 * One iteration i (train.py's loop body):
 *   D step:   d_loss = softplus(-D(x)).mean() + softplus(D(G(z))).mean(), Adam on D
 *   R1 (i % d_reg_every == 0): r1/2 · |∇ₓD(x)|² · d_reg_every, Adam on D (the D updated just before)
 *   G step:   g_loss = softplus(-D(G(z))).mean(), Adam on G
 *   path length (i % g_reg_every == 0): path_regularize · g_reg_every · (|Jᵀy| − a)², Adam on G
 *   g_ema ← decay · g_ema + (1 − decay) · g, decay = 0.5^(32/10000): rosinality's constant 32 images in
 *   place of the batch size (the 0.5^(batch/10k)), kept so runs match train.py.
 * Adam has lr·k/(k+1) and betas (0^(k/(k+1)), 0.99^(k/(k+1))) for the lazy interval k of its network.
 *
 * Every random draw of iteration i (z, style-mixing choice and crossover, per-layer noise, the path-length
 * probe) comes from a stream seeded by (seed, i), and the data order by (seed, batch index), so a resumed
 * run gives the numbers of an uninterrupted one.
 */
import { grad } from '../autodiff/grad.js';
import { Graph, type Value } from '../graph/graph.js';
import type { Tensor } from '../io/tensor.js';
import { loadTorch } from '../io/torch.js';
import { saveTorch } from '../io/torch-write.js';
import {
  type DiscriminatorArch,
  DiscriminatorGraph,
  discriminatorArch,
  discriminatorSpecs,
  initDiscriminator,
} from '../models/stylegan2/discriminator.js';
import { StyleGAN2Graph } from '../models/stylegan2/model.js';
import {
  generatorSpecs,
  generatorStructure,
  initGenerator,
  type StateDict,
  type TensorSpec,
  TrainableWeights,
} from '../models/stylegan2/trainable.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import {
  abs,
  add,
  concat,
  exp,
  log,
  mean,
  mul,
  neg,
  relu,
  reshape,
  sliceAxis,
  sqrt,
  sub,
  sum,
} from '../ops/index.js';
import { compile, type Executable, type HostTensor } from '../runtime/session.js';
import { TorchAdam } from './adam.js';

export class GanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GanError';
  }
}

/** train.py's arguments that shape the run (its names in the checkpoint's `args`). */
export interface GanConfig {
  size: number;
  /** Channels per resolution 4..size (the generator's and the discriminator's). */
  channels: Record<number, number>;
  latent: number;
  n_mlp: number;
  batch: number;
  lr: number;
  r1: number;
  path_regularize: number;
  path_batch_shrink: number;
  d_reg_every: number;
  g_reg_every: number;
  mixing: number;
  /** Seeds every random draw (initial weights, z, noise, mixing, probes, data order). */
  seed: number;
}

export const defaultGanConfig = (size: number, channels: Record<number, number>): GanConfig => ({
  size,
  channels,
  latent: 512,
  n_mlp: 8,
  batch: 16,
  lr: 0.002,
  r1: 10,
  path_regularize: 2,
  path_batch_shrink: 2,
  d_reg_every: 16,
  g_reg_every: 4,
  mixing: 0.9,
  seed: 0,
});

// --- losses (train.py's functions) ---------------------------------------------------------------------

/** log(1 + eˣ), stable: max(x, 0) + log(1 + e^−|x|). */
export function softplus(x: Value): Value {
  return add(relu(x), log(add(exp(neg(abs(x))), 1)));
}

export function dLogisticLoss(realPred: Value, fakePred: Value): Value {
  return add(mean(softplus(neg(realPred))), mean(softplus(fakePred)));
}

/** |∂ sum D(x) / ∂x|² summed per image, averaged over the batch: a gradient that is itself differentiated. */
export function dR1Loss(realPred: Value, realImg: Value): Value {
  const [gradReal] = grad(sum(realPred), [realImg]);
  const B = gradReal.shape[0];
  return mean(sum(mul(reshape(gradReal, [B, -1]), reshape(gradReal, [B, -1])), 1));
}

export function gNonsaturatingLoss(fakePred: Value): Value {
  return mean(softplus(neg(fakePred)));
}

/**
 * Path-length penalty: lengths |Jᵀy| of the W+ gradient of sum(img · probe) (probe = randn / sqrt(H·W)),
 * and their running mean a (decay 0.01; its gradient flows, as in train.py). Returns the penalty, the new
 * mean (to be detached by the caller) and the lengths.
 */
export function gPathRegularize(
  fakeImg: Value,
  latents: Value,
  probe: Value,
  meanPathLength: Value,
  decay = 0.01,
): { penalty: Value; pathMean: Value; pathLengths: Value } {
  const [g] = grad(sum(mul(fakeImg, probe)), [latents]); // [B, L, D]
  const pathLengths = sqrt(mean(sum(mul(g, g), 2), 1)); // [B]
  const pathMean = add(meanPathLength, mul(sub(mean(pathLengths), meanPathLength), decay));
  const d = sub(pathLengths, pathMean);
  return { penalty: mean(mul(d, d)), pathMean, pathLengths };
}

// --- parameters on the host ----------------------------------------------------------------------------

/** A module's state dict, with its parameters (trained) in torch's `parameters()` order. */
export class ParamSet {
  readonly params: TensorSpec[];
  constructor(
    readonly specs: readonly TensorSpec[],
    readonly sd: StateDict,
  ) {
    this.params = specs.filter((s) => !s.buffer);
  }
  data(name: string): Float32Array {
    return this.sd.get(name)!.data as Float32Array;
  }
  arrays(): Float32Array[] {
    return this.params.map((p) => this.data(p.name));
  }
  /** A deep copy (fresh arrays). */
  clone(): ParamSet {
    const sd: StateDict = new Map();
    for (const [k, t] of this.sd)
      sd.set(k, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) });
    return new ParamSet(this.specs, sd);
  }
}

/** Reads a state dict under `prefix` of a loaded checkpoint in file order as owned float32 arrays. */
function stateDictFrom(tensors: Map<string, Tensor>, prefix: string): StateDict {
  const sd: StateDict = new Map();
  for (const [k, t] of tensors)
    if (k.startsWith(prefix)) {
      if (t.dtype !== 'float32') throw new GanError(`${prefix}${k}: expected float32, got ${t.dtype}`);
      sd.set(k.slice(prefix.length), {
        dtype: 'float32',
        shape: [...t.shape],
        data: Float32Array.from(t.data as Float32Array),
      });
    }
  return sd;
}

/** Orders `sd` as `specs` and checks it holds exactly those keys and shapes. */
function ordered(sd: StateDict, specs: readonly TensorSpec[], what: string): StateDict {
  const out: StateDict = new Map();
  for (const s of specs) {
    const t = sd.get(s.name);
    if (!t) throw new GanError(`${what}: missing key '${s.name}'`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i]))
      throw new GanError(`${what}: '${s.name}' has shape [${t.shape}], expected [${s.shape}]`);
    out.set(s.name, t);
  }
  const extra = [...sd.keys()].filter((k) => !out.has(k));
  if (extra.length) throw new GanError(`${what}: unexpected key(s) ${extra.slice(0, 5).join(', ')}`);
  return out;
}

// --- random draws --------------------------------------------------------------------------------------

/** splitmix32: a small, well-mixed 32-bit stream for the training draws. */
export class Stream {
  private s: number;
  private spare: number | null = null;
  constructor(...seeds: number[]) {
    let h = 0x9e3779b9;
    for (const x of seeds) h = Stream.mix((h ^ (x >>> 0)) + 0x7f4a7c15);
    this.s = h;
  }
  private static mix(z: number): number {
    let x = z >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    return (x ^ (x >>> 16)) >>> 0;
  }
  private u32(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    return Stream.mix(this.s);
  }
  /** Uniform in [0, 1) with 53 bits. */
  uniform(): number {
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }
  /** n standard normals (Box–Muller) times `scale`. */
  normals(n: number, scale = 1): Float32Array {
    const out = new Float32Array(n);
    let i = 0;
    if (this.spare !== null && n > 0) {
      out[i++] = this.spare * scale;
      this.spare = null;
    }
    for (; i < n; i += 2) {
      const u = 1 - this.uniform();
      const v = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u));
      out[i] = r * Math.cos(2 * Math.PI * v) * scale;
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v) * scale;
      else this.spare = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }
}

/** The random inputs of one generator call. */
export interface GeneratorDraw {
  z: Float32Array;
  /** Second z and crossover W+ row for style mixing (train.py's mixing_noise with 2 codes). */
  mix?: { z2: Float32Array; inject: number };
  /** Per-layer noise [B, 1, r, r]. */
  noise: Float32Array[];
}

export interface IterationDraws {
  real: Float32Array;
  d: GeneratorDraw;
  g: GeneratorDraw;
  pl?: GeneratorDraw & { probe: Float32Array };
}

export interface IterationStats {
  iter: number;
  d: number;
  real_score: number;
  fake_score: number;
  /** R1 penalty (0 on iterations without it). */
  r1: number;
  g: number;
  /** Path-length penalty and mean length (0 on iterations without it). */
  path: number;
  path_length: number;
  mean_path_length: number;
}

// --- the trainer ---------------------------------------------------------------------------------------

interface Phases {
  d: Executable;
  r1: Executable;
  g: Executable;
  pl: Executable;
}

const gIn = (name: string) => `g.${name}`;
const dIn = (name: string) => `d.${name}`;
const gradOut = (name: string) => `grad.${name}`;

export class GanTrainer {
  /** The next iteration's index (train.py's i). */
  iter = 0;
  meanPathLength = 0;
  readonly structure: GeneratorWeights;
  readonly dArch: DiscriminatorArch;
  readonly gOptim: TorchAdam;
  readonly dOptim: TorchAdam;
  private phases: Phases | null = null;
  private sampler: Executable | null = null;

  constructor(
    readonly config: GanConfig,
    readonly g: ParamSet,
    readonly d: ParamSet,
    readonly gEma: ParamSet,
  ) {
    this.structure = generatorStructure(g.sd);
    this.dArch = discriminatorArch(d.sd);
    const gr = config.g_reg_every / (config.g_reg_every + 1);
    const dr = config.d_reg_every / (config.d_reg_every + 1);
    this.gOptim = new TorchAdam(
      g.params.map((p) => p.shape),
      { lr: config.lr * gr, betas: [0 ** gr, 0.99 ** gr] },
    );
    this.dOptim = new TorchAdam(
      d.params.map((p) => p.shape),
      { lr: config.lr * dr, betas: [0 ** dr, 0.99 ** dr] },
    );
    if (config.batch % Math.min(config.batch, 4) !== 0)
      throw new GanError(`batch ${config.batch} must be a multiple of 4 (the minibatch-stddev group)`);
  }

  /** Fresh weights, initialised like rosinality's constructors (g_ema starts as a copy of g). */
  static fresh(config: GanConfig): GanTrainer {
    const sdG = initGenerator(config.size, config.channels, {
      styleDim: config.latent,
      nMlp: config.n_mlp,
      seed: config.seed,
    });
    const structure = generatorStructure(sdG);
    const g = new ParamSet(generatorSpecs(structure.config), sdG);
    const dArchV: DiscriminatorArch = { size: config.size, channels: config.channels, stddevGroup: 4 };
    const sdD = initDiscriminator(dArchV, config.seed + 1);
    const d = new ParamSet(discriminatorSpecs(dArchV), sdD);
    return new GanTrainer(config, g, d, g.clone());
  }

  /**
   * From a checkpoint {g, d, g_ema[, g_optim, d_optim]} (ours or rosinality's). `config` supplies the run's
   * options; size, channels, latent and n_mlp come from the weights. Our `train_state` (iteration, mean path
   * length, seed) resumes exactly; a rosinality checkpoint resumes at the iteration its file name gives.
   */
  static fromCheckpoint(file: string, config: Partial<GanConfig> = {}, startIter?: number): GanTrainer {
    const ck = loadTorch(file);
    const has = (p: string) => [...ck.tensors.keys()].some((k) => k.startsWith(p));
    if (!has('g.') || !has('d.') || !has('g_ema.'))
      throw new GanError(
        `${file} is not a training checkpoint: it needs g, d and g_ema (rosinality's train.py layout)`,
      );
    const sdG = stateDictFrom(ck.tensors, 'g.');
    const structure = generatorStructure(sdG, file);
    const specsG = generatorSpecs(structure.config);
    const arch = discriminatorArch(stateDictFrom(ck.tensors, 'd.'), file);
    const specsD = discriminatorSpecs(arch);
    const c = structure.config;
    for (let r = 4; r <= c.size; r *= 2)
      if (arch.channels[r] !== c.channels[r])
        throw new GanError(`${file}: D has ${arch.channels[r]} channels at ${r}², G ${c.channels[r]}`);
    const value = ck.value as Record<string, unknown>;
    const state = (value.train_state ?? null) as Record<string, unknown> | null;
    // train.py's options: its defaults, then the checkpoint's `args` (rosinality's Namespace or ours), then our
    // saved run config, then what the caller sets explicitly
    const args = (value.args ?? {}) as Record<string, unknown>;
    const fromArgs = Object.fromEntries(
      (
        [
          'batch',
          'lr',
          'r1',
          'path_regularize',
          'path_batch_shrink',
          'd_reg_every',
          'g_reg_every',
          'mixing',
        ] as const
      )
        .filter((k) => typeof args[k] === 'number')
        .map((k) => [k, args[k]]),
    ) as Partial<GanConfig>;
    const saved = Object.fromEntries(
      Object.entries((state?.config ?? {}) as Record<string, unknown>).filter(
        ([, v]) => typeof v === 'number',
      ),
    ) as Partial<GanConfig>;
    const full: GanConfig = {
      ...defaultGanConfig(c.size, c.channels),
      ...fromArgs,
      ...saved,
      ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
      size: c.size,
      channels: c.channels,
      latent: c.styleDim,
      n_mlp: c.nMlp,
    };
    const t = new GanTrainer(
      full,
      new ParamSet(specsG, ordered(sdG, specsG, `${file} g`)),
      new ParamSet(specsD, ordered(stateDictFrom(ck.tensors, 'd.'), specsD, `${file} d`)),
      new ParamSet(specsG, ordered(stateDictFrom(ck.tensors, 'g_ema.'), specsG, `${file} g_ema`)),
    );
    if (value.g_optim) t.gOptim.loadStateDict(value.g_optim, `${file} g_optim`);
    if (value.d_optim) t.dOptim.loadStateDict(value.d_optim, `${file} d_optim`);
    if (state) {
      t.iter = Number(state.iter);
      t.meanPathLength = Number(state.mean_path_length);
    } else t.iter = startIter ?? 0;
    return t;
  }

  /** The checkpoint train.py writes, plus `train_state` for an exact resume (train.py ignores extra keys). */
  checkpoint(): Record<string, unknown> {
    const c = this.config;
    return {
      g: this.g.sd,
      d: this.d.sd,
      g_ema: this.gEma.sd,
      g_optim: this.gOptim.stateDict(),
      d_optim: this.dOptim.stateDict(),
      args: {
        size: c.size,
        latent: c.latent,
        n_mlp: c.n_mlp,
        batch: c.batch,
        lr: c.lr,
        r1: c.r1,
        path_regularize: c.path_regularize,
        path_batch_shrink: c.path_batch_shrink,
        d_reg_every: c.d_reg_every,
        g_reg_every: c.g_reg_every,
        mixing: c.mixing,
        start_iter: this.iter,
        augment: false,
        channels: new Map(Object.entries(c.channels).map(([k, v]) => [Number(k), v])),
      },
      ada_aug_p: 0,
      train_state: {
        format: 'styleclip-ts/gan-train/1',
        iter: this.iter,
        mean_path_length: this.meanPathLength,
        config: { ...c, channels: undefined },
      },
    };
  }

  save(file: string): void {
    saveTorch(file, this.checkpoint());
  }

  // --- graphs -------------------------------------------------------------------------------------------

  private generator(g: Graph, names: (n: string) => string) {
    return generatorGraph(g, this.structure, this.g.params, names);
  }

  private discriminator(g: Graph) {
    return discriminatorGraph(g, this.dArch, this.d.params, dIn);
  }

  /** G(z) with style mixing by a W+ row mask when the run mixes; returns the image and W+. */
  private synthesize(G: StyleGAN2Graph, prefix: string, batch: number): { img: Value; wplus: Value } {
    const g = G.g;
    const cfg = this.structure.config;
    const z = g.input(`${prefix}z`, [batch, cfg.styleDim]);
    let wplus = G.broadcast(G.mapping(z)); // [B, L, D]
    if (this.config.mixing > 0) {
      // rows [0, inject) from z, the rest from z2: one graph for every crossover point
      const z2 = g.input(`${prefix}z2`, [batch, cfg.styleDim]);
      const m = g.input(`${prefix}mix`, [1, cfg.nLatent, 1]);
      wplus = add(mul(wplus, m), mul(G.broadcast(G.mapping(z2)), sub(1, m)));
    }
    const noise = this.structure.convs.map((L, i) =>
      g.input(`${prefix}noise_${i}`, [batch, 1, L.resolution, L.resolution]),
    );
    return { img: G.image(wplus, noise), wplus };
  }

  /** The four phase graphs' outputs (losses, statistics and `grad.<param>` gradients). */
  phaseGraphs(): Record<keyof Phases, Record<string, Value>> {
    const c = this.config;
    const B = c.batch;
    const S = c.size;
    const withGrads = (outs: Record<string, Value>, loss: Value, raw: Map<string, Value>) => {
      const names = [...raw.keys()];
      const gs = grad(
        loss,
        names.map((n) => raw.get(n)!),
      );
      names.forEach((n, k) => {
        outs[gradOut(n)] = gs[k];
      });
      return outs;
    };
    // D step: one D call on [fake; real] with separate stddev groups equals train.py's two calls.
    const dPhase = (() => {
      const g = new Graph();
      const { G } = this.generator(g, gIn);
      const { D, raw } = this.discriminator(g);
      const real = g.input('real', [B, 3, S, S]);
      const { img } = this.synthesize(G, '', B);
      const pred = D.forward(concat([img, real], 0), 2); // [2B, 1]
      const fakePred = sliceAxis(pred, 0, 0, B);
      const realPred = sliceAxis(pred, 0, B, 2 * B);
      const dLoss = dLogisticLoss(realPred, fakePred);
      return withGrads({ d_loss: dLoss, real_score: mean(realPred), fake_score: mean(fakePred) }, dLoss, raw);
    })();
    const r1Phase = (() => {
      const g = new Graph();
      const { D, raw } = this.discriminator(g);
      const real = g.input('real', [B, 3, S, S]);
      const r1 = dR1Loss(D.forward(real), real);
      return withGrads({ r1 }, mul(r1, (c.r1 / 2) * c.d_reg_every), raw);
    })();
    const gPhase = (() => {
      const g = new Graph();
      const { G, raw } = this.generator(g, gIn);
      const { D } = this.discriminator(g);
      const { img } = this.synthesize(G, '', B);
      const gLoss = gNonsaturatingLoss(D.forward(img));
      return withGrads({ g_loss: gLoss }, gLoss, raw);
    })();
    const plPhase = (() => {
      const g = new Graph();
      const pb = Math.max(1, Math.floor(B / c.path_batch_shrink));
      const { G, raw } = this.generator(g, gIn);
      const { img, wplus } = this.synthesize(G, '', pb);
      const probe = g.input('probe', [pb, 3, S, S]);
      const mpl = g.input('mean_path_length', []);
      const { penalty, pathMean, pathLengths } = gPathRegularize(img, wplus, probe, mpl);
      return withGrads(
        { path_loss: penalty, path_mean: pathMean, path_lengths: pathLengths },
        mul(penalty, c.path_regularize * c.g_reg_every),
        raw,
      );
    })();
    return { d: dPhase, r1: r1Phase, g: gPhase, pl: plPhase };
  }

  private async buildPhases(): Promise<Phases> {
    const p = this.phaseGraphs();
    const [d, r1, g, pl] = await Promise.all([compile(p.d), compile(p.r1), compile(p.g), compile(p.pl)]);
    return { d, r1, g, pl };
  }

  private async ready(): Promise<Phases> {
    this.phases ??= await this.buildPhases();
    return this.phases;
  }

  // --- feeds --------------------------------------------------------------------------------------------

  private paramFeeds(set: ParamSet, name: (n: string) => string, feeds: Record<string, HostTensor>): void {
    for (const p of set.params) feeds[name(p.name)] = { shape: p.shape, data: set.data(p.name) };
  }

  private drawFeeds(dr: GeneratorDraw, batch: number, feeds: Record<string, HostTensor>): void {
    const cfg = this.structure.config;
    feeds.z = { shape: [batch, cfg.styleDim], data: dr.z };
    if (this.config.mixing > 0) {
      const inject = dr.mix?.inject ?? cfg.nLatent;
      feeds.z2 = { shape: [batch, cfg.styleDim], data: dr.mix?.z2 ?? dr.z };
      feeds.mix = {
        shape: [1, cfg.nLatent, 1],
        data: Float32Array.from({ length: cfg.nLatent }, (_, l) => (l < inject ? 1 : 0)),
      };
    } else if (dr.mix) throw new GanError('a mixed draw for a run without style mixing');
    this.structure.convs.forEach((L, i) => {
      feeds[`noise_${i}`] = { shape: [batch, 1, L.resolution, L.resolution], data: dr.noise[i] };
    });
  }

  /** The random inputs of iteration i (everything but the real images), a pure function of (seed, i). */
  draw(i: number, real: Float32Array): IterationDraws {
    const c = this.config;
    const cfg = this.structure.config;
    const s = new Stream(c.seed, i);
    const gen = (batch: number): GeneratorDraw => {
      const z = s.normals(batch * cfg.styleDim);
      let mix: GeneratorDraw['mix'];
      if (c.mixing > 0 && s.uniform() < c.mixing)
        mix = {
          z2: s.normals(batch * cfg.styleDim),
          inject: 1 + Math.floor(s.uniform() * (cfg.nLatent - 1)),
        };
      const noise = this.structure.convs.map((L) => s.normals(batch * L.resolution ** 2));
      return { z, mix, noise };
    };
    const out: IterationDraws = { real, d: gen(c.batch), g: gen(c.batch) };
    if (i % c.g_reg_every === 0) {
      const pb = Math.max(1, Math.floor(c.batch / c.path_batch_shrink));
      out.pl = { ...gen(pb), probe: s.normals(pb * 3 * cfg.size ** 2, 1 / cfg.size) };
    }
    return out;
  }

  private grads(out: Record<string, HostTensor>, set: ParamSet): Float32Array[] {
    return set.params.map((p) => out[gradOut(p.name)].data as Float32Array);
  }

  /** One iteration of train.py's loop with the given random inputs. */
  async step(dr: IterationDraws): Promise<IterationStats> {
    const ph = await this.ready();
    const c = this.config;
    const i = this.iter;
    const S = c.size;
    const B = c.batch;
    const stats: IterationStats = {
      iter: i,
      d: 0,
      real_score: 0,
      fake_score: 0,
      r1: 0,
      g: 0,
      path: 0,
      path_length: 0,
      mean_path_length: this.meanPathLength,
    };
    const real: HostTensor = { shape: [B, 3, S, S], data: dr.real };

    // D step (requires_grad(G, False), requires_grad(D, True))
    let feeds: Record<string, HostTensor> = { real };
    this.paramFeeds(this.g, gIn, feeds);
    this.paramFeeds(this.d, dIn, feeds);
    this.drawFeeds(dr.d, B, feeds);
    let out = await ph.d.run(feeds);
    stats.d = num(out.d_loss);
    stats.real_score = num(out.real_score);
    stats.fake_score = num(out.fake_score);
    this.dOptim.step(this.d.arrays(), this.grads(out, this.d));

    // lazy R1 on the real images, with the D just updated
    if (i % c.d_reg_every === 0) {
      feeds = { real };
      this.paramFeeds(this.d, dIn, feeds);
      out = await ph.r1.run(feeds);
      stats.r1 = num(out.r1);
      this.dOptim.step(this.d.arrays(), this.grads(out, this.d));
    }

    // G step (requires_grad(G, True), requires_grad(D, False))
    feeds = {};
    this.paramFeeds(this.g, gIn, feeds);
    this.paramFeeds(this.d, dIn, feeds);
    this.drawFeeds(dr.g, B, feeds);
    out = await ph.g.run(feeds);
    stats.g = num(out.g_loss);
    this.gOptim.step(this.g.arrays(), this.grads(out, this.g));

    // lazy path-length regularization
    if (i % c.g_reg_every === 0) {
      if (!dr.pl) throw new GanError(`iteration ${i} regularizes G but has no path-length draw`);
      const pb = Math.max(1, Math.floor(B / c.path_batch_shrink));
      feeds = {
        probe: { shape: [pb, 3, S, S], data: dr.pl.probe },
        mean_path_length: { shape: [], data: Float32Array.of(this.meanPathLength) },
      };
      this.paramFeeds(this.g, gIn, feeds);
      this.drawFeeds(dr.pl, pb, feeds);
      out = await ph.pl.run(feeds);
      stats.path = num(out.path_loss);
      const lengths = out.path_lengths.data as Float32Array;
      stats.path_length = lengths.reduce((a, b) => a + b, 0) / lengths.length;
      this.meanPathLength = num(out.path_mean);
      stats.mean_path_length = this.meanPathLength;
      this.gOptim.step(this.g.arrays(), this.grads(out, this.g));
    }

    accumulate(this.gEma, this.g, 0.5 ** (32 / (10 * 1000)));
    this.iter++;
    return stats;
  }

  /** g_ema(z) for fixed z and noise (a forward-only graph over the EMA weights): [n, 3, S, S]. */
  async sample(z: Float32Array, noise: Float32Array[]): Promise<Float32Array> {
    const D = this.structure.config.styleDim;
    const n = z.length / D;
    if (!this.sampler) {
      const g = new Graph();
      const { G } = this.generator(g, gIn);
      const zin = g.input('z', [n, D]);
      const ns = this.structure.convs.map((L, i) =>
        g.input(`noise_${i}`, [n, 1, L.resolution, L.resolution]),
      );
      this.sampler = await compile({ img: G.image(G.broadcast(G.mapping(zin)), ns) });
    }
    const feeds: Record<string, HostTensor> = { z: { shape: [n, D], data: z } };
    this.paramFeeds(this.gEma, gIn, feeds);
    this.structure.convs.forEach((L, i) => {
      feeds[`noise_${i}`] = { shape: [n, 1, L.resolution, L.resolution], data: noise[i] };
    });
    return (await this.sampler.run(feeds)).img.data as Float32Array;
  }
}

/** A generator on `g` whose parameters are graph inputs named `names(param)`. */
export function generatorGraph(
  g: Graph,
  structure: GeneratorWeights,
  params: readonly TensorSpec[],
  names: (n: string) => string = gIn,
): { G: StyleGAN2Graph; raw: Map<string, Value> } {
  const raw = new Map<string, Value>();
  for (const p of params) raw.set(p.name, g.input(names(p.name), p.shape));
  const src = new TrainableWeights(g, structure, (n) => {
    const v = raw.get(n);
    if (!v) throw new GanError(`internal: no generator parameter ${n}`);
    return v;
  });
  return { G: new StyleGAN2Graph(g, structure, 'g', { params: src }), raw };
}

/** A discriminator on `g` whose parameters are graph inputs named `names(param)`. */
export function discriminatorGraph(
  g: Graph,
  arch: DiscriminatorArch,
  params: readonly TensorSpec[],
  names: (n: string) => string = dIn,
): { D: DiscriminatorGraph; raw: Map<string, Value> } {
  const raw = new Map<string, Value>();
  for (const p of params) raw.set(p.name, g.input(names(p.name), p.shape));
  return { D: new DiscriminatorGraph(g, arch, (n) => raw.get(n)!), raw };
}

const num = (t: HostTensor): number => Number(t.data[0]);

/** train.py's accumulate: ema ← ema · decay + p · (1 − decay), parameters only, float32 arithmetic. */
export function accumulate(ema: ParamSet, model: ParamSet, decay: number): void {
  const a = Math.fround(decay);
  const b = Math.fround(1 - decay);
  for (const p of model.params) {
    const e = ema.data(p.name);
    const x = model.data(p.name);
    for (let i = 0; i < e.length; i++) e[i] = Math.fround(Math.fround(e[i] * a) + Math.fround(x[i] * b));
  }
}
