/**
 * A small pickle writer for the two layouts the project's own writer (src/io/torch-write.ts, zip format
 * only) does not produce: torch's legacy (pre-1.6, non-zip) torch.save, and NVIDIA's network-snapshot
 * pickles, whose tensors are `_load_from_bytes(<a legacy torch.save of one storage>)`. Test-only: it writes
 * what Python's pickler writes for these values (protocol 2 for the legacy header pickles, as torch does;
 * BINBYTES needs protocol 3 or more, so snapshots say protocol 4 as NVIDIA's do).
 */
import { closeSync, openSync, renameSync, writeSync } from 'node:fs';
import type { DType, Tensor } from '../../src/io/tensor.js';

/** `module.name(*args)`: a REDUCE of an allow-listed global. */
export class Call {
  constructor(
    readonly fn: string,
    readonly args: unknown[],
  ) {}
}
/** A Python tuple (JS arrays are lists). */
export class Tuple {
  constructor(readonly items: unknown[]) {}
}
/** A Python set. */
export class PySet {
  constructor(readonly items: unknown[]) {}
}
/** A reference to a global itself (`torch.FloatStorage`), not a call. */
export class Global {
  constructor(readonly name: string) {}
}
/** A persistent id (torch's storage references). */
export class PersId {
  constructor(readonly id: Tuple) {}
}
/** A collections.OrderedDict. */
export class Ordered {
  constructor(readonly entries: [string, unknown][]) {}
}

export const STORAGE_CLASS: Partial<Record<DType, string>> = {
  float32: 'torch.FloatStorage',
  float16: 'torch.HalfStorage',
  int64: 'torch.LongStorage',
};

export class Pickler {
  readonly chunks: Uint8Array[] = [];
  private ops: number[] = [];
  private readonly enc = new TextEncoder();

  constructor(protocol: number) {
    this.op(0x80, protocol);
  }
  private flush(): void {
    if (this.ops.length) this.chunks.push(Uint8Array.from(this.ops));
    this.ops = [];
  }
  private op(...b: number[]): void {
    for (const x of b) this.ops.push(x);
  }
  private u32(n: number): void {
    this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  private raw(b: Uint8Array): void {
    this.flush();
    this.chunks.push(b);
  }
  private global(name: string): void {
    const dot = name.lastIndexOf('.');
    this.op(0x63);
    this.raw(this.enc.encode(`${name.slice(0, dot)}\n${name.slice(dot + 1)}\n`));
  }
  value(v: unknown): this {
    if (v === null || v === undefined) this.op(0x4e);
    else if (v === true) this.op(0x88);
    else if (v === false) this.op(0x89);
    else if (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v))) {
      const n = BigInt(v);
      if (n >= -(2n ** 31n) && n < 2n ** 31n) {
        this.op(0x4a);
        this.u32(Number(n) >>> 0);
      } else {
        const out: number[] = [];
        let x = n;
        for (;;) {
          out.push(Number(x & 0xffn));
          x >>= 8n;
          if ((x === 0n && !(out.at(-1)! & 0x80)) || (x === -1n && out.at(-1)! & 0x80)) break;
        }
        this.op(0x8a, out.length, ...out);
      }
    } else if (typeof v === 'number') {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, v, false);
      this.op(0x47, ...b);
    } else if (typeof v === 'string') {
      const b = this.enc.encode(v);
      this.op(0x58);
      this.u32(b.length);
      this.raw(b);
    } else if (v instanceof Uint8Array) {
      this.op(0x42);
      this.u32(v.length);
      this.raw(v);
    } else if (Array.isArray(v)) {
      this.op(0x5d, 0x28);
      for (const x of v) this.value(x);
      this.op(0x65);
    } else if (v instanceof Tuple) {
      this.op(0x28);
      for (const x of v.items) this.value(x);
      this.op(0x74);
    } else if (v instanceof PySet) {
      this.op(0x8f, 0x28);
      for (const x of v.items) this.value(x);
      this.op(0x90);
    } else if (v instanceof Global) this.global(v.name);
    else if (v instanceof Call) {
      this.global(v.fn);
      this.value(new Tuple(v.args));
      this.op(0x52);
    } else if (v instanceof PersId) {
      this.value(v.id);
      this.op(0x51);
    } else if (v instanceof Ordered) {
      this.global('collections.OrderedDict');
      this.op(0x29, 0x52, 0x28);
      for (const [k, x] of v.entries) this.value(k).value(x);
      this.op(0x75);
    } else if (typeof v === 'object') {
      this.op(0x7d, 0x28);
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) this.value(k).value(x);
      this.op(0x75);
    } else throw new TypeError(`pickler: cannot write ${typeof v}`);
    return this;
  }
  finish(): Uint8Array[] {
    this.op(0x2e);
    this.flush();
    return this.chunks;
  }
}

export function pickle(v: unknown, protocol = 2): Uint8Array[] {
  return new Pickler(protocol).value(v).finish();
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s: number[] = [];
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s.unshift(acc);
    acc *= shape[i];
  }
  return s;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** The three header pickles of a legacy torch.save: magic number, protocol 1001, sys_info. */
function legacyHeader(): Uint8Array[] {
  return [
    ...pickle(LEGACY_MAGIC),
    ...pickle(1001),
    ...pickle({ protocol_version: 1001, little_endian: true, type_sizes: { short: 2, int: 4, long: 4 } }),
  ];
}

function storageBytes(t: Tensor): Uint8Array[] {
  const n = new Uint8Array(8);
  new DataView(n.buffer).setBigInt64(0, BigInt(t.data.length), true);
  return [n, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)];
}

const storageId = (t: Tensor, key: string) =>
  new PersId(new Tuple(['storage', new Global(STORAGE_CLASS[t.dtype]!), key, 'cpu', t.data.length, null]));

/** `torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`, as torch pickles a tensor. */
export function rebuildTensor(storage: unknown, t: Tensor): Call {
  return new Call('torch._utils._rebuild_tensor_v2', [
    storage,
    0,
    new Tuple(t.shape),
    new Tuple(contiguousStrides(t.shape)),
    false,
    new Ordered([]),
  ]);
}

/**
 * A legacy torch.save of a state dict (an OrderedDict of tensors), in torch's record order: header pickles,
 * the object pickle (storages as persistent ids), the storage keys sorted as strings, then each storage as
 * an int64 count and its bytes in that order.
 */
export function legacySave(file: string, sd: Map<string, Tensor>): void {
  const keyed = [...sd].map(([name, t], i) => ({ name, t, key: String(94000000000000 + i * 64) }));
  const body = pickle(
    new Ordered(keyed.map(({ name, t, key }) => [name, rebuildTensor(storageId(t, key), t)])),
  );
  const sorted = [...keyed].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const chunks = [...legacyHeader(), ...body, ...pickle(sorted.map((s) => s.key))];
  for (const s of sorted) chunks.push(...storageBytes(s.t));
  writeChunks(file, chunks);
}

/** One storage as `torch.save(storage)` in the legacy format: what `torch.storage._load_from_bytes` reads. */
export function legacyStorageBytes(t: Tensor, key: string): Uint8Array {
  return concat([...legacyHeader(), ...pickle(storageId(t, key)), ...pickle([key]), ...storageBytes(t)]);
}

/** Writes chunks to a temp file, then renames (no fsync: test scratch files). */
export function writeChunks(file: string, chunks: Iterable<Uint8Array>): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.length) done += writeSync(fd, c, done, c.length - done);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
