/** Benchmark helpers: JSON-line output and timing. */
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
