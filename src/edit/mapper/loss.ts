/**
 * The mapper's training objective (mapper/training/coach.py, calc_loss), as one graph:
 *
 *   x     = G(w)                       frozen generator, fixed noise (randomize_noise=False)
 *   w_hat = w + 0.1·M(w);  x_hat = G(w_hat)
 *   loss  = λ_ID·IDLoss(x_hat, x) + λ_CLIP·mean(CLIPLoss(x_hat, text)) + λ_L2·MSE(w_hat, w)
 *
 * IDLoss compares x_hat with the *unedited* image x (its features detached); the CLIP loss is on x_hat
 * only; the L2 term is the mean squared difference of the latents (of every StyleSpace layer, summed, for
 * a StyleSpace mapper). Mapper parameters are graph inputs, so one run gives the losses and the gradient of
 * every parameter; the generator, CLIP and ArcFace are constants.
 *
 * x is needed only for IDLoss's target features (and for image grids), and it depends on w alone, not on
 * the mapper: a trainer that sees each latent many times computes those features once per latent
 * (`MapperTargets`) and feeds them, which saves a generator forward per sample on every later epoch.
 */
import { grad } from '../../autodiff/grad.js';
import { Graph, type Value } from '../../graph/graph.js';
import type { ArcFaceModel } from '../../models/arcface/model.js';
import type { ClipModel } from '../../models/clip/model.js';
import { StyleGAN2Graph } from '../../models/stylegan2/model.js';
import type { GeneratorWeights } from '../../models/stylegan2/weights.js';
import { add, mean, mul, sub } from '../../ops/index.js';
import { nchwcBlockSize } from '../../runtime/nchwc.js';
import { compile, type Executable, type HostTensor } from '../../runtime/session.js';
import { clipLoss, idFeatures, idLoss, idLossToFeatures } from '../losses.js';
import { MapperError, MapperGraph, type MapperWeights } from './model.js';

export interface Lambdas {
  clip: number;
  l2: number;
  id: number;
}

/** train_options.py's defaults: clip_lambda 1.0, latent_l2_lambda 0.8, id_lambda 0.1. */
export const DEFAULT_LAMBDAS: Readonly<Lambdas> = Object.freeze({ clip: 1.0, l2: 0.8, id: 0.1 });

export interface LossModels {
  generator: GeneratorWeights;
  clip?: ClipModel;
  /** encode_text of the description, [T, E] (T = 1 for one prompt). */
  textFeatures?: Float32Array;
  arcface?: ArcFaceModel;
}

export interface LossGraph {
  total: Value;
  id: Value;
  clip: Value;
  l2: Value;
  /** G(w); null when the ID target features are given. */
  x: Value | null;
  xHat: Value;
}

/**
 * Builds calc_loss for a batch `w` [B, L, D] into the graph of `M`. With `idTarget` (the detached ArcFace
 * features of G(w), [B, 512]) the unedited image is not rendered at all.
 */
export function buildMapperLoss(
  G: StyleGAN2Graph,
  M: MapperGraph,
  w: Value,
  models: LossModels,
  lambdas: Lambdas,
  idTarget?: Value,
): LossGraph {
  const g = w.graph;
  const zero = g.scalar(0);
  let x: Value | null;
  let xHat: Value;
  let l2: Value;
  if (M.weights.spec.type === 'StyleSpaceMapper') {
    const s = G.styles(w);
    const sHat = M.editStyles(s);
    x = idTarget ? null : G.synthesis(s);
    xHat = G.synthesis(sHat);
    l2 = zero;
    s.forEach((c, i) => {
      if (sHat[i] === c) return; // toRGB layers: s_hat = s, an MSE of exactly 0
      const d = sub(sHat[i], c);
      l2 = add(l2, mean(mul(d, d)));
    });
  } else {
    const wHat = M.edit(w);
    x = idTarget ? null : G.image(w);
    xHat = G.image(wHat);
    const d = sub(wHat, w);
    l2 = mean(mul(d, d));
  }
  let id: Value = zero;
  if (lambdas.id > 0) {
    if (!models.arcface) throw new MapperError('the ID loss (id lambda > 0) needs ArcFace weights');
    id = idTarget ? idLossToFeatures(models.arcface, xHat, idTarget) : idLoss(models.arcface, xHat, x!);
  }
  let clip: Value = zero;
  if (lambdas.clip > 0) {
    if (!models.clip || !models.textFeatures)
      throw new MapperError('the CLIP loss (clip lambda > 0) needs CLIP weights and a prompt');
    const e = models.clip.config.embedDim;
    const text = g.const(models.textFeatures, [models.textFeatures.length / e, e], 'mapper.text_features');
    clip = mean(clipLoss(models.clip, xHat, text));
  }
  // The reference's accumulation order: loss = id·λ; loss += clip·λ; loss += l2·λ.
  let total: Value = zero;
  if (lambdas.id > 0) total = mul(id, lambdas.id);
  if (lambdas.clip > 0) total = add(total, mul(clip, lambdas.clip));
  if (lambdas.l2 > 0) total = add(total, mul(l2, lambdas.l2));
  return { total, id, clip, l2, x, xHat };
}

