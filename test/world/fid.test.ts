/**
 * FID on the world: the Fréchet math against closed forms and against an independent matrix square root
 * (Denman–Beavers on Σ1Σ2, no eigendecomposition), its invariances, the generated images' seed convention,
 * and `styleclip world fid` as a user runs it with the fixture models.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { StyleGAN2, seededZ } from '../../src/models/stylegan2/index.js';
import {
  fitGaussian,
  frechetDistance,
  frechetDistanceOfFeatures,
  type Gaussian,
  symmetricEigen,
  traceSqrtProduct,
} from '../../src/util/frechet.js';
import { generatedImages } from '../../src/world/fid.js';
import { runCli } from '../cli/helpers.js';
import { fixture } from '../helpers.js';

/** A seeded uniform generator in [-0.5, 0.5) (Park–Miller), so every case is the same on every run. */
function uniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 16807) % 2147483647;
    return s / 2147483647 - 0.5;
  };
}

/** n rows of d features: a random linear mix of uniforms plus a shift, so the covariance is not diagonal. */
function features(n: number, d: number, seed: number, shift = 0): Float64Array {
  const r = uniform(seed);
  const mix = Float64Array.from({ length: d * d }, r);
  const out = new Float64Array(n * d);
  const x = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) x[k] = r();
    for (let j = 0; j < d; j++) {
      let v = shift + j * 0.1;
      for (let k = 0; k < d; k++) v += mix[j * d + k] * x[k];
      out[i * d + j] = v;
    }
  }
  return out;
}

// Plain dense float64 helpers for the reference route.
function mul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * n + k] * b[k * n + j];
  return c;
}

function inverse(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r * n + col]) > Math.abs(m[piv * n + col])) piv = r;
    for (let j = 0; j < n; j++) {
      [m[col * n + j], m[piv * n + j]] = [m[piv * n + j], m[col * n + j]];
      [inv[col * n + j], inv[piv * n + j]] = [inv[piv * n + j], inv[col * n + j]];
    }
    const p = m[col * n + col];
    for (let j = 0; j < n; j++) {
      m[col * n + j] /= p;
      inv[col * n + j] /= p;
    }
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = m[r * n + col];
      for (let j = 0; j < n; j++) {
        m[r * n + j] -= f * m[col * n + j];
        inv[r * n + j] -= f * inv[col * n + j];
      }
    }
  }
  return inv;
}

/** Tr(√(Σ1Σ2)) by the Denman–Beavers iteration on the (non-symmetric) product itself. */
function traceSqrtDenmanBeavers(s1: Float64Array, s2: Float64Array, n: number): number {
  let y = mul(s1, s2, n);
  let z = new Float64Array(n * n);
  for (let i = 0; i < n; i++) z[i * n + i] = 1;
  for (let it = 0; it < 60; it++) {
    const yi = inverse(y, n);
    const zi = inverse(z, n);
    y = y.map((v, i) => (v + zi[i]) / 2);
    z = z.map((v, i) => (v + yi[i]) / 2);
  }
  let tr = 0;
  for (let i = 0; i < n; i++) tr += y[i * n + i];
  return tr;
}

/** The Gaussian with the given mean and covariance. */
const gaussian = (mean: number[], cov: Float64Array): Gaussian => ({
  dim: mean.length,
  mean: Float64Array.from(mean),
  cov,
});

const diag = (v: number[]): Float64Array => {
  const m = new Float64Array(v.length * v.length);
  v.forEach((x, i) => {
    m[i * v.length + i] = x;
  });
  return m;
};

