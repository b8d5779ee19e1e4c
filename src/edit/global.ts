/**
 * StyleCLIP's global directions (method 3; global_torch/StyleCLIP.py and manipulate.py): a text direction Δt
 * (GetDt, from ClipEncoder), channel relevance r = fs3·Δt, the boundary Δs (GetBoundary/SplitS), and the edit
 * s + α·Δs rendered from StyleSpace. Also the official channel statistics (manipulate.py's GenerateS and
 * GetCodeMS): z = RandomState(5).randn(N, D), W+ truncated with ψ 0.7 on the first 8 rows, the mean and std
 * of every StyleSpace channel.
 *
 * StyleSpace codes are kept on the host as one Float32Array per layer, [B, C_i] row-major, in StyleCLIP's
 * layer order (conv1, to_rgb1, then conv, conv, to_rgb per resolution). fs3 has one row per non-toRGB channel
 * in that order.
 */
import { Graph, type Value } from '../graph/graph.js';
import type { ClipEncoder } from '../models/clip/encoder.js';
import { StyleGAN2Graph, truncate } from '../models/stylegan2/model.js';
import type { GeneratorWeights, StyleGAN2Config } from '../models/stylegan2/weights.js';
import { nchwcBlockSize } from '../runtime/nchwc.js';
import { compile, type Executable } from '../runtime/session.js';
import { RandomState } from '../util/random.js';

/** Per-layer StyleSpace codes: `codes[i]` is [B, C_i] row-major. */
export type StyleCodes = Float32Array[];

/** Per-channel statistics of every StyleSpace layer (toRGB layers included). */
export interface StyleStats {
  mean: Float32Array[];
  std: Float32Array[];
  /** How many samples they were computed from (0 when loaded from a file that does not say). */
  samples: number;
}

// --- layer geometry -------------------------------------------------------------------------------------

/** The resolution at which StyleSpace layer i acts: 4 for layers 0 and 1, then 8, 8, 8, 16, 16, 16, ... */
export function layerResolution(i: number): number {
  return i < 2 ? 4 : 8 << Math.floor((i - 2) / 3);
}

/** Which layers fs3 covers: 'all' non-toRGB layers, or the official shortcut of those up to 128² (index ≤ 16). */
export type LayerSelection = 'all' | 'upto128';

/**
 * Where each non-toRGB StyleSpace layer's channels sit in fs3 (StyleCLIP's `mindexs`: 0, 2, 3, 5, 6, ...).
 * `rowOffset[i]` is the first fs3 row of layer i (-1 for toRGB layers).
 */
export interface Fs3Layout {
  dims: readonly number[];
  /** Non-toRGB layers in order. */
  layers: number[];
  rowOffset: number[];
  /** Rows over all non-toRGB layers (6048 for FFHQ 1024). */
  totalRows: number;
}

export function fs3Layout(config: StyleGAN2Config): Fs3Layout {
  const layers: number[] = [];
  const rowOffset: number[] = [];
  let rows = 0;
  config.styleDims.forEach((c, i) => {
    if (config.styleIsToRGB[i]) rowOffset.push(-1);
    else {
      layers.push(i);
      rowOffset.push(rows);
      rows += c;
    }
  });
  return { dims: config.styleDims, layers, rowOffset, totalRows: rows };
}

/** The non-toRGB layers a selection covers (SingleChannel.py: `np.array(M.mindexs) <= 16` for upto128). */
export function selectLayers(config: StyleGAN2Config, selection: LayerSelection = 'all'): number[] {
  const { layers } = fs3Layout(config);
  return selection === 'all' ? layers : layers.filter((i) => layerResolution(i) <= 128);
}

/** fs3 rows of a selection: 6048 ('all') and 5376 ('upto128') for FFHQ config-f 1024. */
export function fs3Rows(config: StyleGAN2Config, selection: LayerSelection = 'all'): number {
  return selectLayers(config, selection).reduce((s, i) => s + config.styleDims[i], 0);
}

// --- compiled sessions, one per (generator, graph kind, batch) ------------------------------------------

const sessions = new WeakMap<GeneratorWeights, Map<string, Promise<Executable>>>();

function session(
  weights: GeneratorWeights,
  key: string,
  build: () => Record<string, Value>,
): Promise<Executable> {
  let m = sessions.get(weights);
  if (!m) {
    m = new Map();
    sessions.set(weights, m);
  }
  let s = m.get(key);
  if (!s) {
    s = compile(build());
    m.set(key, s);
    s.catch(() => m.delete(key));
  }
  return s;
}

/** Releases the sessions compiled for one generator. */
export async function releaseGeneratorSessions(weights: GeneratorWeights): Promise<void> {
  const m = sessions.get(weights);
  if (!m) return;
  sessions.delete(weights);
  for (const s of m.values()) await (await s).release();
}

