import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { loadModels, type RunningServer, Studio, startServer } from '../../src/server/index.js';
import { setPhotoEncoder } from '../../src/server/invert.js';
import { fixture } from '../helpers.js';
import { jobEvents } from '../server/helpers.js';

let srv: RunningServer;
before(async () => {
  setPhotoEncoder(null); // the fixture e4e makes W+ [8, 24]; the fixture generator takes [10, 512]
  const studio = new Studio(
    loadModels({ generator: fixture('stylegan2/generator.pt'), clip: fixture('clip/clip.pt') }),
    {
      seeds: 1,
    },
  );
  srv = await startServer(studio, { port: 0, log: () => {} });
});
after(() => srv.close());

const post = async (path: string, body: unknown) => {
  const res = await fetch(`${srv.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

describe('web app: photo upload → aligned, inverted, in the gallery', () => {
  test('POST /api/jobs/invert: progress over SSE, then a new gallery latent that renders', async () => {
    const data = readFileSync(fixture('photos/astronaut.png')).toString('base64');
    const r = await post('/api/jobs/invert', { name: 'astronaut.png', data, steps: 2 });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const ev = await jobEvents(`${srv.url}/api`, r.json.id as string);
    const stages = ev.filter((e) => e.type === 'progress').map((e) => e.stage);
    assert.ok(stages.includes('align') && stages.includes('optimize'), `stages ${stages}`);
    const done = ev.at(-1)!;
    assert.equal(done.type, 'done', JSON.stringify(done).slice(0, 300));
    const added = done.added as { id: string; label: string };
    assert.match(added.id, /^upload:u\d+:0$/);
    assert.equal(added.label, 'astronaut.npy #0');
    assert.match(done.image as string, /^data:image\/png;base64,/);
    assert.equal(typeof done.psnr, 'number');
    const gallery = (await (await fetch(`${srv.url}/api/gallery`)).json()) as { images: { id: string }[] };
    assert.ok(gallery.images.some((i) => i.id === added.id));
    const img = await fetch(`${srv.url}/api/images/${encodeURIComponent(added.id)}`);
    assert.equal(img.status, 200);
  });

  test('a file that is not a photo fails the job with the reason; a bad request is a 400', async () => {
    const r = await post('/api/jobs/invert', {
      name: 'notes.txt',
      data: Buffer.from('hello').toString('base64'),
    });
    assert.equal(r.status, 202);
    const done = (await jobEvents(`${srv.url}/api`, r.json.id as string)).at(-1)!;
    assert.equal(done.type, 'failed');
    assert.match(done.error as string, /notes\.txt.*is not an image/);
    const bad = await post('/api/jobs/invert', { name: 'x.png', data: 'aGk=', steps: 0 });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error as string, /steps 0 needs an encoder/);
  });
});
