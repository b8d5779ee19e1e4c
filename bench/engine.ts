/** Engine figures: conv forward/backward, transposed conv, graph build+session time, per-run overhead. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { grad } from '../src/autodiff/grad.js';
import { Graph, topoSort } from '../src/graph/graph.js';
import * as o from '../src/ops/index.js';
import { compile } from '../src/runtime/session.js';
import { seededNormal } from '../src/util/random.js';
import { peakRssMB, report, timeIt } from './report.js';

const B = 'engine';

async function convForwardBackward() {
  const [c, s] = [512, 64];
  const g = new Graph();
  const x = g.input('x', [1, c, s, s]);
  const w = g.input('w', [c, c, 3, 3]);
  const y = o.conv2d(x, w, { pads: 1 });
  const u = g.input('u', y.shape);
  const [gx, gw] = grad(y, [x, w], u);
  const flop = 2 * c * c * 9 * s * s;
  const feeds = {
    x: { shape: [1, c, s, s], data: seededNormal(1, c * s * s) },
    w: { shape: [c, c, 3, 3], data: seededNormal(2, c * c * 9).map((v) => v * 0.02) },
    u: { shape: [1, c, s, s], data: seededNormal(3, c * s * s) },
  };
  // Frozen weights are initializers, as in every model here; ONNX Runtime pre-packs them.
  const frozen = g.const(feeds.w.data, [c, c, 3, 3], 'frozen');
  const fwd = await compile({ y: o.conv2d(x, frozen, { pads: 1 }) }, { inputs: [x] });
  const msF = (await timeIt(() => fwd.run({ x: feeds.x }), { runs: 10 })).median;
  report(B, 'conv3x3_512ch_64_forward', flop / msF / 1e6, 'GFLOP/s', { ms: msF, gflop: flop / 1e9 });
  const bwd = await compile({ gx, gw }, { inputs: [x, w, u] });
  const msB = (await timeIt(() => bwd.run(feeds))).median;
  report(B, 'conv3x3_512ch_64_backward_input_and_weight', (2 * flop) / msB / 1e6, 'GFLOP/s', {
    ms: msB,
    gflop: (2 * flop) / 1e9,
  });
}

async function convTransposeForward() {
  const c = 512;
  const g = new Graph();
  const x = g.input('x', [1, c, 32, 32]);
  const w = g.const(seededNormal(4, c * c * 9), [c, c, 3, 3], 'w');
  const y = o.convTranspose2d(x, w, { stride: 2 }); // 32 -> 65
  const flop = 2 * c * c * 9 * 32 * 32;
  const ex = await compile({ y });
  const feed = { x: { shape: [1, c, 32, 32], data: seededNormal(5, c * 32 * 32) } };
  const ms = (await timeIt(() => ex.run(feed), { runs: 10 })).median;
  report(B, 'conv_transpose3x3_s2_512ch_32to65_forward', flop / ms / 1e6, 'GFLOP/s', {
    ms,
    gflop: flop / 1e9,
  });
}

async function bigGraphBuild() {
  const t0 = performance.now();
  const g = new Graph();
  const x = g.input('x', [1, 256]);
  let h = x;
  // 143 blocks of a 512x512 linear layer (1 MB each) and a norm, 7 nodes each: about 1,000 nodes holding
  // 143 MB of weights. Building, serializing and starting a session happen once per graph, so this is one
  // cold run, not a median.
  const layers = 143;
  const width = 512;
  h = o.linear(
    h,
    g.const(
      seededNormal(9, width * 256).map((v) => v * 0.05),
      [width, 256],
      'in',
    ),
  );
  const shared = seededNormal(10, width * width);
  for (let i = 0; i < layers; i++) {
    g.scope(i, () => {
      const w = g.const(
        shared.map((v) => v * (0.04 + i * 1e-6)),
        [width, width],
        'weight',
      );
      const b = g.const(new Float32Array(width).fill(0.01 * i), [width], 'bias');
      h = o.leakyRelu(o.add(o.mul(o.linear(h, w, b), 1.0001), 0), 0.2);
      h = o.div(h, o.sqrt(o.add(o.mean(o.mul(h, h), -1, true), 1e-8)));
    });
  }
  const y = o.sum(h);
  const built = performance.now();
  const ex = await compile({ y });
  const ready = performance.now();
  const mb = (g.constants.reduce((s, c) => s + c.size, 0) * 4) / 1e6;
  const nodes = topoSort([y]).length;
  report(B, 'build_serialize_session_1000_nodes', (ready - t0) / 1000, 's', {
    nodes,
    weights_mb: Math.round(mb),
    build_s: (built - t0) / 1000,
    compile_s: (ready - built) / 1000,
  });
  await ex.release();
}

async function tinyOverhead() {
  const g = new Graph();
  const x = g.input('x', [4]);
  const ex = await compile({ y: o.add(x, 1) });
  const feed = { x: { shape: [4], data: new Float32Array(4) } };
  for (let i = 0; i < 200; i++) await ex.run(feed);
  // the median of 5,000 single runs (a mean would let one slow spell of this shared machine count)
  const times = new Float64Array(5000);
  for (let i = 0; i < times.length; i++) {
    const t = performance.now();
    await ex.run(feed);
    times[i] = performance.now() - t;
  }
  times.sort();
  report(B, 'tiny_graph_run_overhead', times[times.length >> 1], 'ms', {
    runs: times.length,
    stat: 'median',
    min: times[0],
  });
}

/** A graph holding 1 GB of weights: it must build and run; peak RSS shows how many copies exist. */
async function gigabyteGraph() {
  const t0 = performance.now();
  const g = new Graph();
  const x = g.input('x', [1, 4096]);
  let h = x;
  const layers = 16; // 16 x 4096 x 4096 x 4 B = 1.07 GB
  for (let i = 0; i < layers; i++) {
    const w = new Float32Array(4096 * 4096).fill(1 / 8192); // dense, so every page is resident
    h = g.scope(i, () => o.linear(h, g.const(w, [4096, 4096], 'weight')));
  }
  const ex = await compile({ y: o.sum(h) });
  const out = await ex.run({ x: { shape: [1, 4096], data: new Float32Array(4096).fill(1) } });
  report(B, 'graph_1gb_weights_build_and_run', (performance.now() - t0) / 1000, 's', {
    weights_gb: (layers * 4096 * 4096 * 4) / 2 ** 30,
    peak_rss_gb: peakRssMB() / 1024,
    finite: Number.isFinite(Number(out.y.data[0])),
  });
}

const cases: Record<string, () => Promise<void>> = {
  gigabyte: gigabyteGraph,
  overhead: tinyOverhead,
  conv: convForwardBackward,
  convTranspose: convTransposeForward,
  build: bigGraphBuild,
};

/** Each case runs in its own process, so no session's threads or arena disturb another's timing. */
export default async function main() {
  const only = process.argv[3];
  if (only) {
    if (!cases[only]) throw new Error(`unknown case ${only}; one of ${Object.keys(cases).join(', ')}`);
    await cases[only]();
    return;
  }
  const self = fileURLToPath(new URL('./main.ts', import.meta.url));
  for (const name of Object.keys(cases))
    execFileSync(process.execPath, ['--import', 'tsx', self, 'engine', name], { stdio: 'inherit' });
}
