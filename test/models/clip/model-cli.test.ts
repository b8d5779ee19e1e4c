import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseNpy } from '../../../src/io/npy.js';
import { assertClose, fixture, ROOT } from '../../helpers.js';

// Runs the subcommand on its own (src/cli/main.ts registers it for the real binary).
const RUNNER = `import { Command } from 'commander'; import { embedCommand } from './src/cli/embed.ts';
await new Command('styleclip').addCommand(embedCommand()).parseAsync(process.argv.slice(1), { from: 'user' });`;
const embed = (...args: string[]) =>
  spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', RUNNER, '--', 'embed', ...args],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
const fx = fixture('clip');

test('styleclip embed saves normalized embeddings and prints cosine similarities', () => {
  const dir = mkdtempSync(join(tmpdir(), 'embed-'));
  try {
    const out = join(dir, 'feats.npy');
    const r = embed(
      '--clip',
      `${fx}/clip.pt`,
      '--text',
      'a person with purple hair',
      '--text',
      'mohawk hairstyle',
      '--image',
      `${fx}/preprocess_in.png`,
      '--out',
      out,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /cosine similarity/);
    const a = parseNpy(new Uint8Array(readFileSync(out)));
    assert.deepEqual(a.shape, [3, 64]);
    const d = a.data as Float32Array;
    for (let i = 0; i < 3; i++) {
      const n = Math.hypot(...d.subarray(i * 64, i * 64 + 64));
      assert.ok(Math.abs(n - 1) < 1e-5, `row ${i} norm ${n}`);
    }
    // The text rows are OpenAI CLIP's encode_text of those strings (texts.json rows 0 and 4), normalized.
    const ref = parseNpy(new Uint8Array(readFileSync(`${fx}/text_features.npy`))).data as Float32Array;
    [0, 4].forEach((row, i) => {
      const e = ref.subarray(row * 64, row * 64 + 64);
      const n = Math.hypot(...e);
      assertClose(
        d.subarray(i * 64, i * 64 + 64),
        e.map((v) => v / n),
        { what: `text ${row}` },
      );
    });
    const sims = r.stdout.trim().split('\n').at(-1)!.split('\t').slice(1).map(Number);
    const dot = (i: number, j: number) =>
      d.subarray(i * 64, i * 64 + 64).reduce((s, v, k) => s + v * d[j * 64 + k], 0);
    assert.ok(Math.abs(sims[0] - dot(2, 0)) < 1e-4 && Math.abs(sims[1] - dot(2, 1)) < 1e-4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('styleclip embed: clear one-line errors, no stack traces', () => {
  const r = embed('--clip', `${fx}/texts.json`, '--text', 'a');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^styleclip: error: .*PyTorch file/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const none = embed('--clip', `${fx}/clip.pt`);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /at least one --text or --image/);
});
