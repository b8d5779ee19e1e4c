import assert from 'node:assert/strict';
/** Starts the app on the fixture models in this process, on a free loopback port. */
import { fileURLToPath } from 'node:url';
import { loadModels, type RunningServer, Studio, startServer } from '../../src/server/index.js';

export const fx = (p: string) => fileURLToPath(new URL(`../fixtures/${p}`, import.meta.url));

export const FIXTURE_FILES = {
  generator: fx('stylegan2/generator.pt'),
  clip: fx('clip/clip.pt'),
  fs3: fx('global/fs3.npy'),
  arcface: fx('arcface/irse.pth'),
  arcfaceUnits: [1, 1, 2, 1],
  mappers: fx('mapper/mapper.pt'),
};

export async function startFixtureServer(webRoot?: string): Promise<{ srv: RunningServer; studio: Studio }> {
  const studio = new Studio(loadModels(FIXTURE_FILES), { seeds: 6, statsSamples: 200 });
  await studio.warmUp();
  const srv = await startServer(studio, { port: 0, webRoot, log: () => {} });
  return { srv, studio };
}

export async function post(
  url: string,
  body: unknown,
  init: { raw?: string; type?: string; method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: init.method ?? 'POST',
    headers: { 'content-type': init.type ?? 'application/json', ...init.headers },
    body: init.raw ?? JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** A job's Server-Sent Events, parsed, until the stream closes (after done, failed or cancelled). */
export async function jobEvents(api: string, id: string): Promise<{ type: string; [k: string]: unknown }[]> {
  const res = await fetch(`${api}/jobs/${id}/events`);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.includes('data: '))
    .map((b) =>
      JSON.parse(
        b
          .split('\n')
          .find((l) => l.startsWith('data: '))!
          .slice(6),
      ),
    );
}