describe('Fréchet distance', () => {
  it('is 0 for identical feature sets (within 1e-9)', () => {
    for (const [n, d] of [
      [50, 8],
      [300, 64],
      [20, 32], // fewer samples than dimensions: a singular covariance
    ]) {
      const f = features(n, d, 7 + d);
      const r = frechetDistanceOfFeatures(f, n, f, n, d);
      assert.ok(Math.abs(r.distance) < 1e-9, `n ${n} d ${d}: ${r.distance}`);
    }
  });

  it('matches Σ(√a − √b)² + |μ1 − μ2|² for diagonal covariances', () => {
    const a = [1, 4, 0.25, 2, 1e-3, 7];
    const b = [2, 1, 0.5, 2, 0, 3];
    const m1 = [0, 1, 2, 3, 4, 5];
    const m2 = [0.5, 1, 1, 3, 4.25, -5];
    let expected = 0;
    for (let i = 0; i < a.length; i++)
      expected += (Math.sqrt(a[i]) - Math.sqrt(b[i])) ** 2 + (m1[i] - m2[i]) ** 2;
    const r = frechetDistance(gaussian(m1, diag(a)), gaussian(m2, diag(b)));
    assert.ok(Math.abs(r.distance - expected) < 1e-12 * expected, `${r.distance} vs ${expected}`);
    let meanTerm = 0;
    for (let i = 0; i < a.length; i++) meanTerm += (m1[i] - m2[i]) ** 2;
    assert.ok(Math.abs(r.meanTerm - meanTerm) < 1e-12);
  });

  it('matches a Denman–Beavers square root of Σ1Σ2 on random non-diagonal covariances', () => {
    for (const [d, seed] of [
      [3, 1],
      [6, 2],
      [12, 3],
    ]) {
      const g1 = fitGaussian(features(200, d, seed), 200, d);
      const g2 = fitGaussian(features(150, d, seed + 100, 0.3), 150, d);
      const tr = traceSqrtProduct(g1.cov, g2.cov, d);
      const ref = traceSqrtDenmanBeavers(g1.cov, g2.cov, d);
      assert.ok(Math.abs(tr - ref) < 1e-10 * ref, `d ${d}: ${tr} vs ${ref}`);
      let t = 0;
      let m = 0;
      for (let i = 0; i < d; i++) {
        t += g1.cov[i * d + i] + g2.cov[i * d + i];
        m += (g1.mean[i] - g2.mean[i]) ** 2;
      }
      const r = frechetDistance(g1, g2);
      assert.ok(Math.abs(r.distance - (m + t - 2 * ref)) < 1e-10 * (m + t));
      assert.ok(r.distance > 0);
    }
  });

  it('fits the unbiased covariance (np.cov) and does not depend on the order of rows or features', () => {
    const n = 40;
    const d = 5;
    const f = features(n, d, 11);
    const g = fitGaussian(f, n, d);
    for (const [a, b] of [
      [0, 0],
      [1, 3],
      [4, 2],
    ]) {
      let ma = 0;
      let mb = 0;
      for (let i = 0; i < n; i++) {
        ma += f[i * d + a] / n;
        mb += f[i * d + b] / n;
      }
      let c = 0;
      for (let i = 0; i < n; i++) c += (f[i * d + a] - ma) * (f[i * d + b] - mb);
      assert.ok(Math.abs(g.cov[a * d + b] - c / (n - 1)) < 1e-12);
    }
    const n2 = 60;
    const d2 = 16;
    const x = features(n2, d2, 21);
    const y = features(n2, d2, 22, 0.2);
    const base = frechetDistanceOfFeatures(x, n2, y, n2, d2).distance;
    // The same permutation of features on both sides, and independent shuffles of the rows.
    const perm = Array.from({ length: d2 }, (_, i) => (i * 5 + 3) % d2);
    const rows = (k: number) => Array.from({ length: n2 }, (_, i) => (i * k + 7) % n2);
    const reorder = (f: Float64Array, order: number[]) => {
      const out = new Float64Array(f.length);
      order.forEach((src, i) => {
        for (let j = 0; j < d2; j++) out[i * d2 + j] = f[src * d2 + perm[j]];
      });
      return out;
    };
    const moved = frechetDistanceOfFeatures(reorder(x, rows(7)), n2, reorder(y, rows(13)), n2, d2).distance;
    assert.ok(Math.abs(moved - base) < 1e-10 * base, `${moved} vs ${base}`);
    assert.ok(Math.abs(frechetDistanceOfFeatures(y, n2, x, n2, d2).distance - base) < 1e-10 * base);
  });

  it('decomposes symmetric matrices (V diag(λ) Vᵀ = A) and refuses too few samples and NaN', () => {
    const d = 20;
    const g = fitGaussian(features(10, d, 5), 10, d); // rank ≤ 9: eigenvalues near 0 included
    const { values, vectors } = symmetricEigen(g.cov, d);
    let err = 0;
    let scale = 0;
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++) {
        let v = 0;
        for (let k = 0; k < d; k++) v += vectors[k * d + i] * values[k] * vectors[k * d + j];
        err = Math.max(err, Math.abs(v - g.cov[i * d + j]));
        scale = Math.max(scale, Math.abs(g.cov[i * d + j]));
      }
    assert.ok(err < 1e-12 * scale, `reconstruction error ${err}`);
    assert.throws(() => fitGaussian(new Float64Array(4), 1, 4), /at least 2 samples/);
    assert.throws(() => symmetricEigen([1, Number.NaN, Number.NaN, 1], 2), /NaN/);
  });
});

