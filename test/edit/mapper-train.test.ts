import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Command } from 'commander';
import { UserError } from '../../src/cli/common.js';
import { mapperCommand } from '../../src/cli/mapper.js';
import { loadMapper } from '../../src/edit/mapper/checkpoint.js';
import { BatchOrder, sampleLatents } from '../../src/edit/mapper/data.js';
import { DEFAULT_LAMBDAS } from '../../src/edit/mapper/loss.js';
import { initMapperWeights, styleSpaceSpec, wplusSpec } from '../../src/edit/mapper/model.js';
import { MapperTrainer, type TrainOptions } from '../../src/edit/mapper/train.js';
import { readNpyF32 } from '../../src/io/npy.js';
import { loadArcFace } from '../../src/models/arcface/load.js';
import type { ArcFaceModel } from '../../src/models/arcface/model.js';
import { ClipEncoder } from '../../src/models/clip/encoder.js';
import { loadClip } from '../../src/models/clip/load.js';
import type { ClipModel } from '../../src/models/clip/model.js';
import type { LatentSet } from '../../src/models/stylegan2/latents.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import type { GeneratorWeights } from '../../src/models/stylegan2/weights.js';
import { assertClose } from '../helpers.js';

const fx = (p: string) => new URL(`../fixtures/${p}`, import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'mapper-train-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let G: GeneratorWeights;
let clip: ClipModel;
let arcface: ArcFaceModel;
let textFeatures: Float32Array;
let data: { train: LatentSet; test: LatentSet };
before(async () => {
  G = loadGenerator(fx('stylegan2/generator.pt'));
  clip = loadClip(fx('clip/clip.pt'));
  arcface = loadArcFace(fx('arcface/irse.pth'), { stageUnits: [1, 1, 2, 1] });
  textFeatures = await new ClipEncoder(clip).encodeTexts(['a person with purple hair']);
  data = { train: await sampleLatents(G, 6, 1), test: await sampleLatents(G, 2, 2) };
});

const options = (outDir: string, steps: number): TrainOptions => ({
  outDir,
  prompt: 'a person with purple hair',
  steps,
  batch: 2,
  lr: 0.5,
  optim: 'ranger',
  lambdas: DEFAULT_LAMBDAS,
  valInterval: 4,
  saveInterval: 4,
  imageInterval: 100,
  logInterval: 1,
  valSamples: 2,
  seed: 0,
});

describe('mapper training', () => {
  test('the batch order is a pure function of (seed, step): permutations per epoch, drop last', () => {
    const a = new BatchOrder(7, 2, 3);
    const b = new BatchOrder(7, 2, 3);
    const seen = [0, 1, 2].flatMap((s) => a.indices(s));
    assert.equal(new Set(seen).size, 6); // one epoch: 3 batches, no repeats, one latent dropped
    assert.deepEqual(b.indices(4), a.indices(4));
    assert.deepEqual(new BatchOrder(7, 2, 3).indices(1), a.indices(1));
  });

  test('resume: 8 steps straight = 4 steps, interrupt (Ctrl-C), resume, 4 more: identical weights', async () => {
    const models = { generator: G, clip, textFeatures, arcface };
    const straightDir = join(tmp, 'straight');
    const straight = initMapperWeights(wplusSpec(), 0);
    const A = await MapperTrainer.create(straight, models, data, options(straightDir, 8));
    await A.train();
    // 8 steps of 2 over 6 latents (16 samples): G(w) was rendered for each latent's ID target once
    assert.equal(A.trainRenders, 6);

    const splitDir = join(tmp, 'split');
    const first = initMapperWeights(wplusSpec(), 0);
    const B = await MapperTrainer.create(first, models, data, {
      ...options(splitDir, 8),
      saveInterval: 1000,
    });
    const r = await B.train({ shouldStop: () => B.step >= 4 });
    assert.deepEqual([r.step, r.interrupted], [4, true]);
    assert.ok(r.lastCheckpoint?.endsWith('iteration_4.pt'));

    const ck = loadMapper(r.lastCheckpoint!, { withDecoder: false });
    const C = await MapperTrainer.create(ck.weights, models, data, options(splitDir, 8), ck.trainState);
    assert.equal(C.step, 4);
    await C.train();
    for (const [k, p] of straight.params)
      assert.deepEqual(ck.weights.params.get(k)!.data, p.data, `${k} differs after resume`);

    // metrics: one train line per step, validation at 4 and 8; the resumed log has no duplicates
    const lines = (dir: string) =>
      readFileSync(join(dir, 'logs', 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { split: string; step: number; loss: number });
    const a = lines(straightDir);
    const c = lines(splitDir);
    assert.deepEqual(
      c.map((l) => `${l.split}${l.step}`),
      a.map((l) => `${l.split}${l.step}`),
    );
    assert.deepEqual(
      c.map((l) => l.loss),
      a.map((l) => l.loss),
    );
    assert.equal(a.filter((l) => l.split === 'test').length, 2);
    for (const f of ['iteration_4.pt', 'iteration_8.pt', 'best_model.pt', 'best_mapper.pt'])
      assert.ok(existsSync(join(straightDir, 'checkpoints', f)), f);
    assert.ok(existsSync(join(straightDir, 'logs', 'images_train', '00001.jpg')));
    assert.ok(existsSync(join(straightDir, 'logs', 'images_val', '00004.jpg')));
    // the official layout: best_model.pt has the decoder, best_mapper.pt does not
    assert.ok(loadMapper(join(straightDir, 'checkpoints', 'best_model.pt')).decoder);
    assert.equal(loadMapper(join(straightDir, 'checkpoints', 'best_mapper.pt')).decoder, null);
  });

  test('a StyleSpace mapper trains end to end and its loss on a fixed batch goes down', async () => {
    const w = initMapperWeights(styleSpaceSpec(G.config.styleDims, G.config.styleIsToRGB), 0);
    const before0 = w.params.get('mapper_0.mapping.1.weight')!.data.slice();
    // One batch of two latents, seen at every step: the loss before each step must fall.
    const fixed = { train: data.test, test: data.test };
    const T = await MapperTrainer.create(w, { generator: G, clip, textFeatures }, fixed, {
      ...options(join(tmp, 'ss'), 4),
      // Ranger's first steps are plain momentum SGD (RAdam's variance is not yet tractable), which moves
      // this loss by 1e-7 in 4 steps; Adam's sign-like steps show that the gradient reaches the mapper.
      optim: 'adam',
      lr: 0.01,
      lambdas: { clip: 1, l2: 0.8, id: 0 },
      valInterval: 100,
      saveInterval: 2,
    });
    const losses: number[] = [];
    await T.train({ onStep: (i) => losses.push(i.losses.loss) });
    process.stdout.write(`# StyleSpace mapper losses ${losses.map((l) => l.toPrecision(10)).join(' ')}\n`);
    assert.equal(losses.length, 4);
    assert.ok(losses.every(Number.isFinite));
    for (let i = 1; i < 4; i++) assert.ok(losses[i] < losses[i - 1], `loss rose at step ${i}: ${losses}`);
    assert.ok(
      losses[3] < losses[0] * (1 - 1e-4),
      `loss ${losses[0]} -> ${losses[3]} fell by less than 0.01 %`,
    );
    assert.notDeepEqual(w.params.get('mapper_0.mapping.1.weight')!.data, before0);
    const back = loadMapper(join(tmp, 'ss', 'checkpoints', 'iteration_2.pt'));
    assert.equal(back.weights.spec.type, 'StyleSpaceMapper');
  });
});

const cli = (...args: string[]) => {
  const cmd: Command = mapperCommand().exitOverride();
  for (const c of cmd.commands) c.exitOverride();
  return cmd.parseAsync(args, { from: 'user' });
};

describe('styleclip mapper (CLI)', () => {
  const common = ['--generator', fx('stylegan2/generator.pt'), '--clip', fx('clip/clip.pt')];

  test('train 2 steps, then apply the result and an official checkpoint', async () => {
    const out = join(tmp, 'cli-train');
    await cli(
      'train',
      ...common,
      '--arcface',
      fx('arcface/irse.pth'),
      '--arcface-units',
      '1,1,2,1',
      '--prompt',
      'a person with purple hair',
      '--latents-train',
      fx('stylegan2/wplus_trunc.npy'),
      '--latents-test',
      fx('stylegan2/wplus_trunc.npy'),
      '--steps',
      '2',
      '--val-interval',
      '2',
      '--save-interval',
      '2',
      '--out',
      out,
    );
    const ck = join(out, 'checkpoints', 'iteration_2.pt');
    assert.ok(existsSync(ck));
    const m = loadMapper(ck);
    assert.equal(m.opts.description, 'a person with purple hair');
    assert.equal(m.opts.stylegan_size, 64);

    const png = join(tmp, 'apply.png');
    await cli(
      'apply',
      '--mapper',
      join(out, 'checkpoints', 'best_mapper.pt'),
      '--generator',
      fx('stylegan2/generator.pt'),
      '--seed',
      '1,2',
      '--out',
      png,
    );
    assert.ok(existsSync(png));
  });

  test('apply the fixture mapper to wplus_trunc: img_mapped, w_hat, strengths', async () => {
    const npy = join(tmp, 'img.npy');
    const lat = join(tmp, 'w_hat.npy');
    await cli(
      'apply',
      '--mapper',
      fx('mapper/mapper.pt'),
      '--latent',
      fx('stylegan2/wplus_trunc.npy'),
      '--out',
      join(tmp, 'grid.png'),
      '--out-npy',
      npy,
      '--save-latent',
      lat,
    );
    assertClose(readNpyF32(npy).data, readNpyF32(fx('mapper/img_mapped.npy')).data, {
      what: 'cli img_mapped',
    });
    assert.deepEqual(readNpyF32(lat).shape, [2, 10, 512]);
    await cli(
      'apply',
      '--mapper',
      fx('mapper/mapper.pt'),
      '--seed',
      '0',
      '--strength',
      '0,1,2',
      '--out',
      join(tmp, 's.jpg'),
      '--out-npy',
      npy,
    );
    assert.deepEqual(readNpyF32(npy).shape, [3, 3, 64, 64]);
  });

  test('errors: both or neither latent source, bad paths and flags, mapper-only without generator', async () => {
    const m = fx('mapper/mapper.pt');
    await assert.rejects(cli('apply', '--mapper', m, '--out', join(tmp, 'x.png')), UserError);
    await assert.rejects(
      cli(
        'apply',
        '--mapper',
        m,
        '--seed',
        '1',
        '--latent',
        fx('stylegan2/w.npy'),
        '--out',
        join(tmp, 'x.png'),
      ),
      /exactly one/,
    );
    await assert.rejects(cli('apply', '--mapper', m, '--seed', '1', '--out', join(tmp, 'x.gif')), /\.png/);
    await assert.rejects(
      cli('apply', '--mapper', join(tmp, 'missing.pt'), '--seed', '1', '--out', join(tmp, 'x.png')),
      /no such file/,
    );
    await assert.rejects(
      cli('apply', '--mapper', fx('stylegan2/generator.pt'), '--seed', '1', '--out', join(tmp, 'x.png')),
      /mapper/,
    );
    await assert.rejects(
      cli(
        'apply',
        '--mapper',
        m,
        '--latent',
        fx('stylegan2/z2.npy').replace('z2', 'style_00'),
        '--out',
        join(tmp, 'x.png'),
      ),
      /latents of shape .*\(W\+\).*found shape \[2, 32\]/,
    );
    // A mapper-only file without --generator: the world generator renders it where there is one, else the
    // command asks for --generator.
    const only = join(tmp, 'cli-train', 'checkpoints', 'best_mapper.pt');
    const world = join(tmp, 'world');
    mkdirSync(world, { recursive: true });
    const saved = process.env.STYLECLIP_WORLD;
    process.env.STYLECLIP_WORLD = world;
    try {
      await assert.rejects(
        cli('apply', '--mapper', only, '--seed', '1', '--out', join(tmp, 'x.png')),
        /--generator/,
      );
      copyFileSync(fx('stylegan2/generator.pt'), join(world, 'generator.pt'));
      await cli('apply', '--mapper', only, '--seed', '1', '--out', join(tmp, 'world.png'));
      assert.ok(existsSync(join(tmp, 'world.png')));
    } finally {
      if (saved === undefined) delete process.env.STYLECLIP_WORLD;
      else process.env.STYLECLIP_WORLD = saved;
    }
    await assert.rejects(cli('train', ...common, '--prompt', 'x', '--steps', '0', '--out', tmp), /--steps/);
    await assert.rejects(cli('train', ...common, '--prompt', 'x', '--optim', 'sgd', '--out', tmp), /--optim/);
    await assert.rejects(
      cli('train', ...common, '--prompt', 'x', '--id-lambda', '0.1', '--out', tmp),
      /--arcface/,
    );
    await assert.rejects(
      cli('train', ...common, '--prompt', 'x', '--no-coarse', '--no-medium', '--no-fine', '--out', tmp),
      /switched off/,
    );
    await assert.rejects(cli('train', ...common, '--prompt', 'x '.repeat(100), '--out', tmp), /too long|77/);
  });
});
