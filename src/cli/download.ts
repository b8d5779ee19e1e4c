/**
 * `styleclip download <name…> [--dir DIR] [--force]` and `styleclip download --list`: the published
 * models, fetched into the cache folder with a progress bar, resumable, checksum-verified where the source
 * gives one. The names then work as model flags (`--generator ffhq`).
 */
import { existsSync } from 'node:fs';
import { SingleBar } from 'cli-progress';
import { Command } from 'commander';
import { z } from 'zod';
import {
  CATALOG,
  cachedPath,
  DownloadError,
  expandNames,
  type FetchResult,
  fetchKnown,
  formatBytes,
  GROUPS,
  sourceUrl,
} from '../download/index.js';
import { modelsDir } from '../util/cache.js';
import { parseFlags, UserError } from './common.js';

const Flags = z.object({
  list: z.boolean().optional(),
  dir: z.string().min(1, 'a folder').optional(),
  force: z.boolean().optional(),
});

function listing(): string {
  const rows = CATALOG.map((f) => {
    const here = existsSync(cachedPath(f));
    return [
      `${here ? '✓' : ' '} ${f.name.padEnd(15)} ${f.kind.padEnd(9)} ~${formatBytes(f.bytes).padStart(8)}  ${f.description}`,
      `      file ${f.file}${f.sha256 ? ` (SHA-256 ${f.sha256.slice(0, 12)}…)` : ''}`,
      `      licence: ${f.licence}`,
      `      source: ${f.source}`,
    ].join('\n');
  });
  return [
    `Known files (✓ = in ${modelsDir()}):`,
    ...rows,
    `Groups: ${Object.entries(GROUPS)
      .map(([g, m]) => `${g} (${m.length})`)
      .join(', ')}`,
    'Download with `styleclip download NAME…`; then use the name as a flag value, e.g. --generator ffhq.',
  ].join('\n');
}

/** A bar with bytes, speed and ETA on a terminal; a line per file otherwise. */
function progress(name: string): { update: (done: number, total?: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  const bar = new SingleBar({
    format: `${name} [{bar}] {percentage}% | {done} / {size} | {speed} | ETA {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
    etaBuffer: 50,
  });
  let started = false;
  const t0 = performance.now();
  let first = 0;
  return {
    update(done, total) {
      const payload = (d: number) => ({
        done: formatBytes(d),
        size: total ? formatBytes(total) : '?',
        speed: `${formatBytes(((d - first) / Math.max(performance.now() - t0, 1)) * 1000)}/s`,
      });
      if (!started) {
        started = true;
        first = done;
        bar.start(total ?? 0, done, payload(done));
      } else bar.update(done, payload(done));
    },
    stop: () => bar.stop(),
  };
}

async function run(names: string[], opts: unknown): Promise<void> {
  const f = parseFlags(Flags, opts);
  if (f.list) {
    process.stdout.write(`${listing()}\n`);
    return;
  }
  if (!names.length) throw new UserError('name what to download (styleclip download --list shows the names)');
  const { files, unknown } = expandNames(names);
  if (unknown.length)
    throw new UserError(
      `unknown name(s): ${unknown.join(', ')} (styleclip download --list shows the known ones)`,
    );
  const failed: string[] = [];
  for (const file of files) {
    const bar = progress(file.name);
    const t0 = performance.now();
    let r: FetchResult;
    try {
      if (!process.stderr.isTTY)
        process.stderr.write(
          `downloading ${file.name} (~${formatBytes(file.bytes)}) from ${new URL(sourceUrl(file)).host}\n`,
        );
      r = await fetchKnown(file, { dir: f.dir, force: f.force, onProgress: bar.update });
    } catch (e) {
      bar.stop();
      if (!(e instanceof DownloadError)) throw e;
      process.stderr.write(`styleclip: error: ${file.name}: ${e.message}\n`);
      failed.push(file.name);
      continue;
    }
    bar.stop();
    if (r.present) process.stdout.write(`${file.name}: already there: ${r.path}\n`);
    else {
      const s = (performance.now() - t0) / 1000;
      const moved = (r.bytes ?? 0) - (r.resumedFrom ?? 0);
      const notes = [
        r.resumedFrom ? `resumed at ${formatBytes(r.resumedFrom)}` : '',
        r.reconnects ? `${r.reconnects} reconnect(s)` : '',
        file.sha256 ? 'SHA-256 verified' : '',
      ].filter(Boolean);
      process.stdout.write(
        `${file.name}: ${formatBytes(r.bytes ?? 0)} in ${s.toFixed(1)} s (${formatBytes(moved / Math.max(s, 1e-3))}/s)` +
          `${notes.length ? `, ${notes.join(', ')}` : ''}: ${r.path}\n`,
      );
    }
  }
  if (failed.length)
    throw new UserError(
      `${failed.length} of ${files.length} download(s) failed (${failed.join(', ')}); run the same command again to retry`,
      1,
    );
}

export function downloadCommand(): Command {
  return new Command('download')
    .description(
      'download published models (FFHQ generator, CLIP ViT-B/32, IR-SE50, e4e, the 14 mappers, fs3, w_plus)',
    )
    .argument('[names...]', 'known names or groups (mappers, all); see --list')
    .option('--list', 'list the known files with sizes, licences and sources')
    .option('--dir <folder>', `download into this folder instead of the cache (${modelsDir()})`)
    .option('--force', 'download again even when the file is already there')
    .addHelpText(
      'after',
      '\nThe cache folder is $STYLECLIP_CACHE/models, else $XDG_CACHE_HOME/styleclip/models, else ~/.cache/styleclip/models.\n' +
        'STYLECLIP_MIRROR=URL fetches every file from URL/<file name> instead of its published source.\n' +
        'An interrupted download resumes where it stopped when the same command runs again.',
    )
    .action(run);
}
