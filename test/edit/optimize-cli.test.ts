import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { encodeNpy, parseNpy } from '../../src/io/npy.js';
import { assertClose } from '../helpers.js';

const FX = 'test/fixtures';
const MODELS = ['--generator', `${FX}/stylegan2/generator.pt`, '--clip', `${FX}/clip/clip.pt`];
const PROMPT = ['--prompt', 'a person with purple hair'];
const ARGS = ['--import', 'tsx', 'src/cli/main.ts', 'optimize'];
const cli = (...args: string[]) => spawnSync(process.execPath, [...ARGS, ...args], { encoding: 'utf8' });
const npy = (f: string) => parseNpy(new Uint8Array(readFileSync(f)));
const f32 = (f: string) => npy(f).data as Float32Array;

const tmp = mkdtempSync(join(tmpdir(), 'optimize-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('styleclip optimize', () => {
  test('reproduces the reference run: losses.jsonl and latent.npy match the fixtures (W+, L2 + ID)', () => {
    const out = join(tmp, 'parity');
    const r = cli(
      ...MODELS,
      ...PROMPT,
      '--latent',
      `${FX}/stylegan2/wplus_trunc.npy`,
      '--steps',
      '5',
      '--id-lambda',
      '0.005',
      '--arcface',
      `${FX}/arcface/irse.pth`,
      '--arcface-units',
      '1,1,2,1',
      '--save-every',
      '2',
      '--out',
      out,
      '--out-npy',
      join(tmp, 'final.npy'),
      '--save-latent',
      join(tmp, 'w.npy'),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /final loss [\d.]+ \(clip [\d.]+, l2 [\d.]+, id [\d.]+\)/);
    const log = readFileSync(join(out, 'losses.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      log.map((l) => l.step),
      [0, 1, 2, 3, 4],
    );
    assertClose(
      log.map((l) => l.loss),
      f32(`${FX}/optimization/losses.npy`),
      { rtol: 1e-3, atol: 0, what: 'losses' },
    );
    const latent = npy(join(out, 'latent.npy'));
    assert.deepEqual(latent.shape, [1, 10, 512]);
    assertClose(latent.data as Float32Array, f32(`${FX}/optimization/latent_final.npy`), {
      rtol: 1e-3,
      atol: 0,
      what: 'latent',
    });
    assert.deepEqual(f32(join(tmp, 'w.npy')), latent.data);
    assert.deepEqual(npy(join(tmp, 'final.npy')).shape, [1, 3, 64, 64]);
    assert.deepEqual(readdirSync(out).sort(), [
      '00000.jpg',
      '00002.jpg',
      '00004.jpg',
      'before_after.png',
      'final.png',
      'latent.npy',
      'losses.jsonl',
      'run.json', // what --resume reads: step, Adam state, flags
      'start.npy', // the starting latent, the L2 anchor of a resumed run
    ]);
  });

  test('StyleSpace from a seed saves all codes concatenated; free mode from the mean latent has no L2', () => {
    const s = join(tmp, 's');
    let r = cli(
      ...MODELS,
      ...PROMPT,
      '--seed',
      '3',
      '--space',
      's',
      '--steps',
      '2',
      '--save-every',
      '0',
      '--out',
      s,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /StyleSpace from seed 3/);
    assert.deepEqual(npy(join(s, 'latent.npy')).shape, [1, 9 * 32 + 5 * 16]);
    assert.ok(!readdirSync(s).some((f) => f.endsWith('.jpg')));

    const free = join(tmp, 'free');
    r = cli(...MODELS, ...PROMPT, '--mode', 'free', '--steps', '2', '--out', free);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /free generation in W\+ from the mean latent/);
    for (const line of readFileSync(join(free, 'losses.jsonl'), 'utf8').trim().split('\n')) {
      const l = JSON.parse(line);
      assert.equal(l.l2, 0);
      assert.equal(l.loss, l.clip);
    }
  });

  test('mistakes: exit 2 (1 for an unusable file) with a plain message and no stack trace', () => {
    const bad = join(tmp, 'bad.npy');
    writeFileSync(bad, encodeNpy({ dtype: 'float32', shape: [3, 256], data: new Float32Array(3 * 256) }));
    const out = join(tmp, 'err');
    const cases: [string[], RegExp, number?][] = [
      [
        ['--generator', 'nope.pt', '--clip', `${FX}/clip/clip.pt`, ...PROMPT, '--out', out],
        /--generator: file not found: nope\.pt/,
      ],
      [
        [...MODELS, ...PROMPT, '--latent', bad, '--out', out],
        /bad\.npy: expected latents of shape \[N, 10, 512\].*found shape \[3, 256\]/,
        1,
      ],
      [[...MODELS, '--prompt', 'purple '.repeat(80), '--out', out], /--prompt: .*too long/i],
      [
        [...MODELS, ...PROMPT, '--latent', bad, '--seed', '1', '--out', out],
        /--seed: give --latent or --seed, not both/,
      ],
      [
        [...MODELS, ...PROMPT, '--id-lambda', '0.1', '--out', out],
        /--arcface: --id-lambda > 0 needs the IR-SE50 weights/,
      ],
      [[...MODELS, ...PROMPT, '--mode', 'edits', '--out', out], /--mode: /],
      [[...MODELS, ...PROMPT, '--steps', 'ten', '--out', out], /--steps must be a number, got "ten"/],
      [
        [
          ...MODELS,
          ...PROMPT,
          '--latent',
          `${FX}/stylegan2/wplus_trunc.npy`,
          '--latent-index',
          '2',
          '--out',
          out,
        ],
        /holds 2 latents; --latent-index 2 is out of range/,
      ],
    ];
    for (const [args, message, code = 2] of cases) {
      const r = cli(...args);
      assert.equal(r.status, code, `${args.join(' ')}\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  test('Ctrl-C stops after the current step, keeps the log and saves the latent reached so far', async () => {
    const out = join(tmp, 'sigint');
    const child = spawn(process.execPath, [...ARGS, ...MODELS, ...PROMPT, '--steps', '100000', '--out', out]);
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const log = join(out, 'losses.jsonl');
    const deadline = Date.now() + 30_000;
    while (!(existsSync(log) && readFileSync(log, 'utf8').split('\n').length > 3)) {
      assert.ok(Date.now() < deadline, `no progress: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 130, stderr);
    const steps = readFileSync(log, 'utf8').trim().split('\n').length;
    assert.match(stderr, new RegExp(`interrupted after ${steps} of 100000 steps; kept in ${out}`));
    assert.deepEqual(npy(join(out, 'latent.npy')).shape, [1, 10, 512]);
    assert.ok(existsSync(join(out, '00000.jpg')));
    assert.ok(!existsSync(join(out, 'final.png')));
  });
});
