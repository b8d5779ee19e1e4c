/** What the full-size tests share: a scratch folder, the CLI as a user runs it, and image checks. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { HostTensor } from '../../src/runtime/session.js';

/** A scratch folder removed after the file's tests (full-size files are hundreds of MB). */
export function scratch(prefix: string): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `styleclip-${prefix}-`));
  return {
    dir,
    path: (name) => join(dir, name),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * `styleclip ARGS` through src/cli/main.ts, as the other CLI tests run it (the tests run from the sources;
 * bin/styleclip.js runs the same program from dist/). A private cache folder keeps the user's out of it.
 */
export function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, STYLECLIP_CACHE: join(tmpdir(), 'styleclip-fullsize-cache'), ...env },
    maxBuffer: 1 << 24,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function assertCliOk(r: ReturnType<typeof cli>, what: string): void {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
}

/** An image file of the given size. */
export async function assertImage(file: string, size: number): Promise<void> {
  const m = await sharp(file).metadata();
  assert.equal(m.width, size, `${file} width`);
  assert.equal(m.height, size, `${file} height`);
}

/** A rendered batch [B, 3, S, S] with finite, not all-equal values. */
export function assertRendered(img: HostTensor, size: number, batch = 1): void {
  assert.deepEqual(img.shape, [batch, 3, size, size]);
  const d = img.data as Float32Array;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i])) assert.fail(`non-finite pixel at ${i}`);
    if (d[i] < min) min = d[i];
    if (d[i] > max) max = d[i];
  }
  assert.ok(max > min, 'a flat image');
}
