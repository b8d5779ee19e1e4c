import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { zipSync } from 'fflate';
import { CheckpointError } from '../../src/io/errors.js';
import { loadTensors } from '../../src/io/index.js';
import { loadSafetensors, parseSafetensors, saveSafetensors } from '../../src/io/safetensors.js';
import { FileSource } from '../../src/io/source.js';
import { float32ToHalf, halfToFloat32, halfToFloatTable, type Tensor } from '../../src/io/tensor.js';
import { loadTensor, loadTorch, loadTorchBytes } from '../../src/io/torch.js';
import { saveTorch } from '../../src/io/torch-write.js';
import { HalfWidener } from '../../src/io/widen.js';
import { ZipReader } from '../../src/io/zip.js';
import { fixture } from '../helpers.js';
import { writeMiniScript } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'io-formats-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const f32 = (shape: number[], f: (i: number) => number): Tensor => ({
  dtype: 'float32',
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => f(i)),
});

test('TorchScript: parameters, then buffers, then submodules; other tensor attributes are left out', () => {
  const file = join(dir, 'mini.pt');
  writeMiniScript(file);
  const ck = loadTorch(file, { widen: false });
  assert.equal(ck.format, 'torchscript');
  assert.deepEqual([...ck.tensors.keys()], ['proj', 'block.weight', 'block.bias', 'block.running_mean']);
  assert.equal(ck.tensors.get('block.weight')!.dtype, 'float16');
  const widened = loadTorch(file);
  assert.deepEqual(
    Array.from(widened.tensors.get('block.weight')!.data as Float32Array),
    [0, 0.25, 0.5, 0.75, 1, 1.25],
  );
  const value = widened.value as Record<string, Record<string, unknown>>;
  assert.equal(value.block.__class__, '__torch__.m.___torch_mangle_1.Block');
  assert.deepEqual((value.block.attn_mask as Tensor).shape, [2, 2]);
  assert.deepEqual((value as Record<string, unknown>).__constants__, [1, 2.5, 'x']);
});

test('saveTorch writes what torch.save writes: 64-byte aligned stored records that load back', () => {
  const file = join(dir, 'mapper.pt');
  const sd = new Map<string, Tensor>([
    ['mapper.w', f32([4, 3], (i) => i - 5.5)],
    ['mapper.steps', { dtype: 'int64', shape: [], data: BigInt64Array.from([7n]) }],
    [
      'mapper.h',
      { dtype: 'float16', shape: [2], data: Uint16Array.from([float32ToHalf(1.5), float32ToHalf(-2)]) },
    ],
  ]);
  saveTorch(file, { state_dict: sd, opts: { description: 'purple hair', lr: 0.5, big: 2 ** 40, neg: -3 } });
  const zip = new ZipReader(new FileSource(file));
  for (const e of zip.entries.values()) assert.equal(zip.dataOffset(e) % 64, 0, e.name);
  const ck = loadTorch(file, { widen: false });
  assert.deepEqual(
    [...ck.tensors.keys()],
    ['state_dict.mapper.w', 'state_dict.mapper.steps', 'state_dict.mapper.h'],
  );
  assert.deepEqual(ck.tensors.get('state_dict.mapper.w'), sd.get('mapper.w'));
  assert.deepEqual(ck.tensors.get('state_dict.mapper.steps'), sd.get('mapper.steps'));
  assert.deepEqual((ck.value as { opts: unknown }).opts, {
    description: 'purple hair',
    lr: 0.5,
    big: 2 ** 40,
    neg: -3,
  });
});

test('a file holding one bare tensor (e4e latents.pt)', () => {
  const file = join(dir, 'latents.pt');
  const t = f32([2, 18, 512], (i) => Math.sin(i));
  saveTorch(file, t);
  assert.deepEqual(loadTensor(file), t);
  assert.throws(() => loadTensor(fixture('stylegan2/generator.pt')), CheckpointError);
});

