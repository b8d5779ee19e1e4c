/**
 * The channel statistics of a generator, cached per generator file content in the user's cache folder
 * (`<cache>/stats/<sha256 of the file>-n<samples>.npy`): sampling 100,000 of them takes seconds at the
 * fixture size and minutes at 1024², and they depend only on the weights and the sample count (seed 5,
 * ψ 0.7 as the official code).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { StyleGAN2Config } from '../models/stylegan2/weights.js';
import { cacheSubdir } from '../util/cache.js';
import type { StyleStats } from './global.js';
import { loadStyleStats, saveStyleStats } from './global-io.js';

/** SHA-256 of a file's bytes, read in 4 MB chunks. */
export function fileSha256(file: string): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  const fd = openSync(file, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

export interface CachedStats {
  stats: StyleStats;
  /** The cache file read or written (null when the cache could not be written). */
  file: string | null;
  /** True when read from the cache. */
  hit: boolean;
}

/**
 * Statistics for `generatorFile` and `samples`: from the cache, or computed by `compute` and stored there. A
 * cache file that cannot be read is computed again; a cache that cannot be written is only a note.
 */
export async function cachedStyleStats(
  generatorFile: string,
  config: StyleGAN2Config,
  samples: number,
  compute: () => Promise<StyleStats>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CachedStats> {
  let file: string | null = null;
  try {
    file = join(cacheSubdir('stats', env), `${fileSha256(generatorFile)}-n${samples}.npy`);
  } catch {
    file = null; // no cache folder (read-only home): compute every time
  }
  if (file && existsSync(file)) {
    try {
      return { stats: { ...loadStyleStats(file, config), samples }, file, hit: true };
    } catch {
      // a damaged or foreign file: recompute and replace it
    }
  }
  const stats = await compute();
  if (file)
    try {
      saveStyleStats(file, stats);
    } catch {
      file = null;
    }
  return { stats, file, hit: false };
}
