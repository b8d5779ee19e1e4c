import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MapperApplier } from '../../src/edit/mapper/apply.js';
import { loadMapper, rosinalityStateDict, saveMapper } from '../../src/edit/mapper/checkpoint.js';
import { MapperObjective, MapperTargets } from '../../src/edit/mapper/loss.js';
import {
  initMapperWeights,
  MapperGraph,
  parameterCount,
  styleSpaceSpec,
  wplusSpec,
} from '../../src/edit/mapper/model.js';
import { Graph } from '../../src/graph/graph.js';
import { parseNpy } from '../../src/io/npy.js';
import { loadTorch } from '../../src/io/torch.js';
import { loadArcFace } from '../../src/models/arcface/load.js';
import { ClipEncoder } from '../../src/models/clip/encoder.js';
import { loadClip } from '../../src/models/clip/load.js';
import { fromRosinality, loadGenerator } from '../../src/models/stylegan2/load.js';
import { compile } from '../../src/runtime/session.js';
import { assertClose } from '../helpers.js';

const fx = (p: string) => new URL(`../fixtures/${p}`, import.meta.url).pathname;
const f32 = (p: string) => parseNpy(new Uint8Array(readFileSync(fx(p)))).data as Float32Array;
const MAPPER = fx('mapper/mapper.pt');

/** The fixture mapper and the loss models of its training fixtures. */
async function fixtureModels() {
  const m = loadMapper(MAPPER);
  const clip = loadClip(fx('clip/clip.pt'));
  const textFeatures = await new ClipEncoder(clip).encodeTexts(['a person with purple hair']);
  const arcface = loadArcFace(fx('arcface/irse.pth'), { stageUnits: [1, 1, 2, 1] });
  return { m, models: { generator: m.decoder!, clip, textFeatures, arcface } };
}

/** train_losses and the gradient of course_mapping.mapping.1.weight, as the training fixtures give them. */
function assertTrainFixtures(r: Awaited<ReturnType<MapperObjective['run']>>, label: string): void {
  const l = r.losses;
  assertClose([l.loss, l.loss_id, l.loss_clip, l.loss_l2_latent], f32('mapper/train_losses.npy'), {
    what: `losses (${label})`,
  });
  assertClose(
    r.grads.get('course_mapping.mapping.1.weight')!,
    f32('mapper/grad_course_mapping_mapping_1_weight.npy'),
    { rtol: 1e-3, atol: 0, what: `grad (${label})` },
  );
}

describe('mapper checkpoint (official layout)', () => {
  test('architecture and flags from opts and the key set; the decoder half', () => {
    const m = loadMapper(MAPPER);
    assert.equal(m.weights.spec.type, 'LevelsMapper');
    assert.deepEqual(
      [m.weights.spec.noCoarse, m.weights.spec.noMedium, m.weights.spec.noFine],
      [false, false, false],
    );
    assert.equal(m.weights.params.size, 24);
    assert.equal(parameterCount(m.weights), 3 * 4 * (512 * 512 + 512));
    assert.equal(m.opts.description, 'purple hair');
    assert.equal(m.decoder?.config.size, 64);
    assert.equal(m.decoder?.config.nLatent, 10);
  });
});

