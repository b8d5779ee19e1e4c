/**
 * Host-side StyleGAN2: compiles the graphs of model.ts once per (kind, batch, noise) and runs them on
 * Float32Arrays. For losses and gradients, build on `StyleGAN2Graph` directly (see `graph(g)`).
 */
import { Graph, type Value } from '../../graph/graph.js';
import { mean } from '../../ops/index.js';
import { nchwcBlockSize } from '../../runtime/nchwc.js';
import { compile, type Executable, type HostTensor } from '../../runtime/session.js';
import { RandomState } from '../../util/random.js';
import { loadGenerator } from './load.js';
import { type NoiseSpec, StyleGAN2Graph } from './model.js';
import {
  type GeneratorWeights,
  type RandomGeneratorOptions,
  randomGeneratorWeights,
  tiled,
} from './weights.js';

/** Noise for host calls: fixed buffers, seeded random normals, or explicit [1 or B, 1, r, r] arrays. */
export type NoiseChoice = 'const' | 'zero' | { seed: number } | readonly Float32Array[];

export interface TruncationOptions {
  /** ψ: 1 (default) is none. */
  psi?: number;
  /** Truncate only W+ rows [0, cutoff) (NVIDIA's truncation_cutoff); all rows by default. */
  cutoff?: number;
}

export interface StyleStats {
  mean: Float32Array[];
  std: Float32Array[];
}

/** Standard normals [n·d] from numpy's RandomState(seed).randn(n, d), as StyleGAN's scripts draw z. */
export function seededZ(seed: number, n: number, d: number): Float32Array {
  return Float32Array.from(new RandomState(seed).randn(n * d));
}

export class StyleGAN2 {
  private readonly cache = new Map<string, Promise<Executable>>();
  /** Means computed for checkpoints without a stored one, by (samples, seed). */
  private readonly computedMeans = new Map<string, Float32Array>();

  constructor(readonly weights: GeneratorWeights) {}

  /** rosinality `.pt`, StyleCLIP mapper `.pt` (decoder), or NVIDIA `.pkl`. */
  static load(file: string): StyleGAN2 {
    return new StyleGAN2(loadGenerator(file));
  }

  /** Random weights (FFHQ config-f 1024 by default), for benchmarks and memory checks. */
  static random(options: RandomGeneratorOptions = {}): StyleGAN2 {
    return new StyleGAN2(randomGeneratorWeights(options));
  }

  get config() {
    return this.weights.config;
  }

  /** Binds the weights to a graph for composing losses (constants are shared per graph). */
  graph(g: Graph): StyleGAN2Graph {
    return new StyleGAN2Graph(g, this.weights);
  }

  /** A cached forward-only executable (never differentiated, so it may use the blocked kernels). */
  private exe(key: string, build: (G: StyleGAN2Graph) => Record<string, Value>): Promise<Executable> {
    let e = this.cache.get(key);
    if (!e) {
      e = nchwcBlockSize().then((blocked) =>
        compile(build(new StyleGAN2Graph(new Graph(), this.weights, 'stylegan2', { blocked }))),
      );
      this.cache.set(key, e);
    }
    return e;
  }

  /** z [B, D] → w [B, D]. */
  async mapping(z: Float32Array): Promise<Float32Array> {
    const D = this.config.styleDim;
    const B = z.length / D;
    const ex = await this.exe(`mapping:${B}`, (G) => ({ w: G.mapping(G.g.input('z', [B, D])) }));
    return (await ex.run({ z: { shape: [B, D], data: z } })).w.data as Float32Array;
  }

