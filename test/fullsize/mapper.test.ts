/**
 * Full size: StyleCLIP's mapper checkpoints as published (`{state_dict: mapper.* + decoder.* (a 1024
 * generator), opts}`), and a mapper-only file, written with random weights, loaded through the library and
 * applied through `styleclip mapper apply`, rendering 1024² once each.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadMapper, MapperApplier } from '../../src/index.js';
import { assertCliOk, assertImage, cli, scratch } from './helpers.js';
import { describeArchive, manifest, manifestTensors, randomGenerator, writeMapper } from './layouts.js';

const tmp = scratch('mapper');
const withDecoder = tmp.path('purple_hair.pt');
const mapperOnly = tmp.path('mapper_only.pt');

before(() => {
  writeMapper(withDecoder, randomGenerator(1024, 2));
  writeMapper(mapperOnly, null);
});
after(() => tmp.remove());

test('mapper + 1024 decoder: every tensor as torch wrote it, and the opts torch wrote', () => {
  const m = manifest()['mapper1024.pt'];
  const want = manifestTensors(m);
  const have = describeArchive(withDecoder);
  assert.deepEqual(
    [...have.keys()],
    want.map((t) => t.key),
  );
  for (const t of want) {
    const { key, ...layout } = t;
    assert.deepEqual(have.get(key), layout, key);
  }
  const opts = loadMapper(withDecoder, { withDecoder: false }).opts;
  for (const v of m.tensors)
    if ('python' in v) assert.deepEqual(opts[v.key.slice('opts.'.length)], v.value, v.key);
});

test('mapper + 1024 decoder: the library reads both halves; `mapper apply` renders with its decoder', async () => {
  const ck = loadMapper(withDecoder);
  assert.ok(ck.decoder, 'the decoder.* generator');
  assert.equal(ck.decoder.config.size, 1024);
  assert.equal(ck.weights.spec.type, 'LevelsMapper');
  const out = tmp.path('edit-decoder.png');
  const r = cli(['mapper', 'apply', '--mapper', withDecoder, '--seed', '1', '--no-before', '--out', out]);
  assertCliOk(r, 'mapper apply (checkpoint decoder)');
  await assertImage(out, 1024);
});

test('mapper-only file: the library applies it without a decoder; the CLI renders it with --generator', async () => {
  const ck = loadMapper(mapperOnly);
  assert.equal(ck.decoder, null);
  assert.equal(ck.weights.params.size, 24);
  const G = loadMapper(withDecoder).decoder!;
  const apply = await MapperApplier.create(ck.weights, G, { render: false });
  const w = new Float32Array(18 * 512).map((_, i) => Math.cos(i * 0.11) * 0.5);
  const r = await apply.run(w);
  assert.deepEqual(r.editedShape, [1, 18, 512]);
  assert.ok(r.edited.every(Number.isFinite));
  assert.notDeepEqual(r.edited, w);
  // A mapper file with a decoder doubles as the generator, as StyleCLIP users pass it.
  const out = tmp.path('edit.png');
  const c = cli([
    'mapper',
    'apply',
    '--mapper',
    mapperOnly,
    '--generator',
    withDecoder,
    '--seed',
    '1',
    '--no-before',
    '--out',
    out,
  ]);
  assertCliOk(c, 'mapper apply (mapper-only + --generator)');
  await assertImage(out, 1024);
});
