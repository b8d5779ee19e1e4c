/**
 * `npm run bench -- anchors --exports DIR`: this project against the plain ONNX export of the official
 * models (what a user could run on the same ONNX Runtime without this project), side by side in one
 * process, runs interleaved (ours, export, ours, export, ...) so that the load of this shared machine
 * hits both alike. One JSON line per case: both medians, the ratio (export / ours: above 1, ours is
 * faster; the median of the per-round ratios), the same for the process's CPU time, the machine's load
 * average, and the largest difference between the two outputs, which come from the same weights.
 *
 *   generator_1024     1024² generator forward from W+ (constant noise), batch 1
 *   generator_256      256² generator forward (rosinality Generator(256); the web app's 256² preview is
 *                      the same network: the 1024 generator's layers up to 256², see studio.ts)
 *   image_b1, image_b16  CLIP ViT-B/32 encode_image at 224², batch 1 and 16
 *   text_2x79          encode_text of the 2 × 79 template prompts of one global-direction edit; ours
 *                      trims the context to the longest prompt (how it always runs, counted as ours),
 *                      and text_2x79_ctx77 runs ours on the export's full 77-token context
 *
 * Flags: --exports DIR (tools/make_anchors.sh writes it), --runs N (rounds, default 7; 3 for the 1024²
 * generator), --device (as every command), and case names to run only those.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../src/graph/graph.js';
import { ClipEncoder } from '../src/models/clip/encoder.js';
import { loadClip } from '../src/models/clip/load.js';
import { eotIndices, trimmedLength } from '../src/models/clip/model.js';
import { expandTemplates } from '../src/models/clip/templates.js';
import { tokenize } from '../src/models/clip/tokenizer.js';
import { StyleGAN2 } from '../src/models/stylegan2/generator.js';
import {
  activeProvider,
  compile,
  type Executable,
  type HostTensor,
  loadModel,
  setDevice,
} from '../src/runtime/session.js';
import { randn, takeFlag } from './report.js';

const HOW = `usage: npm run bench -- anchors --exports DIR [--runs N] [--device cpu|cuda|webgpu|auto] [case...]
cases: generator_1024 generator_256 image_b1 image_b16 text_2x79

DIR holds the official models exported to ONNX as they are, and the checkpoints they came from. Make it once
(about 2 GB, 5-10 minutes on an idle 2-core machine; needs Debian's python3-torch, python3-numpy, python3-packaging,
python3-regex, python3-tqdm and checkouts of orpatashnik/StyleCLIP and openai/CLIP in REF, named
orpatashnik+StyleCLIP and openai+CLIP):

  REF=/path/to/checkouts tools/make_anchors.sh .tmp/exports
  npm run bench -- anchors --exports .tmp/exports
`;

interface Side {
  run: () => Promise<Float32Array>;
  release: () => Promise<void>;
}

const load = () =>
  loadavg()
    .map((v) => v.toFixed(2))
    .join(' ');

/** The export as it is, on our runtime (same session settings as ours). */
async function exportSide(
  file: string,
  input: string,
  feed: HostTensor,
  dtype: 'float32' | 'int32',
): Promise<Side> {
  const exe: Executable = await loadModel(
    readFileSync(file),
    [{ name: input, shape: feed.shape, dtype }],
    [{ name: file.includes('generator') ? 'img' : 'f', shape: [], dtype: 'float32' }],
  );
  const out = file.includes('generator') ? 'img' : 'f';
  return {
    run: async () => (await exe.run({ [input]: feed }))[out].data as Float32Array,
    release: () => exe.release(),
  };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Number.NaN;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Warms both up once, then alternates `rounds` times; reports medians and the median per-round ratio. */
async function race(
  name: string,
  ours: Side,
  theirs: Side,
  rounds: number,
  extra: Record<string, unknown> = {},
) {
  const loadBefore = load();
  const a = await ours.run();
  const b = await theirs.run();
  const t = { ours: [] as number[], export: [] as number[], ratio: [] as number[] };
  const cpu = { ours: [] as number[], export: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    // Alternate who goes first, so neither always runs right after the other's cache traffic.
    const order: ['ours' | 'export', Side][] = [
      ['ours', ours],
      ['export', theirs],
    ];
    if (i % 2) order.reverse();
    const got: Record<string, number> = {};
    for (const [k, side] of order) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await side.run();
      got[k] = performance.now() - t0;
      const c = process.cpuUsage(c0);
      t[k].push(got[k]);
      cpu[k].push((c.user + c.system) / 1000);
    }
    t.ratio.push(got.export / got.ours);
  }
  const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
  const r = (v: number, d = 1) => Number(v.toFixed(d));
  console.log(
    JSON.stringify({
      bench: 'anchors',
      name,
      ours_ms: r(med(t.ours)),
      export_ms: r(med(t.export)),
      ratio: r(med(t.ratio), 2),
      ours_min_ms: r(Math.min(...t.ours)),
      export_min_ms: r(Math.min(...t.export)),
      // CPU time of the whole process (all of ONNX Runtime's threads): the work done, which the other
      // jobs on a shared machine disturb less than the wall time.
      ours_cpu_ms: r(med(cpu.ours)),
      export_cpu_ms: r(med(cpu.export)),
      cpu_ratio: r(med(cpu.export) / med(cpu.ours), 2),
      max_abs_diff: Number(maxAbsDiff(a, b).toPrecision(2)),
      rounds,
      ...extra,
      load_before: loadBefore,
      load_after: load(),
    }),
  );
}

