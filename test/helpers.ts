import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, so that tests do not depend on the working directory they are started from. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A path under test/fixtures, resolved from this file. */
export const fixture = (p: string): string => join(ROOT, 'test', 'fixtures', p);

type Numeric = ArrayLike<number>;

/** Fixture tolerance: max|a-b| <= rtol*max|b| + atol (the fixtures README's rule). */
export function assertClose(
  actual: Numeric,
  expected: Numeric,
  { rtol = 1e-4, atol = 1e-5, what = 'value' } = {},
) {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  let maxB = 0;
  let maxDiff = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    maxB = Math.max(maxB, Math.abs(expected[i]));
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= maxDiff)) {
      maxDiff = d;
      at = i;
    }
  }
  const tol = rtol * maxB + atol;
  assert.ok(
    maxDiff <= tol,
    `${what}: max|a-b| = ${maxDiff} at ${at} (a=${actual[at]}, b=${expected[at]}) exceeds ${tol} (max|b| = ${maxB})`,
  );
}
