import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatchOrder } from '../../src/edit/mapper/data.js';
import { HardBatchOrder } from '../../src/train/clip.js';
import { runCli } from '../cli/helpers.js';

test('hard batches: one group of distinct look-alikes, the share asked for, the same batches on every run', () => {
  const key = (i: number) => `g${i % 5}`; // 5 groups of 40
  const plain = new BatchOrder(200, 8, 3);
  const order = new HardBatchOrder(plain, 0.5, key, 3);
  let hard = 0;
  for (let step = 0; step < 400; step++) {
    const idx = order.indices(step);
    assert.equal(idx.length, 8);
    assert.equal(new Set(idx).size, 8, 'distinct pairs');
    assert.deepEqual(new HardBatchOrder(plain, 0.5, key, 3).indices(step), idx, 'a function of (seed, step)');
    if (new Set(idx.map(key)).size === 1) hard++;
    else assert.deepEqual(idx, plain.indices(step), 'the other batches are the plain order');
  }
  assert.ok(hard > 160 && hard < 240, `about half the batches are hard, got ${hard} of 400`);
  const none = new HardBatchOrder(plain, 0, key, 3);
  for (let step = 0; step < 50; step++) assert.deepEqual(none.indices(step), plain.indices(step));
  assert.throws(
    () => new HardBatchOrder(plain, 0.5, (i) => `${i}`, 3),
    /no group of look-alikes has 8 members/,
  );
  assert.throws(() => new HardBatchOrder(plain, 1.5, key, 3), /in \[0, 1\]/);
});

test('--hard-batches needs --world and a share in [0, 1]', () => {
  const [data, share] = runCli([
    ['train', 'clip', '--data', 'x.jsonl', '--hard-batches', '0.5', '--out', '/tmp/never'],
    ['train', 'clip', '--world', '100', '--hard-batches', '2', '--out', '/tmp/never'],
  ]);
  assert.equal(data.code, 2);
  assert.match(data.stderr, /--hard-batches .* needs --world/);
  assert.equal(share.code, 2);
  assert.match(share.stderr, /hard-batches.*\[0, 1\]/);
});
