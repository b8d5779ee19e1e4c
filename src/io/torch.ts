import { CheckpointError } from './errors.js';
import { describe, isPyGlobal, type PyGlobal, PyObject, TruncatedPickleError, unpickle } from './pickle.js';
import { BufferSource, type ByteSource, withFileSource } from './source.js';
import {
  allocate,
  bfloat16ToFloat32,
  byteSwap,
  type DType,
  ELEMENT_SIZE,
  halfToFloat32,
  numel,
  type Tensor,
  type TypedArray,
  viewAs,
} from './tensor.js';
import { HalfWidener, type WidenOptions } from './widen.js';
import { isZip, ZipReader } from './zip.js';

/**
 * Readers for PyTorch's files: torch.save's zip and legacy formats, TorchScript archives and plain pickles
 * such as NVIDIA's stylegan2-ada-pytorch snapshots. Nothing in a file is ever executed: pickles run on the
 * data-only VM in pickle.ts with the allow-list below, and TorchScript code is only scanned for the names
 * of parameters and buffers.
 */

export type TorchFormat = 'torch-zip' | 'torch-legacy' | 'torchscript' | 'pickle';

export interface LoadOptions extends WidenOptions {
  /** Widen float16/bfloat16 tensors to float32 while reading (default true: every model computes in float32). */
  widen?: boolean;
}

export interface Checkpoint {
  file: string;
  format: TorchFormat;
  /**
   * Every tensor under its dotted key path, in file order: for torch.save files the flattened object (a
   * state dict's own keys; `g_ema.conv1.conv.weight` for nested ones); for TorchScript archives exactly the
   * keys of `torch.jit.load(f).state_dict()`; a file holding one bare tensor has it under ''.
   */
  tensors: Map<string, Tensor>;
  /**
   * The whole unpickled object as plain JS: dicts with string keys become objects (other dicts stay Maps),
   * tuples and lists arrays, tensors the same objects as in `tensors`, class instances objects with a
   * `__class__` field (TorchScript modules, argparse.Namespace, NVIDIA persistent objects).
   */
  value: unknown;
}

// --- storages and lazy tensors -------------------------------------------------------------------------

/** A typed storage whose bytes sit at `byteOffset` in `source` (set later for legacy files). */
class StorageRef {
  byteOffset = -1;
  source: ByteSource | undefined;
  bigEndian = false;
  constructor(
    readonly dtype: DType,
    readonly numel: number,
    readonly key: string,
  ) {}
  /** A legacy "view" storage: `numel` elements from `elementOffset` of `root`. */
  view?: { root: StorageRef; elementOffset: number };
}

class LazyTensor {
  constructor(
    readonly storage: StorageRef,
    readonly dtype: DType,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** A numpy array or dtype rebuilt from numpy's pickle protocol. */
class NumpyDtype {
  kind: DType | undefined;
  bigEndian = false;
  constructor(readonly code: string) {
    this.kind = NUMPY_CODES[code.replace(/^[<>|=]/, '')];
    this.bigEndian = code.startsWith('>');
  }
  setState(state: unknown): void {
    if (Array.isArray(state) && typeof state[1] === 'string') this.bigEndian = state[1] === '>';
  }
}

class NumpyArray {
  tensor: Tensor | undefined;
  constructor(readonly file: string) {}
  setState(state: unknown): void {
    const fail = (found: string): never => {
      throw new CheckpointError(
        this.file,
        'a numpy array state (version, shape, dtype, fortran, bytes)',
        found,
      );
    };
    if (!Array.isArray(state) || state.length !== 5) fail(describe(state));
    const [, shape, dtype, fortran, raw] = state as unknown[];
    if (!(dtype instanceof NumpyDtype) || !dtype.kind) fail(`dtype ${describe(dtype)}`);
    const d = dtype as NumpyDtype;
    const dims = checkShape(this.file, shape, 'numpy shape');
    if (fortran && dims.length > 1) fail('a Fortran-order array');
    if (!(raw instanceof Uint8Array)) fail(`array data ${describe(raw)}`);
    const kind = d.kind as DType;
    const count = numel(dims);
    const bytes = raw as Uint8Array;
    if (bytes.length !== count * ELEMENT_SIZE[kind])
      fail(`${bytes.length} data bytes for ${count} ${kind} elements`);
    const data = allocate(kind, count);
    new Uint8Array(data.buffer).set(bytes);
    if (d.bigEndian) byteSwap(data);
    this.tensor = { dtype: kind, shape: dims, data };
  }
}

const NUMPY_CODES: Record<string, DType> = {
  f8: 'float64',
  f4: 'float32',
  f2: 'float16',
  i8: 'int64',
  i4: 'int32',
  i2: 'int16',
  i1: 'int8',
  u1: 'uint8',
  b1: 'bool',
  float64: 'float64',
  float32: 'float32',
  float16: 'float16',
  int64: 'int64',
  int32: 'int32',
  uint8: 'uint8',
  bool: 'bool',
};

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  DoubleStorage: 'float64',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  UntypedStorage: 'uint8',
};

const TORCH_DTYPES: Record<string, DType> = {
  float32: 'float32',
  float: 'float32',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  float64: 'float64',
  double: 'float64',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

const MAX_RANK = 32;
const MAX_NUMEL = 2 ** 32;

/** A tuple of non-negative integers of at most MAX_RANK entries (a size or a stride). */
function checkIntTuple(file: string, v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length > MAX_RANK)
    throw new CheckpointError(file, `${what}: a tuple of at most ${MAX_RANK} entries`, describe(v));
  for (const d of v)
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      throw new CheckpointError(file, `${what}: non-negative integers`, describe(d));
  return v as number[];
}

/** A tensor size: its element count must also fit MAX_NUMEL. Strides are not sizes: a [1,1,H,W] noise
 * buffer has strides (H·W, H·W, W, 1), whose product exceeds 2^32 from H = 128 on; they are bounded by
 * the storage-extent check in `rebuild` instead. */
function checkShape(file: string, v: unknown, what: string): number[] {
  const shape = checkIntTuple(file, v, what);
  if (numel(shape) > MAX_NUMEL)
    throw new CheckpointError(file, `${what}: at most 2^32 elements`, `${shape.join('x')}`);
  return shape;
}

/** Pickle values that tensors are built from; one per load. */
class Loader {
  readonly file: string;
  readonly widen: boolean;
  private readonly done = new Map<object, Tensor>();
  private readonly widener: HalfWidener;
  constructor(file: string, opts: LoadOptions) {
    this.file = file;
    this.widen = opts.widen ?? true;
    this.widener = new HalfWidener(opts);
  }

