/**
 * Host-side optimizers for the trainable tensors (latents, StyleSpace codes, mapper weights): the engine
 * returns gradients, and these update the Float32Array parameters in place.
 *
 * Both follow the reference's float32 arithmetic op by op (torch.optim.Adam's single-tensor path, and
 * StyleCLIP's mapper/training/ranger.py): every element-wise torch op rounds to float32, and the scalar
 * operands are rounded to float32 as torch's CPU kernels do, so results track PyTorch to the last bits rather
 * than drifting over hundreds of steps. Scalar bookkeeping (bias corrections, RAdam's step size) stays in
 * float64 like the Python code.
 */

const f = Math.fround;

/** One trainable tensor: updated in place from `grad`. `shape` matters to Ranger's gradient centralization. */
export interface Param {
  name: string;
  data: Float32Array;
  grad: Float32Array;
  shape: readonly number[];
}

/** Per-parameter moments, as plain arrays so that the state can go through JSON for resume. */
export interface ParamStateJSON {
  step: number;
  expAvg: number[];
  expAvgSq: number[];
  /** Ranger's lookahead slow weights. */
  slow?: number[];
}

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
}

export interface RangerOptions {
  lr?: number;
  alpha?: number;
  k?: number;
  nSmaThreshold?: number;
  betas?: [number, number];
  eps?: number;
  useGc?: boolean;
}

export type OptimizerStateJSON =
  | { kind: 'adam'; options: Required<AdamOptions>; state: Record<string, ParamStateJSON> }
  | { kind: 'ranger'; options: Required<RangerOptions>; state: Record<string, ParamStateJSON> };

interface ParamState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  slow?: Float32Array;
}

function checkParam(p: Param, st: ParamState | undefined): void {
  const n = p.shape.reduce((a, b) => a * b, 1);
  if (p.data.length !== n || p.grad.length !== n)
    throw new RangeError(
      `${p.name}: shape [${p.shape.join(', ')}] needs ${n} values, data has ${p.data.length}, grad ${p.grad.length}`,
    );
  if (st && st.expAvg.length !== n)
    throw new RangeError(`${p.name}: optimizer state has ${st.expAvg.length} values, parameter ${n}`);
}

function stateToJSON(states: Map<string, ParamState>): Record<string, ParamStateJSON> {
  const out: Record<string, ParamStateJSON> = {};
  for (const [name, s] of states) {
    out[name] = { step: s.step, expAvg: Array.from(s.expAvg), expAvgSq: Array.from(s.expAvgSq) };
    if (s.slow) out[name].slow = Array.from(s.slow);
  }
  return out;
}

function stateFromJSON(json: Record<string, ParamStateJSON>): Map<string, ParamState> {
  const m = new Map<string, ParamState>();
  for (const [name, s] of Object.entries(json))
    m.set(name, {
      step: s.step,
      expAvg: Float32Array.from(s.expAvg),
      expAvgSq: Float32Array.from(s.expAvgSq),
      slow: s.slow ? Float32Array.from(s.slow) : undefined,
    });
  return m;
}

/** torch.optim.Adam (amsgrad=False, weight_decay=0), torch 2.x single-tensor update order. */
export class Adam {
  /** Set before each step to follow a schedule (the reference writes param_groups[0]['lr']). */
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  private states = new Map<string, ParamState>();

  constructor(options: AdamOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
  }

  step(params: readonly Param[]): void {
    const [beta1, beta2] = this.betas;
    const w1 = f(1 - beta1);
    const b2 = f(beta2);
    const w2 = f(1 - beta2);
    const eps = f(this.eps);
    for (const p of params) {
      let st = this.states.get(p.name);
      checkParam(p, st);
      if (!st) {
        st = { step: 0, expAvg: new Float32Array(p.data.length), expAvgSq: new Float32Array(p.data.length) };
        this.states.set(p.name, st);
      }
      st.step++;
      const bc1 = 1 - beta1 ** st.step;
      const bc2 = 1 - beta2 ** st.step;
      const stepSize = f(-(this.lr / bc1));
      const bc2Sqrt = f(Math.sqrt(bc2));
      const { expAvg: m, expAvgSq: v } = st;
      const { data, grad } = p;
      for (let i = 0; i < data.length; i++) {
        const g = grad[i];
        // lerp(m, g, w1) with w1 < 0.5: m + w1 * (g - m)
        m[i] = f(m[i] + f(w1 * f(g - m[i])));
        v[i] = f(f(v[i] * b2) + f(f(w2 * g) * g));
        const denom = f(f(f(Math.sqrt(v[i])) / bc2Sqrt) + eps);
        data[i] = f(data[i] + f(f(stepSize * m[i]) / denom));
      }
    }
  }

  toJSON(): OptimizerStateJSON {
    return {
      kind: 'adam',
      options: { lr: this.lr, betas: [...this.betas], eps: this.eps },
      state: stateToJSON(this.states),
    };
  }

  static fromState(json: OptimizerStateJSON): Adam {
    if (json.kind !== 'adam') throw new TypeError(`expected Adam state, got ${json.kind}`);
    const opt = new Adam(json.options);
    opt.states = stateFromJSON(json.state);
    return opt;
  }
}

/**
 * Ranger 20.4.11 as vendored by StyleCLIP (RAdam + Lookahead + gradient centralization): the mapper's
 * optimizer. The RAdam step-size cache (`radam_buffer`, 10 slots keyed by step % 10) is shared across
 * parameters as in the reference; it only memoizes, so results do not depend on it.
 */