export default async function main(): Promise<void> {
  const args = process.argv.slice(3);
  const flag = (k: string) => takeFlag(args, k);
  const dir = flag('exports');
  const runsFlag = flag('runs');
  const device = flag('device') ?? process.env.STYLECLIP_DEVICE;
  const only = new Set(args);
  if (!dir) {
    console.log(HOW);
    return;
  }
  const need = (f: string) => {
    const p = join(dir, f);
    if (!existsSync(p)) {
      console.error(`anchors: ${p} is missing.\n\n${HOW}`);
      process.exit(2);
    }
    return p;
  };
  if (device) setDevice(device, { log: (s) => console.error(`anchors: ${s}`) });
  const provider = await activeProvider();
  console.log(JSON.stringify({ bench: 'anchors', name: 'setup', device: provider, load: load() }));
  const want = (k: string) => only.size === 0 || only.has(k);
  const rounds = (d: number) => (runsFlag ? Number(runsFlag) : d);

  for (const [name, size, ckpt, onnx] of [
    ['generator_1024', 1024, 'ffhq1024.pt', 'generator.onnx'],
    ['generator_256', 256, 'g256/ffhq256.pt', 'g256/generator.onnx'],
  ] as const) {
    if (!want(name)) continue;
    const G = StyleGAN2.load(need(ckpt));
    const { nLatent: L, styleDim: D } = G.config;
    const w = randn(L * D, 7, 0.5);
    const ours: Side = {
      run: async () => (await G.synthesize(w, 'const')).data as Float32Array,
      release: async () => {},
    };
    const theirs = await exportSide(need(onnx), 'w', { shape: [1, L, D], data: w }, 'float32');
    await race(name, ours, theirs, rounds(size === 1024 ? 3 : 7), { size });
    await theirs.release();
  }

  if (want('image_b1') || want('image_b16') || want('text_2x79')) {
    const clip = loadClip(need('ViT-B-32.pt'));
    const enc = new ClipEncoder(clip);
    for (const [name, batch, onnx] of [
      ['image_b1', 1, 'clip_image.onnx'],
      ['image_b16', 16, 'clip_image_b16.onnx'],
    ] as const) {
      if (!want(name)) continue;
      const x = randn(batch * 3 * 224 * 224, 11 + batch);
      const ours: Side = { run: () => enc.encodeImages(x, batch), release: async () => {} };
      const theirs = await exportSide(need(onnx), 'x', { shape: [batch, 3, 224, 224], data: x }, 'float32');
      await race(name, ours, theirs, rounds(batch === 1 ? 15 : 5), { batch });
      await theirs.release();
    }
    if (want('text_2x79')) {
      const prompts = [...expandTemplates('smiling face'), ...expandTemplates('face')];
      const ids = tokenize(prompts); // [158, 77]
      const n = prompts.length;
      // clip.tokenize gives int32 ids (torch >= 1.8), so that is what the export takes.
      const theirs = await exportSide(
        need('clip_text.onnx'),
        'tokens',
        { shape: [n, 77], data: ids },
        'int32',
      );
      const tokens = { shape: [n, 77], data: BigInt64Array.from(ids, (v) => BigInt(v)) };
      // How ours always runs: the context cut to the longest prompt (encodeTokens bypasses the text cache).
      const trimmed: Side = { run: () => enc.encodeTokens(ids), release: async () => {} };
      const len = trimmedLength(ids, 77);
      await race('text_2x79', trimmed, theirs, rounds(5), {
        prompts: n,
        ours_context: len,
        export_context: 77,
      });
      // The same graph on the export's full context, for the like-for-like ratio.
      const g = new Graph();
      const tok = g.input('tokens', [n, 77], 'int64');
      const eot = g.input('eot', [n], 'int64');
      const full = await compile({ f: clip.encodeText(tok, eot) });
      const eots = { shape: [n], data: eotIndices(ids, 77) };
      const ctx77: Side = {
        run: async () => (await full.run({ tokens, eot: eots })).f.data as Float32Array,
        release: () => full.release(),
      };
      await race('text_2x79_ctx77', ctx77, theirs, rounds(5), {
        prompts: n,
        ours_context: 77,
        export_context: 77,
      });
      await ctx77.release();
      await theirs.release();
    }
    await enc.release();
  }
}
