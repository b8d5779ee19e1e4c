/**
 * Reads a TF.js weight manifest (`*-weights_manifest.json`) and its binary shards, as shipped in
 * `@vladmandic/face-api/model/`: each group lists its shard files and its weights in byte order; a weight
 * is float32, or quantized to uint8/uint16 with `value = q·scale + min`, or stored as float16.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CheckpointError } from '../io/errors.js';
import { halfToFloat32 } from '../io/tensor.js';

export interface HostWeight {
  shape: number[];
  data: Float32Array;
}

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

interface ManifestGroup {
  paths: string[];
  weights: ManifestEntry[];
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** All weights of a manifest, by name (`conv0/filters`, …), decoded to float32. */
export function readTfjsWeights(manifestFile: string): Map<string, HostWeight> {
  let groups: ManifestGroup[];
  try {
    groups = JSON.parse(readFileSync(manifestFile, 'utf8')) as ManifestGroup[];
    if (!Array.isArray(groups)) throw new Error('not a list of weight groups');
  } catch (e) {
    throw new CheckpointError(manifestFile, 'a TF.js weights manifest (JSON)', (e as Error).message);
  }
  const out = new Map<string, HostWeight>();
  for (const g of groups) {
    const bytes = Buffer.concat(g.paths.map((p) => readFileSync(join(dirname(manifestFile), p))));
    let at = 0;
    for (const w of g.weights) {
      const n = count(w.shape);
      const q = w.quantization;
      const kind = q?.dtype ?? w.dtype;
      const size = n * (kind === 'uint8' ? 1 : kind === 'uint16' || kind === 'float16' ? 2 : 4);
      if (w.dtype !== 'float32' || !['uint8', 'uint16', 'float16', 'float32'].includes(kind))
        throw new CheckpointError(
          manifestFile,
          'float32 weights (plain, uint8/uint16 or float16)',
          `${w.name}: ${kind}`,
        );
      if (at + size > bytes.length)
        throw new CheckpointError(
          manifestFile,
          `${at + size} bytes of shards`,
          `${bytes.length} (truncated)`,
        );
      const view = bytes.subarray(at, at + size);
      const data = new Float32Array(n);
      if (kind === 'uint8' || kind === 'uint16') {
        const src =
          kind === 'uint8'
            ? view
            : new Uint16Array(view.buffer.slice(view.byteOffset, view.byteOffset + size));
        const scale = q?.scale ?? 1;
        const min = q?.min ?? 0;
        for (let i = 0; i < n; i++) data[i] = src[i] * scale + min;
      } else if (kind === 'float16') {
        data.set(halfToFloat32(new Uint16Array(view.buffer.slice(view.byteOffset, view.byteOffset + size))));
      } else {
        data.set(new Float32Array(view.buffer.slice(view.byteOffset, view.byteOffset + size)));
      }
      out.set(w.name, { shape: [...w.shape], data });
      at += size;
    }
    if (at !== bytes.length)
      throw new CheckpointError(manifestFile, `${at} bytes of shards`, `${bytes.length}`);
  }
  return out;
}

/** TF's conv filter [kh, kw, in, out] → ONNX's [out, in, kh, kw]. */
export function hwioToOihw(w: HostWeight): HostWeight {
  const [kh, kw, ci, co] = w.shape;
  const out = new Float32Array(w.data.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < ci; i++)
        for (let o = 0; o < co; o++)
          out[((o * ci + i) * kh + y) * kw + x] = w.data[((y * kw + x) * ci + i) * co + o];
  return { shape: [co, ci, kh, kw], data: out };
}

/** TF's depthwise filter [kh, kw, C, 1] → a grouped ONNX filter [C, 1, kh, kw]. */
export function depthwiseToOihw(w: HostWeight): HostWeight {
  const [kh, kw, c, m] = w.shape;
  if (m !== 1) throw new CheckpointError('<depthwise filter>', 'channel multiplier 1', String(m));
  return hwioToOihw({ shape: [kh, kw, 1, c], data: w.data });
}
