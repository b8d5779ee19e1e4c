import { inflateSync } from 'fflate';
import { CheckpointError } from './errors.js';
import { BufferSource, type ByteSource, SliceSource } from './source.js';

/**
 * A random-access zip reader. torch writes its archives uncompressed ("stored") with each record aligned
 * to 64 bytes, so records are read in place, straight into tensor memory. fflate's whole-archive API would
 * force the file into memory first; we parse the central directory ourselves and use fflate only to
 * inflate the rare deflated entry (an archive re-zipped by hand).
 */

export interface ZipEntry {
  name: string;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  /** Where this entry's central-directory record starts. */
  centralOffset: number;
}

export interface ZipLimits {
  /** The most bytes one deflated entry may declare (default 4 GiB). */
  maxInflatedEntry: number;
  /** Deflate cannot exceed ~1032:1, so a larger declared ratio is a lie or a bomb. */
  maxRatio: number;
}

const DEFAULT_LIMITS: ZipLimits = { maxInflatedEntry: 2 ** 32, maxRatio: 1100 };

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc32(b: Uint8Array, crc = 0): number {
  let c = ~crc;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function u16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}
function u64(b: Uint8Array, o: number): number {
  return u32(b, o) + u32(b, o + 4) * 0x100000000;
}

export function isZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4;
}

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  readonly name: string;
  private readonly limits: ZipLimits;

  constructor(
    readonly source: ByteSource,
    limits: Partial<ZipLimits> = {},
  ) {
    this.name = source.name;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.readCentralDirectory();
  }

  private fail(expected: string, found: string): never {
    throw new CheckpointError(this.name, expected, found);
  }

  private readCentralDirectory(): void {
    const size = this.source.size;
    if (size < 22) this.fail('a zip archive (at least 22 bytes)', `${size} bytes`);
    const tailLen = Math.min(size, 22 + 0xffff + 20);
    const tailStart = size - tailLen;
    const tail = this.source.read(tailStart, tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail[i] === 0x50 && tail[i + 1] === 0x4b && tail[i + 2] === 5 && tail[i + 3] === 6) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) this.fail('a zip end-of-central-directory record', 'none (truncated archive?)');
    let count = u16(tail, eocd + 10);
    let cdSize = u32(tail, eocd + 12);
    let cdOffset = u32(tail, eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || u32(tail, loc) !== 0x07064b50) this.fail('a zip64 locator', 'none');
      const z64 = u64(tail, loc + 8);
      if (z64 + 56 > size) this.fail('a zip64 end record inside the file', `offset ${z64}`);
      const rec = this.source.read(z64, 56);
      if (u32(rec, 0) !== 0x06064b50) this.fail('a zip64 end record', 'a bad signature');
      count = u64(rec, 32);
      cdSize = u64(rec, 40);
      cdOffset = u64(rec, 48);
    }
    if (cdOffset + cdSize > size || count * 46 > cdSize)
      this.fail(
        'a central directory inside the file',
        `${count} entries, ${cdSize} bytes at ${cdOffset} in a ${size}-byte file`,
      );
    const cd = this.source.read(cdOffset, cdSize);
    let p = 0;
    const dec = new TextDecoder();
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || u32(cd, p) !== 0x02014b50)
        this.fail(`central directory entry ${i}`, `a bad record at offset ${cdOffset + p}`);
      const flags = u16(cd, p + 8);
      const method = u16(cd, p + 10);
      const crc = u32(cd, p + 16);
      let compressedSize = u32(cd, p + 20);
      let usize = u32(cd, p + 24);
      const nameLen = u16(cd, p + 28);
      const extraLen = u16(cd, p + 30);
      const commentLen = u16(cd, p + 32);
      let localHeaderOffset = u32(cd, p + 42);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cd.length) this.fail(`central directory entry ${i}`, 'a record running past the directory');
      const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = u16(cd, e);
        const len = u16(cd, e + 2);
        if (e + 4 + len > extraEnd) break;
        if (id === 1) {
          let q = e + 4;
          const take = (): number => {
            if (q + 8 > e + 4 + len) this.fail(`zip64 sizes for ${name}`, 'a short extra field');
            const v = u64(cd, q);
            q += 8;
            return v;
          };
          if (usize === 0xffffffff) usize = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
        }
        e += 4 + len;
      }
      if (flags & 1) this.fail(`an unencrypted entry ${name}`, 'an encrypted one');
      if (method !== 0 && method !== 8)
        this.fail(`entry ${name} stored or deflated`, `compression method ${method}`);
      if (localHeaderOffset + 30 + compressedSize > size)
        this.fail(`entry ${name} inside the file`, `${compressedSize} bytes at ${localHeaderOffset}`);
      if (method === 0 && compressedSize !== usize)
        this.fail(`stored entry ${name} of ${usize} bytes`, `${compressedSize} stored bytes`);
      this.entries.set(name, {
        name,
        method,
        crc32: crc,
        compressedSize,
        size: usize,
        localHeaderOffset,
        centralOffset: cdOffset + p,
      });
      p = end;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) this.fail(`an archive entry ${name}`, 'none');
    return e;
  }

  /** Where an entry's (possibly compressed) bytes start in the file. */
  dataOffset(e: ZipEntry): number {
    const h = this.source.read(e.localHeaderOffset, 30);
    if (u32(h, 0) !== 0x04034b50) this.fail(`a local header for ${e.name}`, 'a bad signature');
    const off = e.localHeaderOffset + 30 + u16(h, 26) + u16(h, 28);
    if (off + e.compressedSize > this.source.size)
      this.fail(`entry ${e.name} inside the file`, `data at ${off} running past the end`);
    return off;
  }

  /** The entry's bytes as a random-access source: in place for stored entries, inflated otherwise. */
  open(name: string): ByteSource {
    const e = this.entry(name);
    const off = this.dataOffset(e);
    const label = `${this.name}:${name}`;
    if (e.method === 0) return new SliceSource(this.source, off, e.size, label);
    return new BufferSource(this.inflate(e, off), label);
  }

  /** The whole entry, CRC-checked; for small records such as pickles. */
  read(name: string): Uint8Array {
    const e = this.entry(name);
    const off = this.dataOffset(e);
    const b = e.method === 0 ? this.source.read(off, e.size) : this.inflate(e, off);
    const c = crc32(b);
    if (c !== e.crc32)
      this.fail(
        `entry ${name} with CRC-32 ${e.crc32.toString(16)}`,
        `CRC-32 ${c.toString(16)} (corrupt file)`,
      );
    return b;
  }

  private inflate(e: ZipEntry, off: number): Uint8Array {
    if (e.size > this.limits.maxInflatedEntry || e.size > (e.compressedSize + 64) * this.limits.maxRatio)
      this.fail(
        `deflated entry ${e.name} within limits`,
        `${e.size} bytes declared from ${e.compressedSize} compressed`,
      );
    const out = new Uint8Array(e.size);
    let got: Uint8Array;
    try {
      got = inflateSync(this.source.read(off, e.compressedSize), { out });
    } catch (err) {
      this.fail(`valid deflate data in ${e.name}`, `${(err as Error).message}`);
    }
    if (got.length !== e.size) this.fail(`${e.size} inflated bytes in ${e.name}`, `${got.length} bytes`);
    return got;
  }
}

