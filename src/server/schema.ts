/**
 * The HTTP API's request schemas. Every body is a strict JSON object: unknown fields are rejected, so a typo
 * ("alpah") is a 400 with a reason instead of a silent default. The same schemas are served as JSON Schema
 * at GET /api/schema.
 */
import { z } from 'zod';

export const LIMITS = {
  /** Characters in a prompt or a neutral/target text (CLIP's 77-token context is checked as well). */
  textChars: 300,
  /** Optimization steps per job. */
  steps: 1000,
  /** Bytes of an uploaded latent file (before base64). */
  uploadBytes: 32 * 1024 * 1024,
  /** Bytes of a JSON body other than an upload. */
  jsonBytes: 64 * 1024,
  /** Jobs waiting behind the running one. */
  queue: 16,
  /** Images one upload may add. */
  uploadImages: 256,
} as const;

const text = (what: string) =>
  z
    .string()
    .trim()
    .min(1, `${what} must not be empty`)
    .max(LIMITS.textChars, `${what} is longer than ${LIMITS.textChars} characters`);

/** A gallery image: `latents:3`, `seed:42` (any seed), or `upload:<id>:<n>`. */
export const imageId = z
  .string()
  .max(100)
  .regex(/^(latents:\d+|seed:\d{1,10}|upload:[\w-]+:\d+)$/, 'image must be latents:N, seed:N or upload:ID:N');

export const GlobalEditRequest = z.strictObject({
  image: imageId,
  neutral: text('neutral').default('face'),
  target: text('target'),
  /** Manipulation strength α (official range −10 … 10). */
  alpha: z.number().min(-10).max(10),
  /** Disentanglement threshold β (official range 0.08 … 0.3). */
  beta: z.number().min(0.08).max(0.3),
  /** Render at the preview size (faster; for dragging). */
  preview: z.boolean().default(false),
  /** Also return the unedited image. */
  before: z.boolean().default(false),
});
export type GlobalEditRequest = z.infer<typeof GlobalEditRequest>;

export const ChannelsRequest = z.strictObject({
  neutral: text('neutral').default('face'),
  target: text('target'),
  beta: z.number().min(0.08).max(0.3),
});

export const MapperApplyRequest = z.strictObject({
  image: imageId,
  mapper: z.string().min(1).max(200),
  /** Multiplies the mapper's residual (1 = the reference's w + 0.1·M(w)). */
  strength: z.number().min(-5).max(5).default(1),
  before: z.boolean().default(false),
});
export type MapperApplyRequest = z.infer<typeof MapperApplyRequest>;

export const OptimizeRequest = z.strictObject({
  image: imageId.optional(),
  prompt: text('prompt'),
  steps: z.number().int().min(1).max(LIMITS.steps),
  /** 'edit' starts from the image and keeps it close (L2, ID); 'free' starts from the mean latent. */
  mode: z.enum(['edit', 'free']).default('edit'),
  space: z.enum(['w+', 's']).default('w+'),
  lr: z.number().gt(0).max(10).default(0.1),
  l2Lambda: z.number().min(0).max(100).default(0.008),
  idLambda: z.number().min(0).max(100).default(0),
  /** Send an intermediate image every this many steps (0: only the final one). */
  imageEvery: z.number().int().min(0).max(LIMITS.steps).optional(),
});
export type OptimizeRequest = z.infer<typeof OptimizeRequest>;

export const UploadRequest = z.strictObject({
  /** File name; its extension picks the reader (.npy, or .pt/.pth for torch files). */
  name: z
    .string()
    .max(200)
    .regex(/\.(npy|pt|pth)$/i, 'name must end in .npy, .pt or .pth'),
  /** The file's bytes, base64. */
  data: z
    .string()
    .max(Math.ceil((LIMITS.uploadBytes * 4) / 3) + 4, `the file exceeds ${LIMITS.uploadBytes} bytes`),
});
export type UploadRequest = z.infer<typeof UploadRequest>;

export const SCHEMAS = {
  'POST /api/global': GlobalEditRequest,
  'POST /api/global/channels': ChannelsRequest,
  'POST /api/mapper': MapperApplyRequest,
  'POST /api/jobs/optimize': OptimizeRequest,
  'POST /api/latents': UploadRequest,
} as const;

/** JSON Schema of every request body (zod's converter), for GET /api/schema. */
export function jsonSchemas(): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(SCHEMAS).map(([k, s]) => [k, z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' })]),
  );
}

/** zod issues as one readable line per field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = i.path.length ? i.path.join('.') : 'body';
      if (i.code === 'unrecognized_keys')
        return `${where}: unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`;
      return `${where}: ${i.message}`;
    })
    .join('; ');
}