function styleOutputs(styles: Value[]): Record<string, Value> {
  return Object.fromEntries(styles.map((s, i) => [`s${i}`, s]));
}

function splitStyles(out: Record<string, { data: unknown }>, n: number): StyleCodes {
  return Array.from({ length: n }, (_, i) => out[`s${i}`].data as Float32Array);
}

/** The mean latent of the checkpoint, or an error that says how to get one. */
function requireLatentAvg(weights: GeneratorWeights): void {
  if (!weights.latentAvg)
    throw new Error(
      'this generator has no mean latent (latent_avg / w_avg), which truncation needs; use a checkpoint that stores one',
    );
}

/**
 * z [B, D] → StyleSpace codes of the official sampling: mapping, W+ truncated with ψ towards the mean latent
 * on rows [0, cutoff) (NVIDIA's truncation_cutoff; rows past it keep w), then the per-layer affines.
 */
export async function stylesFromZ(
  weights: GeneratorWeights,
  z: Float32Array,
  batch: number,
  psi = 0.7,
  cutoff = 8,
): Promise<StyleCodes> {
  requireLatentAvg(weights);
  const cfg = weights.config;
  const exe = await session(weights, `z2s/${batch}/${psi}/${cutoff}`, () => {
    const g = new Graph();
    const G = new StyleGAN2Graph(g, weights);
    const zin = g.input('z', [batch, cfg.styleDim]);
    const wplus = truncate(G.broadcast(G.mapping(zin)), G.latentAvg(), psi, cutoff);
    return styleOutputs(G.styles(wplus));
  });
  const out = await exe.run({ z: { shape: [batch, cfg.styleDim], data: z } });
  return splitStyles(out, cfg.styleDims.length);
}

/** W+ [B, L, D] → StyleSpace codes. */
export async function stylesFromWplus(
  weights: GeneratorWeights,
  wplus: Float32Array,
  batch: number,
): Promise<StyleCodes> {
  const cfg = weights.config;
  const shape = [batch, cfg.nLatent, cfg.styleDim];
  if (wplus.length !== batch * cfg.nLatent * cfg.styleDim)
    throw new RangeError(
      `W+ must be [${shape}] (${batch * cfg.nLatent * cfg.styleDim} values), got ${wplus.length}`,
    );
  const exe = await session(weights, `w2s/${batch}`, () => {
    const g = new Graph();
    const G = new StyleGAN2Graph(g, weights);
    return styleOutputs(G.styles(g.input('wplus', shape)));
  });
  return splitStyles(await exe.run({ wplus: { shape, data: wplus } }), cfg.styleDims.length);
}

/** W+ of the official sampling for one seed: z = RandomState(seed).randn(1, D), mapping, truncation ψ / cutoff. */
export async function wplusFromSeed(
  weights: GeneratorWeights,
  seed: number,
  psi = 0.7,
  cutoff = 8,
): Promise<Float32Array> {
  requireLatentAvg(weights);
  const cfg = weights.config;
  const z = Float32Array.from(new RandomState(seed).randn(1, cfg.styleDim));
  const exe = await session(weights, `z2w/${psi}/${cutoff}`, () => {
    const g = new Graph();
    const G = new StyleGAN2Graph(g, weights);
    const zin = g.input('z', [1, cfg.styleDim]);
    return { wplus: truncate(G.broadcast(G.mapping(zin)), G.latentAvg(), psi, cutoff) };
  });
  const out = await exe.run({ z: { shape: [1, cfg.styleDim], data: z } });
  return out.wplus.data as Float32Array;
}

/** StyleSpace codes [B, C_i] → images [B, 3, size, size] in the generator's range, constant noise. */
export async function renderStyles(
  weights: GeneratorWeights,
  codes: StyleCodes,
  batch: number,
): Promise<Float32Array> {
  const cfg = weights.config;
  if (codes.length !== cfg.styleDims.length)
    throw new RangeError(`expected ${cfg.styleDims.length} StyleSpace codes, got ${codes.length}`);
  const blocked = await nchwcBlockSize();
  const exe = await session(weights, `s2img/${batch}`, () => {
    const g = new Graph();
    const G = new StyleGAN2Graph(g, weights, 'stylegan2', { blocked });
    const styles = cfg.styleDims.map((c, i) => g.input(`s${i}`, [batch, c]));
    return { img: G.synthesis(styles, 'const') };
  });
  const feeds = Object.fromEntries(
    codes.map((s, i) => [`s${i}`, { shape: [batch, cfg.styleDims[i]], data: s }]),
  );
  return (await exe.run(feeds)).img.data as Float32Array;
}

// --- channel statistics ----------------------------------------------------------------------------------

