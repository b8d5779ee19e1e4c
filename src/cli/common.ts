/**
 * What every subcommand shares: flag validation with zod, one way to report a user's mistake (a message
 * and a hint, never a bare stack trace), and progress bars.
 */
import { SingleBar } from 'cli-progress';
import { z } from 'zod';

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

/** Validates commander's option object; a failure names each bad flag in its `--kebab-case` form. */
export function parseFlags<S extends z.ZodType>(schema: S, opts: unknown): z.infer<S> {
  const r = schema.safeParse(opts);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const flag = i.path.length
      ? `--${String(i.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
      : 'flags';
    return `${flag}: ${i.message}`;
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
]);

/** Prints an error for a person: the message, and the stack only for bugs or with STYLECLIP_DEBUG=1. */
export function reportError(e: unknown): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const nodeCode = (err as NodeJS.ErrnoException).code;
  if (nodeCode === 'ENOENT' || nodeCode === 'EACCES' || nodeCode === 'EISDIR') {
    process.stderr.write(`styleclip: error: ${err.message}\n  Check the path and try again.\n`);
    return 2;
  }
  if (EXPECTED.has(err.name) || err instanceof UserError) {
    process.stderr.write(`styleclip: error: ${err.message}\n`);
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
export function progressBar(total: number, label: string, fields = ''): SingleBar {
  const bar = new SingleBar({
    format: `${label} [{bar}] {value}/{total} | ETA {eta_formatted}${fields ? ` | ${fields}` : ''}`,
    stream: process.stderr,
    noTTYOutput: false,
    hideCursor: true,
    clearOnComplete: false,
  });
  bar.start(total, 0);
  return bar;
}
