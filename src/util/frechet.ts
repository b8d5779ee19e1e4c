/**
 * The Fréchet distance between two Gaussians fitted to feature sets, as FID computes it:
 *
 *   d² = |μ1 − μ2|² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)
 *
 * all in float64. Σ1 Σ2 is not symmetric, but it is similar to the symmetric positive semi-definite
 * √Σ1 Σ2 √Σ1 (conjugate by √Σ1), so Tr((Σ1 Σ2)^½) = Σ √λ over the eigenvalues λ of √Σ1 Σ2 √Σ1. Both square
 * roots come from a symmetric eigendecomposition (cyclic Jacobi: exact to rounding, and fast enough for the
 * feature sizes here, ≤ 512). Eigenvalues below the matrix's rounding level, |λ| ≤ n·ε·max|λ| (ε = 2⁻⁵²),
 * count as 0, the negative ones included: a singular covariance (fewer samples than dimensions) has such
 * eigenvalues of either sign, and the square root would blow their noise up from ε to √ε (identical
 * singular sets would then differ by ~1e-7 instead of ~1e-15). A true eigenvalue that small is below what
 * float64 resolves anyway.
 */

/** Mean [d] and covariance [d, d] (row-major, unbiased: divided by n − 1, as numpy's np.cov) of n rows of d features. */
export interface Gaussian {
  readonly dim: number;
  readonly mean: Float64Array;
  readonly cov: Float64Array;
}

export class FrechetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrechetError';
  }
}

