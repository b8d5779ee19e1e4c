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

/** Median wall time of `fn` in ms after `warmup` runs. */
export async function timeIt(fn: () => Promise<unknown>, { warmup = 1, runs = 5 } = {}): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export const peakRssMB = () => process.resourceUsage().maxRSS / 1024;