  /** Runs a whole load: the tensors are complete (widened) when it returns, and no worker outlives it. */
  run<T>(load: () => T): T {
    try {
      const result = load();
      this.widener.finish();
      return result;
    } finally {
      this.widener.close();
    }
  }

  fail(expected: string, found: string): never {
    throw new CheckpointError(this.file, expected, found);
  }

  /** `_rebuild_tensor_v2(storage, offset, size, stride, ...)` and friends, validated but not yet read. */
  rebuild(args: unknown[], dtype?: DType): LazyTensor {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef))
      this.fail('a storage as the first tensor argument', describe(storage));
    const st = storage as StorageRef;
    const shape = checkShape(this.file, size, 'tensor size');
    const strides = checkIntTuple(this.file, stride, 'tensor stride');
    if (strides.length !== shape.length)
      this.fail(`${shape.length} strides for shape [${shape}]`, `${strides.length} strides`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0)
      this.fail('a non-negative storage offset', describe(offset));
    const dt = dtype ?? st.dtype;
    const storageElems =
      dtype && dtype !== st.dtype ? (st.numel * ELEMENT_SIZE[st.dtype]) / ELEMENT_SIZE[dt] : st.numel;
    if (numel(shape) > 0) {
      let last = offset as number;
      for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * strides[i];
      if (last >= storageElems)
        this.fail(
          `tensor [${shape}] (offset ${offset}, strides [${strides}]) inside its storage`,
          `a storage of ${storageElems} ${dt} elements`,
        );
    }
    return new LazyTensor(st, dt, offset as number, shape, strides);
  }

  /** Reads a tensor's elements into fresh memory, in C order, widening halves when asked. */
  materialize(t: LazyTensor): Tensor {
    const hit = this.done.get(t);
    if (hit) return hit;
    let root = t.storage;
    const elemOffset = t.offset;
    // Byte offsets, not element offsets: a tensor may reinterpret an untyped storage (rebuild_tensor_v3).
    let baseByte = 0;
    while (root.view) {
      baseByte += root.view.elementOffset * ELEMENT_SIZE[root.dtype];
      root = root.view.root;
    }
    if (!root.source || root.byteOffset < 0) this.fail(`the data of storage ${root.key}`, 'none');
    const src = root.source as ByteSource;
    const es = ELEMENT_SIZE[t.dtype];
    const count = numel(t.shape);
    const widenable = this.widen && (t.dtype === 'float16' || t.dtype === 'bfloat16');
    const outDtype: DType = widenable ? 'float32' : t.dtype;
    let data: TypedArray;
    const start = root.byteOffset + baseByte + elemOffset * es;
    if (isContiguous(t.shape, t.stride) || count <= 1) {
      if (widenable) {
        // Read the halves into the upper half of the float32 buffer; they are widened forwards in place
        // (no scratch) when the load finishes, part of them on a worker thread.
        const out = new Float32Array(count);
        const halves = new Uint16Array(out.buffer, count * 2, count);
        src.readInto(start, new Uint8Array(out.buffer, count * 2, count * 2));
        if (root.bigEndian) byteSwap(halves);
        const tensor: Tensor = { dtype: outDtype, shape: t.shape.slice(), data: out };
        this.widener.defer(out, count, t.dtype as 'float16' | 'bfloat16', (d) => {
          tensor.data = d;
        });
        this.done.set(t, tensor);
        return tensor;
      } else {
        data = allocate(t.dtype, count);
        src.readInto(start, new Uint8Array(data.buffer, 0, count * es));
        if (root.bigEndian) byteSwap(data);
      }
    } else {
      let span = 1;
      for (let i = 0; i < t.shape.length; i++) span += (t.shape[i] - 1) * t.stride[i];
      const raw = new Uint8Array(span * es);
      src.readInto(start, raw);
      const spanArr = viewAs(t.dtype, raw.buffer, 0, span);
      if (root.bigEndian) byteSwap(spanArr);
      const dense = allocate(t.dtype, count);
      gather(spanArr, dense, t.shape, t.stride);
      data = widenable
        ? t.dtype === 'float16'
          ? halfToFloat32(dense as Uint16Array)
          : bfloat16ToFloat32(dense as Uint16Array)
        : dense;
    }
    const tensor: Tensor = { dtype: outDtype, shape: t.shape.slice(), data };
    this.done.set(t, tensor);
    return tensor;
  }

  /** A bare storage (e.g. the root of a `_load_from_bytes` save) as a 1-D tensor. */
  materializeStorage(s: StorageRef): Tensor {
    const hit = this.done.get(s);
    if (hit) return hit;
    const t = this.materialize(new LazyTensor(s, s.dtype, 0, [s.numel], [1]));
    this.done.set(s, t);
    return t;
  }

  /** Turns raw pickle values into the plain values of `Checkpoint.value`; shared objects stay shared. */
  toPlain(root: unknown, skip?: (v: unknown) => unknown): unknown {
    const seen = new Map<object, unknown>();
    const conv = (v: unknown, depth: number): unknown => {
      if (typeof v !== 'object' || v === null) return v;
      const stub = skip?.(v);
      if (stub !== undefined) return stub;
      if (depth > 500) this.fail('objects nested at most 500 deep', 'deeper nesting');
      const hit = seen.get(v);
      if (hit !== undefined) return hit;
      if (v instanceof LazyTensor) return this.materialize(v);
      if (v instanceof StorageRef) return this.materializeStorage(v);
      if (v instanceof NumpyArray) return v.tensor ?? this.fail('a numpy array with data', 'no BUILD state');
      if (v instanceof NumpyDtype) return v.kind ?? v.code;
      if (v instanceof Uint8Array) return v;
      if (isPyGlobal(v)) return v.qualname;
      if (Array.isArray(v)) {
        const out: unknown[] = [];
        seen.set(v, out);
        for (const x of v) out.push(conv(x, depth + 1));
        return out;
      }
      if (v instanceof Set) {
        const out = new Set<unknown>();
        seen.set(v, out);
        for (const x of v) out.add(conv(x, depth + 1));
        return out;
      }
      if (v instanceof Map) {
        if ([...v.keys()].every((k) => typeof k === 'string')) {
          const out: Record<string, unknown> = {};
          seen.set(v, out);
          for (const [k, x] of v) setOwn(out, k as string, conv(x, depth + 1));
          return out;
        }
        const out = new Map<unknown, unknown>();
        seen.set(v, out);
        for (const [k, x] of v) out.set(conv(k, depth + 1), conv(x, depth + 1));
        return out;
      }
      if (v instanceof PyObject) {
        const out: Record<string, unknown> = { __class__: v.className };
        seen.set(v, out);
        if (v.state instanceof Map) {
          for (const [k, x] of v.state) if (typeof k === 'string') setOwn(out, k, conv(x, depth + 1));
        } else if (v.state !== undefined) out.__state__ = conv(v.state, depth + 1);
        if (v.args.length) out.__args__ = conv(v.args, depth + 1);
        return out;
      }
      return this.fail('a plain pickle value', describe(v));
    };
    return conv(root, 0);
  }

  /**
   * Flattens raw values into dotted keys, keeping Python's insertion order (a plain JS object would move
   * integer-like keys first). Pickled nn.Modules contribute parameters, buffers, then children.
   */
  flatten(root: unknown, prefix = ''): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const onPath = new Set<object>();
    let visits = 0;
    const visit = (v: unknown, key: string, depth: number): void => {
      if (typeof v !== 'object' || v === null) return;
      // Shared sub-objects are walked once per path; a budget stops a doubling DAG from exploding.
      if (++visits > 1_000_000) this.fail('at most 1M objects to walk', 'more (shared references?)');
      if (depth > 500) this.fail('objects nested at most 500 deep', 'deeper nesting');
      if (out.size > 1_000_000) this.fail('at most a million tensors', 'more');
      if (v instanceof LazyTensor) return void out.set(key, this.materialize(v));
      if (v instanceof StorageRef) return void out.set(key, this.materializeStorage(v));
      if (v instanceof NumpyArray) return void (v.tensor && out.set(key, v.tensor));
      if (onPath.has(v)) return;
      onPath.add(v);
      const join = (k: unknown) => (key === '' ? String(k) : `${key}.${String(k)}`);
      if (Array.isArray(v)) for (let i = 0; i < v.length; i++) visit(v[i], join(i), depth + 1);
      else if (v instanceof Map) {
        const mod = moduleGroups(v);
        if (mod) for (const g of mod) for (const [k, x] of g) visit(x, join(k), depth + 1);
        else
          for (const [k, x] of v)
            if (typeof k === 'string' || typeof k === 'number') visit(x, join(k), depth + 1);
      } else if (v instanceof PyObject) visit(v.state, key, depth + 1);
      onPath.delete(v);
    };
    visit(root, prefix, 0);
    return out;
  }
}

