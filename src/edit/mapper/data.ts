/**
 * The mapper's training data: W+ latents from a file (e4e's train_faces.pt / test_faces.pt, an .npy), or
 * sampled from the generator as coach.py does without files (z ~ N(0, I), w = mapping(z), truncation 0.7
 * towards the mean latent, the same w on every row). The batch order is a pure function of (seed, step), a
 * fresh permutation per epoch with the last partial batch dropped (DataLoader shuffle=True, drop_last=True),
 * so a resumed run sees exactly the batches an uninterrupted one would.
 */
import { Graph } from '../../graph/graph.js';
import { LatentSet } from '../../models/stylegan2/latents.js';
import { StyleGAN2Graph, truncate } from '../../models/stylegan2/model.js';
import type { GeneratorWeights } from '../../models/stylegan2/weights.js';
import { mean } from '../../ops/index.js';
import { compile } from '../../runtime/session.js';
import { RandomState } from '../../util/random.js';

const means = new WeakMap<GeneratorWeights, Promise<Float32Array>>();

/** rosinality's mean_latent(4096) when the checkpoint stores no latent_avg (fixed seed, cached). */
function meanLatent(G: GeneratorWeights): Promise<Float32Array> {
  let m = means.get(G);
  if (!m) {
    m = computeMean(G, 0x5eed);
    means.set(G, m);
  }
  return m;
}

async function computeMean(G: GeneratorWeights, seed: number): Promise<Float32Array> {
  const d = G.config.styleDim;
  const n = 4096;
  const g = new Graph();
  const z = g.input('z', [n, d]);
  const exe = await compile({ w: mean(new StyleGAN2Graph(g, G).mapping(z), 0, true) });
  const zs = Float32Array.from(new RandomState(seed).randn(n * d));
  return (await exe.run({ z: { shape: [n, d], data: zs } })).w.data as Float32Array;
}

/** coach.py's sampled dataset: `count` w = avg + psi·(mapping(z) − avg), z from RandomState(seed). */
export async function sampleLatents(
  G: GeneratorWeights,
  count: number,
  seed: number,
  psi = 0.7,
): Promise<LatentSet> {
  const d = G.config.styleDim;
  const avgData = G.latentAvg ?? (await meanLatent(G));
  const chunk = Math.min(256, count);
  const g = new Graph();
  const z = g.input('z', [chunk, d]);
  const avg = g.input('avg', [1, d]);
  const exe = await compile({ w: truncate(new StyleGAN2Graph(g, G).mapping(z), avg, psi) });
  const rs = new RandomState(seed);
  const out = new Float32Array(count * d);
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    const zs = new Float32Array(chunk * d);
    zs.set(Float32Array.from(rs.randn(n * d)));
    const w = (await exe.run({ z: { shape: [chunk, d], data: zs }, avg: { shape: [1, d], data: avgData } })).w
      .data as Float32Array;
    out.set(w.subarray(0, n * d), start * d);
  }
  return new LatentSet(
    out,
    count,
    G.config.nLatent,
    d,
    true,
    `sampled(seed=${seed}, n=${count}, psi=${psi})`,
  );
}

/** A seeded permutation of 0..n-1 (Fisher–Yates on numpy's MT19937 stream). */
export function permutation(n: number, seed: number): number[] {
  const rs = new RandomState(seed >>> 0);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rs.nextDouble() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** Batch `step` (0-based) of a shuffled, drop-last loader over `count` items: a function of (seed, step). */
export class BatchOrder {
  private cache: { epoch: number; perm: number[] } | null = null;
  readonly perEpoch: number;

  constructor(
    readonly count: number,
    readonly batch: number,
    readonly seed: number,
  ) {
    if (count < batch) throw new RangeError(`${count} training latents cannot fill one batch of ${batch}`);
    this.perEpoch = Math.floor(count / batch);
  }

  indices(step: number): number[] {
    const epoch = Math.floor(step / this.perEpoch);
    if (!this.cache || this.cache.epoch !== epoch)
      this.cache = { epoch, perm: permutation(this.count, (this.seed * 1000003 + epoch * 7919) >>> 0) };
    const j = step % this.perEpoch;
    return this.cache.perm.slice(j * this.batch, (j + 1) * this.batch);
  }
}
