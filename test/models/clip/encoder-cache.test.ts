/**
 * ClipEncoder's text cache under pressure (issue 19, item 1) and Δt of texts that mean the same (item 2).
 * The cache limit is shrunk to two prompt ensembles so that eviction happens within a few calls.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ClipEncoder, setTextCacheLimit, ZeroDirectionError } from '../../../src/models/clip/encoder.js';
import { loadClip } from '../../../src/models/clip/load.js';
import { IMAGENET_TEMPLATES } from '../../../src/models/clip/templates.js';

const T = IMAGENET_TEMPLATES.length;

describe('ClipEncoder text cache', () => {
  let enc: ClipEncoder;
  let oldLimit: number;
  before(() => {
    enc = new ClipEncoder(loadClip('test/fixtures/clip/clip.pt'));
    oldLimit = setTextCacheLimit(2 * T);
  });
  after(async () => {
    setTextCacheLimit(oldLimit);
    await enc.release();
  });

  test('a full cache never evicts what the same call counted as cached', async () => {
    // Each direction is 2·80 prompts; the neutral's 80 are hits, the target's 80 are new and must evict.
    const reference = await enc.textDirection('smiling face', 'face');
    for (let i = 0; i < 6; i++) {
      const dt = await enc.textDirection(`face number ${i}`, 'face');
      assert.ok(dt.every(Number.isFinite));
    }
    assert.deepEqual(
      await enc.textDirection('smiling face', 'face'),
      reference,
      'same answer after eviction',
    );
  });

  test('concurrent calls with new texts all succeed', async () => {
    const all = await Promise.all(
      Array.from({ length: 8 }, (_, i) => enc.textDirection(`a person with hair colour ${i}`, 'face')),
    );
    for (const dt of all) assert.ok(dt.every(Number.isFinite));
  });

  test('the same text as target and neutral is refused, not NaN', async () => {
    await assert.rejects(enc.textDirection('face', 'face'), (e: unknown) => {
      assert.ok(e instanceof ZeroDirectionError);
      assert.match(e.message, /"face" and the neutral text "face" mean the same/);
      return true;
    });
    // CLIP lower-cases and collapses spaces: "Face " tokenizes like "face".
    await assert.rejects(enc.textDirection('FACE ', 'face'), ZeroDirectionError);
  });
});
