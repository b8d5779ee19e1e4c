/**
 * The host tensor that every loader in `src/io` returns: a dtype, a shape and a C-contiguous typed array.
 * Half-precision types keep their raw bits in a Uint16Array; `toFloat32` widens them.
 */

export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export const ELEMENT_SIZE: Readonly<Record<DType, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** Allocates the typed array a dtype is stored in. */
export function allocate(dtype: DType, count: number): TypedArray {
  return viewAs(dtype, new ArrayBuffer(count * ELEMENT_SIZE[dtype]), 0, count);
}

/** A typed-array view of `count` elements at `byteOffset` (which must be aligned to the element size). */
export function viewAs(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, count: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer, byteOffset, count);
    case 'float64':
      return new Float64Array(buffer, byteOffset, count);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buffer, byteOffset, count);
    case 'int64':
      return new BigInt64Array(buffer, byteOffset, count);
    case 'int32':
      return new Int32Array(buffer, byteOffset, count);
    case 'int16':
      return new Int16Array(buffer, byteOffset, count);
    case 'int8':
      return new Int8Array(buffer, byteOffset, count);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buffer, byteOffset, count);
  }
}

/** Reverses the bytes of every element in place: big-endian storage to the host's little-endian. */
export function byteSwap(a: TypedArray): void {
  const es = a.BYTES_PER_ELEMENT;
  if (es === 1) return;
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (let i = 0; i < b.length; i += es)
    for (let j = 0; j < es >> 1; j++) {
      const t = b[i + j];
      b[i + j] = b[i + es - 1 - j];
      b[i + es - 1 - j] = t;
    }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function isTensor(v: unknown): v is Tensor {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Tensor).dtype === 'string' &&
    Array.isArray((v as Tensor).shape) &&
    ArrayBuffer.isView((v as Tensor).data)
  );
}

let halfTable: Float32Array | undefined;

/** All 65536 half-precision values, so widening is one table lookup per element. */
export function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    if (e === 0) t[h] = s * 2 ** -14 * (f / 1024);
    else if (e === 31) t[h] = f ? Number.NaN : s * Number.POSITIVE_INFINITY;
    else t[h] = s * 2 ** (e - 15) * (1 + f / 1024);
  }
  // NaNs keep their payload, as torch's conversion does (a JS NaN store would canonicalize it).
  const bits = new Uint32Array(t.buffer);
  for (let f = 1; f < 1024; f++) {
    bits[0x7c00 | f] = 0x7f800000 | (f << 13);
    bits[0xfc00 | f] = 0xff800000 | (f << 13);
  }
  halfTable = t;
  return t;
}

/**
 * Widens float16 bits into `out`. `out` may share memory with `src` when `src` lies at or after
 * out's byte offset plus 2·length (the loaders read halves into the upper half of the float buffer).
 * The table holds float32 bit patterns and is copied as integers: no float conversions, NaNs kept exact.
 */
export function halfToFloat32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const t = new Uint32Array(halfToFloatTable().buffer);
  const o = new Uint32Array(out.buffer, out.byteOffset, src.length);
  const n = src.length;
  if (n % 2 === 0 && src.byteOffset % 4 === 0) {
    // Two halves per 32-bit read halves the loads; forward order keeps the in-place case safe.
    const w = new Uint32Array(src.buffer, src.byteOffset, n >>> 1);
    const m = w.length;
    for (let i = 0, j = 0; i < m; i++, j += 2) {
      const x = w[i];
      o[j] = t[x & 0xffff];
      o[j + 1] = t[x >>> 16];
    }
  } else for (let i = 0; i < n; i++) o[i] = t[src[i]];
  return out;
}

export function bfloat16ToFloat32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const n = src.length;
  for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Round-to-nearest-even float32 → float16 bits (for writers and tests). */
export function float32ToHalf(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  return sign | (half + (rem > 0x1000 || (rem === 0x1000 && half & 1) ? 1 : 0));
}

/** Any tensor as float32 values (float32 input is returned as is, not copied). */
export function toFloat32(t: Tensor): Tensor & { dtype: 'float32'; data: Float32Array } {
  const { shape, data } = t;
  switch (t.dtype) {
    case 'float32':
      return t as Tensor & { dtype: 'float32'; data: Float32Array };
    case 'float16':
      return { dtype: 'float32', shape, data: halfToFloat32(data as Uint16Array) };
    case 'bfloat16':
      return { dtype: 'float32', shape, data: bfloat16ToFloat32(data as Uint16Array) };
    case 'int64': {
      const src = data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return { dtype: 'float32', shape, data: out };
    }
    default:
      return { dtype: 'float32', shape, data: Float32Array.from(data as ArrayLike<number>) };
  }
}

/** Reads a tensor's values as JS numbers (int64 through Number), e.g. for scalars and small index tensors. */
export function toNumbers(t: Tensor): number[] {
  return Array.from(toFloat32(t).data);
}

/**
 * Flattens nested dicts/lists of tensors into dotted keys, the way torch names state-dict entries.
 * torch.nn.Module states (as found in pickled modules) contribute their parameters, then buffers, then
 * child modules. Non-tensor leaves are skipped. Shared sub-objects are visited once per path, with a cap
 * on key count and depth so a hostile DAG cannot explode.
 */
export function stateDict(
  obj: unknown,
  prefix = '',
  out: Map<string, Tensor> = new Map(),
): Map<string, Tensor> {
  const onPath = new Set<object>();
  let visits = 0;
  const visit = (v: unknown, key: string, depth: number): void => {
    if (++visits > 5_000_000) throw new RangeError('stateDict: more than 5M objects (shared references?)');
    if (depth > 256) throw new RangeError(`stateDict: nesting deeper than 256 at "${key}"`);
    if (out.size > 10_000_000) throw new RangeError('stateDict: more than 10M tensors');
    if (isTensor(v)) {
      out.set(key, v);
      return;
    }
    if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return;
    if (onPath.has(v)) return;
    onPath.add(v);
    const join = (k: string) => (key === '' ? k : `${key}.${k}`);
    const entries = moduleEntries(v) ?? plainEntries(v);
    for (const [k, child] of entries) visit(child, join(k), depth + 1);
    onPath.delete(v);
  };
  visit(obj, prefix, 0);
  return out;
}

function plainEntries(v: object): Iterable<[string, unknown]> {
  if (Array.isArray(v)) return v.map((x, i) => [String(i), x] as [string, unknown]);
  if (v instanceof Map) {
    const r: [string, unknown][] = [];
    for (const [k, x] of v) if (typeof k === 'string' || typeof k === 'number') r.push([String(k), x]);
    return r;
  }
  return Object.entries(v);
}

function getField(v: object, name: string): unknown {
  return v instanceof Map ? v.get(name) : (v as Record<string, unknown>)[name];
}

/** For a pickled torch.nn.Module state (`_parameters`, `_buffers`, `_modules`), its entries in state-dict order. */
function moduleEntries(v: object): [string, unknown][] | undefined {
  const params = getField(v, '_parameters');
  const modules = getField(v, '_modules');
  if (typeof params !== 'object' || params === null || typeof modules !== 'object' || modules === null)
    return undefined;
  const buffers = getField(v, '_buffers');
  const r: [string, unknown][] = [];
  for (const group of [params, buffers, modules]) {
    if (typeof group !== 'object' || group === null) continue;
    for (const e of plainEntries(group)) if (e[1] !== null && e[1] !== undefined) r.push(e);
  }
  return r;
}
