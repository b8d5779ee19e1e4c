/**
 * The built-in world: faces are a pure function of the seed, every attribute value occurs, captions vary
 * and say only what can be seen, the datasets give the trainers what they expect, the model resolver finds
 * the world folder, and `styleclip world sample` draws and labels faces as a user runs it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { FAMILIES, FAMILY_NAMES, parseWhere, sampleFace, visible } from '../../src/world/attributes.js';
import { attributePrompt, caption, TEMPLATES } from '../../src/world/captions.js';
import { WorldCaptions, WorldImages } from '../../src/world/dataset.js';
import { mapperSlug, missingModelMessage, worldModelPath } from '../../src/world/models.js';
import { faceSvg, renderFace } from '../../src/world/render.js';
import { ROOT } from '../helpers.js';

describe('world faces', () => {
  it('are a pure function of the seed (attributes, SVG and pixels)', async () => {
    for (const seed of [0, 1, 12345, 2 ** 32 - 1]) {
      assert.deepEqual(sampleFace(seed), sampleFace(seed));
      assert.equal(faceSvg(sampleFace(seed)), faceSvg(sampleFace(seed)));
    }
    const a = await renderFace(sampleFace(7));
    const b = await renderFace(sampleFace(7));
    assert.equal(a.length, 64 * 64 * 3);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, await renderFace(sampleFace(8)));
  });

  it('are drawn exactly as when the world models were trained (SVG of seeds 0-199 unchanged)', () => {
    // The shipped generator, CLIP and classifier learned these drawings: a change to attributes.ts or
    // render.ts that alters them needs those models retrained. Update the hash only together with them.
    const h = createHash('sha256');
    for (let s = 0; s < 200; s++) h.update(faceSvg(sampleFace(s)));
    assert.equal(h.digest('hex'), 'cc1a1bf3a472e4b63a00a3928d8f6e36660e5550d3bbe5cc8add7ff5f79e7a16');
  });

  it('reach every value of every family, none rarer than half its fair share', () => {
    const n = 3000;
    const counts = new Map<string, number>();
    for (let s = 0; s < n; s++) {
      const L = sampleFace(s).labels;
      for (const f of FAMILY_NAMES) counts.set(`${f}=${L[f]}`, (counts.get(`${f}=${L[f]}`) ?? 0) + 1);
    }
    for (const f of FAMILY_NAMES)
      for (const v of FAMILIES[f]) {
        const c = counts.get(`${f}=${v}`) ?? 0;
        assert.ok(c >= (0.5 * n) / FAMILIES[f].length, `${f}=${v} occurs ${c} times in ${n} faces`);
      }
  });

  it('refuse seeds that are not 32-bit whole numbers', () => {
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) assert.throws(() => sampleFace(bad), /world seed/);
  });

  it('change where the attribute is drawn: hair colour pixels differ between purple and blue hair', async () => {
    const face = sampleFace(3);
    const purple = { ...face, labels: { ...face.labels, hairColor: 'purple' as const } };
    const blue = { ...face, labels: { ...face.labels, hairColor: 'blue' as const } };
    const a = await renderFace(purple);
    const b = await renderFace(blue);
    let changed = 0;
    for (let p = 0; p < 64 * 64; p++) if (Math.abs(a[p * 3] - b[p * 3]) > 40) changed++;
    assert.ok(changed > 30, `only ${changed} pixels changed`);
  });

  it('hide the eyes behind sunglasses (not visible, so neither captioned nor scored)', () => {
    const L = { ...sampleFace(0).labels, glasses: 'sunglasses' as const };
    assert.equal(visible(L, 'eyes'), false);
    assert.equal(visible({ ...L, glasses: 'none' }, 'eyes'), true);
    for (let k = 0; k < 50; k++) assert.doesNotMatch(caption(L, 0, k), /eyes/);
  });

  it('parse --where filters and name bad ones', () => {
    assert.deepEqual(parseWhere('hairColor=purple, glasses=none'), { hairColor: 'purple', glasses: 'none' });
    assert.throws(() => parseWhere('hat=red'), /unknown attribute family "hat"/);
    assert.throws(() => parseWhere('hairColor=green'), /hairColor is one of black/);
  });
});

describe('world captions', () => {
  const L = sampleFace(42).labels;
  it('are deterministic and vary in template, order and wording', () => {
    assert.equal(caption(L, 42, 3), caption(L, 42, 3));
    const caps = Array.from({ length: 60 }, (_, k) => caption(L, 42, k));
    assert.ok(new Set(caps).size >= 55, 'captions repeat too often');
    // The template is the one with the longest prefix that the caption starts with ('{}.' has none).
    const templateOf = (c: string) =>
      TEMPLATES.map((t) => t.slice(0, t.indexOf('{}')))
        .filter((prefix) => c.startsWith(prefix))
        .sort((a, b) => b.length - a.length)[0];
    const templates = new Set(caps.map(templateOf));
    assert.ok(templates.size >= 6, `only ${templates.size} templates used`);
    for (const c of caps) {
      assert.ok(c.endsWith('.'), c);
      assert.ok(c.split(/\s+/).length <= 40, `too long for CLIP's context: ${c}`);
    }
  });

  it('mention the hair colour in some captions, and no other hair colour ever', () => {
    const face = { ...L, hairColor: 'purple' as const };
    const caps = Array.from({ length: 40 }, (_, k) => caption(face, 1, k));
    assert.ok(caps.some((c) => /purple|violet/.test(c)));
    for (const c of caps)
      assert.doesNotMatch(c, /\b(black|brunette|blonde|blond|ginger|grey|gray|bright blue) hair/);
  });

  it('give attribute prompts for the benchmark', () => {
    assert.equal(attributePrompt('hairColor', 'purple'), 'a face with purple hair');
    assert.equal(attributePrompt('hairstyle', 'mohawk'), 'a face with a mohawk');
  });
});

describe('world datasets', () => {
  it('WorldImages: 3·S·S floats in [-1, 1] of the face of seed base + i', async () => {
    const d = new WorldImages(10, { base: 100 });
    assert.equal(d.size, 64);
    const x = await d.get(3);
    assert.equal(x.length, 3 * 64 * 64);
    assert.ok(x.every((v) => v >= -1 && v <= 1));
    const rgb = await renderFace(sampleFace(103));
    assert.equal(x[0], Math.fround(rgb[0] / 127.5 - 1)); // red plane, pixel 0
    assert.equal(x[64 * 64], Math.fround(rgb[1] / 127.5 - 1)); // green plane, pixel 0
    assert.deepEqual(d.labels(3), sampleFace(103).labels);
    await assert.rejects(() => d.get(10), /out of \[0, 10\)/);
  });

  it('WorldCaptions: a new wording per epoch for the same image', async () => {
    const d = new WorldCaptions(4);
    const a = await d.get(1, 0);
    const b = await d.get(1, 1);
    assert.deepEqual(a.image, b.image);
    assert.notEqual(a.caption, b.caption);
  });
});

describe('world models', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'styleclip-world-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('worldModelPath finds a model only when its file is there', () => {
    const env = { STYLECLIP_WORLD: dir };
    assert.equal(worldModelPath('generator', undefined, env), null);
    writeFileSync(join(dir, 'generator.pt'), 'x');
    assert.equal(worldModelPath('generator', undefined, env), join(dir, 'generator.pt'));
    mkdirSync(join(dir, 'mappers'));
    writeFileSync(join(dir, 'mappers', 'purple_hair.pt'), 'x');
    assert.equal(worldModelPath('mappers', 'Purple hair', env), join(dir, 'mappers', 'purple_hair.pt'));
    assert.equal(worldModelPath('mappers', 'mohawk', env), null);
    assert.equal(mapperSlug('a face with a Mohawk!'), 'a_face_with_a_mohawk');
    assert.match(
      missingModelMessage('clip', '--clip', env),
      /^give --clip FILE \(there is no world clip at .*clip\.pt yet; it is made with `styleclip train clip/,
    );
  });

  it('the default folder is models/world of the repository', () => {
    const p = worldModelPath('classifier', undefined, {});
    if (p) assert.ok(p.startsWith(join(ROOT, 'models', 'world')), p);
  });
});

/** Runs each argv of a JSON list through the real `world` command in one process (one tsx start-up). */
const RUNNER = `import { Command, CommanderError } from 'commander';
import { reportError } from './src/cli/common.ts';
import { worldCommand } from './src/cli/world.ts';
const cases = JSON.parse(process.argv[1]);
for (let i = 0; i < cases.length; i++) {
  const w = worldCommand().exitOverride();
  for (const c of w.commands) c.exitOverride();
  const program = new Command('styleclip').exitOverride().addCommand(w);
  let code = 0;
  try {
    await program.parseAsync(['world', ...cases[i]], { from: 'user' });
  } catch (e) {
    code = e instanceof CommanderError ? e.exitCode || 2 : reportError(e);
  }
  process.stdout.write('@@case ' + i + ' exit ' + code + '\\n');
  process.stderr.write('@@case ' + i + ' exit ' + code + '\\n');
}`;

