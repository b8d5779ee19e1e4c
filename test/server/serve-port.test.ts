/** `styleclip serve` on a port that is taken (issue 19, item 5): said at once, before any model loads. */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { runCli } from '../cli/helpers.js';

test('a taken port: exit 2, names the port and --port, no stack trace, no model loaded', async () => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as { port: number }).port;
  try {
    const fx = 'test/fixtures';
    const args = ['serve', '--generator', `${fx}/stylegan2/generator.pt`, '--clip', `${fx}/clip/clip.pt`];
    const [r] = runCli([[...args, '--fs3', `${fx}/global/fs3.npy`, '--port', String(port)]]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^styleclip: error: port ${port} on 127\\.0\\.0\\.1 is already in use`),
    );
    assert.match(r.stderr, /--port 0 for any free port/);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at |generator:|statistics/);
  } finally {
    taken.close();
  }
});
