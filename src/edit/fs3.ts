/**
 * fs3 precompute, as StyleCLIP's global_torch/SingleChannel.py: for every non-toRGB StyleSpace channel, set
 * it to mean ∓ 5σ on each of the first K sampled images, render with constant noise, convert to uint8 as
 * `(x + 1)·127.5` clamped and truncated, apply CLIP's preprocessing (PIL bicubic resize of the short side to
 * 224, center crop, normalize), encode_image, and reduce with GetFs: per image, the unit difference of the
 * normalized +5σ and −5σ embeddings; their mean over the K images, normalized.
 *
 * The official loop has a quirk that this port does not copy by default: `M.dlatents = copy.copy(dlatents_o)`
 * copies the list but not the arrays, so `M.dlatents[l][:, c] = mean` writes into the base codes and stays;
 * channel c of layer l is then edited on images whose earlier channels of layer l, and all channels of the
 * layers processed before, sit at their mean. The reference fixture (`fs3_computed.npy`) measures every
 * channel on the unmodified samples, which is what the method describes, so that is the default;
 * `carryOver: true` reproduces the published script's in-place behaviour.
 *
 * Renders are batched; finished channels are checkpointed (atomically, per layer) in a folder next to the
 * output, so a crashed or interrupted run continues where it stopped.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readNpy, writeNpy } from '../io/npy.js';
import type { ClipEncoder } from '../models/clip/encoder.js';
import { CLIP_INPUT_SIZE, preprocessRgb } from '../models/clip/preprocess.js';
import type { GeneratorWeights } from '../models/stylegan2/weights.js';
import {
  type LayerSelection,
  renderStyles,
  type SampleOptions,
  type StyleCodes,
  type StyleStats,
  sampleStyleStats,
  selectLayers,
} from './global.js';
import { loadStyleStats, saveStyleStats } from './global-io.js';

export interface Fs3Options {
  /** K, the images each channel is measured on (100 in the official code). */
  images?: number;
  /** Layers to measure: 'all' non-toRGB layers, or 'upto128' (SingleChannel.py's `mindexs <= 16`). */
  layers?: LayerSelection;
  /** Samples for the channel statistics (100,000 in the official code). */
  statsSamples?: number;
  /** Precomputed statistics (e.g. StyleCLIP's S_mean_std); the first K images are still sampled. */
  stats?: StyleStats;
  /** The edit strength in channel stds (5 in the official code for FFHQ). */
  alpha?: number;
  /** Renders per engine run (default: about 1M pixels' worth, 1 at 1024², 16 at 256², at most 32). */
  batch?: number;
  /** Reproduce the official script's in-place update of the base codes (default false; see the module comment). */
  carryOver?: boolean;
  /** Folder for checkpoints; no checkpointing when absent. */
  checkpointDir?: string;
  /** Seconds between checkpoint writes (finished layers are always written at once). */
  checkpointEvery?: number;
  /** Called after every batch: renders done (including those resumed), renders in all. */
  onProgress?: (done: number, total: number, info: { layer: number; resumed: number }) => void;
  /** Checked between batches; when it returns true the run checkpoints and throws Fs3Interrupted. */
  shouldStop?: () => boolean;
  sampling?: Pick<SampleOptions, 'seed' | 'psi' | 'cutoff' | 'batch'>;
  /** The statistics and the K images' base codes, already sampled (a queue worker gets them from its run). */
  base?: Fs3Base;
  /** Measure only channels [start, end) of one layer (a queue shard); the result holds just those rows. */
  only?: { layer: number; start: number; end: number };
}

/** What every channel is measured against: the channel statistics and the first K images' StyleSpace codes. */
export interface Fs3Base {
  stats: StyleStats;
  codes: StyleCodes;
}

/** Samples the statistics and the K base images exactly as precomputeFs3 does (RandomState(5) by default). */
export async function sampleFs3Base(
  weights: GeneratorWeights,
  options: Pick<Fs3Options, 'images' | 'stats' | 'statsSamples' | 'sampling'> = {},
): Promise<Fs3Base> {
  const K = options.images ?? 100;
  const sampled = await sampleStyleStats(weights, {
    ...options.sampling,
    samples: options.stats ? K : (options.statsSamples ?? 100_000),
    keep: K,
  });
  return { stats: options.stats ?? sampled.stats, codes: sampled.kept };
}