export interface SampleOptions {
  /** N, the number of samples (the official code uses 100,000). */
  samples?: number;
  /** RandomState seed of z (5 in the official code). */
  seed?: number;
  psi?: number;
  cutoff?: number;
  /** Samples per engine run. */
  batch?: number;
  /** Also return the codes of the first `keep` samples (fs3 precompute edits the first K images). */
  keep?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * manipulate.py's GenerateS + GetCodeMS, streamed: z = RandomState(seed).randn(N, D) drawn in order, codes
 * computed in batches, mean and (population) std accumulated in float64 around a per-channel shift (the
 * first sample) so that no cancellation creeps in. Memory stays O(batch) for any N.
 */
export async function sampleStyleStats(
  weights: GeneratorWeights,
  options: SampleOptions = {},
): Promise<{ stats: StyleStats; kept: StyleCodes }> {
  const n = options.samples ?? 100_000;
  const keep = Math.min(options.keep ?? 0, n);
  if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`samples must be a positive integer, got ${n}`);
  const cfg = weights.config;
  const dims = cfg.styleDims;
  const batch = Math.min(options.batch ?? 1000, n);
  const rs = new RandomState(options.seed ?? 5);
  const shift = dims.map((c) => new Float64Array(c));
  const s1 = dims.map((c) => new Float64Array(c));
  const s2 = dims.map((c) => new Float64Array(c));
  const kept = dims.map((c) => new Float32Array(keep * c));
  let done = 0;
  while (done < n) {
    const b = Math.min(batch, n - done);
    const z = new Float32Array(batch * cfg.styleDim);
    gaussiansF32(rs, z, b * cfg.styleDim);
    const codes = await stylesFromZ(weights, z, batch, options.psi ?? 0.7, options.cutoff ?? 8);
    dims.forEach((c, l) => {
      const x = codes[l];
      if (done === 0) for (let j = 0; j < c; j++) shift[l][j] = x[j];
      const a1 = s1[l];
      const a2 = s2[l];
      const sh = shift[l];
      for (let r = 0; r < b; r++)
        for (let j = 0; j < c; j++) {
          const d = x[r * c + j] - sh[j];
          a1[j] += d;
          a2[j] += d * d;
        }
      if (done < keep) kept[l].set(x.subarray(0, Math.min(b, keep - done) * c), done * c);
    });
    done += b;
    options.onProgress?.(done, n);
  }
  const mean = dims.map((c, l) => Float32Array.from({ length: c }, (_, j) => shift[l][j] + s1[l][j] / n));
  const std = dims.map((c, l) =>
    Float32Array.from({ length: c }, (_, j) => {
      const m = s1[l][j] / n;
      return Math.sqrt(Math.max(s2[l][j] / n - m * m, 0));
    }),
  );
  return { stats: { mean, std, samples: n }, kept };
}

/**
 * `n` (even) draws of numpy's legacy_gauss as float32, 8x faster than RandomState.nextGauss: the same polar
 * method on the same uniform stream, but with V8's Math.log, which can be 1 ulp off glibc's in float64. That
 * never survives the cast to float32 that the generator applies to z (checked on 5M draws: no difference).
 */