export class Ranger {
  lr: number;
  readonly alpha: number;
  readonly k: number;
  readonly nSmaThreshold: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly useGc: boolean;
  private states = new Map<string, ParamState>();
  private readonly radamBuffer: [number | null, number, number][] = Array.from({ length: 10 }, () => [
    null,
    0,
    0,
  ]);

  constructor(options: RangerOptions = {}) {
    this.lr = options.lr ?? 1e-3;
    this.alpha = options.alpha ?? 0.5;
    this.k = options.k ?? 6;
    this.nSmaThreshold = options.nSmaThreshold ?? 5;
    this.betas = options.betas ?? [0.95, 0.999];
    this.eps = options.eps ?? 1e-5;
    this.useGc = options.useGc ?? true;
    if (!(this.alpha >= 0 && this.alpha <= 1))
      throw new RangeError(`Invalid slow update rate: ${this.alpha}`);
    if (!(this.k >= 1)) throw new RangeError(`Invalid lookahead steps: ${this.k}`);
    if (!(this.lr > 0)) throw new RangeError(`Invalid Learning Rate: ${this.lr}`);
    if (!(this.eps > 0)) throw new RangeError(`Invalid eps: ${this.eps}`);
  }

  /** RAdam's rectification for this step: [N_sma, step_size], both float64 as in Python. */
  private rectification(step: number): [number, number] {
    const buffered = this.radamBuffer[step % 10];
    if (buffered[0] === step) return [buffered[1], buffered[2]];
    const [beta1, beta2] = this.betas;
    const beta2T = beta2 ** step;
    const nSmaMax = 2 / (1 - beta2) - 1;
    const nSma = nSmaMax - (2 * step * beta2T) / (1 - beta2T);
    const stepSize =
      nSma > this.nSmaThreshold
        ? Math.sqrt(
            (((((1 - beta2T) * (nSma - 4)) / (nSmaMax - 4)) * (nSma - 2)) / nSma) * (nSmaMax / (nSmaMax - 2)),
          ) /
          (1 - beta1 ** step)
        : 1 / (1 - beta1 ** step);
    buffered[0] = step;
    buffered[1] = nSma;
    buffered[2] = stepSize;
    return [nSma, stepSize];
  }

  step(params: readonly Param[]): void {
    const [beta1, beta2] = this.betas;
    const b1 = f(beta1);
    const w1 = f(1 - beta1);
    const b2 = f(beta2);
    const w2 = f(1 - beta2);
    const eps = f(this.eps);
    const alpha = f(this.alpha);
    for (const p of params) {
      let st = this.states.get(p.name);
      checkParam(p, st);
      if (!st) {
        const n = p.data.length;
        st = { step: 0, expAvg: new Float32Array(n), expAvgSq: new Float32Array(n), slow: p.data.slice() };
        this.states.set(p.name, st);
      }
      const grad = p.grad.slice();
      // Gradient centralization: subtract the mean over all dims but the first, for dim > 1 tensors.
      if (this.useGc && p.shape.length > 1) {
        const inner = grad.length / p.shape[0];
        for (let o = 0; o < p.shape[0]; o++) {
          let s = 0;
          for (let i = 0; i < inner; i++) s += grad[o * inner + i];
          const mean = f(s / inner);
          for (let i = 0; i < inner; i++) grad[o * inner + i] = f(grad[o * inner + i] - mean);
        }
      }
      st.step++;
      const { expAvg: m, expAvgSq: v, slow } = st;
      for (let i = 0; i < grad.length; i++) {
        const g = grad[i];
        v[i] = f(f(v[i] * b2) + f(f(w2 * g) * g));
        m[i] = f(f(m[i] * b1) + f(w1 * g));
      }
      const [nSma, stepSize] = this.rectification(st.step);
      const scale = f(-stepSize * this.lr);
      const data = p.data;
      if (nSma > this.nSmaThreshold) {
        for (let i = 0; i < data.length; i++)
          data[i] = f(data[i] + f(f(scale * m[i]) / f(f(Math.sqrt(v[i])) + eps)));
      } else {
        for (let i = 0; i < data.length; i++) data[i] = f(data[i] + f(scale * m[i]));
      }
      if (st.step % this.k === 0 && slow) {
        for (let i = 0; i < data.length; i++) {
          slow[i] = f(slow[i] + f(alpha * f(data[i] - slow[i])));
          data[i] = slow[i];
        }
      }
    }
  }

  toJSON(): OptimizerStateJSON {
    return {
      kind: 'ranger',
      options: {
        lr: this.lr,
        alpha: this.alpha,
        k: this.k,
        nSmaThreshold: this.nSmaThreshold,
        betas: [...this.betas],
        eps: this.eps,
        useGc: this.useGc,
      },
      state: stateToJSON(this.states),
    };
  }

  static fromState(json: OptimizerStateJSON): Ranger {
    if (json.kind !== 'ranger') throw new TypeError(`expected Ranger state, got ${json.kind}`);
    const opt = new Ranger(json.options);
    opt.states = stateFromJSON(json.state);
    return opt;
  }
}

/** Rebuilds whichever optimizer a saved state belongs to. */
export function optimizerFromState(json: OptimizerStateJSON): Adam | Ranger {
  return json.kind === 'adam' ? Adam.fromState(json) : Ranger.fromState(json);
}
