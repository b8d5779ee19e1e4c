import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CheckpointError } from './errors.js';

/**
 * Random access to a file's bytes. Large checkpoints are read piece by piece straight into the tensors'
 * own memory, so a file is never held twice.
 */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** Copies `target.length` bytes at `offset` into `target`. */
  readInto(offset: number, target: Uint8Array): void;
  /** The bytes at `offset`; a view (no copy) when the source is in memory. */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

export class BufferSource implements ByteSource {
  readonly size: number;
  constructor(
    readonly bytes: Uint8Array,
    readonly name = '<buffer>',
  ) {
    this.size = bytes.length;
  }
  private check(offset: number, length: number): void {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size))
      throw new CheckpointError(
        this.name,
        `${length} bytes at offset ${offset}`,
        `a ${this.size}-byte input (truncated?)`,
      );
  }
  readInto(offset: number, target: Uint8Array): void {
    this.check(offset, target.length);
    target.set(this.bytes.subarray(offset, offset + target.length));
  }
  read(offset: number, length: number): Uint8Array {
    this.check(offset, length);
    return this.bytes.subarray(offset, offset + length);
  }
  close(): void {}
}

export class FileSource implements ByteSource {
  readonly size: number;
  private fd: number;
  constructor(readonly name: string) {
    this.fd = openSync(name, 'r');
    this.size = fstatSync(this.fd).size;
  }
  readInto(offset: number, target: Uint8Array): void {
    if (!(offset >= 0 && offset + target.length <= this.size))
      throw new CheckpointError(
        this.name,
        `${target.length} bytes at offset ${offset}`,
        `a ${this.size}-byte file (truncated?)`,
      );
    let done = 0;
    // readSync caps a single read at 2 GiB, so large tensors take several calls.
    while (done < target.length) {
      const n = readSync(this.fd, target, done, Math.min(target.length - done, 1 << 30), offset + done);
      if (n <= 0) throw new CheckpointError(this.name, `${target.length} bytes at ${offset}`, 'end of file');
      done += n;
    }
  }
  read(offset: number, length: number): Uint8Array {
    const b = new Uint8Array(length);
    this.readInto(offset, b);
    return b;
  }
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** Runs `read` on the file opened as a source, closing it however `read` ends. */
export function withFileSource<T>(file: string, read: (src: FileSource) => T): T {
  const src = new FileSource(file);
  try {
    return read(src);
  } finally {
    src.close();
  }
}

/** A window [start, start+size) of another source, e.g. one stored zip entry. */
export class SliceSource implements ByteSource {
  constructor(
    private readonly inner: ByteSource,
    private readonly start: number,
    readonly size: number,
    readonly name: string,
  ) {}
  private check(offset: number, length: number): void {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size))
      throw new CheckpointError(this.name, `${length} bytes at offset ${offset}`, `${this.size} bytes`);
  }
  readInto(offset: number, target: Uint8Array): void {
    this.check(offset, target.length);
    this.inner.readInto(this.start + offset, target);
  }
  read(offset: number, length: number): Uint8Array {
    this.check(offset, length);
    return this.inner.read(this.start + offset, length);
  }
  close(): void {}
}