export function gaussiansF32(rs: RandomState, out: Float32Array, n: number): void {
  if (n % 2 !== 0) throw new RangeError('gaussiansF32 draws pairs; n must be even');
  for (let i = 0; i < n; i += 2) {
    let x1: number;
    let x2: number;
    let r2: number;
    do {
      x1 = 2 * rs.nextDouble() - 1;
      x2 = 2 * rs.nextDouble() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt((-2 * Math.log(r2)) / r2);
    out[i] = f * x2; // legacy_gauss returns f·x2 first and caches f·x1
    out[i + 1] = f * x1;
  }
}

// --- boundary and edit -------------------------------------------------------------------------------------

export interface Boundary {
  /** Δs per StyleSpace layer [C_i] (zeros on toRGB layers and on channels under β), already × channel std. */
  delta: Float32Array[];
  /** Channels kept by the threshold (GetBoundary's num_c). */
  numChannels: number;
  /** r = fs3·Δt, one value per fs3 row. */
  relevance: Float32Array;
  /** max |r| over the kept channels (the normalizer; 0 when none passes β). */
  maxRelevance: number;
}

/**
 * GetBoundary(fs3, dt, threshold=β) with SplitS(if_std=True): r = fs3·Δt (float32, like np.dot on float32),
 * zero |r| < β, divide by max|r|, split per non-toRGB layer in order and scale by the channel std; toRGB
 * layers get zeros. When no channel reaches β the official code divides by zero (NaN everywhere); here Δs
 * is all zeros and numChannels is 0, so callers can say so.
 */
export function globalBoundary(
  fs3: Float32Array,
  dt: Float32Array,
  std: readonly Float32Array[],
  config: StyleGAN2Config,
  beta: number,
): Boundary {
  const layout = fs3Layout(config);
  const e = dt.length;
  if (fs3.length !== layout.totalRows * e)
    throw new RangeError(
      `fs3 must be [${layout.totalRows}, ${e}] for this generator and CLIP, got ${fs3.length} values`,
    );
  if (std.length !== config.styleDims.length)
    throw new RangeError(`expected std for ${config.styleDims.length} layers`);
  const f = Math.fround;
  const r = new Float32Array(layout.totalRows);
  for (let row = 0; row < layout.totalRows; row++) {
    let s = 0;
    for (let j = 0; j < e; j++) s += fs3[row * e + j] * dt[j];
    r[row] = s;
  }
  let numChannels = 0;
  let max = 0;
  const kept = new Float32Array(layout.totalRows);
  for (let row = 0; row < r.length; row++)
    if (!(Math.abs(r[row]) < beta)) {
      numChannels++;
      kept[row] = r[row];
      max = Math.max(max, Math.abs(r[row]));
    }
  const delta = config.styleDims.map((c, i) => {
    const out = new Float32Array(c);
    const off = layout.rowOffset[i];
    if (off < 0 || max === 0) return out;
    for (let j = 0; j < c; j++) out[j] = f(f(kept[off + j] / max) * std[i][j]);
    return out;
  });
  return { delta, numChannels, relevance: r, maxRelevance: max };
}

/**
 * s + α·Δs for every α (MSCode): codes of ONE image → codes of alphas.length images [A, C_i], in α order.
 */
export function applyBoundary(
  codes: StyleCodes,
  delta: readonly Float32Array[],
  alphas: readonly number[],
): StyleCodes {
  return codes.map((s, i) => {
    const c = delta[i].length;
    if (s.length !== c) throw new RangeError(`StyleSpace layer ${i}: code has ${s.length} values, Δs ${c}`);
    const out = new Float32Array(alphas.length * c);
    alphas.forEach((a, k) => {
      const fa = Math.fround(a);
      for (let j = 0; j < c; j++) out[k * c + j] = s[j] + Math.fround(fa * delta[i][j]);
    });
    return out;
  });
}

/** Row `index` of batched codes as the codes of one image. */
export function pickCodes(codes: StyleCodes, dims: readonly number[], index: number): StyleCodes {
  return codes.map((s, i) => s.slice(index * dims[i], (index + 1) * dims[i]));
}

/** Text directions a GlobalEditor keeps (2 KB each for ViT-B/32): a long-running server sees endless prompts. */
export const DIRECTION_CACHE_SIZE = 1024;

/**
 * One global-direction edit, end to end, for callers that hold the models: Δt from the texts (cached per
 * text pair, the most recent DIRECTION_CACHE_SIZE), the boundary, and the rendered images of the codes moved
 * by each α.
 */
export class GlobalEditor {
  /** Δt per (target, neutral), least recently used first (a Map keeps insertion order). */
  private readonly dtCache = new Map<string, Float32Array>();

  constructor(
    readonly weights: GeneratorWeights,
    readonly clip: ClipEncoder,
    /** [rows, E], rows over all non-toRGB layers (missing layers zero; see loadFs3). */
    readonly fs3: Float32Array,
    readonly stats: StyleStats,
  ) {
    const rows = fs3Layout(weights.config).totalRows;
    if (fs3.length !== rows * clip.embedDim)
      throw new RangeError(`fs3 must be [${rows}, ${clip.embedDim}], got ${fs3.length} values`);
  }

  /** GetDt([target, neutral]): the unit CLIP-space direction from neutral to target text. */
  async direction(target: string, neutral: string): Promise<Float32Array> {
    const key = `${target}\0${neutral}`;
    let dt = this.dtCache.get(key);
    if (dt)
      this.dtCache.delete(key); // re-inserted below as the most recent
    else dt = await this.clip.textDirection(target, neutral);
    this.dtCache.set(key, dt);
    if (this.dtCache.size > DIRECTION_CACHE_SIZE) this.dtCache.delete(this.dtCache.keys().next().value!);
    return dt;
  }

  boundary(dt: Float32Array, beta: number): Boundary {
    return globalBoundary(this.fs3, dt, this.stats.std, this.weights.config, beta);
  }

  /** Renders the codes of one image moved by each α, one engine run per α: [A, 3, S, S]. */
  async render(codes: StyleCodes, boundary: Boundary, alphas: readonly number[]): Promise<Float32Array> {
    const size = this.weights.config.size;
    const px = 3 * size * size;
    const moved = applyBoundary(codes, boundary.delta, alphas);
    const out = new Float32Array(alphas.length * px);
    for (let k = 0; k < alphas.length; k++) {
      const one = pickCodes(moved, this.weights.config.styleDims, k);
      out.set(await renderStyles(this.weights, one, 1), k * px);
    }
    return out;
  }
}
