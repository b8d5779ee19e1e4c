import { CheckpointError, ForbiddenGlobalError } from './errors.js';

/**
 * A small pickle VM that only builds data. It has no `eval`, no attribute lookup and no import: a GLOBAL
 * opcode is looked up in the caller's allow-list of JS stubs, and anything else fails with
 * ForbiddenGlobalError before a single argument is built. Every opcode consumes at least one input byte and
 * none loops, so run time is linear in the input size; lengths are checked against the bytes left before
 * anything is allocated.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53), float → number,
 * str → string, bytes → Uint8Array, list/tuple → Array, dict → Map (insertion order kept), set → Set,
 * class instances → PyObject (an inert record of class name and state).
 */

/** The pickle ran off the end of its bytes; a reader that only loaded a file's head can read more and retry. */
export class TruncatedPickleError extends CheckpointError {
  constructor(file: string, at: number, wanted: number, left: number) {
    super(file, `${wanted} more pickle bytes at offset ${at}`, `${left} (truncated pickle)`);
    this.name = 'TruncatedPickleError';
  }
}

/** An inert stand-in for an instance of an allow-listed Python class. */
export class PyObject {
  state: unknown = undefined;
  constructor(
    readonly className: string,
    readonly args: unknown[] = [],
  ) {}
}

/** A resolved, allow-listed global. Only these JS functions ever run on behalf of a pickle. */
export interface PyGlobal {
  readonly kind: 'global';
  readonly qualname: string;
  /** REDUCE: `f(*args)`. */
  call?: (args: unknown[]) => unknown;
  /** NEWOBJ: `cls.__new__(cls, *args)`; for inert classes this makes a PyObject. */
  construct?: (args: unknown[]) => unknown;
}

export function isPyGlobal(v: unknown): v is PyGlobal {
  return typeof v === 'object' && v !== null && (v as PyGlobal).kind === 'global';
}

/** Objects that take a BUILD state themselves (numpy dtypes and arrays, say). */
export interface Buildable {
  setState(state: unknown): void;
}
function isBuildable(v: unknown): v is Buildable {
  return typeof v === 'object' && v !== null && typeof (v as Buildable).setState === 'function';
}

export interface UnpickleOptions {
  /** Named in every error message. */
  file: string;
  /** The allow-list: returns a stub for an allowed global, undefined for anything else. */
  resolveGlobal: (module: string, name: string) => PyGlobal | undefined;
  /** Handles persistent ids (torch storages); absent means persistent ids are an error. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Byte offset to start at (legacy torch files hold several pickles back to back). */
  start?: number;
}

const MAX_INT_BYTES = 256;

