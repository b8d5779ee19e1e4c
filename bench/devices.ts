/**
 * `npm run bench -- devices [--devices webgpu,cpu] [--runs N] [case...]`: the same graphs on two execution
 * providers in one process, runs interleaved (A, B, B, A, ...), on the same random full-size weights and
 * inputs. One JSON line per case: both medians, the ratio (B / A: above 1, A is faster; the median of the
 * per-round ratios) and the largest difference between the two outputs (the GPU's parity with the CPU
 * path, which the fixtures check). A provider that does not start gives one line saying why, and exit 0.
 *
 *   generator_1024        1024² generator forward from W+ (constant noise), batch 1
 *   generator_1024_grad   the same forward and the gradient of sum(img · R) with respect to W+ (what each
 *                         step of `optimize` and of inversion runs, less the losses)
 *   generator_256         256² generator forward
 *   image_b1, image_b16   CLIP ViT-B/32 encode_image at 224², batch 1 and 16
 *   text_2x79             encode_text of the 2 × 79 template prompts of one global-direction edit
 */
import { availableParallelism, loadavg } from 'node:os';
import { grad } from '../src/autodiff/grad.js';
import { Graph } from '../src/graph/graph.js';
import { ClipEncoder } from '../src/models/clip/encoder.js';
import { expandTemplates } from '../src/models/clip/templates.js';
import { tokenize } from '../src/models/clip/tokenizer.js';
import { StyleGAN2 } from '../src/models/stylegan2/generator.js';
import { StyleGAN2Graph } from '../src/models/stylegan2/model.js';
import { mul, sum } from '../src/ops/index.js';
import { explainFailure, parseDevice } from '../src/runtime/device.js';
import { compile, configureRuntime, type ExecutionProvider } from '../src/runtime/session.js';
import { buildClip } from './clip.js';
import { randn, takeFlag } from './report.js';

const r = (v: number, d = 1) => Number(v.toFixed(d));
const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];

/** A case on one provider: `run` gives the output that is compared across providers. */
type Runner = () => Promise<Float32Array>;
type Build = (provider: ExecutionProvider) => Promise<Runner>;

/** Builds each side with its provider in force (the host classes compile lazily, on the first run). */
async function side(
  provider: ExecutionProvider,
  build: Build,
): Promise<{ run: Runner; first: Float32Array }> {
  configureRuntime({ provider });
  const run = await build(provider);
  const first = await run();
  return { run, first };
}

async function race(name: string, providers: ExecutionProvider[], build: Build, rounds: number) {
  const [pa, pb] = providers;
  const a = await side(pa, build);
  const b = await side(pb, build);
  const t: Record<string, number[]> = { [pa]: [], [pb]: [] };
  const ratio: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const order: [ExecutionProvider, Runner][] = [
      [pa, a.run],
      [pb, b.run],
    ];
    if (i % 2) order.reverse();
    const got: Record<string, number> = {};
    for (const [p, run] of order) {
      const t0 = performance.now();
      await run();
      got[p] = performance.now() - t0;
      t[p].push(got[p]);
    }
    ratio.push(got[pb] / got[pa]);
  }
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < a.first.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a.first[i] - b.first[i]));
    maxRef = Math.max(maxRef, Math.abs(b.first[i]));
  }
  console.log(
    JSON.stringify({
      bench: 'devices',
      name,
      [`${pa}_ms`]: r(med(t[pa])),
      [`${pb}_ms`]: r(med(t[pb])),
      ratio: r(med(ratio), 2),
      [`${pa}_min_ms`]: r(Math.min(...t[pa])),
      [`${pb}_min_ms`]: r(Math.min(...t[pb])),
      max_abs_diff: Number(maxAbs.toPrecision(2)),
      max_abs_ref: Number(maxRef.toPrecision(3)),
      rounds,
      load: loadavg().map((v) => r(v, 2)),
    }),
  );
}