export interface LossValues {
  loss: number;
  loss_id: number;
  loss_clip: number;
  loss_l2_latent: number;
}

export interface StepResult {
  losses: LossValues;
  /** d loss / d parameter, by official key (only when compiled with gradients). */
  grads: Map<string, Float32Array>;
  /** G(w); absent when the objective was compiled with `targets` (see MapperTargets). */
  x?: Float32Array;
  xHat: Float32Array;
}

/**
 * The compiled objective for a fixed batch size: losses (+ all parameter gradients) and both images.
 * With `microBatch` < `batch` the graph is built for micro-batches and run once per chunk; every term is a
 * mean over the batch, so the batch's losses and gradients are the means over the chunks (the same
 * numbers up to float32 summation order) at a fraction of the memory (a 1024² step at batch 2 needs
 * about twice the peak memory of batch 1).
 */
export class MapperObjective {
  private constructor(
    private readonly exe: Executable,
    private readonly paramInputs: Map<string, string>,
    readonly batch: number,
    readonly microBatch: number,
    readonly latentShape: number[],
    readonly withGrads: boolean,
    /** The width of the ID target features that `run` needs (0: none). */
    readonly targetDim: number,
  ) {}

  static async create(
    weights: MapperWeights,
    models: LossModels,
    options: {
      batch: number;
      microBatch?: number;
      lambdas?: Lambdas;
      grads?: boolean;
      /** Take the ID target features as an input ('id_target', from MapperTargets) instead of rendering x. */
      targets?: boolean;
    },
  ): Promise<MapperObjective> {
    const lambdas = options.lambdas ?? DEFAULT_LAMBDAS;
    const micro = options.microBatch ?? options.batch;
    if (!(micro >= 1 && options.batch % micro === 0))
      throw new MapperError(`the micro-batch (${micro}) must divide the batch (${options.batch})`);
    const cfg = models.generator.config;
    const g = new Graph();
    const G = new StyleGAN2Graph(g, models.generator);
    const M = new MapperGraph(g, weights, 'input');
    const shape = [micro, cfg.nLatent, cfg.styleDim];
    const w = g.input('w', shape);
    const idDim = models.arcface?.config.embedDim ?? 0;
    const target =
      options.targets && lambdas.id > 0 && idDim > 0 ? g.input('id_target', [micro, idDim]) : undefined;
    const L = buildMapperLoss(G, M, w, models, lambdas, target);
    const outs: Record<string, Value> = {
      loss: L.total,
      loss_id: L.id,
      loss_clip: L.clip,
      loss_l2_latent: L.l2,
      x_hat: L.xHat,
    };
    if (!options.targets) outs.x = L.x!;
    const withGrads = options.grads ?? true;
    const names = new Map<string, string>();
    if (withGrads) {
      const keys = [...M.inputs.keys()];
      const grads = grad(
        L.total,
        keys.map((k) => M.inputs.get(k)!),
      );
      keys.forEach((k, i) => {
        outs[`grad.${k}`] = grads[i];
      });
    }
    for (const [k, v] of M.inputs) names.set(k, v.name!);
    const exe = await compile(outs, { inputs: [w, ...(target ? [target] : []), ...M.inputs.values()] });
    return new MapperObjective(exe, names, options.batch, micro, shape, withGrads, target ? idDim : 0);
  }