describe('mapper forward parity (mapper.pt)', () => {
  const w = f32('stylegan2/wplus_trunc.npy');
  test('delta = mapper(wplus_trunc), parameters as graph inputs and as constants', async () => {
    const m = loadMapper(MAPPER);
    const g = new Graph();
    const x = g.input('w', [2, 10, 512]);
    const Mi = new MapperGraph(g, m.weights, 'input');
    const Mc = new MapperGraph(g, m.weights, 'const');
    const exe = await compile({ a: Mi.delta(x), b: Mc.delta(x) });
    const feeds: Record<string, { shape: number[]; data: Float32Array }> = {
      w: { shape: [2, 10, 512], data: w },
    };
    for (const [k, v] of Mi.inputs) feeds[v.name!] = m.weights.params.get(k)!;
    const o = await exe.run(feeds);
    assertClose(o.a.data as Float32Array, f32('mapper/delta.npy'), { what: 'delta (inputs)' });
    assertClose(o.b.data as Float32Array, f32('mapper/delta.npy'), { what: 'delta (constants)' });
  });

  test('img_mapped = G(w + 0.1·M(w)) with the checkpoint decoder; w_hat', async () => {
    const m = loadMapper(MAPPER);
    const ap = await MapperApplier.create(m.weights, m.decoder!, { batch: 2 });
    const r = await ap.run(w);
    assertClose(r.image!, f32('mapper/img_mapped.npy'), { what: 'img_mapped' });
    const d = f32('mapper/delta.npy');
    assertClose(
      r.edited,
      w.map((v, i) => v + Math.fround(0.1 * d[i])),
      { what: 'w_hat' },
    );
    // strength 0 is the identity edit
    const r0 = await ap.run(w, 0);
    assertClose(r0.edited, w, { rtol: 0, atol: 0, what: 'strength 0' });
  });

  test('--no-fine etc. give zeros for that part', async () => {
    const m = loadMapper(MAPPER);
    const spec = { ...m.weights.spec, noFine: true };
    const params = new Map([...m.weights.params].filter(([k]) => !k.startsWith('fine_mapping')));
    const g = new Graph();
    const x = g.input('w', [2, 10, 512]);
    const exe = await compile({ d: new MapperGraph(g, { spec, params }).delta(x) });
    const o = (await exe.run({ w: { shape: [2, 10, 512], data: w } })).d.data as Float32Array;
    const ref = f32('mapper/delta.npy');
    // Rows 0..7 (coarse and medium) are the reference's; rows 8, 9 (fine) are exactly zero.
    const rows = (a: Float32Array, from: number, to: number) =>
      Float32Array.from([0, 1].flatMap((b) => [...a.subarray((b * 10 + from) * 512, (b * 10 + to) * 512)]));
    assertClose(rows(o, 0, 8), rows(ref, 0, 8), { what: 'delta without the fine mapper' });
    assert.ok(
      rows(o, 8, 10).every((v) => v === 0),
      'the fine rows are zero',
    );
  });
});

describe('mapper training objective parity', () => {
  let res: Awaited<ReturnType<MapperObjective['run']>>;
  before(async () => {
    const { m, models } = await fixtureModels();
    const obj = await MapperObjective.create(m.weights, models, { batch: 2 });
    res = await obj.run(m.weights.params, f32('stylegan2/wplus_trunc.npy'));
  });

  test('train_losses [total, id, clip, l2] and d total / d course_mapping.mapping.1.weight', () => {
    assertTrainFixtures(res, 'one graph');
    assert.equal(res.grads.size, 24);
  });

  test('micro-batches of 1 give the same losses and gradients', async () => {
    const { m, models } = await fixtureModels();
    const obj = await MapperObjective.create(m.weights, models, { batch: 2, microBatch: 1 });
    const r = await obj.run(m.weights.params, f32('stylegan2/wplus_trunc.npy'));
    assertTrainFixtures(r, 'micro');
    assertClose(r.xHat, f32('mapper/img_mapped.npy'), { what: 'x_hat (micro)' });
  });
});

