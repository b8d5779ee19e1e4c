/**
 * `npm run bench -- stylegan2`: the random-weight FFHQ config-f 1024 generator, batch 1.
 * Each case runs in its own process so that peak RSS is per case. Prints JSON lines.
 *
 *   forward W+ -> 1024² image: session build, first run, steady-state run, peak RSS
 *   forward + d(sum(img·R))/dW+: steady-state run, peak RSS
 *   forward from StyleSpace codes: steady-state run (compare with W+)
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { grad } from '../src/autodiff/grad.js';
import { Graph, topoSort, type Value } from '../src/graph/graph.js';
import { StyleGAN2Graph } from '../src/models/stylegan2/model.js';
import { fastNormal, randomGeneratorWeights } from '../src/models/stylegan2/weights.js';
import { mul, sum } from '../src/ops/index.js';
import { nchwcBlockSize } from '../src/runtime/nchwc.js';
import { compile } from '../src/runtime/session.js';

type Case = 'forward' | 'grad' | 'stylespace';
const CASES: Case[] = ['forward', 'grad', 'stylespace'];

/** FLOPs of the conv and matmul nodes (2 per multiply-add); elementwise work is not counted. */
export function graphFlops(outputs: readonly Value[]): number {
  let f = 0;
  for (const n of topoSort(outputs)) {
    const y = n.outputs[0];
    if (n.op.name === 'conv2d' || n.op.name === 'nchwc_conv') {
      const w = n.inputs[1].shape;
      f += 2 * y.size * w[1] * w[2] * w[3];
    } else if (n.op.name === 'conv_transpose2d') {
      const [x, w] = [n.inputs[0], n.inputs[1].shape];
      f += 2 * x.size * w[1] * w[2] * w[3];
    } else if (n.op.name === 'matmul') {
      f += 2 * y.size * n.inputs[0].shape[n.inputs[0].rank - 1];
    }
  }
  return f;
}

const line = (name: string, value: number, unit: string, extra: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ bench: 'stylegan2', name, value: Number(value.toFixed(4)), unit, ...extra }));

const rssGB = () => process.resourceUsage().maxRSS / 1024 / 1024;

async function runCase(which: Case, size: number, reps: number): Promise<void> {
  const t0 = performance.now();
  const W = randomGeneratorWeights({ size, seed: 1 });
  const tWeights = (performance.now() - t0) / 1000;
  const g = new Graph();
  // Forward-only graphs use ONNX Runtime's blocked kernels where it has them, as the product's renders do.
  const blocked = which === 'grad' ? 0 : await nchwcBlockSize();
  const G = new StyleGAN2Graph(g, W, 'stylegan2', { blocked });
  const L = W.config.nLatent;
  const feeds: Record<string, { shape: number[]; data: Float32Array }> = {};
  const randn = fastNormal(7);
  let outputs: Record<string, Value>;
  if (which === 'stylespace') {
    const styles = W.config.styleDims.map((c, i) => {
      feeds[`s${i}`] = { shape: [1, c], data: randn(new Float32Array(c)) };
      return g.input(`s${i}`, [1, c]);
    });
    outputs = { img: G.synthesis(styles) };
  } else {
    const wplus = g.input('wplus', [1, L, W.config.styleDim]);
    feeds.wplus = { shape: [1, L, W.config.styleDim], data: randn(new Float32Array(L * W.config.styleDim)) };
    const img = G.image(wplus);
    if (which === 'grad') {
      const r = g.input('probe', img.shape);
      feeds.probe = { shape: [...img.shape], data: randn(new Float32Array(img.size), 0.01) };
      const [gw] = grad(sum(mul(img, r)), [wplus]);
      outputs = { img, grad_wplus: gw };
    } else outputs = { img };
  }
  const gflop = graphFlops(Object.values(outputs)) / 1e9;
  const t1 = performance.now();
  const ex = await compile(outputs);
  const tBuild = (performance.now() - t1) / 1000;
  const t2 = performance.now();
  await ex.run(feeds);
  const tFirst = (performance.now() - t2) / 1000;
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await ex.run(feeds);
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  const steady = times[Math.floor(times.length / 2)];
  const tag = { size, batch: 1, nchwc_block: blocked };
  const rate = { gflop: Number(gflop.toFixed(2)), gflops: Number((gflop / steady).toFixed(1)) };
  if (which === 'forward') {
    line('random_weights_build', tWeights, 's', tag);
    line('session_build', tBuild, 's', tag);
    line('forward_first_run', tFirst, 's', { ...tag, ...rate, gflops: Number((gflop / tFirst).toFixed(1)) });
    line('forward_wplus', steady, 's', { ...tag, ...rate, min: times[0] });
    line('forward_peak_rss', rssGB(), 'GB', tag);
  } else if (which === 'grad') {
    line('grad_session_build', tBuild, 's', tag);
    line('forward_grad_wplus', steady, 's', { ...tag, ...rate, min: times[0] });
    line('forward_grad_peak_rss', rssGB(), 'GB', tag);
  } else {
    line('forward_stylespace', steady, 's', { ...tag, ...rate, min: times[0] });
    line('stylespace_peak_rss', rssGB(), 'GB', tag);
  }
}

export default async function main(): Promise<void> {
  const args = process.argv.slice(3);
  const opt = (k: string, d: string) => {
    const i = args.indexOf(`--${k}`);
    return i >= 0 ? args[i + 1] : d;
  };
  const size = Number(opt('size', '1024'));
  const reps = Number(opt('reps', '5'));
  const only = opt('case', '');
  if (only) return runCase(only as Case, size, reps);
  // One process per case so each peak RSS is that case's own.
  const self = fileURLToPath(new URL('./main.ts', import.meta.url));
  for (const c of CASES) {
    const r = spawnSync(
      process.execPath,
      [...process.execArgv, self, 'stylegan2', '--case', c, '--size', String(size), '--reps', String(reps)],
      { stdio: 'inherit' },
    );
    if (r.status !== 0) throw new Error(`stylegan2 bench case ${c} failed (exit ${r.status})`);
  }
}