function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__')
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** The `_parameters`, `_buffers`, `_modules` dicts of a pickled torch.nn.Module's state. */
function moduleGroups(state: Map<unknown, unknown>): Map<unknown, unknown>[] | undefined {
  const p = state.get('_parameters');
  const m = state.get('_modules');
  if (!(p instanceof Map) || !(m instanceof Map)) return undefined;
  const b = state.get('_buffers');
  return b instanceof Map ? [p, b, m] : [p, m];
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

function gather(src: TypedArray, dst: TypedArray, shape: number[], stride: number[]): void {
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const n = dst.length;
  let off = 0;
  for (let i = 0; i < n; i++) {
    (dst as Float32Array)[i] = (src as Float32Array)[off];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      off += stride[d];
      if (idx[d] < shape[d]) break;
      off -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
}

// --- the allow-list ----------------------------------------------------------------------------------

export interface GlobalPolicy {
  /** `__torch__.*` classes (TorchScript archives only). */
  torchscript?: boolean;
  /** `torch.storage._load_from_bytes` (pickled storages in plain pickles). */
  loadFromBytes?: boolean;
  /** Reported for every global a pickle names that resolves (tests use it to audit the allow-list). */
  trace?: (qualname: string) => void;
}

/** Every global name any loader accepts, for review; `__torch__.*` and `torch.nn.modules.*` are patterns. */
export const ALLOWED_GLOBALS: readonly string[] = [
  'collections.OrderedDict',
  'builtins.set',
  'builtins.frozenset',
  'builtins.bytearray',
  '_codecs.encode',
  'argparse.Namespace',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
  'torch.device',
  'torch.Size',
  'torch.Tensor',
  'torch.nn.parameter.Parameter',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
  'torch.storage.UntypedStorage',
  ...Object.keys(TORCH_DTYPES).map((s) => `torch.${s}`),
  'torch.storage._load_from_bytes',
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.ndarray',
  'numpy.dtype',
  'torch_utils.persistence._reconstruct_persistent_obj',
  'dnnlib.util.EasyDict',
  'dnnlib.EasyDict',
  'torch.jit._pickle.restore_type_tag',
  'torch.jit._pickle.build_intlist',
  'torch.jit._pickle.build_doublelist',
  'torch.jit._pickle.build_boollist',
  'torch.jit._pickle.build_tensorlist',
  '__torch__.*',
  'torch.nn.modules.*',
];

function makeResolver(
  ld: Loader,
  policy: GlobalPolicy,
  loadBytes: (b: Uint8Array) => StorageRef,
): (module: string, name: string) => PyGlobal | undefined {
  const fn = (qualname: string, call: (args: unknown[]) => unknown): PyGlobal => ({
    kind: 'global',
    qualname,
    call,
  });
  const cls = (
    qualname: string,
    construct: (args: unknown[]) => unknown,
    call?: (a: unknown[]) => unknown,
  ): PyGlobal => ({
    kind: 'global',
    qualname,
    construct,
    call: call ?? construct,
  });
  const marker = (qualname: string): PyGlobal => ({ kind: 'global', qualname });
  const mapFrom = (args: unknown[], q: string): Map<unknown, unknown> => {
    const m = new Map<unknown, unknown>();
    const src = args[0];
    if (src === undefined || src === null) return m;
    if (src instanceof Map) for (const [k, v] of src) m.set(k, v);
    else if (Array.isArray(src))
      for (const kv of src) {
        if (!Array.isArray(kv) || kv.length !== 2) ld.fail(`(key, value) pairs for ${q}`, describe(kv));
        m.set(kv[0], kv[1]);
      }
    else ld.fail(`items for ${q}`, describe(src));
    return m;
  };
  const dtypeArg = (v: unknown): DType => {
    if (isPyGlobal(v) && v.qualname.startsWith('torch.')) {
      const d = TORCH_DTYPES[v.qualname.slice(6)];
      if (d) return d;
    }
    return ld.fail('a torch dtype', describe(v));
  };
  const table: Record<string, () => PyGlobal> = {
    'collections.OrderedDict': () => cls('collections.OrderedDict', (a) => mapFrom(a, 'OrderedDict')),
    'dnnlib.util.EasyDict': () => cls('dnnlib.util.EasyDict', (a) => mapFrom(a, 'EasyDict')),
    'dnnlib.EasyDict': () => cls('dnnlib.EasyDict', (a) => mapFrom(a, 'EasyDict')),
    'builtins.set': () => cls('builtins.set', (a) => new Set(Array.isArray(a[0]) ? a[0] : [])),
    'builtins.frozenset': () => cls('builtins.frozenset', (a) => new Set(Array.isArray(a[0]) ? a[0] : [])),
    'builtins.bytearray': () =>
      cls('builtins.bytearray', (a) =>
        a[0] instanceof Uint8Array ? a[0] : ld.fail('bytes', describe(a[0])),
      ),
    '_codecs.encode': () =>
      fn('_codecs.encode', (a) => {
        const [s] = a;
        if (typeof s !== 'string') return ld.fail('a string for _codecs.encode', describe(s));
        const out = new Uint8Array(s.length);
        for (let i = 0; i < s.length; i++) {
          const c = s.charCodeAt(i);
          if (c > 255) ld.fail('latin-1 text for _codecs.encode', `code point ${c}`);
          out[i] = c;
        }
        return out;
      }),
    'argparse.Namespace': () =>
      cls('argparse.Namespace', () => {
        const o = new PyObject('argparse.Namespace');
        o.state = new Map();
        return o;
      }),
    'torch._utils._rebuild_tensor': () => fn('torch._utils._rebuild_tensor', (a) => ld.rebuild(a)),
    'torch._utils._rebuild_tensor_v2': () => fn('torch._utils._rebuild_tensor_v2', (a) => ld.rebuild(a)),
    'torch._utils._rebuild_tensor_v3': () =>
      fn('torch._utils._rebuild_tensor_v3', (a) => ld.rebuild(a, dtypeArg(a[6]))),
    'torch._utils._rebuild_parameter': () => fn('torch._utils._rebuild_parameter', (a) => a[0]),
    'torch._utils._rebuild_parameter_with_state': () =>
      fn('torch._utils._rebuild_parameter_with_state', (a) => a[0]),
    'torch._tensor._rebuild_from_type_v2': () =>
      fn('torch._tensor._rebuild_from_type_v2', (a) => {
        const [f, , args] = a;
        if (!isPyGlobal(f) || !f.call || !f.qualname.startsWith('torch._utils._rebuild'))
          return ld.fail('a torch rebuild function', describe(f));
        if (!Array.isArray(args)) return ld.fail('rebuild arguments', describe(args));
        return f.call(args);
      }),
    'torch.device': () =>
      fn('torch.device', (a) => (typeof a[0] === 'string' ? a[0] + (a.length > 1 ? `:${a[1]}` : '') : 'cpu')),
    'torch.Size': () =>
      fn('torch.Size', (a) => (Array.isArray(a[0]) ? a[0] : ld.fail('a tuple', describe(a[0])))),
    'torch.Tensor': () => marker('torch.Tensor'),
    'torch.nn.parameter.Parameter': () => marker('torch.nn.parameter.Parameter'),
    'torch.storage.UntypedStorage': () => marker('torch.UntypedStorage'),
    'numpy.ndarray': () => marker('numpy.ndarray'),
    'numpy.dtype': () =>
      cls('numpy.dtype', (a) =>
        typeof a[0] === 'string' ? new NumpyDtype(a[0]) : ld.fail('a dtype code', describe(a[0])),
      ),
    'torch_utils.persistence._reconstruct_persistent_obj': () =>
      fn('torch_utils.persistence._reconstruct_persistent_obj', (a) => {
        const meta = a[0];
        if (
          !(meta instanceof Map) ||
          meta.get('type') !== 'class' ||
          typeof meta.get('class_name') !== 'string'
        )
          return ld.fail("a persistence meta dict {type: 'class', class_name, state}", describe(meta));
        const o = new PyObject(meta.get('class_name') as string);
        // The embedded module_src is deliberately dropped: we rebuild from parameters, never from source.
        o.state = meta.get('state');
        return o;
      }),
    'torch.jit._pickle.restore_type_tag': () => fn('torch.jit._pickle.restore_type_tag', (a) => a[0]),
  };
  for (const s of Object.keys(STORAGE_DTYPES)) table[`torch.${s}`] = () => marker(`torch.${s}`);
  for (const s of Object.keys(TORCH_DTYPES)) table[`torch.${s}`] = () => marker(`torch.${s}`);
  for (const m of ['numpy.core.multiarray', 'numpy._core.multiarray']) {
    table[`${m}._reconstruct`] = () =>
      fn(`${m}._reconstruct`, (a) => {
        if (!isPyGlobal(a[0]) || a[0].qualname !== 'numpy.ndarray')
          return ld.fail('numpy.ndarray', describe(a[0]));
        return new NumpyArray(ld.file);
      });
    table[`${m}.scalar`] = () =>
      fn(`${m}.scalar`, (a) => {
        const [dt, raw] = a;
        if (!(dt instanceof NumpyDtype) || !dt.kind || !(raw instanceof Uint8Array))
          return ld.fail('a numpy scalar (dtype, bytes)', `${describe(dt)}, ${describe(raw)}`);
        const arr = new NumpyArray(ld.file);
        arr.setState([1, [], dt, false, raw]);
        const d = arr.tensor!.data;
        const x = d instanceof Float32Array && arr.tensor!.dtype === 'float16' ? d[0] : d[0];
        if (arr.tensor!.dtype === 'float16') return halfToFloat32(d as Uint16Array)[0];
        if (typeof x === 'bigint') return Number.isSafeInteger(Number(x)) ? Number(x) : x;
        if (arr.tensor!.dtype === 'bool') return x !== 0;
        return x;
      });
  }
  for (const k of ['build_intlist', 'build_doublelist', 'build_boollist', 'build_tensorlist'])
    table[`torch.jit._pickle.${k}`] = () => fn(`torch.jit._pickle.${k}`, (a) => a[0]);
  if (policy.loadFromBytes)
    table['torch.storage._load_from_bytes'] = () =>
      fn('torch.storage._load_from_bytes', (a) =>
        a[0] instanceof Uint8Array ? loadBytes(a[0]) : ld.fail('bytes for _load_from_bytes', describe(a[0])),
      );

  return (module, name) => {
    const q = `${module}.${name}`;
    let g: PyGlobal | undefined;
    const make = Object.hasOwn(table, q) ? table[q] : undefined;
    if (make) g = make();
    else if (policy.torchscript && /^__torch__(\.\w+)+$/.test(q))
      g = cls(q, () => {
        const o = new PyObject(q);
        o.state = new Map();
        return o;
      });
    else if (/^torch\.nn\.modules(\.\w+)+$/.test(module) && /^[A-Z]\w*$/.test(name))
      g = cls(
        q,
        () => new PyObject(q),
        () => new PyObject(q),
      );
    if (g) policy.trace?.(q);
    return g;
  };
}

function storageDtype(ld: Loader, t: unknown): DType {
  if (isPyGlobal(t)) {
    const d = STORAGE_DTYPES[t.qualname.replace(/^torch\.(storage\.)?/, '')];
    if (d) return d;
  }
  return ld.fail('a torch storage type', describe(t));
}

// --- torch.save zip format and TorchScript archives ----------------------------------------------------

/** Finds the single top-level folder torch puts every record in (`archive/`, or the file's stem). */
function archiveRoot(zip: ZipReader): string {
  for (const name of zip.entries.keys()) {
    const i = name.indexOf('/');
    if (i > 0) {
      const root = name.slice(0, i + 1);
      if (zip.has(`${root}data.pkl`)) return root;
    }
  }
  if (zip.has('data.pkl')) return '';
  throw new CheckpointError(
    zip.name,
    'a torch archive (a zip with <name>/data.pkl)',
    zip.entries.size === 0 ? 'an empty zip' : `a zip whose first entry is ${[...zip.entries.keys()][0]}`,
  );
}

function zipPickle(
  zip: ZipReader,
  ld: Loader,
  root: string,
  pkl: string,
  dataDir: string,
  policy: GlobalPolicy,
): unknown {
  const bigEndian =
    zip.has(`${root}byteorder`) && new TextDecoder().decode(zip.read(`${root}byteorder`)).trim() === 'big';
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): unknown => {
    if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== 'storage')
      return ld.fail("a persistent id ('storage', type, key, location, numel)", describe(pid));
    const [, type, key, , count] = pid;
    const dtype = storageDtype(ld, type);
    if (typeof key !== 'string' || !/^[\w.-]{1,64}$/.test(key))
      return ld.fail('a storage key', describe(key));
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)
      return ld.fail('a storage size', describe(count));
    const known = storages.get(key);
    if (known) return known;
    const entry = `${root}${dataDir}/${key}`;
    const src = zip.open(entry);
    const bytes = count * ELEMENT_SIZE[dtype];
    if (src.size !== bytes)
      ld.fail(`record ${entry} of ${count} ${dtype} elements (${bytes} bytes)`, `${src.size} bytes`);
    const s = new StorageRef(dtype, count, key);
    s.source = src;
    s.byteOffset = 0;
    s.bigEndian = bigEndian;
    storages.set(key, s);
    return s;
  };
  const resolveGlobal = makeResolver(ld, policy, (b) => loadStorageBytes(b, ld));
  return unpickle(zip.read(`${root}${pkl}`), {
    file: `${ld.file}:${root}${pkl}`,
    resolveGlobal,
    persistentLoad,
  }).value;
}

