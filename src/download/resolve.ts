/**
 * Known names as model flags: `--generator ffhq` means the cached stylegan2-ffhq-config-f.pt. One function,
 * applied to the command line before the subcommands parse it, so every command that takes these flags
 * gets the same rule: an existing path always wins; a known name resolves to the cache folder; a known name
 * not downloaded yet fails with the exact `styleclip download` command to run; anything else passes through
 * for the command's own "file not found".
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../cli/common.js';
import { modelsDir } from '../util/cache.js';
import { findKnown, type KnownFile, type ModelKind } from './catalog.js';

/** The model flags and the kinds of known file each accepts. */
export const MODEL_FLAGS: Readonly<Record<string, readonly ModelKind[]>> = Object.freeze({
  // A StyleCLIP mapper file carries its 1024 decoder, so a mapper name works as a generator too.
  '--generator': ['generator', 'mapper'],
  '--clip': ['clip'],
  '--arcface': ['arcface'],
  '--mapper': ['mapper'],
  '--mappers': ['mapper'],
  '--fs3': ['fs3'],
  '--latent': ['latents'],
  '--latents': ['latents'],
  '--encoder': ['encoder'],
});

/** The cached path of a known file (which may not exist yet). */
export function cachedPath(f: KnownFile, env: NodeJS.ProcessEnv = process.env): string {
  return join(modelsDir(env), f.file);
}

/** The path a model flag's value stands for. */
export function resolveModelValue(flag: string, value: string, env: NodeJS.ProcessEnv = process.env): string {
  const kinds = MODEL_FLAGS[flag];
  if (!kinds || existsSync(value)) return value;
  const known = findKnown(value);
  if (!known || !kinds.includes(known.kind)) return value;
  const path = cachedPath(known, env);
  if (existsSync(path)) return path;
  throw new UserError(
    `${flag} ${value}: ${known.description} is not downloaded yet (looked for ${path}).\n` +
      `  Run: styleclip download ${known.name}`,
  );
}

/** argv with every model flag's known name replaced by its cached path (`--flag value` and `--flag=value`). */
export function resolveModelArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const out = [...argv];
  for (let i = 0; i < out.length; i++) {
    const a = out[i];
    if (a === '--') break;
    const eq = a.indexOf('=');
    if (eq > 0 && a.startsWith('--') && MODEL_FLAGS[a.slice(0, eq)])
      out[i] = `${a.slice(0, eq)}=${resolveModelValue(a.slice(0, eq), a.slice(eq + 1), env)}`;
    else if (MODEL_FLAGS[a] && i + 1 < out.length && !out[i + 1].startsWith('--')) {
      out[i + 1] = resolveModelValue(a, out[i + 1], env);
      i++;
    }
  }
  return out;
}
