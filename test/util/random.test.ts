import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  logCorrectlyRounded,
  MT19937,
  RandomState,
  seededNormal,
  seededUniform,
} from '../../src/util/random.js';

// Reference values below were produced by numpy 2.4 (np.random.RandomState) on x86_64 Linux.
const sha256 = (a: ArrayBufferView) =>
  createHash('sha256')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');

describe('MT19937 / numpy RandomState', () => {
  test('init_genrand(5489): the reference mt19937ar outputs', () => {
    const mt = new MT19937(5489);
    assert.deepEqual(
      Array.from({ length: 5 }, () => mt.nextUint32()),
      [3499211612, 581869302, 3890346734, 3586334585, 545404204],
    );
  });

  test('uint32 stream = RandomState(123).randint(0, 2**32, 1000, uint32)', () => {
    const mt = new MT19937(123);
    const u = Uint32Array.from({ length: 1000 }, () => mt.nextUint32());
    assert.equal(sha256(u), '3723826555ed6067f4c0c6ab90e78f8d26368543890771e2c0fee6ac9cafdbcf');
  });

  test('random_sample: 53-bit doubles, bit-exact', () => {
    assert.deepEqual(
      Array.from(new RandomState(0).randomSample(3)),
      [0.5488135039273248, 0.7151893663724195, 0.6027633760716439],
    );
    assert.equal(
      sha256(new RandomState(42).randomSample(1000)),
      'b3826bcc79486f1bb6f6dc03df34252953a7bb2f334c5906c9ac056b2fc71a1c',
    );
  });

  test('randn: legacy polar gauss, bit-exact on the leading draws', () => {
    assert.deepEqual(
      Array.from(new RandomState(0).randn(5)),
      [1.764052345967664, 0.4001572083672233, 0.9787379841057392, 2.240893199201458, 1.8675579901499675],
    );
    assert.deepEqual(
      Array.from(new RandomState(5).randn(5)),
      [0.44122748688504143, -0.33087015189408764, 2.43077118700778, -0.2520921296030769, 0.10960984157818278],
    );
    assert.deepEqual(
      Array.from(new RandomState(0xffffffff).randn(3)),
      [0.6484086742306527, 0.6693235306338161, -1.0805437227474493],
    );
    // 600 float64 draws of StyleCLIP's RandomState(5), every bit.
    assert.equal(
      sha256(new RandomState(5).randn(600)),
      '7c2a2884ed6a4533385ac30cd247220546729a86d0f207630a0feb45de216e2f',
    );
  });

  test('randn(200, 512) of RandomState(5) equals numpy exactly in float32', () => {
    // In float64, glibc's log misrounds ~0.05% of inputs (we round correctly), so a few draws differ by 1 ulp;
    // none survives the cast to float32 that the models use.
    const z = Float32Array.from(new RandomState(5).randn(200, 512));
    assert.equal(sha256(z), '74f2b543ea5a7a414891bf37b9cab754d92db9d006d0cdfcacaf80c4279aa820');
    assert.deepEqual(seededNormal(5, 512 * 200), z);
  });

  test('the cached gauss survives random_sample calls, as in numpy', () => {
    const rs = new RandomState(7);
    assert.deepEqual(Array.from(rs.randn(3)), [1.690525703800356, -0.4659373705408328, 0.0328201636785844]);
    assert.deepEqual(Array.from(rs.randomSample(2)), [0.5011204636599379, 0.07205113335976154]);
    assert.deepEqual(Array.from(rs.randn(2)), [0.40751628299650783, -0.0008903858579313628]);
  });

  test('state round-trips, seeds are validated', () => {
    const rs = new RandomState(3);
    rs.randn(7);
    const saved = JSON.parse(JSON.stringify(rs.getState()));
    const a = rs.randn(5);
    const other = new RandomState(0);
    other.setState(saved);
    assert.deepEqual(other.randn(5), a);
    assert.throws(() => new RandomState(-1), RangeError);
    assert.throws(() => new RandomState(2 ** 32), RangeError);
    assert.throws(() => new RandomState(1.5), RangeError);
  });

  test('logCorrectlyRounded is within half an ulp', () => {
    // Exact values from a 60-digit decimal log, rounded to double.
    assert.equal(logCorrectlyRounded(0.5), -Math.LN2);
    assert.equal(logCorrectlyRounded(1), 0);
    assert.equal(logCorrectlyRounded(10), Math.LN10);
    assert.equal(logCorrectlyRounded(1e-300), -690.7755278982137);
    for (let i = 1; i < 1000; i++) {
      const x = i / 997;
      assert.ok(
        Math.abs(logCorrectlyRounded(x) - Math.log(x)) <= 2 * Number.EPSILON * Math.abs(Math.log(x)) + 1e-300,
      );
    }
  });

  test('seeded float32 helpers', () => {
    const u = seededUniform(1, 1000, -2, 3);
    assert.ok(u.every((v) => v >= -2 && v < 3));
    assert.deepEqual(seededNormal(9, 10), seededNormal(9, 10));
    assert.notDeepEqual(seededNormal(9, 10), seededNormal(10, 10));
  });
});
