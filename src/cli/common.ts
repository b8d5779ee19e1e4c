/**
 * What every subcommand shares: flag validation with zod, one way to report a user's mistake (a message
 * and a hint, never a bare stack trace), and progress bars.
 */
import { accessSync, closeSync, constants, existsSync, openSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { DEVICE_HELP, DeviceError, parseDevice } from '../runtime/device.js';
import { defaultThreads, setDevice } from '../runtime/session.js';

/** A mistake the user can fix (bad flag, missing file, wrong shape): printed without a stack trace. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * A subcommand whose parser errors (missing or unknown option, missing argument) read like every other
 * mistake: `styleclip: error: …` on stderr and exit 2. Subcommands created with `.command()` are CliCommands
 * too.
 */
export class CliCommand extends Command {
  override createCommand(name?: string): Command {
    return new CliCommand(name);
  }

  override error(message: string, errorOptions?: { code?: string; exitCode?: number }): never {
    const text = message.startsWith('styleclip: ') ? message : `styleclip: ${message}`;
    return super.error(text, { ...errorOptions, exitCode: errorOptions?.exitCode ?? 2 });
  }
}

/** An input file flag: it must exist and be a file (a folder is named as such, not an EISDIR later). */
export const inputFile = (what = 'file', notFound = 'file not found') =>
  z
    .string({ error: 'is required' })
    .min(1, 'must not be empty')
    .superRefine((f, ctx) => {
      if (!existsSync(f)) ctx.addIssue({ code: 'custom', message: `${notFound}: ${f}` });
      else if (!statSync(f).isFile())
        ctx.addIssue({ code: 'custom', message: `${f} is a folder; give the ${what} inside it` });
    });

/**
 * Checks, before any work starts, that every output path can be written: not a folder, and its folder exists
 * or can be created (a missing one is created when written, by every command) and takes a new file. The probe
 * really creates a file, so read-only mounts and permissions are caught as well. `outputs` maps a flag (or
 * a description) to the user's path; a failure names both, with exit code 2.
 */
export function checkOutputs(outputs: Record<string, string | undefined>): void {
  const problems: string[] = [];
  for (const [flag, path] of Object.entries(outputs)) {
    if (path === undefined) continue;
    const why = outputProblem(path);
    if (why) problems.push(`${flag} ${path}: ${why}`);
  }
  if (problems.length)
    throw new UserError(
      `cannot write the output${problems.length > 1 ? 's' : ''}:\n  ${problems.join('\n  ')}`,
    );
}

/** What stops `path` from being written, or null. An existing folder `path` is fine when `folder` is set. */
export function outputProblem(path: string, folder = false): string | null {
  if (existsSync(path)) {
    const st = statSync(path);
    if (st.isDirectory() && !folder) return 'is a folder';
    if (!st.isDirectory() && folder) return 'exists and is not a folder';
  }
  // The nearest folder that exists: the file (or its missing folders) will be created in it.
  let dir = folder ? resolve(path) : dirname(resolve(path));
  while (!existsSync(dir)) dir = dirname(dir);
  if (!statSync(dir).isDirectory()) return `${dir} is a file, not a folder`;
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    const probe = join(dir, `.styleclip-probe-${process.pid}-${Date.now().toString(36)}`);
    closeSync(openSync(probe, 'wx'));
    rmSync(probe, { force: true });
  } catch (e) {
    return `the folder ${dir} is not writable (${describeFsError(e)})`;
  }
  return null;
}

function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EISDIR: 'it is a folder',
  };
  return (code && known[code]) ?? (e as Error).message;
}

/**
 * Writes each output in turn; one that fails does not stop the others. Afterwards a failure is reported once,
 * naming the user's paths (never the temp file of the atomic write), with exit code 1.
 */
export async function writeOutputs(
  outputs: readonly [path: string, write: () => unknown | Promise<unknown>][],
): Promise<string[]> {
  const failed: string[] = [];
  const written: string[] = [];
  for (const [path, write] of outputs) {
    try {
      await write();
      written.push(path);
    } catch (e) {
      failed.push(`${path}: ${describeFsError(e)}`);
    }
  }
  if (failed.length)
    throw new UserError(
      `could not write ${failed.join('; ')}${written.length ? `\n  written: ${written.join(', ')}` : ''}`,
      1,
    );
  return written;
}

/** Validates commander's option object; a failure names each bad flag in its `--kebab-case` form. */
export function parseFlags<S extends z.ZodType>(schema: S, opts: unknown): z.infer<S> {
  const r = schema.safeParse(opts);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const flag = i.path.length
      ? `--${String(i.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
      : 'flags';
    // Messages that already start with their flag ("--steps must be a number") are not prefixed twice.
    return i.message.startsWith(flag) ? i.message : `${flag}: ${i.message}`;
  });
  throw new UserError(lines.join('\n'));
}

/** Numeric flag parsing that commander leaves as strings. */
export const num = (what: string) =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isFinite(n) || (typeof v === 'string' && v.trim() === '')) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a number, got "${v}"` });
      return z.NEVER;
    }
    return n;
  });

export const int = (what: string) =>
  num(what).refine((n) => Number.isInteger(n), { message: `${what} must be a whole number` });