function isTorchScript(zip: ZipReader, root: string): boolean {
  if (zip.has(`${root}constants.pkl`)) return true;
  for (const n of zip.entries.keys()) if (n.startsWith(`${root}code/`)) return true;
  return false;
}

function loadZip(zip: ZipReader, ld: Loader, policy: GlobalPolicy): Checkpoint {
  const root = archiveRoot(zip);
  if (isTorchScript(zip, root)) return loadScript(zip, ld, root, policy);
  const raw = zipPickle(zip, ld, root, 'data.pkl', 'data', policy);
  const tensors = ld.flatten(raw);
  return { file: ld.file, format: 'torch-zip', tensors, value: ld.toPlain(raw) };
}

// --- TorchScript ----------------------------------------------------------------------------------------

interface ScriptClass {
  module: boolean;
  parameters: Set<string>;
  buffers: Set<string>;
}

/**
 * Which attributes of a TorchScript class are parameters and buffers. The archive's pickle does not say;
 * its generated code does (`__parameters__ = ["weight", ]`). We scan that text for the two lists and
 * never evaluate it.
 */
function scriptClassInfo(
  zip: ZipReader,
  root: string,
  cache: Map<string, ScriptClass | null>,
  q: string,
): ScriptClass | null {
  if (cache.has(q)) return cache.get(q)!;
  const dot = q.lastIndexOf('.');
  const file = `${root}code/${q.slice(0, dot).replaceAll('.', '/')}.py`;
  const name = q.slice(dot + 1);
  let info: ScriptClass | null = null;
  if (zip.has(file)) {
    const text = new TextDecoder().decode(zip.read(file));
    const start = text.search(new RegExp(`^class ${name}\\(([\\w.]+)\\):`, 'm'));
    if (start >= 0) {
      const rest = text.slice(start);
      const next = rest.slice(1).search(/^class /m);
      const body = next >= 0 ? rest.slice(0, next + 1) : rest;
      const list = (field: string): Set<string> => {
        const m = new RegExp(`^\\s+${field} = \\[([^\\]]*)\\]`, 'm').exec(body);
        return new Set(m ? [...m[1].matchAll(/"([^"]*)"/g)].map((x) => x[1]) : []);
      };
      info = {
        module: /^class \w+\(Module\):/.test(body),
        parameters: list('__parameters__'),
        buffers: list('__buffers__'),
      };
    }
  }
  cache.set(q, info);
  return info;
}

function loadScript(zip: ZipReader, ld: Loader, root: string, policy: GlobalPolicy): Checkpoint {
  const p = { ...policy, torchscript: true };
  const raw = zipPickle(zip, ld, root, 'data.pkl', 'data', p);
  const cache = new Map<string, ScriptClass | null>();
  const hasCode = [...zip.entries.keys()].some((n) => n.startsWith(`${root}code/`));
  const tensors = new Map<string, Tensor>();
  const onPath = new Set<PyObject>();
  let visits = 0;
  const visit = (obj: PyObject, prefix: string, depth: number): void => {
    if (depth > 200) ld.fail('a module tree at most 200 deep', 'deeper');
    if (++visits > 1_000_000) ld.fail('at most 1M modules', 'more (shared submodules?)');
    if (onPath.has(obj)) return;
    onPath.add(obj);
    const attrs = obj.state instanceof Map ? obj.state : new Map();
    const info = scriptClassInfo(zip, root, cache, obj.className);
    const isParam = (k: string, v: unknown) =>
      v instanceof LazyTensor && (info ? info.parameters.has(k) : !hasCode);
    const isBuffer = (k: string, v: unknown) => v instanceof LazyTensor && !!info && info.buffers.has(k);
    for (const test of [isParam, isBuffer])
      for (const [k, v] of attrs)
        if (typeof k === 'string' && test(k, v)) tensors.set(prefix + k, ld.materialize(v as LazyTensor));
    for (const [k, v] of attrs) {
      if (typeof k !== 'string' || !(v instanceof PyObject)) continue;
      const child = scriptClassInfo(zip, root, cache, v.className);
      if (child ? child.module : !hasCode) visit(v, `${prefix}${k}.`, depth + 1);
    }
    onPath.delete(obj);
  };
  if (!(raw instanceof PyObject))
    ld.fail('a TorchScript module object at the root of data.pkl', describe(raw));
  visit(raw as PyObject, '', 0);
  const value = ld.toPlain(raw) as Record<string, unknown>;
  if (zip.has(`${root}constants.pkl`)) {
    const constants = zipPickle(zip, ld, root, 'constants.pkl', 'constants', p);
    Object.defineProperty(value, '__constants__', { value: ld.toPlain(constants), enumerable: false });
  }
  return { file: ld.file, format: 'torchscript', tensors, value };
}

// --- legacy (pre-1.6) torch.save format -----------------------------------------------------------------

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** Runs the pickles at the head of `src`, reading more of the file only if they run past what was read. */
function withHead<T>(src: ByteSource, run: (head: Uint8Array) => T): T {
  let len = Math.min(src.size, 1 << 20);
  for (;;) {
    const head = src.read(0, len);
    try {
      return run(head);
    } catch (e) {
      if (!(e instanceof TruncatedPickleError) || len >= src.size) throw e;
      len = Math.min(src.size, len * 4);
    }
  }
}

function isLegacyHead(head: Uint8Array): boolean {
  // PROTO 2, LONG1 10 bytes of the magic number: 0x80 0x02 0x8a 0x0a 0x6c 0xfc 0x9c 0x46 0xf9 0x20 0x6a 0xa8 0x50 0x19
  const sig = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
  return head.length >= sig.length && sig.every((b, i) => head[i] === b);
}

function loadLegacy(src: ByteSource, ld: Loader, policy: GlobalPolicy): { raw: unknown } {
  const storages = new Map<string, StorageRef>();
  const views = new Map<string, StorageRef>();
  const resolveGlobal = makeResolver(ld, policy, (b) => loadStorageBytes(b, ld));
  const { raw, keys, dataStart, bigEndian } = withHead(src, (head) => {
    storages.clear();
    views.clear();
    const file = ld.file;
    const plain = (start: number) => unpickle(head, { file, start, resolveGlobal: () => undefined });
    const magic = plain(0);
    if (magic.value !== LEGACY_MAGIC) ld.fail('the torch legacy magic number', describe(magic.value));
    const proto = plain(magic.end);
    if (proto.value !== 1001) ld.fail('legacy protocol version 1001', describe(proto.value));
    const sys = plain(proto.end);
    const info = sys.value;
    if (!(info instanceof Map)) ld.fail('a sys_info dict', describe(info));
    const bigEndian = (info as Map<unknown, unknown>).get('little_endian') === false;
    const persistentLoad = (pid: unknown): unknown => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 6)
        return ld.fail("a persistent id ('storage', type, key, location, numel, view)", describe(pid));
      const [, type, key, , count, view] = pid;
      const dtype = storageDtype(ld, type);
      if (typeof key !== 'string' || key.length > 64) return ld.fail('a storage key', describe(key));
      if (
        typeof count !== 'number' ||
        !Number.isSafeInteger(count) ||
        count < 0 ||
        count * ELEMENT_SIZE[dtype] > src.size
      )
        return ld.fail(`a storage size within the ${src.size}-byte file`, describe(count));
      let s = storages.get(key);
      if (!s) {
        s = new StorageRef(dtype, count, key);
        s.bigEndian = bigEndian;
        storages.set(key, s);
      } else if (s.dtype !== dtype) ld.fail(`storage ${key} as ${s.dtype}`, dtype);
      if (view === null || view === undefined) return s;
      if (!Array.isArray(view) || view.length !== 3)
        return ld.fail('view metadata (key, offset, size)', describe(view));
      const [vkey, voff, vsize] = view;
      const hit = views.get(String(vkey));
      if (hit) return hit;
      if (
        typeof voff !== 'number' ||
        typeof vsize !== 'number' ||
        voff < 0 ||
        vsize < 0 ||
        voff + vsize > count
      )
        return ld.fail(`a view inside storage ${key}`, `offset ${voff}, size ${vsize}`);
      const v = new StorageRef(dtype, vsize, String(vkey));
      v.view = { root: s, elementOffset: voff };
      views.set(String(vkey), v);
      return v;
    };
    const main = unpickle(head, { file, start: sys.end, resolveGlobal, persistentLoad });
    const keysP = plain(main.end);
    if (!Array.isArray(keysP.value) || !keysP.value.every((k) => typeof k === 'string'))
      ld.fail('the list of storage keys', describe(keysP.value));
    return { raw: main.value, keys: keysP.value as string[], dataStart: keysP.end, bigEndian };
  });
  let off = dataStart;
  const header = new Uint8Array(8);
  for (const key of keys) {
    const s = storages.get(key);
    if (!s) ld.fail(`storage ${key} named in the pickle`, 'a key the pickle never used');
    const st = s as StorageRef;
    src.readInto(off, header);
    const dv = new DataView(header.buffer);
    const count = Number(dv.getBigInt64(0, !bigEndian));
    if (count !== st.numel)
      ld.fail(`storage ${key} of ${st.numel} elements`, `${count} elements at offset ${off}`);
    const bytes = count * ELEMENT_SIZE[st.dtype];
    if (off + 8 + bytes > src.size)
      ld.fail(
        `${bytes} bytes of storage ${key} at offset ${off + 8}`,
        `a ${src.size}-byte file (truncated?)`,
      );
    st.source = src;
    st.byteOffset = off + 8;
    off += 8 + bytes;
  }
  for (const [k, s] of storages) if (s.byteOffset < 0) ld.fail(`data for storage ${k}`, 'none in the file');
  return { raw };
}

