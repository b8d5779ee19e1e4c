/**
 * One file over HTTP(S) into place: bytes go to `<dest>.part`, a dropped connection resumes with a Range
 * request (also across runs: the .part stays), the SHA-256 is checked when the source states one, and only
 * a complete, verified file is renamed to `dest`. Google Drive's "can't scan this file for viruses" page is
 * answered with its confirm token.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

export interface TransferOptions {
  /** Expected SHA-256 (hex); a mismatch removes the download and fails. */
  sha256?: string;
  /** Called as bytes arrive: bytes on disk so far (resumed part included) and the total when known. */
  onProgress?: (done: number, total: number | undefined) => void;
  /** Reconnects after a dropped connection before giving up (default 5). */
  retries?: number;
  /** Wait before reconnecting, ms (default 500). */
  retryDelayMs?: number;
}

export interface TransferResult {
  bytes: number;
  sha256: string;
  /** Bytes already on disk (from an earlier interrupted run) when this one started. */
  resumedFrom: number;
  /** Connections that dropped and were resumed. */
  reconnects: number;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

function errorCode(e: unknown): string | undefined {
  const c = (e as { cause?: { code?: string } })?.cause;
  return c?.code ?? (e as { code?: string })?.code;
}

/** Feeds an existing file into a hash (the resumed part of a transfer). */
function hashFile(file: string, hash: Hash): void {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * The link behind a Google Drive confirm page: the download form (`action` plus its hidden inputs: id,
 * export, confirm, uuid), or the older `confirm=TOKEN` link. Null when the page has neither.
 */
export function driveConfirmUrl(html: string, pageUrl: string): string | null {
  const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (form && /download/i.test(form[1])) {
    const url = new URL(form[1].replaceAll('&amp;', '&'), pageUrl);
    for (const m of form[2].matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
      const name = /name="([^"]*)"/.exec(m[0])?.[1];
      const value = /value="([^"]*)"/.exec(m[0])?.[1] ?? '';
      if (name) url.searchParams.set(name, value);
    }
    return url.href;
  }
  const link = /href="([^"]*confirm=[^"]+)"/i.exec(html);
  if (link) return new URL(link[1].replaceAll('&amp;', '&'), pageUrl).href;
  const token = /confirm=([0-9A-Za-z_-]+)/.exec(html);
  if (token) {
    const url = new URL(pageUrl);
    url.searchParams.set('confirm', token[1]);
    return url.href;
  }
  return null;
}

/** GET with Range; a Drive confirm page is answered (at most 3 times). Returns the response for the file. */
async function request(url: string, offset: number): Promise<Response> {
  let current = url;
  for (let hop = 0; hop < 4; hop++) {
    let res: Response;
    try {
      res = await fetch(current, {
        headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
        redirect: 'follow',
      });
    } catch (e) {
      const code = errorCode(e);
      const host = new URL(current).host;
      if (code && NETWORK_CODES.has(code))
        throw new DownloadError(
          `cannot reach ${host} (${code}): check the network connection (or set STYLECLIP_MIRROR to a mirror)`,
        );
      const why = (e as { cause?: Error }).cause?.message ?? (e as Error).message;
      throw new DownloadError(`cannot reach ${host}: ${why}`);
    }
    if (!(res.headers.get('content-type') ?? '').includes('text/html') || !res.ok) return res;
    const html = await res.text();
    if (/quota|too many users/i.test(html))
      throw new DownloadError(
        `Google Drive refuses the download for now (quota exceeded for this file). Try again later, or ` +
          `download it in a browser from ${url} and pass the file's path instead of its name`,
      );
    const next = driveConfirmUrl(html, res.url || current);
    if (!next)
      throw new DownloadError(
        `${new URL(current).host} answered with a web page instead of the file (${url})`,
      );
    current = next;
  }
  throw new DownloadError(`too many confirm pages from ${new URL(url).host}`);
}

/** Total size from a 206's Content-Range (`bytes a-b/total`) or a 200's Content-Length. */
function totalOf(res: Response, offset: number): number | undefined {
  if (res.status === 206) {
    const m = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
    return m ? Number(m[1]) : undefined;
  }
  const len = res.headers.get('content-length');
  return len !== null ? Number(len) + offset : undefined;
}

export async function downloadFile(
  url: string,
  dest: string,
  opts: TransferOptions = {},
): Promise<TransferResult> {
  const part = `${dest}.part`;
  const retries = opts.retries ?? 5;
  let offset = existsSync(part) ? statSync(part).size : 0;
  const resumedFrom = offset;
  let hash = createHash('sha256');
  if (offset > 0) hashFile(part, hash);
  let reconnects = 0;
  let total: number | undefined;
  for (;;) {
    const res = await request(url, offset);
    // 416 with `bytes */total` equal to what is on disk: an earlier run got every byte but not the rename.
    if (
      res.status === 416 &&
      offset > 0 &&
      offset === Number(/\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '')?.[1])
    )
      break;
    if (!res.ok) {
      rmSync(part, { force: true });
      throw new DownloadError(`HTTP ${res.status} ${res.statusText} for ${url}`.trim());
    }
    if (offset > 0 && res.status !== 206) {
      // The server ignored the Range header: start over.
      offset = 0;
      hash = createHash('sha256');
      rmSync(part, { force: true });
    }
    total = totalOf(res, offset);
    const fd = openSync(part, offset > 0 ? 'a' : 'w');
    let dropped: unknown = null;
    try {
      if (!res.body) throw new DownloadError(`empty response from ${url}`);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        writeSync(fd, chunk);
        hash.update(chunk);
        offset += chunk.length;
        opts.onProgress?.(offset, total);
      }
    } catch (e) {
      if (e instanceof DownloadError) throw e;
      dropped = e;
    } finally {
      closeSync(fd);
    }
    if (!dropped && (total === undefined || offset >= total)) break;
    if (++reconnects > retries)
      throw new DownloadError(
        `the connection dropped at ${offset} of ${total ?? '?'} bytes ${retries + 1} times; ` +
          `run the same command again to resume from there`,
      );
    await new Promise((r) => setTimeout(r, opts.retryDelayMs ?? 500));
  }
  const sha256 = hash.digest('hex');
  if (opts.sha256 && sha256 !== opts.sha256.toLowerCase()) {
    rmSync(part, { force: true });
    throw new DownloadError(
      `checksum mismatch for ${url}: expected SHA-256 ${opts.sha256}, got ${sha256}; the download was removed`,
    );
  }
  renameSync(part, dest);
  return { bytes: offset, sha256, resumedFrom, reconnects };
}
