import ort from 'onnxruntime-node';
import { Graph, type Value } from './src/graph/graph.js';
import { apply, A, type Op } from './src/ops/op.js';
import { concat, convTranspose2d, reshape, transpose, slice } from './src/ops/index.js';
import { nchwcReorderInput, nchwcReorderOutput, nchwcConv, blockFilter, blockDepthwiseFilter } from './src/ops/nchwc.js';
import { serialize } from './src/onnx/writer.js';
import { fastNormal } from './src/models/stylegan2/weights.js';
const D = 'com.microsoft.nchwc', B = 16;
// conv with explicit pads [t, l, b, r] and any kernel
const pconv: Op = { name: 'pconv', infer([x, w], a) { const p = a.p as number[]; const [kh, kw] = [w.shape[2], w.shape[3]];
  return [{ shape: [1, w.shape[0], x.shape[2] + p[0] + p[2] - kh + 1, x.shape[3] + p[1] + p[3] - kw + 1], dtype: 'float32' }]; },
  lower: (e, n) => { const p = n.attrs.p as number[]; const w = n.inputs[1];
    e.emit('Conv', [e.name(n.inputs[0]), e.name(w)], [e.name(n.outputs[0])], { kernel_shape: A.ints([w.shape[2], w.shape[3]]), pads: A.ints(p), strides: A.ints([1, 1]), dilations: A.ints([1, 1]), group: A.int(1) }, D); } };
const rn = fastNormal(3);
const Cin = Number(process.argv[2] ?? 64), C = Number(process.argv[3] ?? 32), R = Number(process.argv[4] ?? 1024), H = R / 2;
const g = new Graph();
const xin = g.input('x', [1, Cin, H, H]);
const wtIn = g.input('wt', [Cin, C, 3, 3]);
const blur = g.const(new Float32Array(C * 16).fill(1 / 16), [C, 1, 4, 4], 'blur');
const xb = nchwcReorderInput(xin, B); // stands for the previous block's blocked output
// A: current
const a0 = nchwcReorderInput(convTranspose2d(nchwcReorderOutput(xb, Cin), wtIn, { stride: 2 }), B);
const A_ = nchwcReorderOutput(nchwcConv(a0, blockDepthwiseFilter(blur, B), { pads: 1, group: C }), C);
// B: phases. Correlation kernel for phase taps: even -> [k2, k0] with pad before 1, odd -> [k1] with pad after 1
const taps = (p: number) => (p === 0 ? [2, 0] : [1]);
const ph: Value[] = [];
for (const p of [0, 1]) for (const q of [0, 1]) {
  const rows = taps(p), cols = taps(q);
  // [in, out, 3, 3] -> pick rows/cols -> [out, in, kh, kw]
  const parts: Value[] = [];
  for (const r of rows) { const cs: Value[] = []; for (const c of cols) cs.push(slice(wtIn, [0, 0, r, c], [Cin, C, r + 1, c + 1])); parts.push(cs.length > 1 ? concat(cs, 3) : cs[0]); }
  const k = transpose(parts.length > 1 ? concat(parts, 2) : parts[0], [1, 0, 2, 3]);
  const pads = [p === 0 ? 1 : 0, q === 0 ? 1 : 0, 1, 1];
  ph.push(apply(pconv, [xb, blockFilter(k, B)], { p: pads })); // [1, C, H+1, H+1] blocked
}
const st = reshape(concat(ph.map((t) => reshape(t, [1, C / B, H + 1, H + 1, B])), 0), [2, 2, C / B, H + 1, H + 1, B]);
const il = reshape(transpose(st, [2, 3, 0, 4, 1, 5]), [1, C, 2 * H + 2, 2 * H + 2]);
const bconv: Op = { ...pconv, name: 'bconv', infer([x, w], a) { const p = a.p as number[]; return [{ shape: [1, C, x.shape[2] + p[0] + p[2] - 3, x.shape[3] + p[1] + p[3] - 3], dtype: 'float32' }]; },
  lower: (e, n) => e.emit('Conv', [e.name(n.inputs[0]), e.name(n.inputs[1])], [e.name(n.outputs[0])], { kernel_shape: A.ints([4, 4]), pads: A.ints(n.attrs.p as number[]), strides: A.ints([1, 1]), dilations: A.ints([1, 1]), group: A.int(C) }, D) };
const B_ = nchwcReorderOutput(apply(bconv, [il, blockDepthwiseFilter(blur, B)], { p: [1, 1, 0, 0] }), C);
const mk = (o: Value) => ort.InferenceSession.create(serialize({ o }, { inputs: [xin, wtIn] }), { intraOpNumThreads: 2, enableMemPattern: false, extra: { session: { intra_op: { allow_spinning: '0' } } } } as any);
const sA = await mk(A_), sB = await mk(B_);
const feeds = { x: new ort.Tensor('float32', rn(new Float32Array(Cin * H * H)), [1, Cin, H, H]), wt: new ort.Tensor('float32', rn(new Float32Array(Cin * C * 9), 0.05), [Cin, C, 3, 3]) };
const oa = (await sA.run(feeds)).o.data as Float32Array, ob = (await sB.run(feeds)).o.data as Float32Array;
let md = 0, mx = 0; for (let i = 0; i < oa.length; i++) { md = Math.max(md, Math.abs(oa[i] - ob[i])); mx = Math.max(mx, Math.abs(oa[i])); }
console.log('maxdiff', md, 'max', mx, oa.length, ob.length);
const T: Record<string, number[]> = { A: [], B: [] };
for (let r = 0; r < 6; r++) for (const [k, s] of [['A', sA], ['B', sB]] as const) { const t = performance.now(); await s.run(feeds); T[k].push(performance.now() - t); }
for (const [k, v] of Object.entries(T)) console.log(k, v.sort((a, b) => a - b).map((x) => x.toFixed(0)).join(' '));