/** Each case's exit code, stdout and stderr. */
function runCases(cases: string[][]): { code: number; out: string; err: string }[] {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', RUNNER, JSON.stringify(cases)],
    {
      encoding: 'utf8',
      cwd: ROOT,
      env: { ...process.env, STYLECLIP_DEBUG: '' },
    },
  );
  const split = (text: string) => text.split(/@@case \d+ exit \d+\n/);
  const codes = [...r.stdout.matchAll(/@@case (\d+) exit (\d+)/g)].map((m) => Number(m[2]));
  assert.equal(codes.length, cases.length, `runner failed: ${r.stderr}`);
  const outs = split(r.stdout);
  const errs = split(r.stderr);
  return codes.map((code, i) => ({ code, out: outs[i], err: errs[i] }));
}

describe('styleclip world sample (CLI)', () => {
  let dir: string;
  let results: { code: number; out: string; err: string }[];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'styleclip-world-cli-'));
    results = runCases([
      [
        'sample',
        '--count',
        '16',
        '--grid',
        '--out',
        join(dir, 'grid.png'),
        '--labels',
        '--captions',
        '--seed',
        '5',
      ],
      ['sample', '--count', '5', '--labels', '--where', 'hairColor=purple,glasses=none'],
      ['sample', '--count', '0', '--labels'],
      ['sample', '--count', '2', '--out', 'faces.txt'],
      ['sample', '--where', 'hat=red', '--labels'],
      ['sample', '--vary', 'glasses', '--seed', '9', '--labels'],
    ]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--count 16 --grid --labels writes a 4×4 grid and prints 16 JSON lines', async () => {
    const r = results[0];
    assert.equal(r.code, 0, r.err);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 16);
    assert.equal(lines[0].seed, 5);
    for (const f of FAMILY_NAMES) assert.equal(lines[0][f], sampleFace(5).labels[f]);
    assert.equal(typeof lines[0].caption, 'string');
    const m = await sharp(join(dir, 'grid.png')).metadata();
    assert.equal(m.width, 4 * 66 + 2); // 64 px tiles with 2 px padding
    assert.equal(m.height, 4 * 66 + 2);
  });

  it('--where keeps matching faces only', () => {
    const r = results[1];
    assert.equal(r.code, 0, r.err);
    const lines = r.out
      .trim()
      .split('\n')
      .map((x) => JSON.parse(x));
    assert.equal(lines.length, 5);
    for (const l of lines) {
      assert.equal(l.hairColor, 'purple');
      assert.equal(l.glasses, 'none');
    }
  });

  it('--vary draws one face with every value of a family', () => {
    const r = results[5];
    assert.equal(r.code, 0, r.err);
    const lines = r.out
      .trim()
      .split('\n')
      .map((x) => JSON.parse(x));
    assert.deepEqual(
      lines.map((l) => l.glasses),
      ['none', 'glasses', 'sunglasses'],
    );
    for (const l of lines) assert.deepEqual({ ...l, glasses: 0 }, { ...lines[0], glasses: 0 });
  });

  it('mistakes get a message and exit 2', () => {
    const [, , r1, r2, r3] = results;
    assert.equal(r1.code, 2);
    assert.match(r1.err, /--count: must be in \[1, 10000\]/);
    assert.equal(r2.code, 2);
    assert.match(r2.err, /--out: must end in \.png, \.jpg or \.webp/);
    assert.equal(r3.code, 2);
    assert.match(r3.err, /unknown attribute family/);
    assert.doesNotMatch(r1.err + r2.err + r3.err, /\n\s+at /);
  });
});
