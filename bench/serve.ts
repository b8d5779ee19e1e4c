/**
 * `npm run bench -- serve`: latency of a global-direction edit through the HTTP API, on full-size random
 * models (StyleGAN2 config-f 1024², ViT-B/32, a random fs3 [6048, 512]). The server runs in a child process;
 * this process is the load script: 50 requests one after another (a person dragging α), α different each
 * time so nothing is cached, at full size and with the 256² preview. p50/p95 of the wall time per request,
 * answer parsed, and the server's own time. Targets: ≤ 1.2 s at 1024², ≤ 0.3 s with the preview.
 *
 * `node --import tsx bench/serve.ts --server` is the child: it builds the models, starts the server on a
 * free port and prints its URL.
 */
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { report, startServerChild } from './report.js';

const REQUESTS = 50;
const WARMUP = 3;
/** `npm run bench -- serve --preview 128` benches another preview size (default 256). */
const flag = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const PREVIEW = flag('--preview', 256);

async function serverMain(): Promise<void> {
  const t0 = performance.now();
  // Imported here only, so the load script stays a plain HTTP client.
  const { sampleStyleStats } = await import('../src/edit/global.js');
  const { StyleGAN2 } = await import('../src/models/stylegan2/generator.js');
  const { Studio, startServer } = await import('../src/server/index.js');
  const { buildClip } = await import('./clip.js');
  const sg = StyleGAN2.random({ size: 1024, seed: 1 });
  const generator = sg.weights;
  generator.latentAvg = await sg.meanLatent(512);
  const clip = buildClip();
  const rows = generator.config.styleDims
    .filter((_, i) => !generator.config.styleIsToRGB[i])
    .reduce((a, b) => a + b);
  const e = clip.config.embedDim;
  // A random fs3 whose rows are unit vectors, like the real one's.
  const fs3 = new Float32Array(rows * e);
  let s = 12345;
  for (let i = 0; i < fs3.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    fs3[i] = s / 2 ** 32 - 0.5;
  }
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let j = 0; j < e; j++) n += fs3[r * e + j] ** 2;
    for (let j = 0; j < e; j++) fs3[r * e + j] /= Math.sqrt(n);
  }
  const { stats } = await sampleStyleStats(generator, { samples: 200, batch: 100 });
  const studio = new Studio({ generator, clip, fs3, stats }, { seeds: 4, previewSize: PREVIEW });
  const srv = await startServer(studio, { port: 0 });
  console.log(JSON.stringify({ url: srv.url, setupMs: Math.round(performance.now() - t0) }));
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export default async function main(): Promise<void> {
  const load0 = loadavg();
  const { child, info } = await startServerChild<{ url: string; setupMs: number }>(
    fileURLToPath(import.meta.url),
    ['--preview', String(PREVIEW)],
  );
  const { url, setupMs } = info;
  try {
    report('serve', 'setup_random_1024_models', setupMs, 'ms');
    const edit = async (alpha: number, preview: boolean) => {
      const t = performance.now();
      const res = await fetch(`${url}/api/global`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          image: 'seed:1',
          neutral: 'face',
          target: 'smiling face',
          alpha,
          beta: 0.1,
          preview,
        }),
      });
      const body = (await res.json()) as {
        image: string;
        size: number;
        timing: { totalMs: number };
        error?: string;
      };
      if (!res.ok) throw new Error(body.error);
      return {
        ms: performance.now() - t,
        server: body.timing.totalMs,
        size: body.size,
        bytes: body.image.length,
      };
    };
    // The first request computes Δt (2×79 CLIP prompts) and compiles the sessions: reported, not counted.
    const t = performance.now();
    await edit(1, false);
    report('serve', 'first_edit_compile_and_dt', performance.now() - t, 'ms');
    for (const preview of [true, false]) {
      for (let i = 0; i < WARMUP; i++) await edit(-3 + i, preview);
      const lat: number[] = [];
      const srv: number[] = [];
      let size = 0;
      let bytes = 0;
      for (let i = 0; i < REQUESTS; i++) {
        const r = await edit(-10 + (20 * i) / (REQUESTS - 1), preview);
        lat.push(r.ms);
        srv.push(r.server);
        size = r.size;
        bytes = r.bytes;
      }
      lat.sort((a, b) => a - b);
      srv.sort((a, b) => a - b);
      const name = preview ? `global_edit_preview_${size}` : `global_edit_full_${size}`;
      const limit = preview ? (size === 256 ? 300 : null) : 1200;
      const extra = {
        p95_ms: Number(pct(lat, 95).toFixed(1)),
        server_p50_ms: pct(srv, 50),
        requests: REQUESTS,
        png_base64_bytes: bytes,
        limit_ms: limit,
        load: loadavg().map((v) => Number(v.toFixed(2))),
      };
      report('serve', `${name}_p50`, pct(lat, 50), 'ms', extra);
    }
    report('serve', 'load_at_start', load0[0], 'loadavg1', { load: load0.map((v) => Number(v.toFixed(2))) });
  } finally {
    child.kill('SIGTERM');
  }
}

if (process.argv[2] === '--server') await serverMain();
