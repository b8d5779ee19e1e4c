/**
 * Latent files, read one way for every command: a .npy, or a torch file holding one tensor (e4e's
 * latents.pt, train_faces.pt) or a dict with one under a known key. Shapes are W+ [N, L, D] or [L, D]
 * (StyleCLIP's w_plus.npy) and w [N, D] or [D], which stands for the same w on all L rows. [L, D] is read
 * as one W+ latent, also when L w latents would fit.
 */
import { extname } from 'node:path';
import { CheckpointError } from '../../io/errors.js';
import { readNpy } from '../../io/npy.js';
import { type Tensor, toFloat32 } from '../../io/tensor.js';
import { loadTorch } from '../../io/torch.js';

/** Dict keys that hold latents in the files people pass around. */
const LATENT_KEYS = ['latent', 'latents', 'w', 'wplus', 'w_plus'];

/** N latents of [nLatent, dim]; a [N, dim] store (one w per latent) is broadcast to every row. */
export class LatentSet {
  constructor(
    readonly data: Float32Array,
    readonly count: number,
    readonly nLatent: number,
    readonly dim: number,
    /** true when `data` is [N, dim] (one w per latent). */
    readonly broadcast: boolean,
    readonly source: string,
  ) {}

  /** Writes latent i as [nLatent, dim] at `out[offset…]`. */
  copyTo(i: number, out: Float32Array, offset: number): void {
    const per = this.nLatent * this.dim;
    if (!this.broadcast) {
      out.set(this.data.subarray(i * per, (i + 1) * per), offset);
      return;
    }
    const w = this.data.subarray(i * this.dim, (i + 1) * this.dim);
    for (let l = 0; l < this.nLatent; l++) out.set(w, offset + l * this.dim);
  }

  /** The latents `indices` as one [B, nLatent, dim] array. */
  gather(indices: readonly number[]): Float32Array {
    const per = this.nLatent * this.dim;
    const out = new Float32Array(indices.length * per);
    indices.forEach((i, b) => {
      this.copyTo(i, out, b * per);
    });
    return out;
  }
}

/** Wraps a W+ or w tensor, checking it against the generator's W+ shape [nLatent, dim]. */
function latentSetFrom(t: Tensor, nLatent: number, dim: number, source: string): LatentSet {
  const s = t.shape;
  if (t.dtype !== 'float32' && t.dtype !== 'float64' && t.dtype !== 'float16' && t.dtype !== 'bfloat16')
    throw new CheckpointError(source, 'floating-point latents', `${t.dtype} values`);
  const data = toFloat32(t).data;
  const set = (count: number, broadcast: boolean) => {
    if (count === 0) throw new CheckpointError(source, 'at least one latent', 'none');
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new CheckpointError(source, 'finite latents', `${data[bad]} at flat index ${bad}`);
    return new LatentSet(data, count, nLatent, dim, broadcast, source);
  };
  if (s.length === 3 && s[1] === nLatent && s[2] === dim) return set(s[0], false);
  if (s.length === 2 && s[0] === nLatent && s[1] === dim) return set(1, false);
  if (s.length === 2 && s[1] === dim) return set(s[0], true);
  if (s.length === 1 && s[0] === dim) return set(1, true);
  throw new CheckpointError(
    source,
    `latents of shape [N, ${nLatent}, ${dim}] or [${nLatent}, ${dim}] (W+), [N, ${dim}] or [${dim}] (w) for this generator`,
    `shape [${s.join(', ')}]`,
  );
}

/** Reads a latent file for a generator with W+ rows [nLatent, dim]. */
export function readLatents(file: string, nLatent: number, dim: number): LatentSet {
  let t: Tensor | undefined;
  if (extname(file).toLowerCase() === '.npy') t = readNpy(file);
  else {
    const tensors = loadTorch(file).tensors;
    const key = ['', ...LATENT_KEYS].find((k) => tensors.has(k));
    t = key !== undefined ? tensors.get(key) : tensors.size === 1 ? [...tensors.values()][0] : undefined;
    if (!t)
      throw new CheckpointError(
        file,
        `one latents tensor (torch.save(tensor), or a dict with ${LATENT_KEYS.join('/')})`,
        `${tensors.size} tensors (${[...tensors.keys()].slice(0, 4).join(', ')})`,
      );
  }
  return latentSetFrom(t, nLatent, dim, file);
}
