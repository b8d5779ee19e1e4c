/**
 * Whether this ONNX Runtime build has its blocked-layout (NCHWc) CPU kernels, and their block size: 16
 * with AVX-512, 8 with AVX2, none elsewhere (ARM, WebAssembly). The size decides the filter layout, so it
 * is found by running a 1x1 blocked conv with each candidate layout and keeping the one that is right.
 * Only the CPU provider has these kernels: on CUDA or WebGPU ONNX Runtime would run them on the CPU behind
 * the GPU and copy every activation across, so there the answer is 0 and the standard ops are used.
 */
import { Graph } from '../graph/graph.js';
import { blockFilter, nchwcConv, nchwcReorderInput, nchwcReorderOutput } from '../ops/nchwc.js';
import { activeProvider, compile } from './session.js';

let probe: Promise<number> | undefined;

export async function nchwcBlockSize(): Promise<number> {
  if ((await activeProvider()) !== 'cpu') return 0;
  probe ??= detect();
  return probe;
}

async function detect(): Promise<number> {
  if (process.env.STYLECLIP_NCHWC === '0') return 0;
  const c = 16;
  const x = Float32Array.from({ length: c }, (_, i) => i + 1);
  const w = Float32Array.from({ length: c * c }, (_, i) => ((i * 7) % 11) - 5);
  const want = Array.from({ length: c }, (_, o) => x.reduce((a, v, i) => a + w[o * c + i] * v, 0));
  for (const block of [16, 8]) {
    try {
      const g = new Graph();
      const xin = g.input('x', [1, c, 1, 1]);
      const filter = blockFilter(g.const(w, [c, c, 1, 1], 'w'), block);
      const y = nchwcReorderOutput(nchwcConv(nchwcReorderInput(xin, block), filter, { pads: 0 }), c);
      const exe = await compile({ y }, { inputs: [xin], provider: 'cpu' });
      const got = (await exe.run({ x: { shape: [1, c, 1, 1], data: x } })).y.data as Float32Array;
      await exe.release();
      if (want.every((v, i) => got[i] === v)) return block;
    } catch {
      // the kernels are not registered in this build, or reject this block size
    }
  }
  return 0;
}
