/**
 * The web app's photo upload: a photo becomes a gallery latent. The job aligns the face (face-api nets,
 * FFHQ crop), encodes it with e4e when the server has an encoder (`serve --encoder`), refines it by
 * optimization, and adds the W+ to the gallery, where it is edited like any other latent. Progress goes
 * out as job events (SSE); every engine call takes the studio's lane as background work.
 */
import { z } from 'zod';
import { ImageError, rgbToSigned } from '../align/index.js';
import { invertPhoto } from '../edit/invert-photo.js';
import { encodeNpy } from '../io/npy.js';
import { type E4eCheckpoint, loadE4e } from '../models/e4e/load.js';
import type { JobContext } from './jobs.js';
import { LIMITS } from './schema.js';
import { ApiError, type Studio } from './studio.js';

/** Bytes of an uploaded photo (before base64). */
export const PHOTO_BYTES = 16 * 1024 * 1024;

export const PhotoRequest = z.strictObject({
  /** File name, for the gallery label. */
  name: z.string().min(1).max(200),
  /** The photo's bytes (JPEG, PNG, WebP), base64. */
  data: z
    .string()
    .min(1)
    .max(Math.ceil((PHOTO_BYTES * 4) / 3) + 4, `the photo exceeds ${PHOTO_BYTES} bytes`),
  /** Detect and FFHQ-align the face; off: the centre square is used as it is. Default: /api/info's photoAlign. */
  align: z.boolean().optional(),
  /** Which face, 1 = leftmost, when the photo has several. */
  face: z.number().int().min(1).max(100).optional(),
  /** Optimization steps after the encoder (or from the mean latent without one). */
  steps: z.number().int().min(0).max(LIMITS.steps).optional(),
});
export type PhotoRequest = z.infer<typeof PhotoRequest>;

let encoder: E4eCheckpoint | null | undefined;

/** The e4e encoder photo jobs start from; without one they optimize from the mean latent. */
export function setPhotoEncoder(ck: E4eCheckpoint | null): void {
  encoder = ck;
}

/** The encoder set, else the one named by STYLECLIP_E4E (loaded once), else none. */
function photoEncoder(): E4eCheckpoint | null {
  if (encoder === undefined) encoder = process.env.STYLECLIP_E4E ? loadE4e(process.env.STYLECLIP_E4E) : null;
  return encoder;
}

/** Steps when the request names none: a short refinement after e4e, a full inversion without it. */
export function defaultPhotoSteps(): number {
  return photoEncoder() ? 50 : 300;
}

/** Checks what can be checked before queueing: size, decodability is left to the job. */
export function validatePhoto(studio: Studio, r: PhotoRequest): void {
  const steps = r.steps ?? defaultPhotoSteps();
  if (steps === 0 && !encoder)
    throw new ApiError(400, 'steps 0 needs an encoder (start the server with --encoder)');
  const e = photoEncoder()?.encoder.config;
  if (e && (e.styleCount !== studio.config.nLatent || e.styleDim !== studio.config.styleDim))
    throw new ApiError(
      400,
      `the encoder gives W+ [${e.styleCount}, ${e.styleDim}]; the generator takes [${studio.config.nLatent}, ${studio.config.styleDim}]`,
    );
}

/** The job: photo → aligned → W+ → a new gallery item. */
export async function invertPhotoJob(
  studio: Studio,
  r: PhotoRequest,
  ctx: JobContext,
): Promise<Record<string, unknown>> {
  const bytes = Buffer.from(r.data, 'base64');
  if (bytes.length > PHOTO_BYTES)
    throw new ApiError(413, `the photo is ${bytes.length} bytes; the limit is ${PHOTO_BYTES}`);
  const steps = r.steps ?? defaultPhotoSteps();
  const size = studio.config.size;
  const png = async (img: Float32Array) => (await studio.png(img, size)).png;
  let res: Awaited<ReturnType<typeof invertPhoto>>;
  try {
    res = await invertPhoto(new Uint8Array(bytes), {
      generator: studio.models.generator,
      clip: studio.models.clip,
      arcface: studio.models.arcface ?? undefined,
      encoder: photoEncoder() ?? undefined,
      align: r.align ?? studio.photoAlign,
      face: r.face,
      invert: { steps },
      engine: (fn) => studio.lane.run('background', fn),
      onStage: (stage, detail) => ctx.emit({ type: 'progress', stage, detail, step: 0, steps }),
      onStep: (s) =>
        ctx.emit({
          type: 'progress',
          stage: 'optimize',
          step: s.step + 1,
          steps,
          loss: s.loss,
          mse: s.mse,
          clip: s.clip,
        }),
      shouldStop: () => ctx.cancelled,
    });
  } catch (e) {
    if (e instanceof ImageError) throw new Error(`${r.name}: ${e.message}`);
    throw e;
  }
  if (ctx.cancelled) return { steps: res.steps, stopped: true, image: null };
  const { nLatent: L, styleDim: D } = studio.config;
  const stem = r.name.replace(/\.[^.]*$/, '').replace(/[^\w .-]/g, '_') || 'photo';
  const [item] = studio.addUpload(
    `${stem}.npy`,
    encodeNpy({ dtype: 'float32', shape: [1, L, D], data: res.wplus }),
    1,
  );
  const aligned = new Float32Array(3 * size * size);
  const px = size * size;
  for (let i = 0; i < px; i++)
    for (let c = 0; c < 3; c++) aligned[c * px + i] = (res.aligned.data[3 * i + c] / 255) * 2 - 1;
  return {
    steps: res.steps,
    stopped: false,
    added: item,
    psnr: res.psnr,
    idSimilarity: res.idSimilarity ?? null,
    aligned: await png(rgbToSigned(res.aligned)),
    image: await png(res.image),
  };
}
