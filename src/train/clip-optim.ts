/**
 * CLIP's optimizer and learning-rate schedule (Radford et al. 2021, section 2.5; open_clip's defaults):
 * AdamW with betas (0.9, 0.98) and eps 1e-6, decoupled weight decay on the matrices only (tensors of two
 * or more dimensions: gains, biases, the class embedding and the temperature are not decayed), and a
 * linear warm-up followed by a cosine decay to zero.
 *
 * The update follows torch.optim.AdamW's single-tensor path (torch 1.13, which made the parity fixtures)
 * op by op in float32, as `Adam` in src/edit/optim.ts does for Adam.
 */
import type { Param } from '../edit/optim.js';

const f = Math.fround;

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** The moments of one tensor. */
export interface AdamWState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** A tensor whose gradient is non-zero only on a few rows per step (an embedding table). */
export interface SparseRows {
  /** Values per row. */
  rowSize: number;
  /** The rows whose gradient may be non-zero this step. */
  rows: readonly number[];
}

interface LazyRows {
  /** Rows with non-zero moments: updated every step like any weight. */
  active: Uint8Array;
  activeList: number[];
  /** For idle rows: the step their stored values are current at. */
  since: Int32Array;
  /** The optimizer step `decayed[0]` belongs to. */
  base: number;
  /** decayed[t − base] = Π keep over steps base+1 .. t (float64): the decay an idle row owes. */
  decayed: number[];
}

/** True for the tensors AdamW decays: two or more dimensions. */
export const decays = (shape: readonly number[]): boolean => shape.length >= 2;

export class AdamW {
  /** Set before each step to follow the schedule. */
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly states = new Map<string, AdamWState>();
  private readonly lazy = new Map<string, LazyRows>();

  constructor(options: AdamWOptions = {}) {
    this.lr = options.lr ?? 5e-4;
    this.betas = options.betas ?? [0.9, 0.98];
    this.eps = options.eps ?? 1e-6;
    this.weightDecay = options.weightDecay ?? 0.2;
    const [b1, b2] = this.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1))
      throw new RangeError(`AdamW betas must lie in [0, 1): ${this.betas}`);
    if (!(this.eps > 0)) throw new RangeError(`AdamW eps must be positive: ${this.eps}`);
    if (!(this.weightDecay >= 0))
      throw new RangeError(`AdamW weight decay must be >= 0: ${this.weightDecay}`);
  }

  /**
   * One update of every tensor in `params`. Tensors named in `sparse` (an embedding table) have a
   * non-zero gradient only on the listed rows: rows whose moments are still zero get nothing from AdamW
   * but the decay, so they are left idle and decayed in one go when read (`materialize`); equal to the
   * step-by-step update up to float32 rounding of the product. Every other row is updated as usual.
   */
  step(params: readonly Param[], sparse: ReadonlyMap<string, SparseRows> = new Map()): void {
    const [beta1, beta2] = this.betas;
    const b1 = f(beta1);
    const w1 = f(1 - beta1);
    const b2 = f(beta2);
    const w2 = f(1 - beta2);
    const eps = f(this.eps);
    for (const p of params) {
      const n = p.data.length;
      if (p.grad.length !== n)
        throw new RangeError(`${p.name}: ${p.grad.length} gradient values for ${n} weights`);
      let st = this.states.get(p.name);
      if (!st) {
        st = { step: 0, expAvg: new Float32Array(n), expAvgSq: new Float32Array(n) };
        this.states.set(p.name, st);
      }
      if (st.expAvg.length !== n)
        throw new RangeError(`${p.name}: optimizer state has ${st.expAvg.length} values, the weight ${n}`);
      const sp = sparse.get(p.name);
      const lazy = sp ? this.lazyRows(p, st, sp.rowSize) : undefined;
      if (sp && lazy) {
        for (const r of sp.rows) {
          if (lazy.active[r]) continue;
          this.materializeRow(p.data, lazy, st.step, r, sp.rowSize);
          lazy.active[r] = 1;
          lazy.activeList.push(r);
        }
      }
      st.step++;
      const bc1 = 1 - beta1 ** st.step;
      const bc2Sqrt = f(Math.sqrt(1 - beta2 ** st.step));
      const stepSize = f(-(this.lr / bc1));
      const keep = f(1 - (decays(p.shape) ? this.lr * this.weightDecay : 0));
      if (lazy) lazy.decayed.push(lazy.decayed[lazy.decayed.length - 1] * keep);
      const { expAvg: m, expAvgSq: v } = st;
      const { data, grad } = p;
      const update = (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          const g = grad[i];
          // param.mul_(1 − lr·wd); exp_avg.mul_(β1).add_(g, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2)
          const w = f(data[i] * keep);
          const mi = f(f(m[i] * b1) + f(w1 * g));
          const vi = f(f(v[i] * b2) + f(f(w2 * g) * g));
          m[i] = mi;
          v[i] = vi;
          // param.addcdiv_(exp_avg, exp_avg_sq.sqrt() / √bc2 + eps, value=−lr/bc1)
          data[i] = f(w + f(f(stepSize * mi) / f(f(f(Math.sqrt(vi)) / bc2Sqrt) + eps)));
        }
      };
      if (lazy && sp) for (const r of lazy.activeList) update(r * sp.rowSize, (r + 1) * sp.rowSize);
      else update(0, n);
    }
  }

  /** The lazy bookkeeping of a row-sparse tensor; rows with non-zero moments (e.g. after resume) start active. */
  private lazyRows(p: Param, st: AdamWState, rowSize: number): LazyRows {
    let lazy = this.lazy.get(p.name);
    if (!lazy) {
      const rows = p.data.length / rowSize;
      lazy = {
        active: new Uint8Array(rows),
        activeList: [],
        since: new Int32Array(rows).fill(st.step),
        base: st.step,
        decayed: [1],
      };
      for (let r = 0; r < rows; r++)
        for (let i = r * rowSize; i < (r + 1) * rowSize; i++)
          if (st.expAvg[i] !== 0 || st.expAvgSq[i] !== 0) {
            lazy.active[r] = 1;
            lazy.activeList.push(r);
            break;
          }
      this.lazy.set(p.name, lazy);
    }
    return lazy;
  }

  private materializeRow(data: Float32Array, lazy: LazyRows, now: number, r: number, rowSize: number): void {
    const since = lazy.since[r];
    if (since === now) return;
    const factor = lazy.decayed[now - lazy.base] / lazy.decayed[since - lazy.base];
    for (let i = r * rowSize; i < (r + 1) * rowSize; i++) data[i] = data[i] * factor;
    lazy.since[r] = now;
  }

  /** Applies the decay that idle rows of a row-sparse tensor owe (all rows, or `rows`), so `p.data` is current. */
  materialize(p: Param, rows?: Iterable<number>): void {
    const lazy = this.lazy.get(p.name);
    const st = this.states.get(p.name);
    if (!lazy || !st) return;
    const rowSize = p.data.length / lazy.since.length;
    for (const r of rows ?? lazy.since.keys())
      if (!lazy.active[r]) this.materializeRow(p.data, lazy, st.step, r, rowSize);
  }
}

/**
 * The learning rate at `step` (0-based) of `total`: linear warm-up to `base` over `warmup` steps, then
 * a cosine decay to zero (open_clip's `cosine_lr`).
 */
export function warmupCosineLr(step: number, total: number, base: number, warmup: number): number {
  if (step < warmup) return (base * (step + 1)) / warmup;
  const span = Math.max(1, total - warmup);
  const t = Math.min(1, (step - warmup) / span);
  return 0.5 * (1 + Math.cos(Math.PI * t)) * base;
}