/** `torch.storage._load_from_bytes`: a storage saved on its own by torch.save (legacy or zip) into bytes. */
function loadStorageBytes(b: Uint8Array, parent: Loader): StorageRef {
  const ld = parent;
  const src = new BufferSource(b, `${parent.file}:<storage bytes>`);
  // No nested _load_from_bytes: one level is all torch writes, and it bounds the work.
  const policy: GlobalPolicy = {};
  let raw: unknown;
  if (isZip(b)) {
    const zip = new ZipReader(src);
    raw = zipPickle(zip, ld, archiveRoot(zip), 'data.pkl', 'data', policy);
  } else if (isLegacyHead(b)) raw = loadLegacy(src, ld, policy).raw;
  else return ld.fail('a torch-saved storage', 'bytes in neither torch format');
  if (!(raw instanceof StorageRef)) return ld.fail('a storage', describe(raw));
  return raw;
}

// --- entry points -----------------------------------------------------------------------------------------

function isPickleHead(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5;
}

/**
 * Whether a file is a plain pickle (an NVIDIA snapshot, say) rather than a torch.save or TorchScript file,
 * from its first bytes alone: callers that read only part of such a file need not parse all of it first.
 */
export function isPlainPickleFile(file: string): boolean {
  return withFileSource(file, (src) => {
    const head = src.read(0, Math.min(src.size, 16));
    return !isZip(head) && !isLegacyHead(head) && isPickleHead(head);
  });
}

