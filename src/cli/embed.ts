import type { Command } from 'commander';
import { z } from 'zod';
import { writeNpy } from '../io/npy.js';
import { ClipEncoder, normalizeRows } from '../models/clip/encoder.js';
import { loadClip } from '../models/clip/load.js';
import { preprocessImageFile } from '../models/clip/preprocess.js';
import { TextTooLongError } from '../models/clip/tokenizer.js';
import { CliCommand, checkOutputs, inputFile, UserError } from './common.js';

const Flags = z
  .object({
    clip: inputFile('CLIP checkpoint'),
    text: z.array(z.string().min(1, 'a text must not be empty')).default([]),
    image: z.array(inputFile('image')).default([]),
    // A missing folder is created when the file is written (the same rule in every command).
    out: z
      .string()
      .regex(/\.npy$/, 'must end in .npy')
      .optional(),
  })
  .refine((o) => o.text.length + o.image.length > 0, { message: 'give at least one --text or --image' });

const collect = (v: string, prev: string[] = []) => [...prev, v];
const fmt = (x: number) => x.toFixed(4);

/**
 * `styleclip embed --clip FILE (--text "…"… | --image a.png…) [--out feats.npy]`: L2-normalized CLIP
 * embeddings of texts and images (texts first, in order), printed or saved as a [N, E] .npy, and the
 * text–image cosine similarities.
 */
export function embedCommand(): Command {
  return new CliCommand('embed')
    .description(
      'normalized CLIP embeddings of texts and/or images, and their text–image cosine similarities',
    )
    .requiredOption(
      '--clip <file>',
      "CLIP ViT checkpoint: OpenAI's ViT-B-32.pt or Hugging Face model.safetensors",
    )
    .option('--text <text>', 'a text to embed (repeat for more)', collect)
    .option('--image <file>', 'an image to embed, preprocessed as CLIP does (repeat for more)', collect)
    .option(
      '--out <file.npy>',
      'save the embeddings as float32 [N, E] (texts, then images) instead of printing',
    )
    .action(async function (this: Command, raw: Record<string, unknown>) {
      const parsed = Flags.safeParse(raw);
      if (!parsed.success) {
        const msg = parsed.error.issues.map((i) =>
          i.path.length ? `--${String(i.path[0])}: ${i.message}` : i.message,
        );
        this.error(`error: ${msg.join('; ')}`, { exitCode: 2 });
      }
      const o = parsed.data!;
      try {
        checkOutputs({ '--out': o.out });
        const enc = new ClipEncoder(loadClip(o.clip));
        const e = enc.embedDim;
        const r = enc.model.config.imageResolution;
        const texts = o.text.length ? normalizeRows(await enc.encodeTexts(o.text), e) : new Float32Array(0);
        const pixels = new Float32Array(o.image.length * 3 * r * r);
        for (let i = 0; i < o.image.length; i++) {
          let px: Float32Array;
          try {
            px = await preprocessImageFile(o.image[i], r);
          } catch (e) {
            // sharp's messages ("unsupported image format", "vipspng: libpng read error") name no file.
            throw new UserError(
              `--image ${o.image[i]}: not a readable image (${(e as Error).message.trim()}); give a PNG, JPEG or WebP file`,
              1,
            );
          }
          pixels.set(px, i * 3 * r * r);
        }
        const images = o.image.length
          ? normalizeRows(await enc.encodeImages(pixels, o.image.length), e)
          : new Float32Array(0);
        const labels = [
          ...o.text.map((t) => `text ${JSON.stringify(t)}`),
          ...o.image.map((f) => `image ${f}`),
        ];
        const all = new Float32Array(texts.length + images.length);
        all.set(texts);
        all.set(images, texts.length);
        if (o.out) {
          writeNpy(o.out, { dtype: 'float32', shape: [labels.length, e], data: all });
          process.stdout.write(`wrote ${labels.length}×${e} normalized embeddings to ${o.out}\n`);
        } else {
          labels.forEach((l, i) => {
            const row = Array.from(all.subarray(i * e, (i + 1) * e), (v) => Number(v.toFixed(6)));
            process.stdout.write(`${l}\t${JSON.stringify(row)}\n`);
          });
        }
        if (o.text.length && o.image.length) {
          process.stdout.write('cosine similarity (rows: images, columns: texts)\n');
          for (let i = 0; i < o.image.length; i++) {
            const sims = o.text.map((_, t) => {
              let s = 0;
              for (let j = 0; j < e; j++) s += images[i * e + j] * texts[t * e + j];
              return fmt(s);
            });
            process.stdout.write(`${o.image[i]}\t${sims.join('\t')}\n`);
          }
        }
        await enc.release();
      } catch (err) {
        // Bad checkpoints, unreadable images and too-long prompts: one clear line, no stack trace
        // (STYLECLIP_DEBUG=1 shows it).
        if (!(err instanceof Error) || process.env.STYLECLIP_DEBUG) throw err;
        const message =
          err instanceof TextTooLongError
            ? `--text: ${err.message.replace(/; shorten it or truncate it$/, '; shorten it')}`
            : err.message;
        const code = err instanceof UserError ? err.exitCode : err instanceof TextTooLongError ? 2 : 1;
        this.error(`error: ${message}`, { exitCode: code });
      }
    });
}
