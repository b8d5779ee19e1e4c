/**
 * The one error type every loader in `src/io` throws for bad input: it names the file, what the reader
 * expected and what it found, so a user can tell a truncated download from an unsupported format.
 */
export class CheckpointError extends Error {
  readonly file: string;
  readonly expected: string;
  readonly found: string;
  constructor(file: string, expected: string, found: string) {
    super(`${file}: expected ${expected}, found ${found}`);
    this.name = 'CheckpointError';
    this.file = file;
    this.expected = expected;
    this.found = found;
  }
}

/** Thrown when a pickle names a global outside the allow-list; nothing it names is ever run. */
export class ForbiddenGlobalError extends CheckpointError {
  readonly global: string;
  constructor(file: string, global: string) {
    super(file, 'only allow-listed pickle globals (tensors, storages, plain containers)', `global ${global}`);
    this.name = 'ForbiddenGlobalError';
    this.global = global;
  }
}
