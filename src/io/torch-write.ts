import { writeChunksAtomic } from './atomic.js';
import { CheckpointError } from './errors.js';
import { type DType, isTensor, numel, type Tensor } from './tensor.js';
import { buildStoredZip } from './zip.js';

/**
 * Writes torch.save's zip format, so tensors trained here (a StyleCLIP mapper, say) load in PyTorch with
 * `torch.load`. Plain values map back the way the readers map them: objects and Maps → dict, arrays → list,
 * numbers → int or float, Tensor → a tensor with its own storage. An object with a `__class__` field naming a
 * `__torch__.*` class is written as a TorchScript object (used to build test and benchmark archives).
 */

const STORAGE: Record<DType, string> = {
  float32: 'FloatStorage',
  float16: 'HalfStorage',
  bfloat16: 'BFloat16Storage',
  float64: 'DoubleStorage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  int16: 'ShortStorage',
  int8: 'CharStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

class Pickler {
  private parts: number[] = [];
  private chunks: Uint8Array[] = [];
  readonly storages: Tensor[] = [];
  private enc = new TextEncoder();

  private flush(): void {
    if (this.parts.length) this.chunks.push(Uint8Array.from(this.parts));
    this.parts = [];
  }
  private op(...b: number[]): void {
    for (const x of b) this.parts.push(x);
  }
  private bytes(b: Uint8Array): void {
    this.flush();
    this.chunks.push(b);
  }
  private u32(n: number): void {
    this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  str(s: string): void {
    const b = this.enc.encode(s);
    this.op(0x58);
    this.u32(b.length);
    this.bytes(b);
  }
  global(module: string, name: string): void {
    this.op(0x63);
    this.bytes(this.enc.encode(`${module}\n${name}\n`));
  }
  int(n: number | bigint): void {
    if (typeof n === 'number' && n >= -(2 ** 31) && n < 2 ** 31) {
      this.op(0x4a);
      this.u32(n >>> 0);
      return;
    }
    let v = BigInt(n);
    const out: number[] = [];
    for (;;) {
      out.push(Number(v & 0xffn));
      v >>= 8n;
      if ((v === 0n && !(out[out.length - 1] & 0x80)) || (v === -1n && out[out.length - 1] & 0x80)) break;
    }
    this.op(0x8a, out.length, ...out);
  }
  value(v: unknown, depth = 0): void {
    if (depth > 100) throw new RangeError('saveTorch: value nested deeper than 100');
    if (v === null || v === undefined) {
      this.op(0x4e);
      return;
    }
    if (v === true) {
      this.op(0x88);
      return;
    }
    if (v === false) {
      this.op(0x89);
      return;
    }
    if (typeof v === 'bigint') {
      this.int(v);
      return;
    }
    if (typeof v === 'number') {
      if (Number.isInteger(v) && Number.isSafeInteger(v) && !Object.is(v, -0)) {
        this.int(v);
        return;
      }
      const b = new Uint8Array(9);
      b[0] = 0x47;
      new DataView(b.buffer).setFloat64(1, v, false);
      this.op(...b);
      return;
    }
    if (typeof v === 'string') {
      this.str(v);
      return;
    }
    if (isTensor(v)) {
      this.tensor(v);
      return;
    }
    if (Array.isArray(v)) {
      this.op(0x5d, 0x28);
      for (const x of v) this.value(x, depth + 1);
      this.op(0x65);
      return;
    }
    if (v instanceof Map || (typeof v === 'object' && v.constructor === Object)) {
      const entries = v instanceof Map ? [...v] : Object.entries(v as Record<string, unknown>);
      const cls = v instanceof Map ? undefined : (v as Record<string, unknown>).__class__;
      if (typeof cls === 'string' && cls.startsWith('__torch__.')) {
        const dot = cls.lastIndexOf('.');
        this.global(cls.slice(0, dot), cls.slice(dot + 1));
        this.op(0x29, 0x81);
      }
      // State dicts are OrderedDicts in torch; plain dicts elsewhere.
      if (v instanceof Map) {
        this.global('collections', 'OrderedDict');
        this.op(0x29, 0x52);
      } else this.op(0x7d);
      this.op(0x28);
      for (const [k, x] of entries) {
        if (k === '__class__' && typeof cls === 'string') continue;
        this.value(k, depth + 1);
        this.value(x, depth + 1);
      }
      this.op(0x75);
      if (typeof cls === 'string' && cls.startsWith('__torch__.')) this.op(0x62);
      return;
    }
    throw new CheckpointError('<saveTorch>', 'a plain value, Map, array or Tensor', String(v));
  }
  tensor(t: Tensor): void {
    const key = String(this.storages.length);
    this.storages.push(t);
    const n = numel(t.shape);
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.op(0x28, 0x28);
    this.str('storage');
    this.global('torch', STORAGE[t.dtype]);
    this.str(key);
    this.str('cpu');
    this.int(n);
    this.op(0x74, 0x51);
    this.int(0);
    this.op(0x28);
    for (const d of t.shape) this.int(d);
    this.op(0x74, 0x28);
    let s = 1;
    const strides: number[] = [];
    for (let i = t.shape.length - 1; i >= 0; i--) {
      strides.unshift(s);
      s *= t.shape[i];
    }
    for (const d of strides) this.int(d);
    this.op(0x74, 0x89);
    this.global('collections', 'OrderedDict');
    this.op(0x29, 0x52, 0x74, 0x52);
  }
  finish(v: unknown): Uint8Array {
    this.op(0x80, 0x02);
    this.value(v);
    this.op(0x2e);
    this.flush();
    const total = this.chunks.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** Pickles a value the way torch.save does (protocol 2, tensors as persistent storages). */
export function pickleTorch(value: unknown): { pickle: Uint8Array; storages: Tensor[] } {
  const p = new Pickler();
  const pickle = p.finish(value);
  return { pickle, storages: p.storages };
}

export interface ArchiveOptions {
  /** The archive's top folder (torch uses 'archive', TorchScript the file's stem). */
  root?: string;
  /** Extra records, such as TorchScript's `code/...` files, relative to the root. */
  records?: Record<string, Uint8Array | string>;
}

/** Writes `value` in torch.save's zip format (stored, 64-byte aligned records), atomically. */
export function saveTorch(file: string, value: unknown, opts: ArchiveOptions = {}): void {
  const root = opts.root ?? 'archive';
  const { pickle, storages } = pickleTorch(value);
  const enc = new TextEncoder();
  function* records(): Generator<{ name: string; data: Uint8Array }> {
    yield { name: `${root}/data.pkl`, data: pickle };
    yield { name: `${root}/byteorder`, data: enc.encode('little') };
    for (const [i, t] of storages.entries())
      yield {
        name: `${root}/data/${i}`,
        data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      };
    for (const [k, v] of Object.entries(opts.records ?? {}))
      yield { name: `${root}/${k}`, data: typeof v === 'string' ? enc.encode(v) : v };
    yield { name: `${root}/version`, data: enc.encode('3\n') };
  }
  writeChunksAtomic(file, (write) => buildStoredZip(records(), write));
}
