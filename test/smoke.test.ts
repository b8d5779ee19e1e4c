import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { ROOT } from './helpers.js';

test('the CLI prints its help', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--help'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.match(out, /Usage: styleclip/);
});
