/**
 * `styleclip download` against a local HTTP server on 127.0.0.1 (never the real network): a resumed
 * transfer, a server that drops the connection mid-file, a checksum mismatch, a 404, a Google Drive confirm
 * page, no network at all; and known names as model flags.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import {
  DownloadError,
  downloadFile,
  driveConfirmUrl,
  findKnown,
  resolveModelArgs,
} from '../../src/download/index.js';

/** 300 kB of pseudo-random bytes: big enough to arrive in several chunks. */
const DATA = Buffer.alloc(300_000);
for (let i = 0, s = 7; i < DATA.length; i++) {
  s = (s * 1103515245 + 12345) >>> 0;
  DATA[i] = s >>> 24;
}
const SHA = createHash('sha256').update(DATA).digest('hex');

const requests: { url: string; range?: string }[] = [];
let dropNext = false;

/** Serves DATA with Range support; /drop cuts the first response off halfway; /uc is a Drive-style confirm step. */
function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  requests.push({ url: req.url ?? '', range: req.headers.range });
  if (url.pathname === '/missing') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
    return;
  }
  if (url.pathname === '/uc' && !url.searchParams.has('confirm')) {
    const id = url.searchParams.get('id');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
      `<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/download" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="${id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0d1e2f"></form></body></html>`,
    );
    return;
  }
  if (url.pathname === '/download' && url.searchParams.get('confirm') !== 't') {
    res.writeHead(403).end();
    return;
  }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  if (start >= DATA.length) {
    res.writeHead(416, { 'content-range': `bytes */${DATA.length}` }).end();
    return;
  }
  const body = DATA.subarray(start);
  const headers: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    'content-length': body.length,
    'accept-ranges': 'bytes',
  };
  if (m) headers['content-range'] = `bytes ${start}-${DATA.length - 1}/${DATA.length}`;
  res.writeHead(m ? 206 : 200, headers);
  if (url.pathname === '/drop' && dropNext) {
    dropNext = false;
    res.write(body.subarray(0, 100_000), () => setTimeout(() => res.socket?.destroy(), 20));
    return;
  }
  res.end(body);
}

let server: Server;
let base: string;
let dir: string;

