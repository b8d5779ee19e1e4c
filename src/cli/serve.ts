/** `styleclip serve`: the local web app (gallery, global directions, optimization, mappers) and its API. */
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Command } from 'commander';
import { z } from 'zod';
import { sampleStyleStats } from '../edit/global.js';
import { cachedStyleStats } from '../edit/stats-cache.js';
import { loadE4e } from '../models/e4e/load.js';
import { isLoopback, loadModels, Studio, startServer, WEB_DIST } from '../server/index.js';
import { setPhotoEncoder } from '../server/invert.js';
import { arcfaceUnits, CliCommand, inputFile, int, parseFlags, UserError } from './common.js';

const file = (what: string) => inputFile(`${what} file`);
/** --mappers: a folder of mapper files (the world's, `models/world/mappers`) or one file. */
const fileOrFolder = z
  .string()
  .min(1, 'must not be empty')
  .refine((f) => existsSync(f), { error: (i) => `not found: ${i.input}` });

/** What to tell a user whose --host/--port cannot be bound. */
function listenProblem(e: NodeJS.ErrnoException, host: string, port: number): string | null {
  if (e.code === 'EADDRINUSE')
    return `port ${port} on ${host} is already in use (another styleclip serve?): pick another with --port N, or --port 0 for any free port`;
  if (e.code === 'EACCES')
    return `port ${port} on ${host} needs privileges: use a port above 1023, e.g. --port 7860`;
  if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND')
    return `--host ${host} is not an address of this machine: use 127.0.0.1 (local) or 0.0.0.0 (all interfaces)`;
  return null;
}

/** Binds and releases host:port, so a taken port is reported before the models load (seconds to minutes). */
async function checkPort(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => {
      const why = listenProblem(e, host, port);
      reject(why ? new UserError(why) : e);
    });
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

const Flags = z.object({
  generator: file('generator'),
  clip: file('CLIP'),
  fs3: file('fs3').optional(),
  stats: file('stats').optional(),
  arcface: file('ArcFace').optional(),
  arcfaceUnits: arcfaceUnits.optional(),
  mappers: fileOrFolder.optional(),
  latents: file('latents').optional(),
  encoder: file('e4e encoder').optional(),
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
  return new CliCommand('serve')
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
    .option('--encoder <file>', 'e4e encoder (e4e_ffhq_encode.pt) for photo uploads; else optimization only')
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
        throw new UserError(
          `the web page is not built (${WEB_DIST} is missing): in a clone of the repository run \`npm run build\`; an installed package ships it, so reinstall it`,
          1,
        );
      await checkPort(f.host, f.port);
      const log = (s: string) => process.stderr.write(`styleclip serve: ${s}\n`);
      const models = loadModels(f, log);
      if (f.encoder) setPhotoEncoder(loadE4e(f.encoder));
      if (models.fs3 && !models.stats) {
        // The same cache as `global edit`: per generator file content and sample count.
        const c = await cachedStyleStats(f.generator, models.generator.config, f.statsSamples, async () => {
          log(`computing StyleSpace channel statistics (${f.statsSamples} samples)…`);
          return (await sampleStyleStats(models.generator, { samples: f.statsSamples })).stats;
        });
        if (c.hit) log(`channel statistics: cached (${c.file})`);
        models.stats = c.stats;
      }
      const studio = new Studio(models, {
        seeds: f.seeds,
        statsSamples: f.statsSamples,
        previewSize: f.preview,
      });
      await studio.warmUp();
      let srv: Awaited<ReturnType<typeof startServer>>;
      try {
        srv = await startServer(studio, { host: f.host, port: f.port, log });
      } catch (e) {
        // Taken between the check and now.
        const why = listenProblem(e as NodeJS.ErrnoException, f.host, f.port);
        throw why ? new UserError(why) : e;
      }
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
