/**
 * The API as a new user met it (issue 19): many distinct prompts with a full text cache (item 1), the same
 * neutral and target (item 2), error fields and optimize defaults (item 15), a cancelled job's result and
 * /favicon.ico (item 16).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTextCacheLimit } from '../../src/models/clip/encoder.js';
import { IMAGENET_TEMPLATES } from '../../src/models/clip/templates.js';
import type { RunningServer } from '../../src/server/index.js';
import { buildWeb } from '../../web/build.js';
import { jobEvents, post, startFixtureServer } from './helpers.js';

let srv: RunningServer;
let base: string;
let webRoot: string;
let oldLimit: number;

before(async () => {
  webRoot = await buildWeb(mkdtempSync(join(tmpdir(), 'styleclip-web-')));
  ({ srv } = await startFixtureServer(webRoot));
  base = `${srv.url}/api`;
  // Two prompt ensembles fill the text cache, so every new target evicts (at 250 in production).
  oldLimit = setTextCacheLimit(2 * IMAGENET_TEMPLATES.length);
});
after(async () => {
  setTextCacheLimit(oldLimit);
  await srv?.close();
  rmSync(webRoot, { recursive: true, force: true });
});

describe('API edges', () => {
  test('new targets one after another and 8 at a time: all answered with a full text cache', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await post(`${base}/global`, {
        image: 'seed:1',
        target: `face number ${i}`,
        alpha: 2,
        beta: 0.1,
      });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    const many = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        post(`${base}/global`, { image: 'seed:1', target: `a colour ${i}`, alpha: 2, beta: 0.1 }),
      ),
    );
    assert.deepEqual(
      many.map((r) => r.status),
      Array(8).fill(200),
    );
  });

  test('the same neutral and target: 400 naming target, never a black image', async () => {
    for (const [path, body] of [
      ['global', { image: 'seed:1', neutral: 'face', target: 'face', alpha: 3, beta: 0.1 }],
      ['global/channels', { neutral: 'face', target: 'FACE ', beta: 0.1 }],
    ] as const) {
      const r = await post(`${base}/${path}`, body);
      assert.equal(r.status, 400, path);
      assert.match(
        r.json.error as string,
        /^target: the target text "(face|FACE)" and the neutral text "face" mean the same/,
      );
    }
  });

  test('errors name their field; optimize defaults and refusals', async () => {
    const long = await post(`${base}/jobs/optimize`, {
      image: 'seed:1',
      prompt: 'a b '.repeat(60),
      steps: 3,
    });
    assert.equal(long.status, 400);
    assert.match(long.json.error as string, /^prompt: text is too long for CLIP/);
    const free = await post(`${base}/jobs/optimize`, {
      prompt: 'purple hair',
      steps: 1,
      mode: 'free',
      idLambda: 0.1,
    });
    assert.equal(free.status, 400);
    assert.match(free.json.error as string, /^idLambda: the ID loss applies in edit mode only/);

    // Edit mode without an image starts from seed:0, as the CLI does.
    const a = await post(`${base}/jobs/optimize`, { prompt: 'purple hair', steps: 1 });
    assert.equal(a.status, 202, JSON.stringify(a.json));
    const b = await post(`${base}/jobs/optimize`, { image: 'seed:0', prompt: 'purple hair', steps: 1 });
    const [ea, eb] = [await jobEvents(base, a.json.id as string), await jobEvents(base, b.json.id as string)];
    assert.equal(ea.at(-1)!.type, 'done');
    assert.equal(ea.at(-1)!.image, eb.at(-1)!.image);
  });

  test('a cancelled job keeps the image and latent it reached', async () => {
    const j = await post(`${base}/jobs/optimize`, { image: 'seed:1', prompt: 'purple hair', steps: 1000 });
    for (;;) {
      const st = await (await fetch(`${base}/jobs/${j.json.id}`)).json();
      if (st.step >= 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await fetch(`${base}/jobs/${j.json.id}`, { method: 'DELETE' });
    const last = (await jobEvents(base, j.json.id as string)).at(-1)!;
    assert.equal(last.type, 'cancelled');
    assert.equal(last.stopped, true);
    assert.match(last.image as string, /^data:image\/png/);
    const added = last.added as { id: string; label: string };
    assert.match(added.label, /^optimized \(\d+ of 1000 steps\): purple hair$/);
    const again = await post(`${base}/global`, {
      image: added.id,
      target: 'smiling face',
      alpha: 2,
      beta: 0.1,
    });
    assert.equal(again.status, 200, 'the reached latent can be edited further');
  });

  test('/favicon.ico is served', async () => {
    const r = await fetch(`${srv.url}/favicon.ico`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/svg+xml');
  });
});