before(async () => {
  server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  requests.length = 0;
  dir = mkdtempSync(join(tmpdir(), 'styleclip-dl-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('downloadFile', () => {
  test('resumes a .part from an earlier run with a Range request, and verifies the whole file', async () => {
    const dest = join(dir, 'model.pt');
    writeFileSync(`${dest}.part`, DATA.subarray(0, 123_456));
    const r = await downloadFile(`${base}/file`, dest, { sha256: SHA });
    assert.equal(r.resumedFrom, 123_456);
    assert.equal(requests[0].range, 'bytes=123456-');
    assert.ok(readFileSync(dest).equals(DATA));
    assert.deepEqual(readdirSync(dir), ['model.pt']);
  });

  test('a connection dropped mid-file is resumed where it stopped', async () => {
    dropNext = true;
    const dest = join(dir, 'model.pt');
    const seen: number[] = [];
    const r = await downloadFile(`${base}/drop`, dest, {
      sha256: SHA,
      retryDelayMs: 10,
      onProgress: (d) => seen.push(d),
    });
    assert.equal(r.reconnects, 1);
    assert.equal(requests.length, 2);
    assert.equal(requests[0].range, undefined);
    assert.match(requests[1].range ?? '', /^bytes=\d+-$/);
    // Whatever arrived before the cut (at most the 100 kB sent) is kept; the rest is asked for.
    const resumedAt = Number(/\d+/.exec(requests[1].range!)![0]);
    assert.ok(resumedAt > 0 && resumedAt <= 100_000, `resumed at ${resumedAt}`);
    assert.ok(readFileSync(dest).equals(DATA));
    assert.equal(seen.at(-1), DATA.length);
  });

  test('a checksum mismatch is refused and leaves nothing behind', async () => {
    const dest = join(dir, 'ViT-B-32.pt');
    await assert.rejects(
      downloadFile(`${base}/file`, dest, { sha256: '0'.repeat(64) }),
      (e: Error) =>
        e instanceof DownloadError && /checksum mismatch/.test(e.message) && e.message.includes(SHA),
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a 404 fails with the status and leaves nothing behind', async () => {
    await assert.rejects(downloadFile(`${base}/missing`, join(dir, 'x.pt')), /HTTP 404 Not Found/);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a Google Drive confirm page is answered with its form (id, export, confirm, uuid)', async () => {
    const dest = join(dir, 'purple_hair.pt');
    await downloadFile(`${base}/uc?export=download&id=ABC`, dest);
    assert.ok(readFileSync(dest).equals(DATA));
    const second = new URL(requests[1].url, base);
    assert.equal(second.pathname, '/download');
    assert.equal(second.searchParams.get('id'), 'ABC');
    assert.equal(second.searchParams.get('confirm'), 't');
    assert.equal(second.searchParams.get('uuid'), '0d1e2f');
  });

  test('the older Drive page: a confirm token in a link', () => {
    const page =
      '<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_9&amp;id=ABC">Download anyway</a>';
    assert.equal(
      driveConfirmUrl(page, 'https://drive.google.com/uc?export=download&id=ABC'),
      'https://drive.google.com/uc?export=download&confirm=Xy_9&id=ABC',
    );
  });
});

/** `styleclip ARGS` as a child process (async: the server answers in this process meanwhile). */
function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('styleclip download', () => {
  test('fetches a known file from STYLECLIP_MIRROR into the cache; its name then works as a flag value', async () => {
    const cache = join(dir, 'cache');
    const r = await cli(['download', 'w_plus'], { STYLECLIP_CACHE: cache, STYLECLIP_MIRROR: `${base}/` });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(new URL(requests[0].url, base).pathname, '/w_plus.npy');
    const file = join(cache, 'models', 'w_plus.npy');
    assert.ok(readFileSync(file).equals(DATA));
    assert.match(r.stdout, /w_plus: 300 kB .*models\/w_plus\.npy/);
    assert.deepEqual(
      resolveModelArgs(['node', 'x', 'serve', '--latents', 'w_plus'], { STYLECLIP_CACHE: cache }),
      ['node', 'x', 'serve', '--latents', file],
    );
    const again = await cli(['download', 'w_plus'], { STYLECLIP_CACHE: cache, STYLECLIP_MIRROR: `${base}/` });
    assert.match(again.stdout, /already there/);
    const other = join(dir, 'elsewhere');
    const r2 = await cli(['download', 'fs3', '--dir', other], {
      STYLECLIP_CACHE: cache,
      STYLECLIP_MIRROR: base,
    });
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(readdirSync(other), ['fs3.npy']);
  });

  test('no network: a clear message, exit 1, nothing left in the cache', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const cache = join(dir, 'cache');
    const r = await cli(['download', 'fs3'], {
      STYLECLIP_CACHE: cache,
      STYLECLIP_MIRROR: `http://127.0.0.1:${port}`,
    });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`cannot reach 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): check the network`),
    );
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    assert.deepEqual(existsSync(join(cache, 'models')) ? readdirSync(join(cache, 'models')) : [], []);
  });

  test('--list names every known file with size, licence and source', async () => {
    const r = await cli(['download', '--list'], { STYLECLIP_CACHE: join(dir, 'cache') });
    assert.equal(r.code, 0);
    for (const name of [
      'ffhq',
      'vit-b-32',
      'ir-se50',
      'e4e-ffhq',
      'fs3',
      'w_plus',
      'purple_hair',
      'zuckerberg',
    ])
      assert.match(r.stdout, new RegExp(`^\\s+${name}\\s`, 'm'), name);
    assert.equal((r.stdout.match(/ mapper /g) ?? []).length, 14);
    assert.match(r.stdout, /40d365715913/);
  });
});

describe('known names as model flags', () => {
  test('a missing one prints the exact download command (exit 2)', async () => {
    const r = await cli(['generate', '--generator', 'ffhq', '--seed', '0'], {
      STYLECLIP_CACHE: join(dir, 'cache'),
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--generator ffhq: .*not downloaded yet/);
    assert.match(r.stderr, /Run: styleclip download ffhq\n/);
  });

  test('a cached one is used; an existing path always wins; other values pass through', () => {
    const cache = join(dir, 'cache');
    mkdirSync(join(cache, 'models'), { recursive: true });
    const gen = join(cache, 'models', 'stylegan2-ffhq-config-f.pt');
    copyFileSync('test/fixtures/stylegan2/generator.pt', gen);
    const env = { STYLECLIP_CACHE: cache };
    assert.deepEqual(resolveModelArgs(['--generator=ffhq', '--clip', 'nope.pt'], env), [
      `--generator=${gen}`,
      '--clip',
      'nope.pt',
    ]);
    // A mapper name works as a generator (its file carries the decoder) but not as --clip.
    assert.throws(
      () => resolveModelArgs(['--generator', 'Purple_Hair'], env),
      /styleclip download purple_hair/,
    );
    assert.deepEqual(resolveModelArgs(['--clip', 'purple_hair'], env), ['--clip', 'purple_hair']);
    const local = join(dir, 'ffhq');
    writeFileSync(local, '');
    assert.deepEqual(resolveModelArgs(['--generator', local], env), ['--generator', local]);
    assert.equal(findKnown('ViT-B/32')?.file, 'ViT-B-32.pt');
  });
});
