/** `styleclip serve`: the local web app (gallery, global directions, optimization, mappers) and its API. */
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { z } from 'zod';
import { isLoopback, loadModels, Studio, startServer, WEB_DIST } from '../server/index.js';
import { arcfaceUnits, int, parseFlags, UserError } from './common.js';

const file = (what: string) =>
  z
    .string()
    .min(1)
    .refine((f) => existsSync(f), { message: `${what} file not found` });

const Flags = z.object({
  generator: file('generator'),
  clip: file('CLIP'),
  fs3: file('fs3').optional(),
  stats: file('stats').optional(),
  arcface: file('ArcFace').optional(),
  arcfaceUnits: arcfaceUnits.optional(),
  mappers: file('mappers').optional(),
  latents: file('latents').optional(),
  port: int('port')
    .refine((p) => p >= 0 && p <= 65535, 'port must be in 0..65535')
    .default(7860),
  host: z.string().min(1).default('127.0.0.1'),
  seeds: int('seeds')
    .refine((n) => n >= 1 && n <= 256, 'seeds must be in 1..256')
    .default(12),
  statsSamples: int('stats samples')
    .refine((n) => n >= 10, 'stats samples must be at least 10')
    .default(2000),
  preview: int('preview size')
    .refine((n) => n >= 4 && Number.isInteger(Math.log2(n)), 'preview size must be a power of two')
    .default(256),
});

export function serveCommand(): Command {
  return new Command('serve')
    .description('start the local web app and its JSON API (loopback only unless --host says otherwise)')
    .requiredOption(
      '--generator <file>',
      'StyleGAN2 generator (.pt rosinality, StyleCLIP mapper .pt, NVIDIA .pkl)',
    )
    .requiredOption('--clip <file>', 'CLIP ViT checkpoint (OpenAI ViT-B-32.pt, or HF model.safetensors)')
    .option('--fs3 <file>', "global directions' fs3.npy (enables the global directions panel)")
    .option(
      '--stats <file>',
      'StyleSpace channel statistics (S_mean_std or our [2, C] .npy); computed if absent',
    )
    .option('--arcface <file>', 'ArcFace IR-SE50 weights (model_ir_se50.pth), for the optimization ID loss')
    .option('--arcface-units <list>', 'units per IR-SE stage when the weights cannot tell (e.g. 1,1,2,1)')
    .option('--mappers <dir>', 'a directory of StyleCLIP mapper .pt files (or one file)')
    .option('--latents <file>', 'gallery latents: w_plus.npy [N, L, 512], e4e latents.pt, w [N, 512]')
    .option('--port <n>', 'port (0: any free port)', '7860')
    .option(
      '--host <addr>',
      'address to bind; anything but loopback is reachable from other machines',
      '127.0.0.1',
    )
    .option('--seeds <n>', 'random seeds in the gallery when there is no --latents', '12')
    .option('--stats-samples <n>', 'samples for channel statistics when --stats is absent', '2000')
    .option('--preview <size>', 'preview render size while dragging sliders', '256')
    .action(async (opts: unknown) => {
      const f = parseFlags(Flags, opts);
      if (!existsSync(WEB_DIST))
        throw new UserError(`the web page is not built (${WEB_DIST} is missing): run \`npm run build\``, 1);
      const log = (s: string) => process.stderr.write(`styleclip serve: ${s}\n`);
      const models = loadModels(f, log);
      const studio = new Studio(models, {
        seeds: f.seeds,
        statsSamples: f.statsSamples,
        previewSize: f.preview,
      });
      if (models.fs3 && !models.stats)
        log(`computing StyleSpace channel statistics (${f.statsSamples} samples)…`);
      await studio.warmUp();
      const srv = await startServer(studio, { host: f.host, port: f.port, log });
      if (!isLoopback(f.host))
        log(
          `WARNING: listening on ${f.host}, not loopback: anyone who can reach this machine can use the app and its API (there is no authentication)`,
        );
      process.stdout.write(`styleclip serve: open ${srv.url}/\n`);
      const stop = async () => {
        log('shutting down');
        await srv.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await new Promise(() => {}); // serve until a signal
    });
}
