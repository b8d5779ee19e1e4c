/**
 * Full size: ArcFace IR-SE50 `model_ir_se50.pth` (units 3, 4, 14, 3) in both torch formats: the legacy
 * (pre-1.6) torch.save it is published in, and the zip format a re-save gives. Written with random weights,
 * loaded through the library (one forward at 112²), and used for the ID loss by `styleclip optimize`.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { compile, Graph, loadArcFace } from '../../src/index.js';
import { loadArcFaceStateDict } from '../../src/models/arcface/load.js';
import { assertCliOk, cli, scratch } from './helpers.js';
import { writeIrse50 } from './layouts.js';

const tmp = scratch('arcface');
const legacy = tmp.path('model_ir_se50.pth');
const zip = tmp.path('model_ir_se50_zip.pth');

before(() => {
  writeIrse50(legacy, 'legacy');
  writeIrse50(zip, 'zip');
});
after(() => tmp.remove());

test('both torch formats hold the same IR-SE50; the library infers it and runs it at 112²', async () => {
  const a = loadArcFaceStateDict(legacy);
  const b = loadArcFaceStateDict(zip);
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, t] of a) assert.deepEqual(b.get(k), t, k);
  const model = loadArcFace(legacy);
  assert.deepEqual(model.config.stageUnits, [3, 4, 14, 3]);
  assert.deepEqual(model.config.stageWidths, [64, 128, 256, 512]);
  const g = new Graph();
  const feats = model.forward(g.input('x', [1, 3, 112, 112]));
  const exe = await compile({ feats });
  const x = new Float32Array(3 * 112 * 112).map((_, i) => Math.sin(i * 0.05));
  const out = (await exe.run({ x: { shape: [1, 3, 112, 112], data: x } })).feats;
  assert.deepEqual(out.shape, [1, 512]);
  assert.ok((out.data as Float32Array).every(Number.isFinite));
  await exe.release?.();
});

test('`styleclip optimize --arcface` uses the legacy file for the ID loss', () => {
  const out = tmp.path('opt');
  const r = cli([
    'optimize',
    '--generator',
    'test/fixtures/stylegan2/generator.pt',
    '--clip',
    'test/fixtures/clip/clip.pt',
    '--arcface',
    legacy,
    '--id-lambda',
    '0.1',
    '--steps',
    '1',
    '--prompt',
    'a face',
    '--out',
    out,
  ]);
  assertCliOk(r, 'optimize --arcface');
  assert.match(r.stdout + r.stderr, /id /);
});
