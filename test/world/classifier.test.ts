/**
 * The attribute classifier on a tiny configuration: output shapes, the loss against the host's
 * cross-entropy of the returned logits, a gradient against finite differences, one Adam step lowering the
 * loss, masking of eyes behind sunglasses, and the float16 file round trip with named key errors.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Adam } from '../../src/edit/optim.js';
import { saveSafetensors } from '../../src/io/safetensors.js';
import { FAMILIES, FAMILY_NAMES, type Labels, sampleFace } from '../../src/world/attributes.js';
import {
  AttributeClassifier,
  type ClassifierConfig,
  type ClassifierParams,
  ClassifierStep,
  DEFAULT_CLASSIFIER,
  decodeLogits,
  initClassifier,
  loadClassifier,
  saveClassifier,
  targetsOf,
} from '../../src/world/classifier.js';
import { degrade, drawBatch, trainClassifier } from '../../src/world/train-classifier.js';

const TINY: ClassifierConfig = { ...DEFAULT_CLASSIFIER, size: 32, channels: [4, 8, 8, 8], hidden: 16 };
const B = 4;

/** The host's Σ_f mean_n mask·CE from logits [B, Σ values]. */
function hostLoss(config: ClassifierConfig, logits: Float32Array, labels: Labels[]): number {
  const { onehot, mask } = targetsOf(config, labels);
  const width = onehot.length / labels.length;
  let total = 0;
  labels.forEach((_, n) => {
    let o = 0;
    config.families.forEach((f, j) => {
      const row = Array.from(logits.subarray(n * width + o, n * width + o + f.values.length));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      const t = row.findIndex((_, k) => onehot[n * width + o + k] === 1);
      total += (mask[n * config.families.length + j] * (lse - row[t])) / labels.length;
      o += f.values.length;
    });
  });
  return total;
}

const clone = (p: ClassifierParams): ClassifierParams =>
  new Map([...p].map(([k, v]) => [k, { shape: v.shape, data: v.data.slice() }]));