test('a deflated (re-zipped) torch archive loads; a declared zip bomb is refused before inflating', () => {
  const src = readFileSync(fixture('arcface/irse_zip.pth'));
  const zip = new ZipReader(new FileSource(fixture('arcface/irse_zip.pth')));
  const files: Record<string, Uint8Array> = {};
  for (const name of zip.entries.keys()) files[name] = zip.read(name);
  const deflated = zipSync(files, { level: 6 });
  const a = loadTorchBytes(deflated, 'deflated.pth');
  const b = loadTorchBytes(src, 'stored.pth');
  assert.deepEqual([...a.tensors.keys()], [...b.tensors.keys()]);
  for (const [k, t] of b.tensors) assert.deepEqual(a.tensors.get(k), t);
  // Claim 3 GB for data.pkl in both headers: refused by the ratio check, nothing allocated.
  const bomb = deflated.slice();
  const z = new ZipReader({
    name: 'bomb',
    size: bomb.length,
    readInto: (o, t) => t.set(bomb.subarray(o, o + t.length)),
    read: (o, l) => bomb.subarray(o, o + l),
    close() {},
  });
  const e = z.entry('irse_zip/data.pkl');
  new DataView(bomb.buffer).setUint32(e.centralOffset + 24, 3e9, true);
  assert.throws(
    () => loadTorchBytes(bomb, 'bomb.pth'),
    (err: Error) => err instanceof CheckpointError && /limits/.test(err.message),
  );
});

test('safetensors: round trip, fp16 widening, and the HF layout', () => {
  const file = join(dir, 'm.safetensors');
  const tensors = new Map<string, Tensor>([
    ['vision_model.embeddings.class_embedding', f32([8], (i) => i / 3)],
    ['logit_scale', f32([], () => 4.6052)],
    [
      'text_model.embeddings.position_ids',
      { dtype: 'int64', shape: [1, 3], data: BigInt64Array.from([0n, 1n, 2n]) },
    ],
    ['h', { dtype: 'float16', shape: [2], data: Uint16Array.from([float32ToHalf(0.5), float32ToHalf(3)]) }],
  ]);
  saveSafetensors(file, tensors, { format: 'pt' });
  const raw = readFileSync(file);
  const headerLen = Number(raw.readBigUInt64LE(0));
  assert.equal((8 + headerLen) % 8, 0);
  const back = loadSafetensors(file, { widen: false });
  assert.deepEqual(back.metadata, { format: 'pt' });
  assert.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  for (const [k, t] of tensors) assert.deepEqual(back.tensors.get(k), t, k);
  assert.deepEqual(Array.from(loadSafetensors(file).tensors.get('h')!.data as Float32Array), [0.5, 3]);
  assert.deepEqual([...loadTensors(file).keys()], [...tensors.keys()]);
  // Offsets that overrun, a huge header length and bad JSON are all CheckpointErrors.
  const bad = raw.slice();
  bad.writeBigUInt64LE(10n ** 12n, 0);
  assert.throws(() => parseSafetensors(bad), CheckpointError);
  assert.throws(() => parseSafetensors(raw.subarray(0, raw.length - 1)), CheckpointError);
  const json = raw.slice();
  json[9] = 0x7b;
  assert.throws(() => parseSafetensors(json), CheckpointError);
});

test('float16 widening: every one of the 65536 values, in place and with odd lengths, NaN payloads kept', () => {
  const table = new Uint32Array(halfToFloatTable().buffer);
  const ref = (h: number): number => {
    const s = h & 0x8000 ? 0x80000000 : 0;
    const e = (h >> 10) & 31;
    const f = h & 0x3ff;
    if (e === 31) return (s | 0x7f800000 | (f << 13)) >>> 0;
    const v = e === 0 ? 2 ** -14 * (f / 1024) : 2 ** (e - 15) * (1 + f / 1024);
    return new Uint32Array(Float32Array.from([s ? -v : v]).buffer)[0];
  };
  for (let h = 0; h < 65536; h++) if (table[h] !== ref(h)) assert.fail(`table at 0x${h.toString(16)}`);
  for (const n of [65536, 65536 + 7, 1031]) {
    const out = new Float32Array(n);
    const src = new Uint16Array(out.buffer, n * 2, n);
    for (let i = 0; i < n; i++) src[i] = i & 0xffff;
    halfToFloat32(src, out);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++)
      if (bits[i] !== table[i & 0xffff]) assert.fail(`half 0x${(i & 0xffff).toString(16)}`);
  }
  assert.equal(new Float32Array(new Uint32Array([table[0x3c00]]).buffer)[0], 1);
  assert.equal(float32ToHalf(1 / 3), 0x3555);
});

