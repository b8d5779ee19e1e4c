import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a file via a temp file in the same folder and a rename, so a crash or a concurrent reader never
 * sees a half-written checkpoint or image.
 */
export function writeFileAtomic(file: string, ...chunks: Uint8Array[]): void {
  writeChunksAtomic(file, (write) => {
    for (const c of chunks) write(c);
  });
}

/** Streams chunks into a temp file, then renames it over `file`. */
export function writeChunksAtomic(file: string, produce: (write: (chunk: Uint8Array) => void) => void): void {
  // A missing output folder is created, as users of `--out some/dir/x.png` expect.
  mkdirSync(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    produce((chunk) => {
      let done = 0;
      while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done);
    });
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {}
    rmSync(tmp, { force: true });
    throw e;
  }
}
