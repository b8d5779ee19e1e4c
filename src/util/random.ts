/**
 * numpy's legacy `np.random.RandomState`, bit for bit: MT19937 seeded with init_genrand (what
 * `RandomState(int)` does, see numpy/random/_mt19937.pyx `_legacy_seeding`), 53-bit doubles, and the polar
 * Box–Muller `legacy_gauss` with its cached second value. StyleCLIP samples its latents with
 * `np.random.RandomState(5).randn(N, 512)`, so reproducing its channel statistics needs the same stream.
 */

const N = 624;
const M = 397;

/** The 32-bit Mersenne Twister (Matsumoto & Nishimura's mt19937ar). */
export class MT19937 {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  constructor(seed = 5489) {
    this.seed(seed);
  }

  /** init_genrand; numpy masks the seed to 32 bits. */
  seed(seed: number): void {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
      throw new RangeError(`seed must be an integer between 0 and 2**32 - 1, got ${seed}`);
    const mt = this.mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      // 1812433253 * prev mod 2^32 without losing bits to float64 rounding.
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.mti = N;
  }

  private twist(): void {
    const mt = this.mt;
    for (let k = 0; k < N; k++) {
      const y = (mt[k] & 0x80000000) | (mt[(k + 1) % N] & 0x7fffffff);
      mt[k] = mt[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.mti = 0;
  }

  /** genrand_int32: the next uniform uint32. */
  nextUint32(): number {
    if (this.mti >= N) this.twist();
    let y = this.mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** The full generator state, for resuming a stream. */
  getState(): { key: number[]; pos: number } {
    return { key: Array.from(this.mt), pos: this.mti };
  }

  setState(state: { key: ArrayLike<number>; pos: number }): void {
    if (state.key.length !== N) throw new RangeError(`MT19937 state needs ${N} words`);
    this.mt.set(Array.from(state.key, (v) => v >>> 0));
    this.mti = state.pos;
  }
}

/** numpy's legacy RandomState: `random_sample`, `randn`/`standard_normal`, with numpy's exact stream. */
export class RandomState {
  readonly mt: MT19937;
  private hasGauss = false;
  private gauss = 0;

  constructor(seed = 0) {
    this.mt = new MT19937(seed);
  }

  /** Re-seeds like `RandomState.seed(int)`; also drops the cached Gaussian. */
  seed(seed: number): void {
    this.mt.seed(seed);
    this.hasGauss = false;
    this.gauss = 0;
  }

  /** One double in [0, 1) from two 32-bit draws (53 random bits), as numpy's legacy_double. */
  nextDouble(): number {
    const a = this.mt.nextUint32() >>> 5;
    const b = this.mt.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** legacy_gauss: the polar method; every other call returns the value cached by the previous one. */
  nextGauss(): number {
    if (this.hasGauss) {
      this.hasGauss = false;
      const g = this.gauss;
      this.gauss = 0;
      return g;
    }
    let x1: number;
    let x2: number;
    let r2: number;
    do {
      x1 = 2 * this.nextDouble() - 1;
      x2 = 2 * this.nextDouble() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt((-2 * logCorrectlyRounded(r2)) / r2);
    this.gauss = f * x1;
    this.hasGauss = true;
    return f * x2;
  }

  /** `random_sample(size)`: float64, row-major for a shape. */
  randomSample(...shape: number[]): Float64Array {
    const out = new Float64Array(count(shape));
    for (let i = 0; i < out.length; i++) out[i] = this.nextDouble();
    return out;
  }

  /** `randn(*shape)`: standard normals, float64, row-major (randn(N, 512) fills row by row). */
  randn(...shape: number[]): Float64Array {
    const out = new Float64Array(count(shape));
    for (let i = 0; i < out.length; i++) out[i] = this.nextGauss();
    return out;
  }

  getState(): { key: number[]; pos: number; hasGauss: boolean; gauss: number } {
    return { ...this.mt.getState(), hasGauss: this.hasGauss, gauss: this.gauss };
  }

  setState(state: { key: ArrayLike<number>; pos: number; hasGauss: boolean; gauss: number }): void {
    this.mt.setState(state);
    this.hasGauss = state.hasGauss;
    this.gauss = state.gauss;
  }
}

// V8's Math.log (fdlibm) is off by one ulp on ~3% of inputs relative to glibc's log, which numpy calls;
// glibc's is correctly rounded in all but extremely rare cases, so we compute log in double-double
// (~106 bits) and round once.

const SPLITTER = 134217729; // 2^27 + 1

/** a*b as an exact sum hi + lo (Dekker). */
function twoProd(a: number, b: number): [number, number] {
  const p = a * b;
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}

function twoSum(a: number, b: number): [number, number] {
  const s = a + b;
  const bb = s - a;
  return [s, a - (s - bb) + (b - bb)];
}

function ddMul(ah: number, al: number, bh: number, bl: number): [number, number] {
  const [p, e] = twoProd(ah, bh);
  return twoSum(p, e + ah * bl + al * bh);
}

function ddAdd(ah: number, al: number, bh: number, bl: number): [number, number] {
  const [s, e] = twoSum(ah, bh);
  return twoSum(s, e + al + bl);
}

function ddDiv(ah: number, al: number, bh: number, bl: number): [number, number] {
  const q1 = ah / bh;
  const [ph, pl] = ddMul(q1, 0, bh, bl);
  const q2 = (ah - ph - pl + al) / bh;
  return twoSum(q1, q2);
}

const LN2_HI = Math.LN2;
const LN2_LO = 2.3190468138462996e-17;
// 1/(2j+1) as double-double, for the atanh series.
const INV_ODD: [number, number][] = Array.from({ length: 24 }, (_, j) => ddDiv(1, 0, 2 * j + 1, 0));

/** Natural log of a positive finite double, rounded once from a double-double result. */
export function logCorrectlyRounded(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) return Math.log(x);
  let k = Math.floor(Math.log2(x));
  let m = x / 2 ** k;
  if (m >= 2) {
    m /= 2;
    k++;
  } else if (m < 1) {
    m *= 2;
    k--;
  }
  if (m > Math.SQRT2) {
    m /= 2;
    k++;
  }
  if (m === 1) return k * LN2_HI + k * LN2_LO;
  // log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172.
  const [dh, dl] = twoSum(m, 1);
  const [sh, sl] = ddDiv(m - 1, 0, dh, dl);
  const [zh, zl] = ddMul(sh, sl, sh, sl);
  let [ph, pl] = INV_ODD[INV_ODD.length - 1];
  for (let j = INV_ODD.length - 2; j >= 0; j--) {
    [ph, pl] = ddMul(ph, pl, zh, zl);
    [ph, pl] = ddAdd(ph, pl, INV_ODD[j][0], INV_ODD[j][1]);
  }
  let [rh, rl] = ddMul(ph, pl, 2 * sh, 2 * sl);
  if (k !== 0) {
    const [kh, kl] = twoProd(k, LN2_HI);
    [rh, rl] = ddAdd(rh, rl, kh, kl + k * LN2_LO);
  }
  return rh + rl;
}

function count(shape: number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`bad shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/** Seeded standard normals as float32 (numpy's RandomState(seed).randn(n).astype(float32)): test inputs. */
export function seededNormal(seed: number, n: number): Float32Array {
  return Float32Array.from(new RandomState(seed).randn(n));
}

/** Seeded uniforms in [lo, hi) as float32, from the same stream as `random_sample`. */
export function seededUniform(seed: number, n: number, lo = 0, hi = 1): Float32Array {
  const rs = new RandomState(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rs.nextDouble();
  return out;
}
