/**
 * `npm run bench -- serve-load [--requests 2000] [--concurrency 8]`: POST /api/global with a NEW target text
 * on every request (each one a fresh Δt: 2×80 CLIP prompts, the text cache filling and evicting), 8 at a
 * time, on the repository's fixture models. Prints the error count, latency, throughput and the server's
 * resident memory (RSS, from /proc) as it grows and where it levels off: the "RSS plateau" in the README.
 *
 * `node --import tsx bench/serve-load.ts --server` is the child: the fixture server on a free port.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { report, startServerChild } from './report.js';

const flag = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const REQUESTS = flag('--requests', 2000);
const CONCURRENCY = flag('--concurrency', 8);
/** RSS is sampled after every this many answers. */
const EVERY = 250;

async function serverMain(): Promise<void> {
  const { loadModels, Studio, startServer } = await import('../src/server/index.js');
  const fx = (p: string) => fileURLToPath(new URL(`../test/fixtures/${p}`, import.meta.url));
  const models = loadModels({
    generator: fx('stylegan2/generator.pt'),
    clip: fx('clip/clip.pt'),
    fs3: fx('global/fs3.npy'),
  });
  const studio = new Studio(models, { seeds: 4, statsSamples: 2000 });
  await studio.warmUp();
  const srv = await startServer(studio, { port: 0 });
  console.log(JSON.stringify({ url: srv.url, pid: process.pid }));
}

/** The server's resident set in MB (Linux /proc), or NaN elsewhere. */
function rssMB(pid: number): number {
  const f = `/proc/${pid}/status`;
  if (!existsSync(f)) return Number.NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(f, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

export default async function main(): Promise<void> {
  const { child, info } = await startServerChild<{ url: string; pid: number }>(
    fileURLToPath(import.meta.url),
  );
  const { url, pid } = info;
  try {
    const fresh = rssMB(pid);
    report('serve-load', 'rss_fresh', fresh, 'MB');
    const latencies: number[] = [];
    const errors: string[] = [];
    const samples: number[] = [];
    let next = 0;
    let done = 0;
    const t0 = performance.now();
    const worker = async () => {
      while (next < REQUESTS) {
        const i = next++;
        const t = performance.now();
        try {
          const res = await fetch(`${url}/api/global`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              image: `seed:${i % 4}`,
              neutral: 'face',
              target: `a face with trait number ${i}`,
              alpha: -10 + (i % 21),
              beta: 0.1,
            }),
          });
          const body = (await res.json()) as { error?: string };
          if (!res.ok) errors.push(`${res.status} ${body.error}`);
        } catch (e) {
          errors.push((e as Error).message);
        }
        latencies.push(performance.now() - t);
        if (++done % EVERY === 0) {
          const rss = rssMB(pid);
          samples.push(rss);
          report('serve-load', 'rss', rss, 'MB', { requests: done, errors: errors.length });
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const s = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const last = samples.slice(-4);
    report('serve-load', 'errors', errors.length, 'count', {
      requests: REQUESTS,
      concurrency: CONCURRENCY,
      first_errors: errors.slice(0, 3),
    });
    report('serve-load', 'latency_p50', pct(latencies, 50), 'ms', {
      p95_ms: Number(pct(latencies, 95).toFixed(1)),
    });
    report('serve-load', 'throughput', REQUESTS / s, 'requests/s');
    // The plateau: the last quarter of the samples (after 1,500 of 2,000 requests) and how much they still move.
    report('serve-load', 'rss_plateau', Math.max(...last), 'MB', {
      rss_fresh_mb: Number(fresh.toFixed(1)),
      last_samples_mb: last.map((v) => Number(v.toFixed(1))),
      load: loadavg().map((v) => Number(v.toFixed(2))),
    });
  } finally {
    child.kill('SIGTERM');
  }
}

if (process.argv.includes('--server')) await serverMain();
