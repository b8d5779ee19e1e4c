/**
 * Builds the page into web/dist: esbuild bundles and minifies src/main.ts; index.html, style.css and the
 * icon are copied. `npm run build` runs it (so `npm ci` does too); the e2e tests call buildWeb() themselves.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

export async function buildWeb(out = join(here, 'dist')): Promise<string> {
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [join(here, 'src', 'main.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    sourcemap: true,
    outfile: join(out, 'app.js'),
    logLevel: 'warning',
  });
  for (const f of ['index.html', 'style.css', 'favicon.svg']) copyFileSync(join(here, f), join(out, f));
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildWeb();
