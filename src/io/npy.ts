import { readFileSync } from 'node:fs';

/** A named host array as read from disk. Float16 is widened to float32 on read. */
export type DType = 'float32' | 'int32' | 'int64' | 'uint8' | 'float64';
export interface NpyArray {
  dtype: DType;
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Float64Array;
}

export class NpyError extends Error {
  constructor(file: string, what: string) {
    super(`${file}: ${what}`);
    this.name = 'NpyError';
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Parses a .npy buffer (format 1.0-3.0, little-endian, C order). */
export function parseNpy(buf: Uint8Array, file = '<buffer>'): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (buf.length < 10 || magic.some((m, i) => buf[i] !== m))
    throw new NpyError(file, 'not a .npy file (bad magic)');
  const major = buf[6];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > buf.length) throw new NpyError(file, 'truncated header');
  const header = new TextDecoder('latin1').decode(buf.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new NpyError(file, `unreadable header ${header}`);
  if (fortran === 'True')
    throw new NpyError(file, 'Fortran-order arrays are not supported; save with C order');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    throw new NpyError(file, `bad shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const body = start + headerLen;
  const sizes: Record<string, number> = {
    '<f4': 4,
    '<f2': 2,
    '<i4': 4,
    '<i8': 8,
    '|u1': 1,
    '<f8': 8,
    '|b1': 1,
  };
  const itemSize = sizes[descr];
  if (!itemSize)
    throw new NpyError(file, `unsupported dtype ${descr} (expected float16/32/64, int32/64 or uint8)`);
  if (buf.length - body < count * itemSize)
    throw new NpyError(
      file,
      `truncated: expected ${count * itemSize} data bytes, found ${buf.length - body}`,
    );
  const raw = buf.slice(body, body + count * itemSize);
  switch (descr) {
    case '<f4':
      return { dtype: 'float32', shape, data: new Float32Array(raw.buffer, 0, count) };
    case '<f8':
      return { dtype: 'float64', shape, data: new Float64Array(raw.buffer, 0, count) };
    case '<i4':
      return { dtype: 'int32', shape, data: new Int32Array(raw.buffer, 0, count) };
    case '<i8':
      return { dtype: 'int64', shape, data: new BigInt64Array(raw.buffer, 0, count) };
    case '<f2': {
      const h = new Uint16Array(raw.buffer, 0, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(h[i]);
      return { dtype: 'float32', shape, data: out };
    }
    default:
      return { dtype: 'uint8', shape, data: raw };
  }
}

export function readNpy(file: string): NpyArray {
  return parseNpy(readFileSync(file), file);
}

/** Reads a float array, widening ints; the common case for fixtures and fs3/latent files. */
export function readNpyF32(file: string): { shape: number[]; data: Float32Array } {
  const a = readNpy(file);
  if (a.data instanceof Float32Array) return { shape: a.shape, data: a.data };
  return { shape: a.shape, data: Float32Array.from(a.data as ArrayLike<number>, Number) };
}