describe('mapper save / load', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mapper-ck-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('full layout round trip: same keys as the official file, decoder bit-exact through rosinality keys', () => {
    const m = loadMapper(MAPPER);
    const file = join(dir, 'full.pt');
    saveMapper(file, m.weights, { opts: m.opts, decoder: m.decoder! });
    const ours = loadTorch(file);
    const theirs = loadTorch(MAPPER);
    const strip = (k: string) => k.replace(/^state_dict\./, '');
    assert.deepEqual(
      [...ours.tensors.keys()].map(strip).sort(),
      [...theirs.tensors.keys()].map(strip).sort(),
    );
    for (const [k, t] of theirs.tensors) {
      const a = ours.tensors.get(k)!;
      assert.deepEqual(a.shape, t.shape, k);
      assertClose(a.data as Float32Array, t.data as Float32Array, { rtol: 1e-6, atol: 0, what: k });
    }
    const back = loadMapper(file);
    assert.deepEqual(back.weights.spec, m.weights.spec);
    assert.equal((back.opts as { description: string }).description, 'purple hair');
    assert.equal(back.opts.mapper_type, 'LevelsMapper');
  });

  test('mapper-only file, a SingleMapper, a LevelsMapper without its fine part', () => {
    const m = loadMapper(MAPPER);
    const only = join(dir, 'only.pt');
    saveMapper(only, m.weights, { opts: { description: 'purple hair' } });
    const back = loadMapper(only);
    assert.equal(back.decoder, null);
    for (const [k, p] of m.weights.params) assert.deepEqual(back.weights.params.get(k)!.data, p.data);
    assert.ok(statSync(only).size < 12.7e6 && statSync(only).size > 12.5e6, `${statSync(only).size}`);

    for (const spec of [wplusSpec({ type: 'SingleMapper' }), wplusSpec({ noFine: true })]) {
      const f = join(dir, `${spec.type}.pt`);
      saveMapper(f, initMapperWeights(spec, 3));
      const b = loadMapper(f);
      assert.deepEqual(b.weights.spec, spec);
    }
  });

  test('a StyleSpace mapper round-trips with work_in_stylespace and mapper_N keys', () => {
    const G = loadGenerator(fx('stylegan2/generator.pt'));
    const spec = styleSpaceSpec(G.config.styleDims, G.config.styleIsToRGB);
    const f = join(dir, 'ss.pt');
    saveMapper(f, initMapperWeights(spec, 1), { decoder: G });
    const b = loadMapper(f);
    assert.deepEqual(b.weights.spec, spec);
    assert.equal(b.opts.work_in_stylespace, true);
    assert.ok(b.weights.params.has('mapper_0.mapping.1.weight'));
    assert.ok(!b.weights.params.has('mapper_1.mapping.1.weight'));
  });

  test('rosinalityStateDict inverts the rosinality key map', () => {
    const G = loadGenerator(fx('stylegan2/generator.pt'));
    const back = fromRosinality('<mem>', rosinalityStateDict(G), { prefix: '', latentAvgKey: null });
    assertClose(back.convs[3].conv.weight, G.convs[3].conv.weight, { rtol: 1e-6, atol: 0, what: 'conv' });
    assertClose(back.mapping[1].weight, G.mapping[1].weight, { rtol: 1e-6, atol: 0, what: 'mapping' });
  });

  test('clear errors: not a mapper, opts contradicting the keys', () => {
    assert.throws(() => loadMapper(fx('stylegan2/generator.pt')), /no mapper\.\* tensors/);
    const m = loadMapper(MAPPER);
    const f = join(dir, 'bad.pt');
    saveMapper(f, m.weights, { opts: { no_fine_mapper: true } });
    assert.throws(() => loadMapper(f), /fine_mapping/);
  });

  test('ID targets rendered once (MapperTargets) and fed back give the same losses, gradients and x', async () => {
    const { m, models } = await fixtureModels();
    const w = f32('stylegan2/wplus_trunc.npy');
    const targets = await MapperTargets.create(models, { microBatch: 1, features: true });
    const t = await targets.compute(w);
    assert.equal(t.features.length, 2 * models.arcface.config.embedDim);
    const plain = await MapperObjective.create(m.weights, models, { batch: 2, grads: false });
    assertClose(t.x, (await plain.run(m.weights.params, w)).x!, { what: 'x = G(w)' });
    const obj = await MapperObjective.create(m.weights, models, { batch: 2, microBatch: 1, targets: true });
    await assert.rejects(obj.run(m.weights.params, w), /ID target features/);
    const r = await obj.run(m.weights.params, w, t.features);
    assert.equal(r.x, undefined);
    assertTrainFixtures(r, 'targets');
  });
});