/**
 * Loads any PyTorch file: torch.save (zip or legacy), a TorchScript archive, or a plain pickle such as an
 * NVIDIA stylegan2-ada-pytorch snapshot. The format is sniffed from the first bytes.
 */
export function loadTorch(
  file: string,
  opts: LoadOptions & { trace?: (g: string) => void } = {},
): Checkpoint {
  return withFileSource(file, (src) => loadTorchSource(src, opts));
}

/** `loadTorch` for bytes already in memory. */
export function loadTorchBytes(
  bytes: Uint8Array,
  name = '<buffer>',
  opts: LoadOptions & { trace?: (g: string) => void } = {},
): Checkpoint {
  return loadTorchSource(new BufferSource(bytes, name), opts);
}

function loadTorchSource(
  src: ByteSource,
  opts: LoadOptions & { trace?: (g: string) => void } = {},
): Checkpoint {
  const ld = new Loader(src.name, opts);
  const policy: GlobalPolicy = { trace: opts.trace };
  const head = src.read(0, Math.min(src.size, 16));
  return ld.run((): Checkpoint => {
    if (isZip(head)) return loadZip(new ZipReader(src), ld, policy);
    if (isLegacyHead(head)) {
      const { raw } = loadLegacy(src, ld, policy);
      return { file: ld.file, format: 'torch-legacy', tensors: ld.flatten(raw), value: ld.toPlain(raw) };
    }
    if (isPickleHead(head)) {
      const raw = runPlainPickle(src, ld, policy);
      return { file: ld.file, format: 'pickle', tensors: ld.flatten(raw), value: ld.toPlain(raw) };
    }
    return ld.fail(
      'a PyTorch file (zip archive, legacy torch.save or pickle)',
      `first bytes ${[...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`,
    );
  });
}

