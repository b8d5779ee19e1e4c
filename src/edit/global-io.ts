/**
 * The files global directions read and write: StyleCLIP's fs3.npy (float16 or float32, all 6048 rows or the
 * 5376 of the layers up to 128²), latents (the official w_plus.npy, e4e's latents.pt, our own .npy), and
 * channel statistics (StyleCLIP's S_mean_std pickle, or our [2, channels] .npy).
 */
import { extname } from 'node:path';
import { CheckpointError } from '../io/errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { isTensor, numel, toFloat32 } from '../io/tensor.js';
import { loadTorch } from '../io/torch.js';
import type { StyleGAN2Config } from '../models/stylegan2/weights.js';
import { fs3Layout, type StyleStats } from './global.js';

export interface Fs3 {
  /** [totalRows, E] over all non-toRGB layers; rows of layers the file lacks are zero. */
  data: Float32Array;
  embedDim: number;
  /** Rows the file held. */
  rows: number;
  /** Non-toRGB layers the file covered. */
  layers: number[];
}

/**
 * Loads an fs3 matrix for a generator. Its rows must cover a prefix of the non-toRGB layers in order (all of
 * them, or the official shortcut up to 128²); the missing layers get zero rows, so no channel there moves.
 */
export function loadFs3(file: string, config: StyleGAN2Config, embedDim?: number): Fs3 {
  const t = toFloat32(readNpy(file));
  const layout = fs3Layout(config);
  if (t.shape.length !== 2)
    throw new CheckpointError(file, 'an fs3 matrix [channels, CLIP embedding]', `shape [${t.shape}]`);
  const [rows, e] = t.shape;
  if (embedDim !== undefined && e !== embedDim)
    throw new CheckpointError(
      file,
      `fs3 columns equal to the CLIP embedding size ${embedDim}`,
      `${e} columns (an fs3 made with another CLIP model?)`,
    );
  const prefixes: number[] = [];
  let acc = 0;
  const layers: number[] = [];
  for (const i of layout.layers) {
    if (acc === rows) break;
    acc += config.styleDims[i];
    prefixes.push(acc);
    layers.push(i);
  }
  if (acc !== rows) {
    const all = fs3Layout(config).layers.reduce<number[]>((p, i) => {
      p.push((p.at(-1) ?? 0) + config.styleDims[i]);
      return p;
    }, []);
    throw new CheckpointError(
      file,
      `an fs3 for this generator: ${layout.totalRows} rows (one per non-toRGB StyleSpace channel), or the rows of the first layers only (${all.join(', ')})`,
      `${rows} rows (an fs3 made for another generator?)`,
    );
  }
  const data = new Float32Array(layout.totalRows * e);
  data.set(t.data);
  for (let i = 0; i < t.data.length; i++)
    if (!Number.isFinite(t.data[i]))
      throw new CheckpointError(file, 'finite fs3 values', `a non-finite value at row ${Math.floor(i / e)}`);
  return { data, embedDim: e, rows, layers };
}

/**
 * Channel statistics from StyleCLIP's S_mean_std pickle (`[mean, std]` or `[_, mean, std]`, each a list of
 * per-layer arrays; extra layers beyond the generator's are ignored as manipulate.py does with
 * `std[:len(M.dlatents)]`) or from our .npy of [2, total channels] (mean row, std row).
 */
export function loadStyleStats(file: string, config: StyleGAN2Config): StyleStats {
  const dims = config.styleDims;
  const total = dims.reduce((a, b) => a + b, 0);
  if (extname(file).toLowerCase() === '.npy') {
    const t = toFloat32(readNpy(file));
    if (t.shape.length !== 2 || t.shape[0] !== 2 || t.shape[1] !== total)
      throw new CheckpointError(
        file,
        `channel statistics [2, ${total}] (mean row, std row)`,
        `shape [${t.shape}]`,
      );
    const split = (row: number) => {
      let off = row * total;
      return dims.map((c) => {
        const a = t.data.slice(off, off + c);
        off += c;
        return a;
      });
    };
    return { mean: split(0), std: split(1), samples: 0 };
  }
  const ck = loadTorch(file);
  const v = ck.value;
  if (!Array.isArray(v) || (v.length !== 2 && v.length !== 3))
    throw new CheckpointError(
      file,
      'a S_mean_std pickle: [mean list, std list] or [_, mean list, std list]',
      typeof v,
    );
  const [m, s] = v.slice(-2);
  const layers = (x: unknown, what: string): Float32Array[] => {
    if (!Array.isArray(x) || x.length < dims.length)
      throw new CheckpointError(
        file,
        `a list of ${dims.length} per-layer ${what} arrays`,
        Array.isArray(x) ? `${x.length}` : typeof x,
      );
    return dims.map((c, i) => {
      const a = x[i];
      if (!isTensor(a) || numel(a.shape) !== c)
        throw new CheckpointError(
          file,
          `${what} of StyleSpace layer ${i} with ${c} channels`,
          isTensor(a) ? `shape [${a.shape}]` : typeof a,
        );
      return Float32Array.from(toFloat32(a).data);
    });
  };
  return { mean: layers(m, 'mean'), std: layers(s, 'std'), samples: 0 };
}

/** Writes statistics as [2, total channels] float32 (mean row, std row), atomically. */
export function saveStyleStats(file: string, stats: StyleStats): void {
  const total = stats.mean.reduce((a, b) => a + b.length, 0);
  const data = new Float32Array(2 * total);
  let off = 0;
  for (const m of stats.mean) {
    data.set(m, off);
    off += m.length;
  }
  for (const s of stats.std) {
    data.set(s, off);
    off += s.length;
  }
  writeNpy(file, { dtype: 'float32', shape: [2, total], data });
}
