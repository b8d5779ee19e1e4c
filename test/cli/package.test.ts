/**
 * The npm package as users get it (issue 19, item 8): `npm pack`, the tarball installed into an empty folder
 * offline (no registry, no onnxruntime-node download), then `npx styleclip --help`, `generate` and `serve`.
 *
 * Offline means every dependency comes from npm's cache, which `npm ci` filled: the folder gets a lockfile
 * made from ours (the production packages, pinned by version and integrity), so npm needs no registry
 * metadata. The user's project denies onnxruntime-node's install script the npm 11 way (`allowScripts`),
 * as the README tells users to; that script would otherwise download CUDA libraries and fail offline.
 * It packs the built `dist/` and `web/dist/` (`npm ci` builds them; `npm run build` after changing src/).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const built =
  existsSync(join(root, 'dist', 'cli', 'main.js')) && existsSync(join(root, 'web', 'dist', 'app.js'));
const skip = built ? false : 'dist/ or web/dist/ is not built: run `npm run build` (npm ci does it)';
const tmp = mkdtempSync(join(tmpdir(), 'styleclip-package-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const npm = (args: string[], cwd: string) => {
  const r = spawnSync('npm', args, {
    cwd,
    encoding: 'utf8',
    // Offline: anything not in npm's cache fails instead of downloading.
    env: { ...process.env, npm_config_offline: 'true' },
  });
  assert.equal(r.status, 0, `npm ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r;
};

test('npm pack, install offline into an empty folder, npx styleclip --help, generate, serve', {
  skip,
}, async () => {
  // 1. The tarball: the built CLI and web page, nothing of the sources.
  const packed = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], root);
  // Our .npmrc holds only settings npm knows (npm 11 warned on every npx about onnxruntime-node-install).
  assert.doesNotMatch(packed.stderr, /Unknown project config/);
  const info = JSON.parse(packed.stdout)[0] as { filename: string; files: { path: string }[] };
  const files = info.files.map((f) => f.path);
  for (const f of [
    'bin/styleclip.js',
    'dist/cli/main.js',
    'web/dist/index.html',
    'web/dist/app.js',
    'assets/bpe_simple_vocab_16e6.txt.gz',
    'models/world/classifier.safetensors',
  ])
    assert.ok(files.includes(f), `${f} is in the tarball`);
  assert.ok(
    !files.some(
      (f) =>
        f.startsWith('src/') ||
        f.startsWith('test/') ||
        f.endsWith('.map') ||
        f.startsWith('models/world/train/'),
    ),
    'no sources, tests, maps or unfinished training runs',
  );
  const tgz = join(tmp, info.filename);

  // 2. A user's empty project with the tarball as its only dependency, locked to our production packages.
  const project = join(tmp, 'project');
  mkdirSync(project);
  const ours = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const spec = `file:${tgz}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  const manifest = {
    name: 'user-project',
    version: '1.0.0',
    private: true,
    dependencies: { styleclip: spec },
  };
  const packages: Record<string, unknown> = {
    '': manifest,
    'node_modules/styleclip': {
      version: ours.version,
      resolved: spec,
      integrity,
      license: ours.license,
      dependencies: ours.dependencies,
      bin: ours.bin,
      engines: ours.engines,
    },
  };
  // Our lockfile leaves out `resolved`; with it (the registry's tarball URL) npm takes each tarball from the
  // cache by URL and integrity and needs no registry metadata.
  const registry = 'https://registry.npmjs.org';
  for (const [path, entry] of Object.entries(
    lock.packages as Record<string, { dev?: boolean; version: string }>,
  )) {
    if (!path || entry.dev) continue;
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const base = name.slice(name.lastIndexOf('/') + 1);
    packages[path] = { resolved: `${registry}/${name}/-/${base}-${entry.version}.tgz`, ...entry };
  }
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ ...manifest, allowScripts: { 'onnxruntime-node': false } }, null, 2),
  );
  writeFileSync(
    join(project, 'package-lock.json'),
    JSON.stringify(
      { name: manifest.name, version: '1.0.0', lockfileVersion: 3, requires: true, packages },
      null,
      2,
    ),
  );
  const installed = npm(['ci', '--no-audit', '--no-fund'], project);
  assert.doesNotMatch(installed.stdout + installed.stderr, /nuget|script\/install/i);
  const ortBin = join(project, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64');
  if (existsSync(ortBin))
    assert.ok(
      !readdirSync(ortBin).some((f) => f.includes('providers_cuda')),
      'no CUDA libraries were fetched',
    );

  // 3. The installed command.
  const help = npm(['exec', '--', 'styleclip', '--help'], project);
  assert.match(help.stdout, /Usage: styleclip/);
  const fx = (p: string) => join(root, 'test', 'fixtures', p);
  const out = join(project, 'out', 'g.png');
  // The installed bin directly (npx is checked above; each npx costs seconds of npm start-up).
  const bin = join(project, 'node_modules', '.bin', 'styleclip');
  const gen = spawnSync(
    bin,
    ['generate', '--generator', fx('stylegan2/generator.pt'), '--seed', '1', '--out', out],
    {
      cwd: project,
      encoding: 'utf8',
    },
  );
  assert.equal(gen.status, 0, gen.stderr);
  assert.match(gen.stderr, /generated 1 image/);
  assert.ok(existsSync(out));

  // 4. serve: the page and the API answer from the installed package.
  const child = spawn(
    bin,
    ['serve', '--generator', fx('stylegan2/generator.pt'), '--clip', fx('clip/clip.pt'), '--port', '0'],
    { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  try {
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (c) => {
        stdout += c;
        const m = /open (http:\/\/\S+?)\/?\n/.exec(stdout);
        if (m) resolve(m[1]);
      });
      child.on('close', (code) => reject(new Error(`serve exited ${code}:\n${stderr}`)));
    });
    const page = await fetch(`${url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>StyleCLIP<\/title>/);
    assert.equal((await fetch(`${url}/app.js`)).status, 200);
    const info = await (await fetch(`${url}/api/info`)).json();
    assert.equal(info.generator.size, 64);
  } finally {
    child.kill('SIGTERM');
  }
});