test('half tensors widened on the worker thread equal those widened here, bit for bit (fp16 and bf16, odd sizes)', () => {
  const file = join(dir, 'halves.pt');
  const bits = (n: number, seed: number) =>
    Uint16Array.from({ length: n }, (_, i) => (i * 40503 + seed) & 0xffff);
  const sizes = [65536, 65536 + 7, 1031, 200_003, 4];
  const sd = new Map<string, Tensor>();
  sizes.forEach((n, i) => {
    sd.set(`h${i}`, { dtype: 'float16', shape: [n], data: bits(n, i) });
    sd.set(`b${i}`, { dtype: 'bfloat16', shape: [n], data: bits(n, 7 * i) });
  });
  saveTorch(file, sd);
  const here = loadTorch(file, { workerMinElements: Number.POSITIVE_INFINITY });
  const shared = loadTorch(file, { workerMinElements: 0 });
  for (const [k, t] of here.tensors) {
    const u = shared.tensors.get(k)!;
    assert.equal(u.dtype, 'float32');
    assert.deepEqual(u.shape, t.shape);
    assert.ok(u.data.buffer instanceof ArrayBuffer, `${k}: an ordinary ArrayBuffer`);
    assert.deepEqual(
      new Uint32Array(u.data.buffer, u.data.byteOffset, u.data.length),
      new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length),
      k,
    );
  }
  const t0 = here.tensors.get('h0')!.data as Float32Array;
  assert.equal(new Uint32Array(t0.buffer)[1], new Uint32Array(halfToFloatTable().buffer)[40503]);
});

test('HalfWidener sends most elements to its worker and gets every buffer back', () => {
  const w = new HalfWidener({ workerMinElements: 0 });
  const outs: Float32Array[] = [];
  for (let i = 0; i < 8; i++) {
    const n = 10_001 + i;
    const out = new Float32Array(n);
    new Uint16Array(out.buffer, n * 2, n).fill(0x3c00); // 1.0
    w.defer(out, n, 'float16', (d) => {
      outs[i] = d;
    });
    outs[i] = out;
  }
  w.finish();
  assert.ok(w.split.worker > w.split.here && w.split.here > 0, JSON.stringify(w.split));
  outs.forEach((o, i) => {
    assert.equal(o.length, 10_001 + i);
    assert.ok(o.every((v) => v === 1));
  });
});

test('strides are validated as strides: a [1,1,256,256] noise buffer (stride product 2^40) loads', () => {
  // Every rosinality generator from 128² up carries such buffers; the loader once multiplied the strides
  // as if they were a size and refused every published 256/512/1024 checkpoint.
  const file = join(dir, 'noise256.pt');
  const noise = f32([1, 1, 256, 256], (i) => (i % 7) - 3);
  saveTorch(file, { 'noises.noise_0': noise });
  const got = loadTensors(file).get('noises.noise_0')!;
  assert.deepEqual(got.shape, [1, 1, 256, 256]);
  assert.deepEqual(Array.from(got.data as Float32Array).slice(0, 8), [-3, -2, -1, 0, 1, 2, 3, -3]);
  assert.equal(got.data[65535], (65535 % 7) - 3);
});

test('HalfWidener at the default threshold (the size ViT-B/32 reaches): worker values match an independent decoding', () => {
  // Decoded from the IEEE fields with plain arithmetic, not with the lookup table the widener uses.
  const f16 = (h: number) => {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  };
  const bf16 = (h: number) => {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 7) & 0xff;
    const m = h & 0x7f;
    if (e === 0) return s * (m / 128) * 2 ** -126;
    if (e === 255) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
    return s * (1 + m / 128) * 2 ** (e - 127);
  };
  const w = new HalfWidener(); // default: a worker starts once 4M elements are pending
  const jobs: { kind: 'float16' | 'bfloat16'; n: number; seed: number; out: Float32Array }[] = [];
  for (let i = 0; i < 7; i++) {
    const kind = i % 3 === 2 ? 'bfloat16' : 'float16';
    const n = (1 << 20) + i; // odd and even counts take different worker loops
    const out = new Float32Array(n);
    const halves = new Uint16Array(out.buffer, n * 2, n);
    for (let k = 0; k < n; k++) halves[k] = (k * 40503 + i * 7919) & 0xffff; // every bit pattern
    const job = { kind, n, seed: i, out } as (typeof jobs)[number];
    jobs.push(job);
    w.defer(out, n, kind, (d) => {
      job.out = d;
    });
  }
  w.finish();
  assert.ok(w.split.worker >= 2 << 20, `the worker widened ${w.split.worker} elements`);
  for (const j of jobs) {
    assert.equal(j.out.length, j.n);
    const decode = j.kind === 'float16' ? f16 : bf16;
    for (let k = 0; k < j.n; k++) {
      const want = decode((k * 40503 + j.seed * 7919) & 0xffff);
      const got = j.out[k];
      if (!(Number.isNaN(want) ? Number.isNaN(got) : got === Math.fround(want)))
        assert.fail(`${j.kind} tensor ${j.seed}, element ${k}: got ${got}, expected ${want}`);
    }
  }
});