  /**
   * The mean latent [D]: the checkpoint's `latent_avg` / `w_avg`, else the mean of mapping(z) over `n`
   * seeded samples (StyleCLIP uses 4096), cached per (n, seed).
   */
  async meanLatent(n = 4096, seed = 0): Promise<Float32Array> {
    if (this.weights.latentAvg) return this.weights.latentAvg;
    const key = `${n}:${seed}`;
    const cached = this.computedMeans.get(key);
    if (cached) return cached;
    const D = this.config.styleDim;
    const chunk = 512;
    const acc = new Float64Array(D);
    const rs = new RandomState(seed);
    for (let done = 0; done < n; done += chunk) {
      const b = Math.min(chunk, n - done);
      const ex = await this.exe(`mean:${b}`, (G) => ({
        m: mean(G.mapping(G.g.input('z', [b, D])), 0, true),
      }));
      const z = Float32Array.from(rs.randn(b * D));
      const m = (await ex.run({ z: { shape: [b, D], data: z } })).m.data as Float32Array;
      for (let i = 0; i < D; i++) acc[i] += m[i] * b;
    }
    const meanW = Float32Array.from(acc, (v) => v / n);
    this.computedMeans.set(key, meanW);
    return meanW;
  }

  /** w [B, D] (`shape` [B, D]) or W+ [B, L, D] → truncated W+ [B, L, D]. */
  async toWPlus(
    w: Float32Array,
    shape: readonly number[],
    trunc: TruncationOptions = {},
  ): Promise<Float32Array> {
    const { nLatent: L, styleDim: D } = this.config;
    const psi = trunc.psi ?? 1;
    const isPlus = shape.length === 3;
    const B = shape[0];
    if (isPlus ? shape[1] !== L || shape[2] !== D : shape.length !== 2 || shape[1] !== D)
      throw new RangeError(`a latent must be [B, ${D}] or [B, ${L}, ${D}], got [${shape}]`);
    if (w.length !== (isPlus ? B * L * D : B * D))
      throw new RangeError(`latent data does not match [${shape}]`);
    const out = new Float32Array(B * L * D);
    for (let b = 0; b < B; b++)
      for (let l = 0; l < L; l++) {
        const src = isPlus ? (b * L + l) * D : b * D;
        out.set(w.subarray(src, src + D), (b * L + l) * D);
      }
    if (psi === 1) return out;
    const avg = await this.meanLatent();
    const cutoff = trunc.cutoff ?? L;
    for (let b = 0; b < B; b++)
      for (let l = 0; l < Math.min(cutoff, L); l++)
        for (let i = 0; i < D; i++) {
          const k = (b * L + l) * D + i;
          out[k] = avg[i] + psi * (out[k] - avg[i]);
        }
    return out;
  }

  private noiseFeeds(
    B: number,
    noise: NoiseChoice,
  ): { spec: 'const' | 'zero' | 'input'; feeds: Record<string, HostTensor> } {
    if (noise === 'const' || noise === 'zero') return { spec: noise, feeds: {} };
    const feeds: Record<string, HostTensor> = {};
    const rs = 'seed' in noise ? new RandomState((noise as { seed: number }).seed) : null;
    this.weights.convs.forEach((L, i) => {
      const r = L.resolution;
      let data: Float32Array;
      if (rs) data = Float32Array.from(rs.randn(B * r * r));
      else {
        const given = (noise as readonly Float32Array[])[i];
        if (!given || (given.length !== r * r && given.length !== B * r * r))
          throw new RangeError(`noise ${i} must have ${r}x${r} values (or ${B}x${r}x${r})`);
        data = given.length === B * r * r ? given : tiled(given, B);
      }
      feeds[`noise_${i}`] = { shape: [B, 1, r, r], data };
    });
    return { spec: 'input', feeds };
  }

  private noiseSpec(G: StyleGAN2Graph, B: number, spec: 'const' | 'zero' | 'input'): NoiseSpec {
    if (spec !== 'input') return spec;
    return this.weights.convs.map((L, i) => G.g.input(`noise_${i}`, [B, 1, L.resolution, L.resolution]));
  }