function runPlainPickle(src: ByteSource, ld: Loader, policy: GlobalPolicy): unknown {
  const bytes = src.read(0, src.size);
  const resolveGlobal = makeResolver(ld, { ...policy, loadFromBytes: true }, (b) => loadStorageBytes(b, ld));
  return unpickle(bytes, { file: ld.file, resolveGlobal }).value;
}

/** Loads a file that holds one tensor (e4e's latents.pt, say). */
export function loadTensor(file: string, opts: LoadOptions = {}): Tensor {
  const ck = loadTorch(file, opts);
  const t = ck.tensors.get('');
  if (!t)
    throw new CheckpointError(file, 'a file holding a single tensor', `${ck.tensors.size} named tensors`);
  return t;
}

// --- NVIDIA stylegan2-ada-pytorch / stylegan3 snapshots --------------------------------------------------

export interface NvidiaNetwork {
  file: string;
  /** The persistent class name, e.g. 'Generator'. */
  className: string;
  /** Every parameter and buffer (persistent or not) under its module path: `mapping.fc0.weight`, `mapping.w_avg`. */
  tensors: Map<string, Tensor>;
  /** The positional and keyword arguments the network was constructed with (z_dim, img_resolution, ...). */
  initArgs: unknown[];
  initKwargs: Record<string, unknown>;
  /** The snapshot as plain values; networks other than the one asked for are `{__class__, __skipped__: true}`. */
  snapshot: Record<string, unknown>;
}

