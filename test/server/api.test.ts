import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RunningServer, Studio } from '../../src/server/index.js';
import { FIXTURE_FILES, fx, jobEvents, post, startFixtureServer } from './helpers.js';

let srv: RunningServer;
let studio: Studio;
let base: string;

before(async () => {
  ({ srv, studio } = await startFixtureServer());
  base = `${srv.url}/api`;
});
after(async () => {
  await srv?.close();
});

const edit = { image: 'seed:1', target: 'smiling face', alpha: 4, beta: 0.1 };

describe('styleclip serve API', () => {
  test('info, gallery, original image', async () => {
    const info = await (await fetch(`${base}/info`)).json();
    assert.equal(info.generator.size, 64);
    assert.deepEqual(info.mappers, ['mapper']);
    assert.equal(info.global, true);
    assert.equal(info.photoAlign, true); // a fixture generator, not the world's
    assert.equal(info.device, 'cpu');
    const g = await (await fetch(`${base}/gallery`)).json();
    assert.equal(g.images.length, 6);
    const img = await (await fetch(`${base}/images/seed:3`)).json();
    assert.match(img.image, /^data:image\/png;base64,/);
    const schema = await (await fetch(`${base}/schema`)).json();
    assert.equal(schema['POST /api/global'].additionalProperties, false);
  });

  test('a global-direction edit answers the image and the channel count', async () => {
    const r = await post(`${base}/global`, { ...edit, before: true });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.ok((r.json.numChannels as number) > 0);
    assert.match(r.json.image as string, /^data:image\/png;base64,/);
    assert.notEqual(r.json.image, r.json.before);
    const zero = await post(`${base}/global`, { ...edit, alpha: 0, before: true });
    assert.equal(zero.json.image, zero.json.before, 'α = 0 renders the original');
    const ch = await post(`${base}/global/channels`, { target: 'smiling face', beta: 0.1 });
    assert.equal(ch.json.numChannels, r.json.numChannels);
    const strict = await post(`${base}/global/channels`, { target: 'smiling face', beta: 0.3 });
    assert.ok((strict.json.numChannels as number) <= (r.json.numChannels as number));
  });

  test('bad JSON, wrong content type, non-object bodies', async () => {
    let r = await post(`${base}/global`, null, { raw: '{"image": "seed:1",' });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /not valid JSON/);
    r = await post(`${base}/global`, null, { raw: '[1,2]' });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /JSON object/);
    r = await post(`${base}/global`, edit, { type: 'text/plain' });
    assert.equal(r.status, 415);
  });

  test('unknown fields and out-of-range values are rejected with a reason', async () => {
    let r = await post(`${base}/global`, { ...edit, alpah: 3 });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /unknown field.*"alpah"/);
    r = await post(`${base}/global`, { ...edit, alpha: 11 });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /^alpha:/);
    r = await post(`${base}/global`, { ...edit, beta: 0.01 });
    assert.match(r.json.error as string, /^beta:/);
    r = await post(`${base}/jobs/optimize`, { prompt: 'x', steps: 100000, image: 'seed:1' });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /^steps:/);
    r = await post(`${base}/global`, { ...edit, image: '../../etc/passwd' });
    assert.equal(r.status, 400);
  });

  test('huge prompts: over the character limit, and over CLIP’s 77 tokens', async () => {
    let r = await post(`${base}/global`, { ...edit, target: 'x'.repeat(100_000) });
    assert.equal(r.status, 413, 'the body itself is over the JSON limit');
    r = await post(`${base}/global`, { ...edit, target: 'purple '.repeat(50) });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /target: .*longer than 300/);
    r = await post(`${base}/jobs/optimize`, { image: 'seed:1', prompt: 'a b '.repeat(60), steps: 3 });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /too long for CLIP/);
  });

  test('missing things: image, mapper, route, job, method; a bad upload', async () => {
    let r = await post(`${base}/global`, { ...edit, image: 'latents:7' });
    assert.equal(r.status, 404);
    assert.match(r.json.error as string, /no image "latents:7"/);
    r = await post(`${base}/mapper`, { image: 'seed:1', mapper: 'purple_hair' });
    assert.equal(r.status, 404);
    assert.match(r.json.error as string, /no mapper "purple_hair" \(loaded: mapper\)/);
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
    assert.equal((await fetch(`${base}/jobs/00000000-0000-0000-0000-000000000000`)).status, 404);
    assert.equal((await fetch(`${base}/global`)).status, 405);
    r = await post(`${base}/latents`, {
      name: 'w.npy',
      data: Buffer.from('not a npy file').toString('base64'),
    });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /could not read w\.npy/);
    r = await post(`${base}/latents`, { name: 'w.txt', data: '' });
    assert.equal(r.status, 400);
    assert.match(r.json.error as string, /^name:/);
  });

  test('the CLI explains a missing model file and exits 2', async () => {
    const main = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
    // Not spawnSync: blocking this process (the server's) for seconds lets the keep-alive timer close the
    // client's pooled socket just as the next test reuses it ("fetch failed").
    const p = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          main,
          'serve',
          '--generator',
          'no/such/generator.pt',
          '--clip',
          FIXTURE_FILES.clip,
        ],
        { timeout: 30_000 },
      );
      let stderr = '';
      child.stderr.on('data', (c) => {
        stderr += c;
      });
      child.on('close', (status) => resolve({ status, stderr }));
    });
    assert.equal(p.status, 2, p.stderr);
    assert.match(p.stderr, /--generator: file not found: no\/such\/generator\.pt/);
    assert.doesNotMatch(p.stderr, /at .*\.ts:\d+/, 'no stack trace');
  });

  test('upload a latent file and edit one of its images', async () => {
    const bytes = readFileSync(fx('stylegan2/wplus_trunc.npy'));
    const r = await post(`${base}/latents`, { name: 'wplus_trunc.npy', data: bytes.toString('base64') });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const images = r.json.images as { id: string }[];
    assert.equal(images.length, 2);
    const e = await post(`${base}/global`, { ...edit, image: images[1].id });
    assert.equal(e.status, 200);
    const m = await post(`${base}/mapper`, { image: images[0].id, mapper: 'mapper', strength: 1 });
    assert.equal(m.status, 200);
  });

  test('20 parallel edits are all answered, none lost', async () => {
    const reqs = Array.from({ length: 20 }, (_, i) =>
      post(`${base}/global`, { image: `seed:${i % 4}`, target: 'smiling face', alpha: -10 + i, beta: 0.1 }),
    );
    const answers = await Promise.all(reqs);
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(20).fill(200),
    );
    assert.equal(new Set(answers.map((a) => a.json.image)).size, 20, 'every answer is its own render');
  });

  test('optimization job: progress over SSE, final image', async () => {
    const r = await post(`${base}/jobs/optimize`, {
      image: 'seed:2',
      prompt: 'a person with purple hair',
      steps: 3,
    });
    assert.equal(r.status, 202);
    const ev = await jobEvents(base, r.json.id as string);
    const progress = ev.filter((e) => e.type === 'progress');
    assert.deepEqual(
      progress.map((e) => e.step),
      [1, 2, 3],
    );
    assert.ok(progress.every((e) => typeof e.loss === 'number'));
    const done = ev.at(-1)!;
    assert.equal(done.type, 'done');
    assert.match(done.image as string, /^data:image\/png/);
    const added = done.added as { id: string; label: string };
    assert.equal(added.label, 'optimized: a person with purple hair');
    const again = await post(`${base}/global`, { ...edit, image: added.id });
    assert.equal(again.status, 200, 'the result can be edited further');
    const st = await (await fetch(`${base}/jobs/${r.json.id}`)).json();
    assert.equal(st.state, 'done');
    assert.equal(st.position, null);
  });

  test('cancellation: a running job stops between steps, a queued one at once; queue positions', async () => {
    const a = await post(`${base}/jobs/optimize`, { image: 'seed:1', prompt: 'purple hair', steps: 1000 });
    const b = await post(`${base}/jobs/optimize`, { image: 'seed:1', prompt: 'blond hair', steps: 5 });
    assert.equal(b.status, 202);
    assert.equal(b.json.position, 1, 'the second job waits behind the first');
    const del = await fetch(`${base}/jobs/${b.json.id}`, { method: 'DELETE' });
    assert.equal(del.status, 202);
    const bev = await jobEvents(base, b.json.id as string);
    assert.equal(bev.at(-1)!.type, 'cancelled');
    // Wait for a step of the long job, then cancel it.
    for (;;) {
      const st = await (await fetch(`${base}/jobs/${a.json.id}`)).json();
      if (st.step >= 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await fetch(`${base}/jobs/${a.json.id}`, { method: 'DELETE' })).status, 202);
    const aev = await jobEvents(base, a.json.id as string);
    const last = aev.at(-1)!;
    assert.equal(last.type, 'cancelled');
    assert.ok((last.steps as number) < 1000);
    assert.equal(
      (await fetch(`${base}/jobs/${a.json.id}`, { method: 'DELETE' })).status,
      409,
      'already over',
    );
    assert.deepEqual(await (await fetch(`${base}/jobs`)).json(), { running: null, waiting: [] });
  });

  test('the queue is bounded: 16 jobs wait behind the running one, the next is a 429', async () => {
    const ids: string[] = [];
    const job = { image: 'seed:1', prompt: 'purple hair', steps: 1000 };
    for (let i = 0; i < 17; i++) {
      const r = await post(`${base}/jobs/optimize`, job);
      assert.equal(r.status, 202);
      ids.push(r.json.id as string);
    }
    const full = await post(`${base}/jobs/optimize`, job);
    assert.equal(full.status, 429);
    assert.match(full.json.error as string, /queue is full/);
    const last = await (await fetch(`${base}/jobs/${ids[16]}`)).json();
    assert.equal(last.position, 16);
    for (const id of ids.reverse()) await fetch(`${base}/jobs/${id}`, { method: 'DELETE' });
    await srv.queue.idle();
    assert.deepEqual(await (await fetch(`${base}/jobs`)).json(), { running: null, waiting: [] });
  });

  test('a failing job leaves the server healthy', async () => {
    const real = studio.optimize;
    studio.optimize = async () => {
      throw new Error('boom');
    };
    try {
      const r = await post(`${base}/jobs/optimize`, { image: 'seed:1', prompt: 'purple hair', steps: 3 });
      const ev = await jobEvents(base, r.json.id as string);
      assert.deepEqual(ev.at(-1), { type: 'failed', error: 'boom' });
    } finally {
      studio.optimize = real;
    }
    const ok = await post(`${base}/global`, edit);
    assert.equal(ok.status, 200);
    const health = await (await fetch(`${base}/health`)).json();
    assert.equal(health.ok, true);
  });

  test('a loopback server refuses other Host names (DNS rebinding)', async () => {
    // fetch() will not send a foreign Host header, node:http will.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/health`, { headers: { host: 'evil.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 403);
  });
});
