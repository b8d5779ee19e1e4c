/**
 * The semantic benchmark, small, on the world's shipped models: tests that fail when an edit stops working.
 * On the first 8 of 40 seeds whose face lacks the target: "purple hair" by its shipped mapper and "blonde
 * hair" by global directions must each succeed on at least 6 (measured on 50 seeds: 94 % and 90 %), and keep
 * at least the share of the other attributes they keep on 50 seeds, less a margin (the generator is soft,
 * so the classifier reads some neighbours' attributes differently after any edit: see the README). The
 * issue's example, "purple hair" by global directions, succeeds on 8 % of 50 seeds with these models (the
 * README shows why), so it is not what guards the methods here. Skipped, with the reason shown, while
 * models/world/generator.pt is absent.
 *
 * The harness itself runs on every checkout: end to end on the fixture models (random weights, so the
 * figures mean nothing) with a random classifier, to keep the benchmark's code working before the world's
 * models exist.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_CLASSIFIER, initClassifier, saveClassifier } from '../../src/world/classifier.js';
import { worldDir } from '../../src/world/models.js';
import {
  missingFiles,
  resultTable,
  SEMANTIC_DEFAULTS,
  SEMANTIC_PROMPTS,
  WorldBench,
} from '../../src/world/semantic.js';
import { fixture } from '../helpers.js';

const prompt = (mapper: string) => SEMANTIC_PROMPTS.filter((p) => p.mapper === mapper);
const purple = prompt('purple hair');
const SMALL = { ...SEMANTIC_DEFAULTS, seeds: Array.from({ length: 40 }, (_, i) => i), limit: 8 };

describe('semantic benchmark on the world models', () => {
  const cases = [
    { method: 'mapper', prompts: purple, preservation: 0.45 },
    { method: 'global', prompts: prompt('blonde hair'), preservation: 0.25 },
  ] as const;
  for (const c of cases)
    it(`"${c.prompts[0].prompt}" by ${c.method}: ≥ 6 of 8 succeed, preservation ≥ ${c.preservation * 100} %`, async (t) => {
      const dir = worldDir();
      if (!existsSync(join(dir, 'generator.pt'))) {
        t.skip(`models/world/generator.pt is not there yet (train it with \`styleclip train gan\`)`);
        return;
      }
      const missing = missingFiles(c.method, c.prompts, dir);
      assert.deepEqual(missing, [], `the world generator is there but not: ${missing.join(', ')}`);
      const bench = WorldBench.load(dir);
      const [r] = await bench.run(c.method, c.prompts, SMALL);
      const table = resultTable(c.method, [r]);
      assert.equal(r.edited, 8, `fewer than 8 of 40 seeds lack the target\n${table}`);
      assert.ok(
        r.successes >= 6,
        `${r.successes}/8 succeeded (failed seeds ${r.details.filter((d) => !d.success).map((d) => d.seed)})\n${table}`,
      );
      assert.ok(r.preservation >= c.preservation, `preservation ${r.preservation}\n${table}`);
      assert.ok(r.clipGain > 0.1, `CLIP gain ${r.clipGain}\n${table}`);
    });
});

describe('semantic benchmark harness (fixture models)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'styleclip-semantic-'));
    symlinkSync(fixture('stylegan2/generator.pt'), join(dir, 'generator.pt'));
    symlinkSync(fixture('clip/clip.pt'), join(dir, 'clip.pt'));
    symlinkSync(fixture('global/fs3.npy'), join(dir, 'fs3.npy'));
    mkdirSync(join(dir, 'mappers'));
    symlinkSync(fixture('mapper/mapper.pt'), join(dir, 'mappers', 'purple_hair.pt'));
    saveClassifier(
      join(dir, 'classifier.safetensors'),
      DEFAULT_CLASSIFIER,
      initClassifier(DEFAULT_CLASSIFIER, 0),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names the missing files per method', () => {
    const empty = mkdtempSync(join(tmpdir(), 'styleclip-semantic-empty-'));
    try {
      assert.deepEqual(missingFiles('global', purple, empty), [
        'generator.pt',
        'clip.pt',
        'classifier.safetensors',
        'fs3.npy',
      ]);
      assert.deepEqual(missingFiles('mapper', purple, dir), []);
      assert.deepEqual(missingFiles('mapper', SEMANTIC_PROMPTS.slice(1, 2), dir), [
        join('mappers', 'grey_hair.pt'),
      ]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('measures every method end to end and prints a table per method', async () => {
    const bench = WorldBench.load(dir);
    const o = { ...SEMANTIC_DEFAULTS, seeds: [0, 1], statsSamples: 50, optSteps: 2, cacheStats: false };
    for (const m of ['global', 'mapper', 'optimization'] as const) {
      const results = await bench.run(m, purple, o);
      assert.equal(results.length, 1, m);
      const r = results[0];
      assert.ok(r.edited <= 2, m);
      if (r.edited > 0) {
        assert.ok(r.success >= 0 && r.success <= 1, m);
        assert.ok(r.preservation >= 0 && r.preservation <= 1, m);
        assert.ok(Number.isFinite(r.clipGain) && Number.isFinite(r.l2) && r.l2 > 0, m);
      }
      assert.match(resultTable(m, results), /\| a face with purple hair \| colour \|/);
    }
  });
});
