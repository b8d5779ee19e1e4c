import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { withWorldDefaults } from '../../src/world/models.js';
import { runCli } from '../cli/helpers.js';
import { fixture } from '../helpers.js';

// A stand-in world folder (the fixture generator and CLIP under the world's file names), so the rule is
// tested before the real world models are trained.
const tmp = mkdtempSync(join(tmpdir(), 'world-defaults-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const world = join(tmp, 'world');
mkdirSync(world);
copyFileSync(fixture('stylegan2/generator.pt'), join(world, 'generator.pt'));
copyFileSync(fixture('clip/clip.pt'), join(world, 'clip.pt'));
const env = { STYLECLIP_WORLD: world };
const argv = (...a: string[]) => ['node', 'styleclip', ...a];

test('model flags left out are filled from the world folder; given flags and other commands are left alone', () => {
  assert.deepEqual(withWorldDefaults(argv('generate', '--seed', '1'), env), [
    ...argv('generate', '--seed', '1'),
    '--generator',
    join(world, 'generator.pt'),
  ]);
  // a flag given wins (also as --flag=value); a world model that is absent (fs3 here) adds nothing
  assert.deepEqual(withWorldDefaults(argv('global', 'edit', '--generator=g.pt', '--target', 't'), env), [
    ...argv('global', 'edit', '--generator=g.pt', '--target', 't'),
    '--clip',
    join(world, 'clip.pt'),
  ]);
  assert.deepEqual(withWorldDefaults(argv('tokenize', 'a face'), env), argv('tokenize', 'a face'));
  // invert: the world generator (no CLIP term unless asked); an e4e checkpoint brings its own generator
  assert.deepEqual(withWorldDefaults(argv('invert', '--photo', 'p.png'), env), [
    ...argv('invert', '--photo', 'p.png'),
    '--generator',
    join(world, 'generator.pt'),
  ]);
  const e4e = argv('invert', '--photo', 'p.png', '--encoder', 'e4e.pt');
  assert.deepEqual(withWorldDefaults(e4e, env), e4e);
  assert.deepEqual(withWorldDefaults(argv('generate', '--help'), env), argv('generate', '--help'));
  // fs3 and mappers belong to the world's generator and CLIP: with the user's own, they are not added
  const withFs3 = join(tmp, 'world-fs3');
  mkdirSync(join(withFs3, 'mappers'), { recursive: true });
  for (const f of ['generator.pt', 'clip.pt']) copyFileSync(join(world, f), join(withFs3, f));
  copyFileSync(fixture('global/fs3.npy'), join(withFs3, 'fs3.npy'));
  const fs3Env = { STYLECLIP_WORLD: withFs3 };
  assert.deepEqual(withWorldDefaults(argv('serve'), fs3Env), [
    ...argv('serve'),
    '--generator',
    join(withFs3, 'generator.pt'),
    '--clip',
    join(withFs3, 'clip.pt'),
    '--fs3',
    join(withFs3, 'fs3.npy'),
    '--mappers',
    join(withFs3, 'mappers'),
  ]);
  assert.deepEqual(withWorldDefaults(argv('serve', '--generator', 'g.pt'), fs3Env), [
    ...argv('serve', '--generator', 'g.pt'),
    '--clip',
    join(withFs3, 'clip.pt'),
  ]);
  assert.deepEqual(withWorldDefaults(argv('global', 'edit', '--clip', 'c.pt'), fs3Env), [
    ...argv('global', 'edit', '--clip', 'c.pt'),
    '--generator',
    join(withFs3, 'generator.pt'),
  ]);
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  assert.deepEqual(withWorldDefaults(argv('generate'), { STYLECLIP_WORLD: empty }), argv('generate'));
});

test('`styleclip generate` with no model flag renders with the world generator', () => {
  const out = join(tmp, 'x.png');
  const [r] = runCli([['generate', '--seed', '3', '--out', out]], env);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(out));
  const [missing] = runCli([['generate', '--seed', '3', '--out', out]], {
    STYLECLIP_WORLD: join(tmp, 'none'),
  });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--generator/);
});