const CASES: Record<string, [Build, number]> = {
  generator_1024: [generatorForward(1024), 5],
  generator_1024_grad: [generatorGrad(1024), 3],
  generator_256: [generatorForward(256), 9],
  image_b1: [imageEncoder(1), 15],
  image_b16: [imageEncoder(16), 5],
  text_2x79: [textEncoder(), 7],
};

function generatorForward(size: number): Build {
  // One set of weights per size, shared by both providers.
  let G: StyleGAN2 | undefined;
  return async () => {
    G ??= StyleGAN2.random({ size, seed: 1 });
    const g = new StyleGAN2(G.weights); // its own executable cache, compiled for this provider
    const w = randn(g.config.nLatent * g.config.styleDim, 7, 0.5);
    return async () => (await g.synthesize(w, 'const')).data as Float32Array;
  };
}

function generatorGrad(size: number): Build {
  let G: StyleGAN2 | undefined;
  return async (provider) => {
    G ??= StyleGAN2.random({ size, seed: 1 });
    const { nLatent: L, styleDim: D } = G.config;
    const g = new Graph();
    const wplus = g.input('wplus', [1, L, D]);
    const img = new StyleGAN2Graph(g, G.weights).image(wplus, 'const');
    const probe = g.input('probe', img.shape);
    const [gw] = grad(sum(mul(img, probe)), [wplus]);
    const exe = await compile({ gw }, { provider });
    const feeds = {
      wplus: { shape: [1, L, D], data: randn(L * D, 7, 0.5) },
      probe: { shape: [...img.shape], data: randn(img.size, 9, 0.01) },
    };
    return async () => (await exe.run(feeds)).gw.data as Float32Array;
  };
}

let clip: ReturnType<typeof buildClip> | undefined;
function imageEncoder(batch: number): Build {
  return async () => {
    clip ??= buildClip();
    const enc = new ClipEncoder(clip);
    const x = randn(batch * 3 * 224 * 224, 11 + batch);
    return () => enc.encodeImages(x, batch);
  };
}

function textEncoder(): Build {
  return async () => {
    clip ??= buildClip();
    const enc = new ClipEncoder(clip);
    const ids = tokenize([...expandTemplates('smiling face'), ...expandTemplates('face')]);
    return () => enc.encodeTokens(ids);
  };
}

/** Starts `p` alone (a one-node graph); the reason in words when it cannot. */
async function starts(p: ExecutionProvider): Promise<string | null> {
  const g = new Graph();
  const x = g.input('x', [4]);
  try {
    const exe = await compile({ y: mul(x, x) }, { inputs: [x], provider: p });
    await exe.run({ x: { shape: [4], data: Float32Array.of(1, 2, 3, 4) } });
    await exe.release();
    return null;
  } catch (e) {
    return explainFailure(p, (e as Error).message);
  }
}

export default async function main(): Promise<void> {
  const args = process.argv.slice(3);
  const flag = (k: string) => takeFlag(args, k);
  const providers = parseDevice(flag('devices') ?? 'webgpu,cpu', '--devices').choices;
  const runs = flag('runs');
  if (providers.length !== 2) {
    console.error('devices: --devices names two providers, such as webgpu,cpu');
    process.exit(2);
  }
  const unknown = args.filter((a) => !(a in CASES));
  if (unknown.length) {
    console.error(`devices: unknown case ${unknown.join(', ')}; cases: ${Object.keys(CASES).join(' ')}`);
    process.exit(2);
  }
  console.log(
    JSON.stringify({
      bench: 'devices',
      name: 'setup',
      providers,
      cores: availableParallelism(),
      load: loadavg(),
    }),
  );
  for (const p of providers) {
    const why = await starts(p);
    if (why) {
      console.log(JSON.stringify({ bench: 'devices', name: 'unavailable', provider: p, why }));
      return;
    }
  }
  for (const [name, [build, rounds]] of Object.entries(CASES)) {
    if (args.length && !args.includes(name)) continue;
    await race(name, providers, build, runs ? Number(runs) : rounds);
  }
}