describe('world attribute classifier', () => {
  let dir: string;
  let batch: { x: Float32Array; labels: Labels[] };
  let step: ClassifierStep;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'styleclip-classifier-'));
    const b = await drawBatch(0, B, TINY.size);
    batch = { x: b.x, labels: b.faces.map((f) => f.labels) };
    step = await ClassifierStep.create(TINY, initClassifier(TINY, 1), B, 1);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('has one head per family, as wide as its values', () => {
    const p = initClassifier(DEFAULT_CLASSIFIER, 0);
    const width = FAMILY_NAMES.reduce((a, f) => a + FAMILIES[f].length, 0);
    assert.deepEqual(p.get('heads.weight')!.shape, [width, 128]);
    assert.deepEqual(p.get('fc.weight')!.shape, [128, 64 * 4 * 4]); // 64² → 4² after four stride-2 convs
  });

  it('gives the loss of its logits and a gradient of every parameter', async () => {
    const params = initClassifier(TINY, 1);
    const r = await step.run(params, batch.x, batch.labels);
    assert.equal(r.logits.length, B * 34);
    assert.ok(Math.abs(r.loss - hostLoss(TINY, r.logits, batch.labels)) < 1e-4 * r.loss);
    for (const [k, p] of params) {
      const g = r.grads.get(k)!;
      assert.equal(g.length, p.data.length, k);
      assert.ok(g.every(Number.isFinite), k);
    }
  });

  it('agrees with finite differences along the gradient of the head weights', async () => {
    const params = initClassifier(TINY, 2);
    const r = await step.run(params, batch.x, batch.labels);
    const g = r.grads.get('heads.weight')!;
    const norm = Math.hypot(...g);
    const eps = 1e-2;
    const at = (t: number) => {
      const p = clone(params);
      const w = p.get('heads.weight')!.data;
      for (let i = 0; i < w.length; i++) w[i] += (t * g[i]) / norm;
      return step.run(p, batch.x, batch.labels);
    };
    const numeric = ((await at(eps)).loss - (await at(-eps)).loss) / (2 * eps);
    assert.ok(Math.abs(numeric - norm) < 2e-2 * norm, `numeric ${numeric} vs |grad| ${norm}`);
  });

  it('lowers the loss in one Adam step', async () => {
    const params = initClassifier(TINY, 3);
    const before = await step.run(params, batch.x, batch.labels);
    const adam = new Adam({ lr: 3e-3 });
    adam.step(
      [...params].map(([name, p]) => ({ name, data: p.data, grad: before.grads.get(name)!, shape: p.shape })),
    );
    const afterStep = await step.run(params, batch.x, batch.labels);
    assert.ok(afterStep.loss < before.loss, `${before.loss} -> ${afterStep.loss}`);
  });

  it('masks the eyes of faces with sunglasses', () => {
    const L = sampleFace(0).labels;
    const { mask } = targetsOf(TINY, [
      { ...L, glasses: 'sunglasses' },
      { ...L, glasses: 'glasses' },
    ]);
    const e = FAMILY_NAMES.indexOf('eyes');
    assert.equal(mask[e], 0);
    assert.equal(mask[FAMILY_NAMES.length + e], 1);
  });

  it('round-trips through a float16 safetensors file and predicts the same labels', async () => {
    const params = initClassifier(TINY, 4);
    const file = join(dir, 'clf.safetensors');
    saveClassifier(file, TINY, params);
    const loaded = loadClassifier(file);
    assert.deepEqual(loaded.config.channels, TINY.channels);
    assert.equal(loaded.config.hidden, TINY.hidden);
    const w = params.get('convs.0.weight')!.data;
    const v = loaded.params.get('convs.0.weight')!.data;
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i] - v[i]) <= 1e-3 * Math.abs(w[i]) + 1e-7);
    const clf = new AttributeClassifier(loaded.config, loaded.params, 1);
    const { labels } = await clf.predict(batch.x, B);
    assert.equal(labels.length, B);
    const direct = await step.run(params, batch.x, batch.labels);
    assert.deepEqual(labels, decodeLogits(TINY, direct.logits, B).labels);
  });

  it('names missing and unexpected keys', () => {
    const file = join(dir, 'bad.safetensors');
    const t = (n: number) => ({ dtype: 'float32' as const, shape: [n], data: new Float32Array(n) });
    saveSafetensors(
      file,
      { 'convs.0.weight': { ...t(4 * 3 * 9), shape: [4, 3, 3, 3] }, extra: t(1) },
      {
        format: 'styleclip-ts/world-classifier/1',
        size: '32',
        families: JSON.stringify(TINY.families),
      },
    );
    assert.throws(() => loadClassifier(file), /missing convs\.0\.weight or fc\.weight/);
    saveSafetensors(file, { x: t(1) }, { format: 'other' });
    assert.throws(() => loadClassifier(file), /not a world classifier/);
  });

  it('degrade (--augment) is deterministic per seed, stays in [-1, 1] and changes the image a little', () => {
    const a = batch.x.slice();
    const b = batch.x.slice();
    degrade(a, B, TINY.size, 7);
    degrade(b, B, TINY.size, 7);
    assert.deepEqual(a, b);
    let diff = 0;
    for (let i = 0; i < a.length; i++) {
      assert.ok(a[i] >= -1 && a[i] <= 1);
      diff += Math.abs(a[i] - batch.x[i]);
    }
    const mean = diff / a.length;
    assert.ok(mean > 1e-3 && mean < 0.1, `mean change ${mean}`);
  });

  it('trains, stops, and resumes from its checkpoint to the same step count', async () => {
    const out = join(dir, 'train');
    const o = {
      outDir: out,
      steps: 2,
      batch: B,
      lr: 1e-3,
      seed: 0,
      saveEvery: 1,
      logEvery: 1,
      evalCount: 8,
      evalEvery: 0,
      threads: 1,
      config: TINY,
    };
    const first = await trainClassifier(o);
    assert.equal(first.step, 2);
    assert.ok(existsSync(join(out, 'classifier.safetensors')));
    const second = await trainClassifier({ ...o, steps: 3 });
    assert.equal(second.step, 3);
    const steps = readFileSync(join(out, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((r) => 'loss' in r)
      .map((r) => r.step);
    assert.deepEqual(steps, [1, 2, 3]);
    await assert.rejects(() => trainClassifier({ ...o, steps: 4, augment: true }), /without --augment/);
  });
});
