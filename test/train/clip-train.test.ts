/**
 * The CLIP trainer on a tiny model and a tiny JSON-lines dataset: a resumed run gives the weights of an
 * uninterrupted one, a stop request writes a checkpoint, what it saves loads as a CLIP (torch zip and
 * safetensors), and `styleclip train clip` runs end to end and refuses bad input with a clear message.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { reportError } from '../../src/cli/common.js';
import { trainClipCommand } from '../../src/cli/train-clip.js';
import { loadClip } from '../../src/models/clip/load.js';
import { ClipModel } from '../../src/models/clip/model.js';
import { preprocessRgb } from '../../src/models/clip/preprocess.js';
import { ClipTrainer, type ClipTrainOptions } from '../../src/train/clip.js';
import { fromSignedImages, JsonlClipDataset, readJsonlPairs } from '../../src/train/clip-data.js';
import { type ClipArchitecture, clipConfig, initClipStateDict } from '../../src/train/clip-init.js';
import { WorldCaptions } from '../../src/world/dataset.js';
import { assertClose } from '../helpers.js';

const ARCH: ClipArchitecture = {
  embedDim: 16,
  imageResolution: 32,
  visionPatchSize: 16,
  visionWidth: 64,
  visionLayers: 1,
  textWidth: 64,
  textLayers: 1,
};
const COLORS: [string, [number, number, number]][] = [
  ['red', [220, 30, 30]],
  ['green', [30, 200, 40]],
  ['blue', [30, 40, 220]],
  ['yellow', [230, 220, 30]],
  ['purple', [140, 40, 180]],
  ['white', [250, 250, 250]],
  ['black', [10, 10, 10]],
  ['orange', [250, 140, 20]],
];

const dir = mkdtempSync(join(tmpdir(), 'styleclip-clip-train-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const data = join(dir, 'pairs.jsonl');

async function cli(...args: string[]): Promise<{ code: number; stderr: string }> {
  const cmd = trainClipCommand().exitOverride();
  const write = process.stderr.write;
  let stderr = '';
  process.stderr.write = ((s: string) => {
    stderr += s;
    return true;
  }) as typeof process.stderr.write;
  try {
    await cmd.parseAsync(['node', 'clip', ...args]);
    return { code: 0, stderr };
  } catch (e) {
    return { code: reportError(e), stderr };
  } finally {
    process.stderr.write = write;
  }
}

const options = (outDir: string, steps = 4): ClipTrainOptions => ({
  outDir,
  steps,
  batch: 4,
  lr: 1e-3,
  warmup: 1,
  weightDecay: 0.1,
  seed: 3,
  saveEvery: 0,
  logEvery: 1,
  evalEvery: 0,
});

const fresh = () => ClipModel.fromStateDict(initClipStateDict(clipConfig(ARCH), 7));

before(async () => {
  const lines: string[] = [];
  for (const [name, rgb] of COLORS) {
    const file = `${name}.png`;
    await sharp({
      create: { width: 40, height: 36, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } },
    })
      .png()
      .toFile(join(dir, file));
    lines.push(JSON.stringify({ image: file, caption: `a ${name} square` }));
  }
  writeFileSync(data, `${lines.join('\n')}\n`);
});

describe('CLIP trainer (tiny model)', () => {
  test('a resumed run gives the weights of an uninterrupted one; a stop request saves a checkpoint', async () => {
    const ds = new JsonlClipDataset(data, ARCH.imageResolution);
    const full = new ClipTrainer(fresh(), ds, options(join(dir, 'full')));
    const r = await full.train();
    assert.equal(r.step, 4);
    assert.ok(r.model && existsSync(r.model));

    const first = new ClipTrainer(fresh(), ds, options(join(dir, 'part')));
    const stopped = await first.train({ shouldStop: () => first.step >= 2 });
    assert.deepEqual([stopped.step, stopped.interrupted], [2, true]);
    const resumed = new ClipTrainer(fresh(), ds, options(join(dir, 'part')));
    resumed.resume(stopped.lastCheckpoint);
    assert.equal(resumed.step, 2);
    await resumed.train();
    // Equal but for the token table's idle rows, whose lazy decay the checkpoint applies at step 2
    // (float32 rounding of one product instead of two).
    const a = full.stateDict();
    for (const [k, t] of resumed.stateDict())
      assertClose(t.data as Float32Array, a.get(k)!.data as Float32Array, { rtol: 1e-6, atol: 0, what: k });
    // the metrics log holds each step once, though two processes wrote it
    const steps = readFileSync(join(dir, 'part', 'logs', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    assert.deepEqual(steps, [1, 2, 3, 4]);
    await Promise.all([full.release(), first.release(), resumed.release()]);
  });

  test('the saved model loads as a CLIP with the trained architecture (torch zip and safetensors)', async () => {
    const ds = new JsonlClipDataset(data, ARCH.imageResolution);
    const t = new ClipTrainer(fresh(), ds, options(join(dir, 'save'), 1));
    await t.train();
    t.saveModel(join(dir, 'save', 'model.safetensors'));
    for (const file of ['clip.pt', 'model.safetensors']) {
      const m = loadClip(join(dir, 'save', file));
      assert.deepEqual(m.config, clipConfig(ARCH), file);
      // trained on CLIP-normalized pixels, and marked so (the HF layout has no place for the mark)
      if (file === 'clip.pt') assert.ok(m.inputNormalization, 'clip.pt carries input_normalization');
      assert.deepEqual(m.tensor('visual.proj').data, t.params.find((p) => p.name === 'visual.proj')!.data);
    }
    await t.release();
  });

  test('styleclip train clip: end to end, then --resume of a finished run', async () => {
    const out = join(dir, 'cli');
    const arch = ['--image-size', '32', '--patch', '16', '--vision-width', '64', '--text-width', '64'];
    const flags = [
      ...arch,
      '--vision-layers',
      '1',
      '--text-layers',
      '1',
      '--embed-dim',
      '16',
      '--batch',
      '4',
    ];
    const ok = await cli(
      '--data',
      data,
      '--val',
      data,
      '--out',
      out,
      '--steps',
      '2',
      '--eval-every',
      '2',
      ...flags,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /done, 2 steps/);
    const lines = readFileSync(join(out, 'logs', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.find((l) => l.split === 'eval').val_captions, 8);
    assert.ok(existsSync(join(out, 'clip.pt')) && existsSync(join(out, 'checkpoints', 'clip_000002.pt')));
    const again = await cli(
      '--data',
      data,
      '--out',
      out,
      '--steps',
      '2',
      '--resume',
      join(out, 'checkpoints', 'clip_000002.pt'),
      ...flags,
    );
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /already at step 2/);
  });

  test('mistakes get a clear message and exit code, never a stack trace', async () => {
    const out = join(dir, 'bad');
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(
      bad,
      '{"image": "red.png", "caption": "a red square"}\n{"image": "nope.png", "caption": "x"}\nnot json\n',
    );
    assert.throws(
      () => readJsonlPairs(bad),
      /bad\.jsonl:2: image nope\.png not found[\s\S]*bad\.jsonl:3: not a JSON object/,
    );
    const cases: [string[], number, RegExp][] = [
      [['--data', bad, '--out', out], 1, /nope\.png not found/],
      [['--data', data, '--out', out, '--vision-width', '100'], 2, /multiple of 64/],
      [['--data', data, '--out', out, '--image-size', '60'], 2, /not a multiple of the patch size/],
      [['--out', out], 2, /exactly one of --data/],
      [['--data', data, '--out', out, '--batch', '16'], 1, /8 pairs, fewer than one batch of 16/],
      [
        ['--data', data, '--out', out, '--batch', '4', '--resume', join(dir, 'full', 'clip.pt')],
        1,
        /no CLIP training state/,
      ],
      [['--data', data, '--out', out, '--lr', 'x'], 2, /--lr must be a number/],
      [
        ['--data', data, '--out', out, '--init', join(dir, 'full', 'clip.pt'), '--patch', '4'],
        2,
        /drop --patch/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const r = await cli(...args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    }
  });

  test("a world dataset's faces reach the trainer as CLIP's preprocessing would give them", async () => {
    const world = new WorldCaptions(2, { size: 32 });
    const pairs = fromSignedImages(world);
    for (let i = 0; i < 2; i++) {
      const s = await pairs.get(i, 1);
      assert.equal(s.caption, world.caption(i, 1));
      const bytes = await world.images.bytes(i);
      const want = preprocessRgb({ data: bytes, width: 32, height: 32 }, 32);
      assertClose(s.image, want, { rtol: 1e-5, atol: 1e-5, what: `face ${i}` });
    }
  });
});