  /** W+ [B, L, D] → image [B, 3, size, size] (raw range, about [-1, 1]). */
  async synthesize(wplus: Float32Array, noise: NoiseChoice = 'const'): Promise<HostTensor> {
    const { nLatent: L, styleDim: D, size } = this.config;
    const B = wplus.length / (L * D);
    const nf = this.noiseFeeds(B, noise);
    const ex = await this.exe(`image:${B}:${nf.spec}`, (G) => ({
      img: G.image(G.g.input('wplus', [B, L, D]), this.noiseSpec(G, B, nf.spec)),
    }));
    const out = await ex.run({ wplus: { shape: [B, L, D], data: wplus }, ...nf.feeds });
    return { shape: [B, 3, size, size], data: out.img.data };
  }

  /** W+ [B, L, D] → StyleSpace codes, one [B·C_i] array per layer (toRGB layers: config.styleIsToRGB). */
  async w2s(wplus: Float32Array): Promise<Float32Array[]> {
    const { nLatent: L, styleDim: D } = this.config;
    const B = wplus.length / (L * D);
    const ex = await this.exe(`w2s:${B}`, (G) =>
      Object.fromEntries(G.styles(G.g.input('wplus', [B, L, D])).map((s, i) => [`s${i}`, s])),
    );
    const out = await ex.run({ wplus: { shape: [B, L, D], data: wplus } });
    return this.config.styleDims.map((_, i) => out[`s${i}`].data as Float32Array);
  }

  /** StyleSpace codes (one [B·C_i] per layer) → image [B, 3, size, size]. */
  async synthesizeStyles(styles: readonly Float32Array[], noise: NoiseChoice = 'const'): Promise<HostTensor> {
    const dims = this.config.styleDims;
    if (styles.length !== dims.length) throw new RangeError(`expected ${dims.length} StyleSpace codes`);
    const B = styles[0].length / dims[0];
    const nf = this.noiseFeeds(B, noise);
    const ex = await this.exe(`s2img:${B}:${nf.spec}`, (G) => ({
      img: G.synthesis(
        dims.map((c, i) => G.g.input(`s${i}`, [B, c])),
        this.noiseSpec(G, B, nf.spec),
      ),
    }));
    const feeds: Record<string, HostTensor> = { ...nf.feeds };
    styles.forEach((s, i) => {
      feeds[`s${i}`] = { shape: [B, dims[i]], data: s };
    });
    const out = await ex.run(feeds);
    return { shape: [B, 3, this.config.size, this.config.size], data: out.img.data };
  }

  /**
   * Per-channel mean and std (ddof 0) of every StyleSpace layer over `n` samples: z from
   * RandomState(seed).randn(n, D), mapped, truncated (StyleCLIP: ψ 0.7 on the first 8 rows), W+ → S.
   */
  async styleStats(
    n: number,
    options: TruncationOptions & { seed?: number; chunk?: number } = {},
  ): Promise<StyleStats> {
    const D = this.config.styleDim;
    const dims = this.config.styleDims;
    const z = seededZ(options.seed ?? 5, n, D);
    const sum = dims.map((c) => new Float64Array(c));
    const sq = dims.map((c) => new Float64Array(c));
    const chunk = options.chunk ?? 50;
    for (let done = 0; done < n; done += chunk) {
      const b = Math.min(chunk, n - done);
      const w = await this.mapping(z.subarray(done * D, (done + b) * D));
      const s = await this.w2s(await this.toWPlus(w, [b, D], options));
      s.forEach((a, i) => {
        const c = dims[i];
        for (let r = 0; r < b; r++)
          for (let k = 0; k < c; k++) {
            const v = a[r * c + k];
            sum[i][k] += v;
            sq[i][k] += v * v;
          }
      });
    }
    const meanS = sum.map((a) => Float32Array.from(a, (v) => v / n));
    const std = sq.map((a, i) =>
      Float32Array.from(a, (v, k) => Math.sqrt(Math.max(0, v / n - (sum[i][k] / n) ** 2))),
    );
    return { mean: meanS, std };
  }
}