describe('world FID', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'styleclip-fid-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('generates image i as `generate --seed S+i --noise random` does (z and noise of seed S+i)', async () => {
    const G = StyleGAN2.load(fixture('stylegan2/generator.pt'));
    const S = G.config.size;
    const two = await generatedImages(G, 5, 2);
    const w = await G.mapping(seededZ(6, 1, G.config.styleDim));
    const one = await G.synthesize(await G.toWPlus(w, [1, G.config.styleDim]), { seed: 6 });
    const per = 3 * S * S;
    let maxErr = 0;
    for (let p = 0; p < per; p++) {
      const q = Math.floor((Math.min(1, Math.max(-1, one.data[p] as number)) + 1) * 127.5 + 0.5) / 127.5 - 1;
      maxErr = Math.max(maxErr, Math.abs(two[per + p] - q));
    }
    // 8-bit levels: a batched graph may round a value on a level's edge the other way.
    assert.ok(maxErr <= 1 / 127.5 + 1e-6, `max difference ${maxErr}`);
  });

  it('`styleclip world fid` prints one line or one JSON object, the same number for the same seeds', () => {
    const gen = fixture('stylegan2/generator.pt');
    const clip = fixture('clip/clip.pt');
    const common = ['world', 'fid', '--generator', gen, '--clip', clip, '--count', '8'];
    const [text, json, again, batched, other, missing, tooFew, notClip] = runCli(
      [
        common,
        [...common, '--json'],
        [...common, '--json'],
        [...common, '--json', '--batch', '3'],
        [...common, '--json', '--seed', '100'],
        ['world', 'fid', '--generator', join(tmp, 'nope.pt'), '--clip', clip],
        [...common, '--count', '1'],
        ['world', 'fid', '--generator', gen, '--clip', gen, '--count', '8'],
      ],
      { STYLECLIP_WORLD: tmp },
    );
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /^FID \d+\.\d{4} \(mean .* \+ cov .*\) over 8 generated .* vs 8 world faces \(seeds 2000000000\.\.2000000007\)/,
    );
    assert.equal(text.stdout.trim().split('\n').length, 1);
    assert.equal(json.code, 0, json.stderr);
    const r = JSON.parse(json.stdout);
    for (const k of ['fid', 'count', 'generator', 'clip', 'seconds', 'meanTerm', 'covTerm', 'featureDim'])
      assert.ok(k in r, `JSON lacks ${k}`);
    assert.equal(r.count, 8);
    assert.equal(r.generator, gen);
    assert.equal(r.clip, clip);
    assert.ok(Number.isFinite(r.fid) && r.fid > 0);
    assert.deepEqual(r.dataSeeds, [2_000_000_000, 2_000_000_007]);
    assert.equal(JSON.parse(again.stdout).fid, r.fid);
    assert.ok(Math.abs(JSON.parse(batched.stdout).fid - r.fid) < 1e-4 * r.fid);
    assert.notEqual(JSON.parse(other.stdout).fid, r.fid);
    assert.equal(text.stdout.slice(4, text.stdout.indexOf(' ', 4)), r.fid.toFixed(4));
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--generator: file not found: .*nope\.pt/);
    assert.equal(tooFew.code, 2);
    assert.match(tooFew.stderr, /--count: must be at least 2/);
    assert.equal(notClip.code, 1);
    assert.match(notClip.stderr, /--clip .*generator\.pt: not a CLIP ViT checkpoint/);
    assert.doesNotMatch(notClip.stderr + missing.stderr, /at .*\.ts:\d+/); // no stack trace
  });

  it('`styleclip world fid` without model flags names the flag to give when there is no world model', () => {
    const [r] = runCli([['world', 'fid', '--count', '4']], { STYLECLIP_WORLD: tmp });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /give --generator FILE/);
  });
});
