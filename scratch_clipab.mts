import ort from 'onnxruntime-node';
import { Graph } from './src/graph/graph.js';
import { serialize } from './src/onnx/writer.js';
import { buildClip } from './bench/clip.js';
const clip = buildClip();
const g = new Graph();
const x = g.input('image', [1, 3, 224, 224]);
const f = clip.encodeImage(x);
const bytes = serialize({ f }, { inputs: [x] });
const feeds = { image: new ort.Tensor('float32', new Float32Array(3 * 224 * 224).fill(0.1), [1, 3, 224, 224]) };
const cfgs: Record<string, any> = {
  nospin2: { intraOpNumThreads: 2, extra: { session: { intra_op: { allow_spinning: '0' } } } },
  spin2: { intraOpNumThreads: 2, extra: { session: { intra_op: { allow_spinning: '1' } } } },
  spinstop: { intraOpNumThreads: 2, extra: { session: { intra_op: { allow_spinning: '1' }, force_spinning_stop: '1' } } },
};
const sess: Record<string, any> = {};
for (const [k, c] of Object.entries(cfgs)) sess[k] = await ort.InferenceSession.create(bytes, { enableMemPattern: false, executionMode: 'sequential', ...c });
const times: Record<string, number[]> = {};
for (let r = 0; r < 8; r++) for (const k of Object.keys(cfgs)) {
  for (let i = 0; i < 3; i++) await sess[k].run(feeds);
  const t0 = performance.now(); for (let i = 0; i < 10; i++) await sess[k].run(feeds); (times[k] ??= []).push((performance.now() - t0) / 10);
}
for (const [k, v] of Object.entries(times)) { v.sort((a, b) => a - b); console.log(k, v.map(x => x.toFixed(1)).join(' ')); }
