/** The queue's pure parts, without Redis: addresses, shard plans, the base codes' encoding, payload checks. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fs3Rows, selectLayers } from '../../src/edit/global.js';
import { loadGenerator } from '../../src/models/stylegan2/load.js';
import { decodeBase, encodeBase, planShards, shardJobId } from '../../src/queue/fs3.js';
import { parseJob } from '../../src/queue/jobs.js';
import { promptFolder } from '../../src/queue/mapper.js';
import { parseRedisUrl } from '../../src/queue/redis.js';
import { fixture } from '../helpers.js';

describe('queue: pure parts', () => {
  it('--queue addresses', () => {
    assert.deepEqual(parseRedisUrl('redis://10.0.0.5:6380/2'), {
      host: '10.0.0.5',
      port: 6380,
      db: 2,
      password: undefined,
      username: undefined,
    });
    const a = parseRedisUrl('redis://:s%40cret@host');
    assert.equal(a.port, 6379);
    assert.equal(a.password, 's@cret');
    for (const bad of ['localhost:6379', 'http://x:1', 'redis://', 'redis://h:1/x'])
      assert.throws(() => parseRedisUrl(bad), { name: 'UserError' }, bad);
  });

  it('shards cover every fs3 row once, in order, never across layers', () => {
    const cfg = loadGenerator(fixture('stylegan2/generator.pt')).config;
    for (const per of [1, 7, 32, 1000]) {
      const shards = planShards(cfg, 'all', per);
      const rows: string[] = [];
      for (const [l, s, e] of shards) {
        assert.ok(e - s <= per && e > s);
        for (let c = s; c < e; c++) rows.push(`${l}:${c}`);
      }
      const want = selectLayers(cfg, 'all').flatMap((l) =>
        Array.from({ length: cfg.styleDims[l] }, (_, c) => `${l}:${c}`),
      );
      assert.deepEqual(rows, want);
      assert.equal(rows.length, fs3Rows(cfg, 'all'));
    }
    assert.equal(shardJobId('ab'.repeat(32), 3), `fs3-${'ab'.repeat(8)}-3`);
  });

  it('the base codes round-trip; another size is refused with the sizes', () => {
    const cfg = loadGenerator(fixture('stylegan2/generator.pt')).config;
    const K = 2;
    let v = 0;
    const fill = (n: number) => Float32Array.from({ length: n }, () => (v += 0.5));
    const base = {
      stats: { mean: cfg.styleDims.map(fill), std: cfg.styleDims.map(fill), samples: 0 },
      codes: cfg.styleDims.map((c) => fill(K * c)),
    };
    const back = decodeBase(encodeBase(base), cfg, K);
    assert.deepEqual(back.stats.mean, base.stats.mean);
    assert.deepEqual(back.stats.std, base.stats.std);
    assert.deepEqual(back.codes, base.codes);
    assert.throws(
      () => decodeBase(encodeBase(base), cfg, 3),
      /hold \d+ bytes, but this generator and K = 3 need/,
    );
  });

  it('payloads: fields named, kinds checked, extra fields refused', () => {
    const file = { path: '/m/g.pt', sha256: 'a'.repeat(64) };
    const ok = {
      kind: 'fs3',
      run: 'b'.repeat(64),
      shard: 0,
      layer: 0,
      start: 0,
      end: 8,
      images: 4,
      alpha: 5,
      carryOver: false,
      layers: 'all',
      generator: file,
      clip: file,
    };
    assert.equal(parseJob(ok).kind, 'fs3');
    assert.throws(() => parseJob({ ...ok, end: 0 }), /malformed job payload: end: start must be below end/);
    assert.throws(() => parseJob({ ...ok, images: 'x' }), /malformed job payload: images:/);
    assert.throws(() => parseJob({ ...ok, evil: 1 }), /malformed job payload: .*evil/);
    assert.throws(() => parseJob(null), /unknown job kind undefined/);
    assert.throws(
      () => parseJob({ kind: 'mapper', prompt: 'p', out: '/o', args: [], files: [], steps: 0 }),
      /steps/,
    );
  });

  it('prompt folders', () => {
    assert.equal(promptFolder('purple hair'), 'purple_hair');
    assert.equal(promptFolder('  A person with BLUE hair!! '), 'a_person_with_blue_hair');
    assert.match(promptFolder('日本'), /^prompt_[0-9a-f]{8}$/);
  });
});
