/** The per-user cache folder: downloaded models (`styleclip download`) and values derived from a model
 * file that are costly to recompute (keyed by the file's content hash). */
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** `$STYLECLIP_CACHE`, else `$XDG_CACHE_HOME/styleclip`, else `~/.cache/styleclip`. Not created here. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STYLECLIP_CACHE) return env.STYLECLIP_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'styleclip');
}

/** A subfolder of the cache, created on first use. */
export function cacheSubdir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir = join(cacheDir(env), name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Where `styleclip download` puts published models, and where `--generator ffhq` and the like look. */
export function modelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), 'models');
}
