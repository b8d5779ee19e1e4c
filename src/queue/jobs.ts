/**
 * What travels through the queue: the job payloads (validated by the worker before it touches anything, so a
 * malformed job fails at once with a message instead of crashing the worker) and the model files named by
 * path and SHA-256, so a worker whose files differ refuses rather than computing a wrong result.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a hex SHA-256');
const count = z.number().int().nonnegative();

/** A model file: where the submitter saw it and what its bytes hash to. */
export const modelFile = z.object({ path: z.string().min(1), sha256 });
export type ModelFile = z.infer<typeof modelFile>;

/** One fs3 shard: channels [start, end) of one StyleSpace layer, measured on the run's K images. */
export const fs3Job = z
  .object({
    kind: z.literal('fs3'),
    run: sha256,
    shard: count,
    layer: count,
    start: count,
    end: count,
    images: z.number().int().positive(),
    alpha: z.number().finite(),
    carryOver: z.boolean(),
    layers: z.enum(['all', 'upto128']),
    batch: z.number().int().positive().optional(),
    generator: modelFile,
    clip: modelFile,
  })
  .strict()
  .refine((j) => j.start < j.end, { message: 'start must be below end', path: ['end'] });
export type Fs3Job = z.infer<typeof fs3Job>;

/** What a finished shard returns: its rows [end − start, E] as little-endian float32, base64. */
export const fs3Result = z.object({
  rows: z.string(),
  n: count,
  e: count,
  ms: z.number(),
  worker: z.string(),
});
export type Fs3Result = z.infer<typeof fs3Result>;

/** One mapper training run (`styleclip mapper train`) for one prompt, into its own folder. */
export const mapperJob = z
  .object({
    kind: z.literal('mapper'),
    prompt: z.string().min(1),
    out: z.string().min(1),
    /** The train flags other than the files, --prompt, --out and --resume. */
    args: z.array(z.string()),
    /** File flags (--generator, --clip, --arcface, --latents-train, --latents-test) and their files. */
    files: z.array(z.object({ flag: z.string().regex(/^--[a-z-]+$/), file: modelFile })),
    steps: z.number().int().positive(),
  })
  .strict();
export type MapperJob = z.infer<typeof mapperJob>;

/** Validates a payload; the message names the first bad fields. */
export function parseJob(data: unknown): Fs3Job | MapperJob {
  const kind = (data as { kind?: unknown } | null)?.kind;
  const schema = kind === 'fs3' ? fs3Job : kind === 'mapper' ? mapperJob : undefined;
  if (!schema)
    throw new MalformedJob(`unknown job kind ${JSON.stringify(kind)} (expected "fs3" or "mapper")`);
  const r = schema.safeParse(data);
  if (!r.success)
    throw new MalformedJob(
      r.error.issues
        .slice(0, 4)
        .map((i) => `${i.path.join('.') || 'payload'}: ${i.message}`)
        .join('; '),
    );
  return r.data;
}

export class MalformedJob extends Error {
  constructor(why: string) {
    super(`malformed job payload: ${why}`);
    this.name = 'MalformedJob';
  }
}

const hashCache = new Map<string, { size: number; mtimeMs: number; sha: string }>();

/** SHA-256 of a file, streamed (models are hundreds of MB); cached by path, size and mtime. */
export async function sha256File(path: string): Promise<string> {
  const abs = resolve(path);
  const st = statSync(abs);
  const hit = hashCache.get(abs);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.sha;
  const h = createHash('sha256');
  for await (const chunk of createReadStream(abs, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  const sha = h.digest('hex');
  hashCache.set(abs, { size: st.size, mtimeMs: st.mtimeMs, sha });
  return sha;
}

export async function modelFileOf(path: string): Promise<ModelFile> {
  return { path: resolve(path), sha256: await sha256File(path) };
}

/** A worker's model files differ from the run's (or are missing): it refuses the run's jobs. */
export class ModelMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelMismatch';
  }
}

/**
 * Where this worker finds a job's file: the submitter's path (a shared folder), or the same file name in
 * `--models DIR` when the worker keeps its own copies. The bytes must hash to the run's SHA-256.
 */
export async function localModel(f: ModelFile, modelsDir?: string): Promise<string> {
  const path = modelsDir ? join(modelsDir, basename(f.path)) : f.path;
  if (!existsSync(path))
    throw new ModelMismatch(
      `this worker has no ${path} (the run needs ${basename(f.path)}, SHA-256 ${f.sha256.slice(0, 12)}…); mount the shared folder at the same path or pass --models DIR`,
    );
  const sha = await sha256File(path);
  if (sha !== f.sha256)
    throw new ModelMismatch(
      `this worker's ${path} has SHA-256 ${sha.slice(0, 12)}…, but the run was submitted with ${f.sha256.slice(0, 12)}… (${f.path}); the files differ, so this worker refuses the run's jobs`,
    );
  return path;
}
