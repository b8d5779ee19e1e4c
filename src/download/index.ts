/** `styleclip download`: the known published files, fetched into the cache folder. */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { modelsDir } from '../util/cache.js';
import { findKnown, GROUPS, type KnownFile } from './catalog.js';
import { downloadFile, type TransferOptions, type TransferResult } from './transfer.js';

export { CATALOG, findKnown, GROUPS, type KnownFile, type ModelKind } from './catalog.js';
export { cachedPath, MODEL_FLAGS, resolveModelArgs, resolveModelValue } from './resolve.js';
export {
  DownloadError,
  downloadFile,
  driveConfirmUrl,
  type TransferOptions,
  type TransferResult,
} from './transfer.js';

/** Names and group names (`mappers`, `all`) → known files, in order, without repeats; unknown names listed. */
export function expandNames(names: readonly string[]): { files: KnownFile[]; unknown: string[] } {
  const files: KnownFile[] = [];
  const unknown: string[] = [];
  for (const n of names) {
    const group = GROUPS[n.toLowerCase()];
    const members = group ? group.map((g) => findKnown(g)!) : [findKnown(n)];
    for (const f of members)
      if (!f) unknown.push(n);
      else if (!files.includes(f)) files.push(f);
  }
  return { files, unknown };
}

/**
 * Where a known file comes from: its published URL, or `$STYLECLIP_MIRROR/<file name>` when that is set
 * (a local or company mirror of the same files).
 */
export function sourceUrl(f: KnownFile, env: NodeJS.ProcessEnv = process.env): string {
  const mirror = env.STYLECLIP_MIRROR;
  return mirror ? `${mirror.replace(/\/+$/, '')}/${f.file}` : f.url;
}

export interface FetchResult extends Partial<TransferResult> {
  file: KnownFile;
  path: string;
  /** Already in the folder: nothing was transferred. */
  present: boolean;
}

/** Fetches one known file into `dir` (default: the cache's models folder) unless it is already there. */
export async function fetchKnown(
  f: KnownFile,
  options: TransferOptions & { dir?: string; force?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<FetchResult> {
  const dir = options.dir ?? modelsDir(options.env);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, f.file);
  if (!options.force && existsSync(path) && statSync(path).size > 0) return { file: f, path, present: true };
  const r = await downloadFile(sourceUrl(f, options.env), path, { ...options, sha256: f.sha256 });
  return { file: f, path, present: false, ...r };
}

/** Human-readable size. */
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}