/** The Gaussian of `n` feature rows of length `dim` (row i is features[i·dim, (i + 1)·dim)), in float64. */
export function fitGaussian(features: ArrayLike<number>, n: number, dim: number): Gaussian {
  if (!Number.isInteger(n) || n < 2)
    throw new FrechetError(`a covariance needs at least 2 samples, got ${n}`);
  if (features.length !== n * dim)
    throw new FrechetError(`${features.length} feature values are not ${n} rows of ${dim}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += features[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  // Two passes (centre, then accumulate) rather than E[xxᵀ] − μμᵀ, which cancels badly when |μ| ≫ σ.
  const cov = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) row[j] = features[i * dim + j] - mean[j];
    for (let a = 0; a < dim; a++) {
      const ra = row[a];
      const base = a * dim;
      for (let b = a; b < dim; b++) cov[base + b] += ra * row[b];
    }
  }
  for (let a = 0; a < dim; a++)
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b] / (n - 1);
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
  return { dim, mean, cov };
}

export interface SymmetricEigen {
  /** Eigenvalues [n], in no particular order. */
  values: Float64Array;
  /** Eigenvectors as rows [n, n]: row k belongs to values[k]. */
  vectors: Float64Array;
}

/**
 * Eigenvalues and eigenvectors of a symmetric [n, n] matrix (row-major; only its values are read, the
 * input is not changed) by cyclic Jacobi rotations until the off-diagonal mass is negligible.
 */
export function symmetricEigen(matrix: ArrayLike<number>, n: number): SymmetricEigen {
  if (matrix.length !== n * n) throw new FrechetError(`${matrix.length} values are not a ${n}×${n} matrix`);
  const a = Float64Array.from(matrix);
  // Symmetrize exactly: a product such as √Σ1 Σ2 √Σ1 is symmetric only up to rounding.
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      const v = (a[i * n + j] + a[j * n + i]) / 2;
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
  const v = new Float64Array(n * n); // Vᵀ: eigenvectors as rows, so each rotation touches two rows
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i] * a[i];
  if (!Number.isFinite(total)) throw new FrechetError('the matrix holds NaN or Inf');
  const tiny = total * 1e-30;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off <= tiny) return { values: diagonal(a, n), vectors: v };
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        // After a few sweeps, an element below the rounding of both diagonal entries is zero for all
        // purposes (Numerical Recipes' rule); rotating it again would only churn rounding.
        const g = 100 * Math.abs(apq);
        const app = Math.abs(a[p * n + p]);
        const aqq = Math.abs(a[q * n + q]);
        if (sweep > 3 && app + g === app && aqq + g === aqq) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        rotate(a, v, n, p, q, apq);
      }
  }
  throw new FrechetError(`the eigendecomposition of a ${n}×${n} matrix did not converge`);
}

/** One Jacobi rotation in the (p, q) plane that zeroes a[p][q]; applied to a (both sides) and to Vᵀ's rows. */
function rotate(a: Float64Array, v: Float64Array, n: number, p: number, q: number, apq: number): void {
  const app = a[p * n + p];
  const aqq = a[q * n + q];
  const theta = (aqq - app) / (2 * apq);
  // The smaller root of t² + 2θt − 1 = 0 (|angle| ≤ π/4), written to avoid cancellation.
  const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
  const c = 1 / Math.sqrt(t * t + 1);
  const s = t * c;
  const rp = p * n;
  const rq = q * n;
  for (let k = 0; k < n; k++) {
    if (k === p || k === q) continue;
    const akp = a[rp + k];
    const akq = a[rq + k];
    const np = c * akp - s * akq;
    const nq = s * akp + c * akq;
    a[rp + k] = np;
    a[k * n + p] = np;
    a[rq + k] = nq;
    a[k * n + q] = nq;
  }
  a[rp + p] = app - t * apq;
  a[rq + q] = aqq + t * apq;
  a[rp + q] = 0;
  a[rq + p] = 0;
  for (let k = 0; k < n; k++) {
    const vp = v[rp + k];
    const vq = v[rq + k];
    v[rp + k] = c * vp - s * vq;
    v[rq + k] = s * vp + c * vq;
  }
}

/** The rounding level of a symmetric matrix's eigenvalues: n·ε·max|λ|. */
function noiseFloor(values: Float64Array): number {
  let m = 0;
  for (const l of values) m = Math.max(m, Math.abs(l));
  return values.length * Number.EPSILON * m;
}

/** √λ, with eigenvalues at or below the rounding level `floor` (and all negative ones) as 0. */
const rootAbove = (l: number, floor: number): number => (l > floor ? Math.sqrt(l) : 0);

function diagonal(a: Float64Array, n: number): Float64Array {
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) d[i] = a[i * n + i];
  return d;
}

/** The symmetric square root of a symmetric positive semi-definite matrix: V diag(√max(λ, 0)) Vᵀ. */
export function sqrtSymmetric(matrix: ArrayLike<number>, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(matrix, n);
  const floor = noiseFloor(values);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const r = rootAbove(values[k], floor);
    if (r === 0) continue;
    const row = k * n;
    for (let i = 0; i < n; i++) {
      const vi = vectors[row + i] * r;
      if (vi === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += vi * vectors[row + j];
    }
  }
  return out;
}

/** a · b for row-major [n, n] matrices. */
function matmul(a: Float64Array, b: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j];
    }
  return out;
}

/** Tr((Σ1 Σ2)^½) = Σ √λ(√Σ1 Σ2 √Σ1), eigenvalues at rounding level (or negative) as 0. */
export function traceSqrtProduct(s1: ArrayLike<number>, s2: ArrayLike<number>, n: number): number {
  const r1 = sqrtSymmetric(s1, n);
  const { values } = symmetricEigen(matmul(matmul(r1, s2, n), r1, n), n);
  const floor = noiseFloor(values);
  let tr = 0;
  for (const l of values) tr += rootAbove(l, floor);
  return tr;
}

export interface FrechetResult {
  /** The squared Fréchet distance (what FID reports). */
  distance: number;
  /** |μ1 − μ2|². */
  meanTerm: number;
  /** Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½). */
  covTerm: number;
}

/** The Fréchet distance between two Gaussians of the same dimension. */
export function frechetDistance(g1: Gaussian, g2: Gaussian): FrechetResult {
  const d = g1.dim;
  if (g2.dim !== d) throw new FrechetError(`feature sizes differ: ${d} and ${g2.dim}`);
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (g1.mean[i] - g2.mean[i]) ** 2;
  let tr = 0;
  for (let i = 0; i < d; i++) tr += g1.cov[i * d + i] + g2.cov[i * d + i];
  const covTerm = tr - 2 * traceSqrtProduct(g1.cov, g2.cov, d);
  if (!Number.isFinite(meanTerm + covTerm)) throw new FrechetError('the features hold NaN or Inf');
  return { distance: meanTerm + covTerm, meanTerm, covTerm };
}

/** The Fréchet distance between two feature sets ([n1, dim] and [n2, dim], row-major). */
export function frechetDistanceOfFeatures(
  a: ArrayLike<number>,
  n1: number,
  b: ArrayLike<number>,
  n2: number,
  dim: number,
): FrechetResult {
  return frechetDistance(fitGaussian(a, n1, dim), fitGaussian(b, n2, dim));
}