export class Fs3Interrupted extends Error {
  constructor(
    readonly checkpointDir: string | undefined,
    readonly channelsDone: number,
  ) {
    super(
      checkpointDir
        ? `interrupted; ${channelsDone} finished channels are saved in ${checkpointDir} (run the same command again to continue)`
        : 'interrupted (no checkpoint folder, nothing saved)',
    );
    this.name = 'Fs3Interrupted';
  }
}

export interface Fs3Result {
  /** [rows, E] over the selected layers, in layer order (the official file layout). */
  fs3: Float32Array;
  rows: number;
  embedDim: number;
  layers: number[];
  stats: StyleStats;
  renders: number;
  /** Renders skipped because a checkpoint already had them. */
  resumedRenders: number;
}

/**
 * GetFs of one channel: `feats` [K, 2, E] (−α then +α) → the unit row, written into `out` at `offset`.
 * Computed in float64.
 */
export function getFs(feats: Float32Array, k: number, e: number, out: Float32Array, offset: number): void {
  const acc = new Float64Array(e);
  const d = new Float64Array(e);
  for (let i = 0; i < k; i++) {
    const lo = i * 2 * e;
    const hi = (i * 2 + 1) * e;
    let nl = 0;
    let nh = 0;
    for (let j = 0; j < e; j++) {
      nl += feats[lo + j] ** 2;
      nh += feats[hi + j] ** 2;
    }
    nl = Math.sqrt(nl);
    nh = Math.sqrt(nh);
    let nd = 0;
    for (let j = 0; j < e; j++) {
      d[j] = feats[hi + j] / nh - feats[lo + j] / nl;
      nd += d[j] ** 2;
    }
    nd = Math.sqrt(nd);
    for (let j = 0; j < e; j++) acc[j] += d[j] / nd;
  }
  let n = 0;
  for (let j = 0; j < e; j++) n += acc[j] ** 2;
  n = Math.sqrt(n);
  for (let j = 0; j < e; j++) out[offset + j] = acc[j] / n;
}

/**
 * SingleChannel.py's GenerateImg conversion and CLIP preprocessing of image `index` of a batch:
 * torch's float32 `(x + 1) * 127.5`, clamp to [0, 255], truncation to uint8, then clip._transform.
 */
export function renderToClipInput(
  images: Float32Array,
  index: number,
  size: number,
  clipSize = CLIP_INPUT_SIZE,
): Float32Array {
  const px = size * size;
  const base = index * 3 * px;
  const rgb = new Uint8Array(3 * px);
  const f = Math.fround;
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < px; i++) {
      const v = f(f(images[base + c * px + i] + 1) * 127.5);
      rgb[i * 3 + c] = v >= 255 ? 255 : v > 0 ? Math.trunc(v) : 0;
    }
  return preprocessRgb({ data: rgb, width: size, height: size }, clipSize);
}

interface Meta {
  version: 1;
  fingerprint: string;
  layers: number[];
}

/** A content hash of the generator (its config and every weight that shapes StyleSpace and the image). */
export function generatorFingerprint(weights: GeneratorWeights): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(weights.config));
  const add = (a: Float32Array) => h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  for (const m of weights.mapping) add(m.weight);
  add(weights.constInput);
  for (const c of weights.convs) {
    add(c.conv.affineWeight);
    add(c.conv.affineBias);
    add(c.conv.weight);
    add(c.noiseConst);
  }
  for (const t of weights.toRGBs) add(t.conv.weight);
  if (weights.latentAvg) add(weights.latentAvg);
  return h.digest('hex');
}

function statsHash(s: StyleStats): string {
  const h = createHash('sha256');
  for (const a of [...s.mean, ...s.std]) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return h.digest('hex');
}

const pad2 = (i: number) => String(i).padStart(2, '0');