/** `--arcface-units 1,1,2,1`: IR-SE units per stage, for a backbone whose weights do not tell them. */
export const arcfaceUnits = z
  .string()
  .regex(/^\d+(,\d+)*$/, 'comma-separated unit counts per stage, e.g. 3,4,14,3')
  .transform((s) => s.split(',').map(Number));

/** Error classes whose messages already say what was wrong and what to do. */
const EXPECTED = new Set([
  'UserError',
  'CheckpointError',
  'ForbiddenGlobalError',
  'NpyError',
  'ShapeError',
  'RuntimeError',
  'TextTooLongError',
  'ClipWeightsError',
  'ArcFaceWeightsError',
  'GeneratorWeightsError',
  'MapperError',
  'ImageError',
  'DeviceError',
]);

/** Library messages name library options; on the command line they name the flags. */
function forTheCli(err: Error): string {
  let m = err.message;
  if (err.name === 'TextTooLongError') m = m.replace(/; shorten it or truncate it$/, '; shorten it');
  m = m.replace(/pass stageUnits\b/, 'pass --arcface-units (IR-SE units per stage, e.g. 3,4,14,3)');
  return m;
}

/** Prints an error for a person: the message, and the stack only for bugs or with STYLECLIP_DEBUG=1. */
export function reportError(e: unknown): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const nodeCode = (err as NodeJS.ErrnoException).code;
  if (nodeCode === 'ENOENT' || nodeCode === 'EACCES' || nodeCode === 'EISDIR') {
    const path = (err as NodeJS.ErrnoException).path;
    const what = nodeCode === 'EISDIR' ? 'a folder was given where a file is needed' : describeFsError(err);
    process.stderr.write(
      `styleclip: error: ${path ? `${path}: ` : ''}${what}\n  Check the path and try again.\n`,
    );
    return 2;
  }
  if (EXPECTED.has(err.name) || err instanceof UserError) {
    process.stderr.write(`styleclip: error: ${forTheCli(err)}\n`);
    if (process.env.STYLECLIP_DEBUG) process.stderr.write(`${err.stack}\n`);
    return err instanceof UserError ? err.exitCode : 1;
  }
  process.stderr.write(
    `styleclip: internal error: ${err.message}\n  This is a bug; please report it with the command you ran.\n`,
  );
  if (process.env.STYLECLIP_DEBUG !== '0') process.stderr.write(`${err.stack}\n`);
  return 1;
}

/**
 * Lets a long run end cleanly on Ctrl-C: the first signal prints `note` and makes `requested()` true, so the
 * run stops at its next safe point and keeps what it wrote; a second one exits at once with 130.
 */
export function interruptible(
  note: string,
  signals: readonly NodeJS.Signals[] = ['SIGINT'],
): { requested: () => boolean; dispose: () => void } {
  let stop = false;
  const onSignal = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write(`\n${note}\n`);
  };
  for (const s of signals) process.on(s, onSignal);
  return {
    requested: () => stop,
    dispose: () => {
      for (const s of signals) process.off(s, onSignal);
    },
  };
}

/** A progress bar on stderr that stays quiet when stderr is not a terminal (logs, CI). */
export function progressBar(
  total: number,
  label: string,
  fields = '',
  stream: NodeJS.WritableStream = process.stderr,
): SingleBar {
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} | ETA {eta_formatted}${fields ? ` | ${fields}` : ''}`,
    stream,
    noTTYOutput: false,
    hideCursor: true,
    clearOnComplete: false,
    formatTime: etaText,
  });
  // Every {field} shows "-" until the first update brings its value (else the first frame shows "{loss}").
  const blank = Object.fromEntries([...fields.matchAll(/\{(\w+)\}/g)].map((m) => [m[1], '-']));
  bar.start(total, 0, blank);
  return bar;
}

/** Seconds as 1h05m, 3m20s, 42s; "-" while unknown (cli-progress's INF would print as "NFs"). */
export function etaText(t: number): string {
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) return '-';
  const s = Math.round(t);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/**
 * `--device cpu|cuda|webgpu|auto` (or a fallback list such as cuda,cpu; default STYLECLIP_DEVICE, else cpu)
 * on every command of `program`, added in one place: each leaf command gets the flag, and one hook hands
 * it to the runtime before the action runs. A bad name is an invocation mistake (exit 2); a provider that
 * cannot start fails at the first graph with one message (a DeviceError, exit 1).
 */
export function addDeviceOption(program: Command): void {
  const leaves = (c: Command): Command[] => (c.commands.length ? c.commands.flatMap(leaves) : [c]);
  for (const c of program.commands.flatMap(leaves))
    c.addOption(new Option('--device <name>', DEVICE_HELP).env('STYLECLIP_DEVICE'));
  program.hook('preAction', (_, action) => {
    try {
      defaultThreads(); // a bad STYLECLIP_THREADS is a mistake in the invocation too (exit 2), found up front
    } catch (e) {
      if (e instanceof DeviceError) throw new UserError(e.message);
      throw e;
    }
    const value = action.opts().device as string | undefined;
    if (value === undefined) return;
    const source = action.getOptionValueSource('device') === 'env' ? 'STYLECLIP_DEVICE' : '--device';
    try {
      setDevice(parseDevice(value, source));
    } catch (e) {
      if (e instanceof DeviceError) throw new UserError(e.message);
      throw e;
    }
  });
}