/** Writes a zip of stored entries, each aligned to `align` bytes the way torch does (padding in the extra field). */
export function buildStoredZip(
  entries: Iterable<{ name: string; data: Uint8Array }>,
  write: (chunk: Uint8Array) => void,
  align = 64,
): void {
  const enc = new TextEncoder();
  const central: Uint8Array[] = [];
  let pos = 0;
  let count = 0;
  const emit = (b: Uint8Array) => {
    write(b);
    pos += b.length;
  };
  for (const { name, data } of entries) {
    const nameBytes = enc.encode(name);
    const crc = crc32(data);
    const headerEnd = pos + 30 + nameBytes.length;
    // torch pads with an "FB" extra field so the data starts on an aligned offset.
    const big = data.length >= 0xffffffff || pos >= 0xffffffff;
    const z64Len = big ? 20 : 0;
    const pad = (align - ((headerEnd + z64Len + 4) % align)) % align;
    const extraLen = z64Len + 4 + pad;
    const h = new Uint8Array(30 + nameBytes.length + extraLen);
    const dv = new DataView(h.buffer);
    dv.setUint32(0, 0x04034b50, true);
    dv.setUint16(4, big ? 45 : 20, true);
    dv.setUint32(14, crc, true);
    dv.setUint32(18, big ? 0xffffffff : data.length, true);
    dv.setUint32(22, big ? 0xffffffff : data.length, true);
    dv.setUint16(26, nameBytes.length, true);
    dv.setUint16(28, extraLen, true);
    h.set(nameBytes, 30);
    let x = 30 + nameBytes.length;
    if (big) {
      dv.setUint16(x, 1, true);
      dv.setUint16(x + 2, 16, true);
      dv.setBigUint64(x + 4, BigInt(data.length), true);
      dv.setBigUint64(x + 12, BigInt(data.length), true);
      x += 20;
    }
    dv.setUint16(x, 0x4246, true);
    dv.setUint16(x + 2, pad, true);
    const offset = pos;
    emit(h);
    emit(data);
    const c = new Uint8Array(46 + nameBytes.length + 28);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 45, true);
    cv.setUint16(6, big ? 45 : 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, big ? 0xffffffff : data.length, true);
    cv.setUint32(24, big ? 0xffffffff : data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint16(30, 28, true);
    cv.setUint32(42, Math.min(offset, 0xffffffff), true);
    c.set(nameBytes, 46);
    const ex = 46 + nameBytes.length;
    cv.setUint16(ex, 1, true);
    cv.setUint16(ex + 2, 24, true);
    cv.setBigUint64(ex + 4, BigInt(data.length), true);
    cv.setBigUint64(ex + 12, BigInt(data.length), true);
    cv.setBigUint64(ex + 20, BigInt(offset), true);
    central.push(big || offset >= 0xffffffff ? c : stripZip64(c, nameBytes.length));
    count++;
  }
  const cdOffset = pos;
  let cdSize = 0;
  for (const c of central) {
    emit(c);
    cdSize += c.length;
  }
  const z64 = new Uint8Array(56 + 20);
  const zv = new DataView(z64.buffer);
  zv.setUint32(0, 0x06064b50, true);
  zv.setBigUint64(4, 44n, true);
  zv.setUint16(12, 45, true);
  zv.setUint16(14, 45, true);
  zv.setBigUint64(24, BigInt(count), true);
  zv.setBigUint64(32, BigInt(count), true);
  zv.setBigUint64(40, BigInt(cdSize), true);
  zv.setBigUint64(48, BigInt(cdOffset), true);
  zv.setUint32(56, 0x07064b50, true);
  zv.setBigUint64(64, BigInt(pos), true);
  zv.setUint32(72, 1, true);
  emit(z64);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, Math.min(count, 0xffff), true);
  ev.setUint16(10, Math.min(count, 0xffff), true);
  ev.setUint32(12, Math.min(cdSize, 0xffffffff), true);
  ev.setUint32(16, Math.min(cdOffset, 0xffffffff), true);
  emit(end);
}

function stripZip64(c: Uint8Array, nameLen: number): Uint8Array {
  const r = c.slice(0, 46 + nameLen);
  new DataView(r.buffer).setUint16(30, 0, true);
  return r;
}
