import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic.js';
import { CheckpointError } from './errors.js';
import {
  allocate,
  byteSwap,
  type DType,
  ELEMENT_SIZE,
  halfToFloat32,
  numel,
  type Tensor,
  type TypedArray,
  viewAs,
} from './tensor.js';

export type { DType } from './tensor.js';

/** A .npy array: a Tensor (float16 is widened to float32 unless `widen: false`). */
export type NpyArray = Tensor;

/** Kept for callers that catch it by name; every npy error is also a CheckpointError. */
export class NpyError extends CheckpointError {
  constructor(file: string, expected: string, found: string) {
    super(file, expected, found);
    this.name = 'NpyError';
  }
}

const DESCR: Record<string, DType> = {
  f4: 'float32',
  f2: 'float16',
  f8: 'float64',
  i4: 'int32',
  i8: 'int64',
  i2: 'int16',
  i1: 'int8',
  u1: 'uint8',
  b1: 'bool',
};
const DESCR_OF: Record<DType, string> = {
  float32: '<f4',
  float16: '<f2',
  float64: '<f8',
  int32: '<i4',
  int64: '<i8',
  int16: '<i2',
  int8: '|i1',
  uint8: '|u1',
  bool: '|b1',
  bfloat16: '',
};
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

export interface NpyOptions {
  /** Widen float16 to float32 (default true). */
  widen?: boolean;
}

/** Parses a .npy buffer (format 1.0-3.0, C order, either byte order). */
export function parseNpy(buf: Uint8Array, file = '<buffer>', opts: NpyOptions = {}): NpyArray {
  const fail = (expected: string, found: string): never => {
    throw new NpyError(file, expected, found);
  };
  if (buf.length < 10 || MAGIC.some((m, i) => buf[i] !== m))
    fail('a .npy file (magic \\x93NUMPY)', 'other bytes');
  const major = buf[6];
  if (major < 1 || major > 3) fail('.npy format version 1-3', `version ${major}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (major > 1 && buf.length < 12) fail('a 12-byte preamble', `${buf.length} bytes`);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > buf.length)
    fail(`a ${headerLen}-byte header`, `${buf.length - start} bytes (truncated)`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    buf.subarray(start, start + headerLen),
  );
  const descr = /'descr':\s*'([<>|=])([a-z]\d+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined)
    return fail('a header with descr, fortran_order, shape', header);
  const dtype = DESCR[descr[2]];
  if (!dtype) fail('dtype float16/32/64, int8/16/32/64, uint8 or bool', descr[0]);
  const dims = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const shape = dims.map(Number);
  if (shape.length > 32 || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    fail('a shape of non-negative integers', `(${shapeText})`);
  const count = numel(shape);
  if (fortran === 'True' && shape.filter((d) => d > 1).length > 1)
    fail('a C-order array', 'Fortran order (save with np.ascontiguousarray)');
  const body = start + headerLen;
  const es = ELEMENT_SIZE[dtype];
  if (buf.length - body < count * es)
    fail(`${count * es} data bytes for shape (${shapeText})`, `${buf.length - body} (truncated)`);
  const at = buf.byteOffset + body;
  // A view when aligned (numpy pads headers to 64 bytes), a copy otherwise.
  let data: TypedArray =
    at % es === 0
      ? viewAs(dtype, buf.buffer, at, count)
      : viewAs(dtype, buf.slice(body, body + count * es).buffer, 0, count);
  if (descr[1] === '>' && es > 1) {
    if (data.buffer === buf.buffer) data = viewAs(dtype, buf.slice(body, body + count * es).buffer, 0, count);
    byteSwap(data);
  }
  if (dtype === 'float16' && (opts.widen ?? true))
    return { dtype: 'float32', shape, data: halfToFloat32(data as Uint16Array) };
  return { dtype, shape, data };
}

export function readNpy(file: string, opts: NpyOptions = {}): NpyArray {
  return parseNpy(readFileSync(file), file, opts);
}

/** Reads a float array, widening ints; the common case for fixtures and fs3/latent files. */
export function readNpyF32(file: string): { shape: number[]; data: Float32Array } {
  const a = readNpy(file);
  if (a.data instanceof Float32Array) return { shape: a.shape, data: a.data };
  if (a.data instanceof BigInt64Array) return { shape: a.shape, data: Float32Array.from(a.data, Number) };
  return { shape: a.shape, data: Float32Array.from(a.data as ArrayLike<number>) };
}

/** The bytes of a version-1.0 .npy file (little-endian, C order, header padded to 64 bytes like numpy). */
export function encodeNpy(t: Tensor): Uint8Array {
  const descr = DESCR_OF[t.dtype];
  if (!descr) throw new NpyError('<npy>', 'a dtype .npy can hold', t.dtype);
  const count = numel(t.shape);
  if (t.data.length !== count)
    throw new NpyError('<npy>', `${count} elements for shape [${t.shape}]`, `${t.data.length}`);
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64);
  header += '\n';
  const out = new Uint8Array(10 + header.length + t.data.byteLength);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), 10 + header.length);
  return out;
}

/** Writes a .npy file atomically (a temp file renamed into place), so readers never see half a file. */
export function writeNpy(file: string, t: Tensor): void {
  writeFileAtomic(file, encodeNpy(t));
}

/** A float32 tensor from a shape and values, for writing. */
export function f32(shape: number[], data: ArrayLike<number>): Tensor {
  const a = allocate('float32', numel(shape)) as Float32Array;
  a.set(data);
  return { dtype: 'float32', shape, data: a };
}
