/**
 * A real published file: StyleCLIP's own `global_directions/data/ffhq/w_plus.npy` (68 e4e inversions of FFHQ
 * faces, MIT licence; test/fixtures/real/). Read with readLatents, rendered with a random 1024 generator, and
 * served as the web app's gallery.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readLatents, StyleGAN2 } from '../../src/index.js';
import { loadModels, type RunningServer, Studio, startServer } from '../../src/server/index.js';
import { assertRendered, scratch } from './helpers.js';
import { randomGenerator, writeRosinality } from './layouts.js';

const W_PLUS = 'test/fixtures/real/w_plus.npy';
const tmp = scratch('gallery');
const gen = tmp.path('stylegan2-ffhq-config-f.pt');

before(() => writeRosinality(gen, randomGenerator(1024, 6)));
after(() => tmp.remove());

test('w_plus.npy: 68 W+ latents [18, 512], finite, in the range e4e inversions have', () => {
  const set = readLatents(W_PLUS, 18, 512);
  assert.equal(set.count, 68);
  assert.equal(set.broadcast, false);
  const x = set.gather([0, 67]);
  assert.equal(x.length, 2 * 18 * 512);
  let maxAbs = 0;
  for (const v of set.data) {
    assert.ok(Number.isFinite(v));
    maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  assert.ok(maxAbs > 0.5 && maxAbs < 100, `max |w| ${maxAbs}`);
  // the 18 rows of an inversion differ (W+, not a broadcast w)
  assert.notDeepEqual(x.subarray(0, 512), x.subarray(17 * 512, 18 * 512));
});

test('a w_plus.npy latent renders at 1024² with a 1024 generator', async () => {
  const G = StyleGAN2.load(gen);
  assertRendered(await G.synthesize(readLatents(W_PLUS, 18, 512).gather([5])), 1024);
});

let srv: RunningServer | undefined;
after(async () => srv?.close());

test('the web app serves w_plus.npy as its gallery, and shows an image of it', async () => {
  const studio = new Studio(
    loadModels({ generator: gen, clip: 'test/fixtures/clip/clip.pt', latents: W_PLUS }),
    { seeds: 0 },
  );
  srv = await startServer(studio, { port: 0, log: () => {} });
  const api = `${srv.url}/api`;
  const g = (await (await fetch(`${api}/gallery`)).json()) as { images: { id: string }[] };
  assert.equal(g.images.length, 68);
  assert.deepEqual(
    g.images.slice(0, 3).map((i) => i.id),
    ['latents:0', 'latents:1', 'latents:2'],
  );
  const file = readLatents(W_PLUS, 18, 512);
  assert.deepEqual(await studio.wplus('latents:67'), file.gather([67]));
  const res = await fetch(`${api}/images/latents:67`);
  assert.equal(res.status, 200);
  const img = (await res.json()) as { image: string };
  assert.match(img.image, /^data:image\/png;base64,/);
  const png = Buffer.from(img.image.slice(img.image.indexOf(',') + 1), 'base64');
  assert.equal(png.readUInt32BE(16), 1024, 'the gallery image is the full 1024² render');
});
