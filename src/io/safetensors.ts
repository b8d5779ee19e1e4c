import { writeChunksAtomic } from './atomic.js';
import { CheckpointError } from './errors.js';
import { BufferSource, type ByteSource, withFileSource } from './source.js';
import {
  bfloat16ToFloat32,
  type DType,
  ELEMENT_SIZE,
  halfToFloat32,
  numel,
  type Tensor,
  viewAs,
} from './tensor.js';

/** Hugging Face safetensors: an 8-byte header length, a JSON header, then raw little-endian tensor bytes. */

const CODES: Record<string, DType> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  F64: 'float64',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};
const CODE_OF = Object.fromEntries(Object.entries(CODES).map(([k, v]) => [v, k])) as Record<DType, string>;

/** The reference implementation refuses headers over 100 MB; so do we, before allocating. */
const MAX_HEADER = 100_000_000;

export interface Safetensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

export function loadSafetensors(file: string, opts: { widen?: boolean } = {}): Safetensors {
  return withFileSource(file, (src) => readSafetensors(src, opts));
}

export function parseSafetensors(
  bytes: Uint8Array,
  name = '<buffer>',
  opts: { widen?: boolean } = {},
): Safetensors {
  return readSafetensors(new BufferSource(bytes, name), opts);
}

function readSafetensors(src: ByteSource, opts: { widen?: boolean }): Safetensors {
  const fail = (expected: string, found: string): never => {
    throw new CheckpointError(src.name, expected, found);
  };
  if (src.size < 8) fail('a safetensors file (8-byte header length)', `${src.size} bytes`);
  const lenBytes = src.read(0, 8);
  const len = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (len < 2 || len > MAX_HEADER || 8 + len > src.size)
    fail(`a JSON header of at most ${MAX_HEADER} bytes inside the file`, `a declared length of ${len}`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(src.read(8, len)));
  } catch (e) {
    fail('a JSON header', (e as Error).message);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('a JSON object header', typeof header);
  const dataStart = 8 + len;
  const dataSize = src.size - dataStart;
  const tensors = new Map<string, Tensor>();
  let metadata: Record<string, string> = {};
  const widen = opts.widen ?? true;
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof info !== 'object' || info === null || Object.values(info).some((v) => typeof v !== 'string'))
        fail('string-to-string __metadata__', JSON.stringify(info).slice(0, 80));
      metadata = info as Record<string, string>;
      continue;
    }
    const e = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = typeof e?.dtype === 'string' ? CODES[e.dtype] : undefined;
    if (!dtype) fail(`a supported dtype for ${name}`, JSON.stringify(e?.dtype));
    const dt = dtype as DType;
    const shape = e.shape;
    if (
      !Array.isArray(shape) ||
      shape.length > 32 ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      numel(shape) > 2 ** 32
    )
      fail(`a shape for ${name}`, JSON.stringify(shape));
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0))
      fail(`data_offsets [begin, end] for ${name}`, JSON.stringify(off));
    const [begin, end] = off as number[];
    const count = numel(shape as number[]);
    if (begin > end || end > dataSize || end - begin !== count * ELEMENT_SIZE[dt])
      fail(
        `${count * ELEMENT_SIZE[dt]} bytes for ${name} inside the ${dataSize}-byte data`,
        `offsets [${begin}, ${end}]`,
      );
    const raw = new ArrayBuffer(count * ELEMENT_SIZE[dt]);
    src.readInto(dataStart + begin, new Uint8Array(raw));
    let t: Tensor = { dtype: dt, shape: shape as number[], data: viewAs(dt, raw, 0, count) };
    if (widen && dt === 'float16')
      t = { dtype: 'float32', shape: t.shape, data: halfToFloat32(t.data as Uint16Array) };
    if (widen && dt === 'bfloat16')
      t = { dtype: 'float32', shape: t.shape, data: bfloat16ToFloat32(t.data as Uint16Array) };
    tensors.set(name, t);
  }
  return { tensors, metadata };
}

/** Writes tensors (in the given order, 8-byte aligned) atomically. */
export function saveSafetensors(
  file: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const code = CODE_OF[t.dtype];
    if (t.data.length !== numel(t.shape))
      throw new CheckpointError(
        file,
        `${numel(t.shape)} elements for ${name} [${t.shape}]`,
        `${t.data.length}`,
      );
    header[name] = { dtype: code, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(head.length), true);
  writeChunksAtomic(file, (write) => {
    write(len);
    write(head);
    for (const [, t] of entries) write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  });
}
