/** Benchmark helpers: JSON-line output, timing, and a server child process. */
import { type ChildProcess, spawn } from 'node:child_process';

export function report(
  bench: string,
  name: string,
  value: number,
  unit: string,
  extra: Record<string, unknown> = {},
) {
  console.log(JSON.stringify({ bench, name, value: Number(value.toPrecision(5)), unit, ...extra }));
}

export interface Timing {
  /** The first (warm-up) call, in ms: session start-up and first-run costs land here. */
  first: number;
  median: number;
  min: number;
}

/** Wall times of `fn` in ms: the first of `warmup` calls, then the median and minimum of `runs` more. */
export async function timeIt(fn: () => Promise<unknown>, { warmup = 1, runs = 5 } = {}): Promise<Timing> {
  let first = 0;
  for (let i = 0; i < warmup; i++) {
    const t = performance.now();
    await fn();
    if (i === 0) first = performance.now() - t;
  }
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { first, median: times[Math.floor(times.length / 2)], min: times[0] };
}

export const peakRssMB = () => process.resourceUsage().maxRSS / 1024;

/**
 * Runs `node --import tsx FILE --server ARGS` (a benchmark's own server half) and resolves with the first
 * JSON line it prints on stdout (its address and set-up figures), or rejects if it exits first.
 */
export async function startServerChild<T>(
  file: string,
  args: string[] = [],
): Promise<{ child: ChildProcess; info: T }> {
  const child = spawn(process.execPath, ['--import', 'tsx', file, '--server', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const info = await new Promise<T>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line));
    });
    child.on('exit', (code) => reject(new Error(`the server exited (${code})`)));
  });
  return { child, info };
}

/** Seeded normal samples (xorshift32 + Box–Muller): the same inputs for both sides of a comparison. */
export function randn(n: number, seed: number, std = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** The value of `--k` in `args`, removed from `args` with its flag (so what remains are case names). */
export function takeFlag(args: string[], k: string): string | undefined {
  const i = args.indexOf(`--${k}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}
