/**
 * Applying a trained mapper (mapper/scripts/inference.py): w_hat = w + 0.1·k·M(w) (k = strength, 1 in the
 * reference), rendered with the generator's fixed noise (randomize_noise=False). StyleSpace mappers edit
 * s = A(w) per layer instead and render from the codes.
 */
import { Graph, type Value } from '../../graph/graph.js';
import { StyleGAN2Graph } from '../../models/stylegan2/model.js';
import type { GeneratorWeights } from '../../models/stylegan2/weights.js';
import { add, concat, mul } from '../../ops/index.js';
import { nchwcBlockSize } from '../../runtime/nchwc.js';
import { compile, type Executable } from '../../runtime/session.js';
import { EDIT_SCALE, MapperError, MapperGraph, type MapperWeights } from './model.js';

/** The edited latent and the image: W+ mappers give `wHat` [B, L, D]; StyleSpace mappers `sHat` [B, ΣC]. */
export interface EditGraph {
  delta: Value;
  edited: Value;
  styles: Value[] | null;
}

/**
 * Builds the edit into `g`: `k` is a [1] input or constant holding fround(0.1·strength). For a W+ mapper
 * `edited` is w_hat; for a StyleSpace mapper it is every layer's s_hat concatenated [B, ΣC] and `styles`
 * holds the per-layer codes for synthesis.
 */
export function buildEdit(G: StyleGAN2Graph, M: MapperGraph, wplus: Value, k: Value): EditGraph {
  if (M.weights.spec.type !== 'StyleSpaceMapper') {
    const delta = M.delta(wplus);
    return { delta, edited: add(wplus, mul(delta, k)), styles: null };
  }
  const s = G.styles(wplus);
  const deltas = M.styleDeltas(s);
  const sHat = s.map((x, i) => {
    const d = deltas[i];
    return d ? add(x, mul(d, k)) : x;
  });
  const zerosFor = (x: Value) => mul(x, 0);
  const delta = concat(
    deltas.map((d, i) => d ?? zerosFor(s[i])),
    1,
  );
  return { delta, edited: concat(sHat, 1), styles: sHat };
}

export const strengthFactor = (strength: number) => Math.fround(EDIT_SCALE * strength);

export interface ApplyResult {
  /** w_hat [B, L, D] (W+ mapper) or the concatenated s_hat [B, ΣC] (StyleSpace mapper). */
  edited: Float32Array;
  editedShape: number[];
  /** The edited images [B, 3, S, S], raw generator range. */
  image?: Float32Array;
  /** The unedited images, when asked for. */
  before?: Float32Array;
}

/** A compiled mapper (and, optionally, generator) for a fixed batch size. */
export class MapperApplier {
  private constructor(
    private readonly exe: Executable,
    readonly batch: number,
    readonly nLatent: number,
    readonly dim: number,
    readonly editedShape: number[],
    readonly outputs: { image: boolean; before: boolean },
  ) {}

  /**
   * `render: false` compiles the mapper alone (for benchmarks and latents-only use); `before: true` also
   * renders the unedited latents.
   */
  static async create(
    weights: MapperWeights,
    generator: GeneratorWeights,
    options: { batch?: number; render?: boolean; before?: boolean } = {},
  ): Promise<MapperApplier> {
    const batch = options.batch ?? 1;
    const render = options.render ?? true;
    const before = render && (options.before ?? false);
    const cfg = generator.config;
    if (weights.spec.type !== 'StyleSpaceMapper' && weights.spec.latentDim !== cfg.styleDim)
      throw new MapperError(
        `the mapper works on ${weights.spec.latentDim}-d latents, the generator's are ${cfg.styleDim}-d`,
      );
    const g = new Graph();
    const G = new StyleGAN2Graph(g, generator, 'stylegan2', { blocked: await nchwcBlockSize() });
    const M = new MapperGraph(g, weights, 'const');
    const w = g.input('w', [batch, cfg.nLatent, cfg.styleDim]);
    const k = g.input('k', [1]);
    const e = buildEdit(G, M, w, k);
    const outs: Record<string, Value> = { edited: e.edited };
    if (render) outs.image = e.styles ? G.synthesis(e.styles) : G.image(e.edited);
    if (before) outs.before = G.image(w);
    const exe = await compile(outs, { inputs: [w, k] });
    return new MapperApplier(exe, batch, cfg.nLatent, cfg.styleDim, [...e.edited.shape], {
      image: render,
      before,
    });
  }

  /** Edits `batch` W+ latents [B, L, D] (a [B, D] w is broadcast to every row). */
  async run(w: Float32Array, strength = 1): Promise<ApplyResult> {
    const per = this.nLatent * this.dim;
    let wplus = w;
    if (w.length === this.batch * this.dim && this.nLatent > 1) {
      wplus = new Float32Array(this.batch * per);
      for (let b = 0; b < this.batch; b++)
        for (let l = 0; l < this.nLatent; l++)
          wplus.set(w.subarray(b * this.dim, (b + 1) * this.dim), b * per + l * this.dim);
    }
    if (wplus.length !== this.batch * per)
      throw new MapperError(
        `expected ${this.batch} latent(s) of [${this.nLatent}, ${this.dim}] (or [${this.dim}]), got ${w.length} values`,
      );
    const out = await this.exe.run({
      w: { shape: [this.batch, this.nLatent, this.dim], data: wplus },
      k: { shape: [1], data: Float32Array.of(strengthFactor(strength)) },
    });
    return {
      edited: out.edited.data as Float32Array,
      editedShape: this.editedShape,
      image: this.outputs.image ? (out.image.data as Float32Array) : undefined,
      before: this.outputs.before ? (out.before.data as Float32Array) : undefined,
    };
  }
}