/** Runs one pickle; returns its value and the offset just after its STOP opcode. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): { value: unknown; end: number } {
  const { file } = opts;
  let pos = opts.start ?? 0;
  const n = bytes.length;
  const stack: unknown[] = [];
  const metastack: unknown[][] = [];
  let cur = stack;
  const memo = new Map<number, unknown>();
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });

  const fail = (expected: string, found: string): never => {
    throw new CheckpointError(file, expected, `${found} (pickle offset ${pos})`);
  };
  const need = (k: number): void => {
    if (!(k >= 0 && pos + k <= n)) throw new TruncatedPickleError(file, pos, k, n - pos);
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++];
  };
  const u16 = (): number => {
    need(2);
    const v = bytes[pos] | (bytes[pos + 1] << 8);
    pos += 2;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16) | (bytes[pos + 3] << 24);
    pos += 4;
    return v;
  };
  const u32 = (): number => i32() >>> 0;
  const u64 = (): number => {
    const lo = u32();
    const hi = u32();
    if (hi > 0x1fffff) fail('a 64-bit length below 2^53', `high word ${hi}`);
    return hi * 0x100000000 + lo;
  };
  const take = (k: number): Uint8Array => {
    need(k);
    const b = bytes.subarray(pos, pos + k);
    pos += k;
    return b;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new TruncatedPickleError(file, pos, 1, n - pos);
    if (end - pos > 65536) fail('a newline-terminated argument', 'a line over 64 KiB');
    const s = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const str = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail('a UTF-8 string', 'invalid UTF-8');
    }
  };
  const pop = (): unknown => {
    if (cur.length === 0) fail('a value on the pickle stack', 'an empty stack');
    return cur.pop();
  };
  const top = (): unknown => {
    if (cur.length === 0) fail('a value on the pickle stack', 'an empty stack');
    return cur[cur.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = cur;
    const prev = metastack.pop();
    if (!prev) return fail('a MARK before this opcode', 'none');
    cur = prev;
    return items;
  };
  const leInt = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    if (b.length > MAX_INT_BYTES) fail(`an integer of at most ${MAX_INT_BYTES} bytes`, `${b.length} bytes`);
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return normInt(v);
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) fail(`memo entry ${i}`, 'a missing entry');
    return memo.get(i);
  };
  const memoPut = (i: number): void => {
    memo.set(i, top());
  };
  const global = (module: string, name: string): PyGlobal => {
    const g = opts.resolveGlobal(module, name);
    if (!g) throw new ForbiddenGlobalError(file, `${module}.${name}`);
    return g;
  };
  const asArgs = (v: unknown, what: string): unknown[] => {
    if (!Array.isArray(v)) fail(`a tuple of arguments for ${what}`, describe(v));
    return v as unknown[];
  };
  const setItem = (d: unknown, k: unknown, v: unknown): void => {
    if (!(d instanceof Map)) fail('a dict for SETITEM', describe(d));
    (d as Map<unknown, unknown>).set(k, v);
  };
  const append = (l: unknown, items: unknown[]): void => {
    if (!Array.isArray(l)) fail('a list for APPEND', describe(l));
    for (const x of items) (l as unknown[]).push(x);
  };

  for (;;) {
    if (pos >= n) throw new TruncatedPickleError(file, pos, 1, 0);
    const opPos = pos;
    const op = bytes[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol <= 5', `protocol ${bytes[pos - 1]}`);
        break;
      case 0x95: // FRAME: framing is only a read-ahead hint
        u64();
        break;
      case 0x2e: // STOP
        if (metastack.length !== 0 || stack.length !== 1)
          fail('exactly one value at STOP', `${stack.length} values and ${metastack.length} open MARKs`);
        return { value: stack[0], end: pos };
      case 0x28: // MARK
        metastack.push(cur);
        cur = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        cur.push(top());
        break;
      case 0x4e: // NONE
        cur.push(null);
        break;
      case 0x88: // NEWTRUE
        cur.push(true);
        break;
      case 0x89: // NEWFALSE
        cur.push(false);
        break;
      case 0x4a: // BININT
        cur.push(i32());
        break;
      case 0x4b: // BININT1
        cur.push(u8());
        break;
      case 0x4d: // BININT2
        cur.push(u16());
        break;
      case 0x49: {
        // INT (text); "01"/"00" are protocol 0's True/False
        const s = line();
        if (s === '01') cur.push(true);
        else if (s === '00') cur.push(false);
        else cur.push(parseIntText(s) ?? fail('a decimal integer', JSON.stringify(s.slice(0, 40))));
        break;
      }
      case 0x4c: {
        // LONG (text)
        const s = line().replace(/L$/, '');
        cur.push(parseIntText(s) ?? fail('a decimal integer', JSON.stringify(s.slice(0, 40))));
        break;
      }
      case 0x8a: // LONG1
        cur.push(leInt(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const k = i32();
        if (k < 0) fail('a non-negative LONG4 length', String(k));
        cur.push(leInt(take(k)));
        break;
      }
      case 0x47: {
        // BINFLOAT (big-endian double)
        const b = take(8);
        cur.push(new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false));
        break;
      }
      case 0x46: {
        // FLOAT (text)
        const s = line();
        const v = Number(s);
        if (s.trim() === '' || (Number.isNaN(v) && !/nan/i.test(s)))
          fail('a float', JSON.stringify(s.slice(0, 40)));
        cur.push(v);
        break;
      }
      case 0x58: // BINUNICODE
        cur.push(str(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        cur.push(str(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        cur.push(str(take(u64())));
        break;
      case 0x54: // BINSTRING: a Python 2 str, read as latin-1 text
        cur.push(latin1.decode(take(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        cur.push(latin1.decode(take(u8())));
        break;
      case 0x42: // BINBYTES: a view, not a copy (bytes are immutable and never written to)
        cur.push(take(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        cur.push(take(u8()));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        cur.push(take(u64()));
        break;
      case 0x5d: // EMPTY_LIST
        cur.push([]);
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x6c: // LIST
        {
          const items = popMark();
          cur.push(items);
        }
        break;
      case 0x29: // EMPTY_TUPLE
        cur.push([]);
        break;
      case 0x74: // TUPLE
        {
          const items = popMark();
          cur.push(items);
        }
        break;
      case 0x85: // TUPLE1
        cur.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        cur.push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        cur.push([a, b, c]);
        break;
      }
      case 0x7d: // EMPTY_DICT
        cur.push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        if (items.length % 2) fail('key/value pairs for DICT', `${items.length} items`);
        const d = new Map();
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        cur.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2) fail('key/value pairs for SETITEMS', `${items.length} items`);
        const d = top();
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i], items[i + 1]);
        break;
      }
      case 0x8f: // EMPTY_SET
        cur.push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail('a set for ADDITEMS', describe(s));
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x91: // FROZENSET
        {
          const items = popMark();
          cur.push(new Set(items));
        }
        break;
      case 0x67: // GET
        cur.push(memoGet(parseIntText(line()) as number));
        break;
      case 0x68: // BINGET
        cur.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        cur.push(memoGet(u32()));
        break;
      case 0x70: {
        // PUT
        const i = parseIntText(line());
        if (typeof i !== 'number' || i < 0) fail('a memo index', String(i));
        memoPut(i as number);
        break;
      }
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        cur.push(global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          fail('two strings for STACK_GLOBAL', `${describe(module)}, ${describe(name)}`);
        cur.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const f = pop();
        if (!isPyGlobal(f) || !f.call) fail('an allow-listed callable for REDUCE', describe(f));
        cur.push((f as PyGlobal).call!(asArgs(args, (f as PyGlobal).qualname)));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!isPyGlobal(cls) || !cls.construct) fail('an allow-listed class for NEWOBJ', describe(cls));
        cur.push((cls as PyGlobal).construct!(asArgs(args, (cls as PyGlobal).qualname)));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!isPyGlobal(cls) || !cls.construct) fail('an allow-listed class for NEWOBJ_EX', describe(cls));
        if (!(kwargs instanceof Map) || kwargs.size > 0) fail('no keyword arguments', describe(kwargs));
        cur.push((cls as PyGlobal).construct!(asArgs(args, (cls as PyGlobal).qualname)));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        build(obj, state, fail);
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('no persistent ids', 'a persistent id');
        cur.push(opts.persistentLoad!(pid));
        break;
      }
      case 0x50: {
        // PERSID (text)
        const pid = line();
        if (!opts.persistentLoad) fail('no persistent ids', 'a persistent id');
        cur.push(opts.persistentLoad!(pid));
        break;
      }
      default:
        pos = opPos;
        fail('a supported pickle opcode', `opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

function build(obj: unknown, state: unknown, fail: (e: string, f: string) => never): void {
  if (obj instanceof PyObject) {
    // Python's default BUILD updates __dict__; an object with a dict state merges it.
    if (obj.state instanceof Map && state instanceof Map) for (const [k, v] of state) obj.state.set(k, v);
    else obj.state = state;
    return;
  }
  if (isBuildable(obj)) {
    obj.setState(state);
    return;
  }
  if (obj instanceof Map) {
    // An OrderedDict's instance attributes (torch's `_metadata` on state dicts): kept aside, unused.
    if (state === null || state instanceof Map || Array.isArray(state)) return;
  }
  fail('an object that accepts BUILD', describe(obj));
}

function normInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function parseIntText(s: string): number | bigint | undefined {
  if (!/^[+-]?\d{1,700}$/.test(s.trim())) return undefined;
  return normInt(BigInt(s.trim()));
}

export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return `a tuple/list of ${v.length}`;
  if (v instanceof Map) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (v instanceof PyObject) return `an object of ${v.className}`;
  if (isPyGlobal(v)) return `global ${v.qualname}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'unknown'})`;
  return `${typeof v} ${String(v).slice(0, 40)}`;
}
