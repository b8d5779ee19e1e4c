import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CheckpointError, ForbiddenGlobalError } from '../../src/io/errors.js';
import { unpickle } from '../../src/io/pickle.js';
import { loadTorchBytes } from '../../src/io/torch.js';
import { buildStoredZip } from '../../src/io/zip.js';
import { fixture } from '../helpers.js';

/** Assembles a pickle from opcodes and strings (strings are written as latin-1 bytes). */
function pk(...parts: (number | string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const ch of p) out.push(ch.charCodeAt(0));
    else for (const x of p) out.push(x);
  }
  return Uint8Array.from(out);
}
const u32 = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24];
const str = (s: string) => [0x58, ...u32(s.length), ...[...s].map((c) => c.charCodeAt(0))];

/** A torch zip archive around a hand-made data.pkl and storages. */
function archive(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}): Uint8Array {
  const chunks: Uint8Array[] = [];
  const entries = [{ name: 'archive/data.pkl', data: pickle }];
  for (const [k, v] of Object.entries(storages)) entries.push({ name: `archive/data/${k}`, data: v });
  buildStoredZip(entries, (c) => chunks.push(c.slice()));
  return Buffer.concat(chunks);
}

/** _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', numel), 0, shape, stride, False, OrderedDict()) */
function tensorPickle(numel: number, shape: number[], stride: number[]): Uint8Array {
  const int = (n: number) => [0x4a, ...u32(n)];
  return pk(
    0x80,
    2,
    'ctorch._utils\n_rebuild_tensor_v2\n',
    0x28,
    0x28,
    str('storage'),
    'ctorch\nFloatStorage\n',
    str('0'),
    str('cpu'),
    int(numel),
    0x74,
    0x51,
    int(0),
    0x28,
    ...shape.map(int),
    0x74,
    0x28,
    ...stride.map(int),
    0x74,
    0x89,
    'ccollections\nOrderedDict\n',
    0x29,
    0x52,
    0x74,
    0x52,
    0x2e,
  );
}

describe('hostile input fails fast with a typed error', () => {
  test('globals outside the allow-list are refused by name, before anything is built', () => {
    for (const g of [
      'os\nsystem',
      'posix\nsystem',
      'builtins\neval',
      '__builtin__\neval',
      'builtins\ngetattr',
      'subprocess\nPopen',
      'torch\nload',
      'numpy\nload',
      'torch_utils.persistence\nimport_hook',
      'collections\ndefaultdict',
    ]) {
      const bytes = pk(0x80, 2, `c${g}\n`, str('echo pwned'), 0x85, 0x52, 0x2e);
      assert.throws(
        () => loadTorchBytes(archive(bytes)),
        (e: Error) =>
          e instanceof ForbiddenGlobalError &&
          e.global === g.replace('\n', '.') &&
          e.message.includes(g.replace('\n', '.')),
      );
    }
    // STACK_GLOBAL with a non-string, REDUCE on a non-callable.
    assert.throws(() => loadTorchBytes(archive(pk(0x80, 4, 0x4b, 1, 0x4b, 2, 0x93, 0x2e))), CheckpointError);
    assert.throws(() => loadTorchBytes(archive(pk(0x80, 2, 0x4b, 1, 0x29, 0x52, 0x2e))), CheckpointError);
  });

  test('tensors that overrun their storage, storages whose size does not match, absurd shapes', () => {
    const data = new Uint8Array(24);
    assert.equal(
      loadTorchBytes(archive(tensorPickle(6, [2, 3], [3, 1]), { 0: data })).tensors.get('')!.data.length,
      6,
    );
    const bad: [Uint8Array, Record<string, Uint8Array>][] = [
      [tensorPickle(6, [3, 3], [3, 1]), { 0: data }],
      [tensorPickle(7, [2, 3], [3, 1]), { 0: data }],
      [tensorPickle(6, [2, 3], [3, 1]), {}],
      [tensorPickle(6, [65536, 65536, 65536], [0, 0, 0]), { 0: data }],
      [tensorPickle(6, [2, 3], [3]), { 0: data }],
      [tensorPickle(6, [2 ** 31 - 1, 2 ** 31 - 1], [1, 1]), { 0: data }],
      [tensorPickle(2 ** 31 - 1, [2, 3], [3, 1]), { 0: data }],
    ];
    for (const [p, s] of bad) assert.throws(() => loadTorchBytes(archive(p, s)), CheckpointError);
  });

  test('deep nesting, doubling references and huge memo indices stay cheap', () => {
    const depth = 200_000;
    const nested = pk(0x80, 2, Array(depth).fill(0x5d), Array(depth - 1).fill(0x61), 0x2e);
    assert.throws(() => loadTorchBytes(archive(nested)), CheckpointError);
    // l0 = [], l(k+1) = [lk, lk]: 2^80 paths through 80 objects.
    const laughs: number[] = [0x80, 2, 0x5d, 0x94];
    for (let k = 0; k < 80; k++) laughs.push(0x5d, 0x28, 0x6a, ...u32(k), 0x6a, ...u32(k), 0x65, 0x94);
    laughs.push(0x2e);
    const t0 = performance.now();
    assert.throws(() => loadTorchBytes(archive(Uint8Array.from(laughs))), CheckpointError);
    assert.ok(performance.now() - t0 < 5000);
    assert.throws(
      () =>
        loadTorchBytes(archive(pk(0x80, 2, 0x4e, 0x72, ...u32(0xffffffff), 0x6a, ...u32(0xfffffffe), 0x2e))),
      CheckpointError,
    );
    // A length field far past the end is refused before allocating.
    assert.throws(
      () => loadTorchBytes(archive(pk(0x80, 4, 0x8e, 255, 255, 255, 255, 255, 255, 31, 0, 0x2e))),
      CheckpointError,
    );
  });

  test('wrong magic, empty and truncated files', () => {
    const gen = readFileSync(fixture('stylegan2/generator.pt'));
    for (const b of [
      new Uint8Array(0),
      Buffer.from('GIF89a....'),
      gen.subarray(0, 1000),
      gen.subarray(0, gen.length - 30),
      gen.subarray(100),
    ])
      assert.throws(
        () => loadTorchBytes(b, 'x.pt'),
        (e: Error) => e instanceof CheckpointError && e.message.startsWith('x.pt'),
      );
    const legacy = readFileSync(fixture('arcface/irse.pth'));
    for (const n of [5, 200, 15000, legacy.length - 1])
      assert.throws(() => loadTorchBytes(legacy.subarray(0, n), 'irse.pth'), CheckpointError);
  });

  test('unknown opcodes and extension registry codes are refused', () => {
    for (const op of [0x69 /* INST */, 0x6f /* OBJ */, 0x82 /* EXT1 */, 0x97 /* NEXT_BUFFER */, 0xff])
      assert.throws(
        () => unpickle(pk(0x80, 2, op, 0x2e), { file: 'p', resolveGlobal: () => undefined }),
        CheckpointError,
      );
  });
});