  /** `targets`: the ID target features [batch, E] of G(w), when compiled with `targets`. */
  async run(
    params: ReadonlyMap<string, { shape: number[]; data: Float32Array }>,
    w: Float32Array,
    targets?: Float32Array,
  ): Promise<StepResult> {
    const per = this.latentShape[1] * this.latentShape[2];
    if (w.length !== this.batch * per)
      throw new MapperError(
        `expected ${this.batch} latents of [${this.latentShape.slice(1)}], got ${w.length} values`,
      );
    const d = this.targetDim;
    if (d > 0 && targets?.length !== this.batch * d)
      throw new MapperError(`expected ID target features [${this.batch}, ${d}]`);
    const chunks = this.batch / this.microBatch;
    const m = this.microBatch;
    const chunk = (c: number) =>
      this.runChunk(
        params,
        w.subarray(c * m * per, (c + 1) * m * per),
        targets?.subarray(c * m * d, (c + 1) * m * d),
      );
    if (chunks === 1) return chunk(0);
    const parts: StepResult[] = [];
    for (let c = 0; c < chunks; c++) parts.push(await chunk(c));
    const inv = Math.fround(1 / chunks);
    const mean = (f: (r: StepResult) => number) =>
      Math.fround(parts.reduce((a, r) => Math.fround(a + f(r)), 0) * inv);
    const grads = new Map<string, Float32Array>();
    for (const k of parts[0].grads.keys()) {
      const g = parts[0].grads.get(k)!.slice();
      for (let c = 1; c < chunks; c++) {
        const h = parts[c].grads.get(k)!;
        for (let i = 0; i < g.length; i++) g[i] += h[i];
      }
      for (let i = 0; i < g.length; i++) g[i] *= inv;
      grads.set(k, g);
    }
    return {
      losses: {
        loss: mean((r) => r.losses.loss),
        loss_id: mean((r) => r.losses.loss_id),
        loss_clip: mean((r) => r.losses.loss_clip),
        loss_l2_latent: mean((r) => r.losses.loss_l2_latent),
      },
      grads,
      x: parts[0].x ? concatFloats(parts.map((r) => r.x!)) : undefined,
      xHat: concatFloats(parts.map((r) => r.xHat)),
    };
  }

  private async runChunk(
    params: ReadonlyMap<string, { shape: number[]; data: Float32Array }>,
    w: Float32Array,
    targets: Float32Array | undefined,
  ): Promise<StepResult> {
    const feeds: Record<string, HostTensor> = { w: { shape: this.latentShape, data: w } };
    if (this.targetDim > 0) feeds.id_target = { shape: [this.microBatch, this.targetDim], data: targets! };
    for (const [k, name] of this.paramInputs) {
      const p = params.get(k);
      if (!p) throw new MapperError(`mapper parameter '${k}' is missing`);
      feeds[name] = { shape: p.shape, data: p.data };
    }
    const out = await this.exe.run(feeds);
    const num = (k: string) => (out[k].data as Float32Array)[0];
    const grads = new Map<string, Float32Array>();
    if (this.withGrads)
      for (const k of this.paramInputs.keys()) grads.set(k, out[`grad.${k}`].data as Float32Array);
    return {
      losses: {
        loss: num('loss'),
        loss_id: num('loss_id'),
        loss_clip: num('loss_clip'),
        loss_l2_latent: num('loss_l2_latent'),
      },
      grads,
      x: out.x ? (out.x.data as Float32Array) : undefined,
      xHat: out.x_hat.data as Float32Array,
    };
  }
}

/**
 * What the objective needs from the unedited latents, computed once per latent: x = G(w) (for image
 * grids) and, with an ID loss, IDLoss's detached target features of x.
 */
export class MapperTargets {
  private constructor(
    private readonly exe: Executable,
    readonly microBatch: number,
    readonly latentShape: number[],
    readonly withFeatures: boolean,
  ) {}

  static async create(models: LossModels, options: { microBatch: number; features: boolean }) {
    if (options.features && !models.arcface)
      throw new MapperError('the ID loss (id lambda > 0) needs ArcFace weights');
    const cfg = models.generator.config;
    const g = new Graph();
    const shape = [options.microBatch, cfg.nLatent, cfg.styleDim];
    const w = g.input('w', shape);
    const blocked = await nchwcBlockSize();
    const x = new StyleGAN2Graph(g, models.generator, 'stylegan2', { blocked }).image(w);
    const outs: Record<string, Value> = { x };
    if (options.features) outs.features = idFeatures(models.arcface!, x);
    const exe = await compile(outs, { inputs: [w] });
    return new MapperTargets(exe, options.microBatch, shape, options.features);
  }

  /** For `n` latents (a multiple of the micro-batch): x [n, 3, S, S] and features [n, E] (or empty). */
  async compute(w: Float32Array): Promise<{ x: Float32Array; features: Float32Array }> {
    const per = this.latentShape[1] * this.latentShape[2];
    const n = w.length / per;
    if (!Number.isInteger(n / this.microBatch))
      throw new MapperError(`expected a multiple of ${this.microBatch} latents, got ${n}`);
    const xs: Float32Array[] = [];
    const fs: Float32Array[] = [];
    for (let i = 0; i < n; i += this.microBatch) {
      const out = await this.exe.run({
        w: { shape: this.latentShape, data: w.subarray(i * per, (i + this.microBatch) * per) },
      });
      xs.push(out.x.data as Float32Array);
      if (this.withFeatures) fs.push(out.features.data as Float32Array);
    }
    return { x: concatFloats(xs), features: concatFloats(fs) };
  }
}

function concatFloats(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
