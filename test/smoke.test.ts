import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

test('the CLI prints its help', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--help'], {
    encoding: 'utf8',
  });
  assert.match(out, /Usage: styleclip/);
});