/** Reads one network (default G_ema) out of an NVIDIA network snapshot pickle, without running its code. */
export function loadNvidiaPkl(file: string, network = 'G_ema', opts: LoadOptions = {}): NvidiaNetwork {
  const fail = (expected: string, found: string): never => {
    throw new CheckpointError(file, expected, found);
  };
  const ld = new Loader(file, opts);
  return ld.run((): NvidiaNetwork => {
    const raw = withFileSource(file, (src) => {
      if (!isPickleHead(src.read(0, Math.min(src.size, 2))))
        fail('an NVIDIA network snapshot pickle', 'a file that is not a plain pickle');
      return runPlainPickle(src, ld, {});
    });
    if (!(raw instanceof Map)) return fail('a snapshot dict (G, D, G_ema, ...)', describe(raw));
    const net = raw.get(network);
    if (!(net instanceof PyObject) || !(net.state instanceof Map))
      return fail(`a persistent network under '${network}'`, describe(net ?? null));
    // Only the requested network's tensors are read; the others (G, D, augment_pipe) stay stubs.
    const tensors = ld.flatten(net);
    const skip = (v: unknown) =>
      v instanceof PyObject && v !== net && [...raw.values()].includes(v)
        ? { __class__: v.className, __skipped__: true }
        : undefined;
    const snapshot = ld.toPlain(raw, skip) as Record<string, unknown>;
    const n = snapshot[network] as Record<string, unknown>;
    const kw = n._init_kwargs;
    return {
      file,
      className: net.className,
      tensors,
      initArgs: Array.isArray(n._init_args) ? n._init_args : [],
      initKwargs:
        typeof kw === 'object' && kw !== null && !(kw instanceof Map) ? (kw as Record<string, unknown>) : {},
      snapshot,
    };
  });
}