/** Runs the fs3 precompute. See Fs3Options for the knobs; the defaults are the official settings. */
export async function precomputeFs3(
  weights: GeneratorWeights,
  clip: ClipEncoder,
  options: Fs3Options = {},
): Promise<Fs3Result> {
  const cfg = weights.config;
  const K = options.images ?? 100;
  const alpha = options.alpha ?? 5;
  const carry = options.carryOver ?? false;
  const size = cfg.size;
  const e = clip.embedDim;
  const dims = cfg.styleDims;
  const layers = selectLayers(cfg, options.layers ?? 'all');
  if (!(Number.isInteger(K) && K >= 1)) throw new RangeError(`images must be a positive integer, got ${K}`);
  const B = options.batch ?? Math.max(1, Math.min(32, Math.floor(1_048_576 / (size * size))));
  const dir = options.checkpointDir;

  // Settings that change the result go into the fingerprint; a checkpoint from other settings is refused.
  const fingerprint = createHash('sha256')
    .update(
      JSON.stringify({
        g: generatorFingerprint(weights),
        clip: clip.model.hash,
        K,
        alpha,
        carry,
        layers,
        stats: options.stats ? statsHash(options.stats) : (options.statsSamples ?? 100_000),
        sampling: options.sampling ?? {},
      }),
    )
    .digest('hex');
  const meta: Meta = { version: 1, fingerprint, layers };
  if (dir) {
    mkdirSync(dir, { recursive: true });
    const metaFile = `${dir}/meta.json`;
    if (existsSync(metaFile)) {
      const old = JSON.parse(readFileSync(metaFile, 'utf8')) as Meta;
      if (old.fingerprint !== fingerprint) throw new Fs3CheckpointMismatch(dir);
    } else writeFileSync(metaFile, `${JSON.stringify(meta)}\n`);
  }

  // Statistics and the base codes of the first K images: from the checkpoint when resuming.
  let stats: StyleStats;
  let base: StyleCodes;
  const statsFile = dir && `${dir}/stats.npy`;
  const codesFile = dir && `${dir}/codes.npy`;
  if (statsFile && codesFile && existsSync(statsFile) && existsSync(codesFile)) {
    stats = loadStyleStats(statsFile, cfg);
    const flat = readNpy(codesFile).data as Float32Array;
    const total = dims.reduce((a, b) => a + b, 0);
    let off = 0;
    base = dims.map((c) => {
      const out = new Float32Array(K * c);
      for (let k = 0; k < K; k++) out.set(flat.subarray(k * total + off, k * total + off + c), k * c);
      off += c;
      return out;
    });
  } else {
    const sampled = options.base ?? (await sampleFs3Base(weights, options));
    stats = sampled.stats;
    base = sampled.codes;
    if (statsFile && codesFile) {
      saveStyleStats(statsFile, stats);
      const total = dims.reduce((a, b) => a + b, 0);
      const flat = new Float32Array(K * total);
      let off = 0;
      dims.forEach((c, l) => {
        for (let k = 0; k < K; k++) flat.set(base[l].subarray(k * c, (k + 1) * c), k * total + off);
        off += c;
      });
      writeNpy(codesFile, { dtype: 'float32', shape: [K, total], data: flat });
    }
  }

  const only = options.only;
  if (
    only &&
    !(layers.includes(only.layer) && 0 <= only.start && only.start < only.end && only.end <= dims[only.layer])
  )
    throw new RangeError(`no channels ${only.start}..${only.end} in the measured layer ${only.layer}`);
  const rowsOf = (l: number) => dims[l];
  const totalRenders = only
    ? (only.end - only.start) * 2 * K
    : layers.reduce((s, l) => s + rowsOf(l) * 2 * K, 0);
  const selRows = layers.reduce((s, l) => s + rowsOf(l), 0);
  const fs3 = new Float32Array(selRows * e);
  let done = 0;
  let resumed = 0;
  let channelsDone = 0;

  // With carry-over, the base codes of a layer have every previously processed layer at its mean.
  const setMean = (codes: StyleCodes, l: number, upTo = dims[l]) => {
    const c = dims[l];
    for (let k = 0; k < K; k++) codes[l].set(stats.mean[l].subarray(0, upTo), k * c);
  };
  const work: StyleCodes = base.map((a) => a.slice());

  let selOffset = 0;
  for (const l of layers) {
    // A shard skips the other layers; with carry-over the ones before it still leave their means behind.
    if (only && l !== only.layer) {
      if (carry) setMean(work, l);
      continue;
    }
    const C = dims[l];
    const layerFile = dir && `${dir}/layer_${pad2(l)}.npy`;
    const rows = new Float32Array(C * e);
    let have = only?.start ?? 0;
    if (layerFile && existsSync(layerFile)) {
      const t = readNpy(layerFile);
      if (t.shape.length !== 2 || t.shape[1] !== e || t.shape[0] > C) throw new Fs3CheckpointMismatch(dir!);
      have = t.shape[0];
      rows.set(t.data as Float32Array);
    }
    const skipped = have - (only?.start ?? 0); // resumed from the checkpoint
    done += skipped * 2 * K;
    resumed += skipped * 2 * K;
    channelsDone += skipped;
    const save = () => {
      if (layerFile)
        writeNpy(layerFile, { dtype: 'float32', shape: [have, e], data: rows.slice(0, have * e) });
    };
    let lastSave = performance.now();

    // Jobs of this layer from channel `start` on: (channel, image, sign) in order.
    const start = have;
    const jobs = ((only?.end ?? C) - have) * K * 2;
    const feats = new Float32Array(C * K * 2 * e); // only the rows of unfinished channels get filled
    const codes = dims.map((c) => new Float32Array(B * c));
    const r = clip.model.config.imageResolution; // 224 for OpenAI's CLIPs, 64 for the world's
    const px = 3 * r * r;
    const clipIn = new Float32Array(B * px);
    for (let j0 = 0; j0 < jobs; j0 += B) {
      if (options.shouldStop?.()) {
        save();
        throw new Fs3Interrupted(dir, channelsDone);
      }
      const n = Math.min(B, jobs - j0);
      for (let b = 0; b < B; b++) {
        const job = j0 + Math.min(b, n - 1); // pad the last batch with copies
        const ch = start + Math.floor(job / (2 * K));
        const k = Math.floor(job / 2) % K;
        const sign = job % 2 === 0 ? -1 : 1;
        for (let i = 0; i < dims.length; i++)
          codes[i].set(work[i].subarray(k * dims[i], (k + 1) * dims[i]), b * dims[i]);
        if (carry) codes[l].set(stats.mean[l].subarray(0, ch), b * C); // earlier channels of this layer at mean
        codes[l][b * C + ch] = Math.fround(stats.mean[l][ch] + sign * alpha * stats.std[l][ch]);
      }
      const img = await renderStyles(weights, codes, B);
      for (let b = 0; b < n; b++) clipIn.set(renderToClipInput(img, b, size, r), b * px);
      const f = await clip.encodeImages(clipIn, B);
      for (let b = 0; b < n; b++) {
        const job = j0 + b;
        feats.set(f.subarray(b * e, (b + 1) * e), (start * K * 2 + job) * e);
      }
      done += n;
      // Channels whose 2K renders are all in.
      const finished = start + Math.floor((j0 + n) / (2 * K));
      for (let c = have; c < finished; c++)
        getFs(feats.subarray(c * K * 2 * e, (c + 1) * K * 2 * e), K, e, rows, c * e);
      channelsDone += finished - have;
      have = finished;
      options.onProgress?.(done, totalRenders, { layer: l, resumed });
      const every = (options.checkpointEvery ?? 30) * 1000;
      if (have === C || performance.now() - lastSave > every) {
        save();
        lastSave = performance.now();
      }
    }
    if (jobs === 0 && layerFile && !existsSync(layerFile)) save();
    if (only) {
      const n = only.end - only.start;
      const part = rows.slice(only.start * e, only.end * e);
      return {
        fs3: part,
        rows: n,
        embedDim: e,
        layers: [l],
        stats,
        renders: totalRenders,
        resumedRenders: 0,
      };
    }
    fs3.set(rows, selOffset * e);
    selOffset += C;
    if (carry) setMean(work, l);
  }
  return { fs3, rows: selRows, embedDim: e, layers, stats, renders: totalRenders, resumedRenders: resumed };
}

export class Fs3CheckpointMismatch extends Error {
  constructor(dir: string) {
    super(
      `the checkpoint folder ${dir} belongs to a run with other settings (generator, CLIP, images, layers or statistics); delete it or pass another --out`,
    );
    this.name = 'UserError';
  }
}

/** The checkpoint folder of an output file: `fs3.npy` → `fs3.npy.partial/`. */
export function fs3CheckpointDir(out: string): string {
  return `${out}.partial`;
}

/** Removes a checkpoint folder after its result is written. */
export function removeCheckpoint(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Writes fs3 [rows, E] as float32 .npy, atomically. */
export function writeFs3(file: string, r: Pick<Fs3Result, 'fs3' | 'rows' | 'embedDim'>): void {
  writeNpy(file, { dtype: 'float32', shape: [r.rows, r.embedDim], data: r.fs3 });
}
