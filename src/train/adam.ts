/**
 * torch.optim.Adam (torch 1.13's single-tensor update, amsgrad off, no weight decay) over a list of
 * Float32Array parameters, with its state in torch's `state_dict()` layout: `state` keyed by parameter index
 * ({step: float32 scalar tensor, exp_avg, exp_avg_sq}) and one param group. So a rosinality checkpoint's
 * `g_optim` / `d_optim` loads here and ours load in torch. Every element-wise op rounds to float32 as
 * torch's CPU kernels do; bias corrections are float64 like the Python code.
 */
import type { Tensor } from '../io/tensor.js';

const f = Math.fround;

export interface AdamOptions {
  lr: number;
  betas: [number, number];
  eps?: number;
}

interface Moments {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

export class OptimizerStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptimizerStateError';
  }
}

export class TorchAdam {
  readonly lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  private readonly moments: (Moments | null)[];

  constructor(
    /** Parameter shapes in the optimizer's order (the module's `parameters()`). */
    readonly shapes: readonly (readonly number[])[],
    options: AdamOptions,
  ) {
    this.lr = options.lr;
    this.betas = options.betas;
    this.eps = options.eps ?? 1e-8;
    this.moments = shapes.map(() => null);
  }

  /** One step: params[k] -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), in place. */
  step(params: readonly Float32Array[], grads: readonly Float32Array[]): void {
    const [beta1, beta2] = this.betas;
    const b1 = f(beta1);
    const w1 = f(1 - beta1);
    const b2 = f(beta2);
    const w2 = f(1 - beta2);
    const eps = f(this.eps);
    params.forEach((p, k) => {
      const g = grads[k];
      if (g.length !== p.length)
        throw new RangeError(`parameter ${k}: ${p.length} values, gradient ${g.length}`);
      let st = this.moments[k];
      if (!st) {
        st = { step: 0, expAvg: new Float32Array(p.length), expAvgSq: new Float32Array(p.length) };
        this.moments[k] = st;
      }
      st.step++;
      const bc1 = 1 - beta1 ** st.step;
      const bc2 = 1 - beta2 ** st.step;
      const stepSize = f(-(this.lr / bc1));
      const bc2Sqrt = f(Math.sqrt(bc2));
      const { expAvg: m, expAvgSq: v } = st;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i];
        m[i] = f(f(m[i] * b1) + f(gi * w1));
        v[i] = f(f(v[i] * b2) + f(f(gi * gi) * w2));
        const denom = f(f(f(Math.sqrt(v[i])) / bc2Sqrt) + eps);
        p[i] = f(p[i] + f(f(m[i] / denom) * stepSize));
      }
    });
  }

  /** torch's Optimizer.state_dict(): {state: {k: {step, exp_avg, exp_avg_sq}}, param_groups: [...]}. */
  stateDict(): { state: Map<number, unknown>; param_groups: unknown[] } {
    const state = new Map<number, unknown>();
    this.moments.forEach((st, k) => {
      if (!st) return;
      const shape = [...this.shapes[k]];
      const t = (data: Float32Array): Tensor => ({ dtype: 'float32', shape, data });
      state.set(k, {
        step: { dtype: 'float32', shape: [], data: Float32Array.of(st.step) } satisfies Tensor,
        exp_avg: t(st.expAvg),
        exp_avg_sq: t(st.expAvgSq),
      });
    });
    return {
      state,
      param_groups: [
        {
          lr: this.lr,
          betas: [this.betas[0], this.betas[1]],
          eps: this.eps,
          weight_decay: 0,
          amsgrad: false,
          maximize: false,
          foreach: null,
          capturable: false,
          differentiable: false,
          fused: false,
          params: this.shapes.map((_, k) => k),
        },
      ],
    };
  }

  /** The moments of a torch Adam state dict (as loadTorch's `value` gives it); shapes must match. */
  loadStateDict(value: unknown, what: string): void {
    const v = value as { state?: unknown; param_groups?: unknown };
    if (!v || typeof v !== 'object' || !Array.isArray(v.param_groups))
      throw new OptimizerStateError(`${what}: not an optimizer state dict`);
    const groups = v.param_groups as { params?: unknown[] }[];
    const ids = groups.flatMap((g) => (Array.isArray(g.params) ? g.params.map(Number) : []));
    if (ids.length !== this.shapes.length)
      throw new OptimizerStateError(
        `${what}: the optimizer state has ${ids.length} parameters, this model ${this.shapes.length}`,
      );
    const entries: [number, unknown][] =
      v.state instanceof Map
        ? [...(v.state as Map<unknown, unknown>)].map(([k, s]) => [Number(k), s])
        : Object.entries((v.state ?? {}) as Record<string, unknown>).map(([k, s]) => [Number(k), s]);
    for (const [id, s] of entries) {
      const k = ids.indexOf(id);
      if (k < 0) throw new OptimizerStateError(`${what}: state for unknown parameter ${id}`);
      const st = s as Record<string, unknown>;
      const arr = (t: unknown, name: string): Float32Array => {
        const tt = t as Tensor;
        const n = this.shapes[k].reduce((a, b) => a * b, 1);
        if (!tt || !(tt.data instanceof Float32Array) || tt.data.length !== n)
          throw new OptimizerStateError(`${what}: ${name} of parameter ${id} is not ${n} float32 values`);
        return Float32Array.from(tt.data);
      };
      const stepT = st.step as Tensor | number;
      const step = typeof stepT === 'number' ? stepT : Number((stepT as Tensor).data[0]);
      this.moments[k] = {
        step,
        expAvg: arr(st.exp_avg, 'exp_avg'),
        expAvgSq: arr(st.exp_avg_sq, 'exp_avg_sq'),
      };
    }
  }

  /** Moments of parameter k (for tests). */
  state(k: number): Moments | null {
    return this.moments[k];
  }
}
