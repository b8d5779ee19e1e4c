/**
 * `styleclip serve`'s HTTP layer on node:http: a small router, JSON bodies validated by the zod schemas in
 * schema.ts, Server-Sent Events for job progress, and the built web page (web/dist) as static files.
 *
 * Every error becomes a JSON answer `{ "error": "…" }`: 4xx for the client's mistakes (with the reason),
 * 500 for a bug, which is logged while the server keeps serving.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { activeProvider } from '../runtime/session.js';
import { defaultPhotoSteps, invertPhotoJob, PHOTO_BYTES, PhotoRequest, validatePhoto } from './invert.js';
import { type Job, JobQueue, QueueFullError } from './jobs.js';
import {
  ChannelsRequest,
  describeIssues,
  GlobalEditRequest,
  jsonSchemas,
  LIMITS,
  MapperApplyRequest,
  OptimizeRequest,
  UploadRequest,
} from './schema.js';
import { ApiError, type Studio } from './studio.js';

/** web/dist: two levels above this file both in src/server and in dist/server. */
export const WEB_DIST = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'dist');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
  '.ico': 'image/x-icon',
};

export interface ServerOptions {
  host?: string;
  port?: number;
  /** Where the built page lives (default web/dist). */
  webRoot?: string;
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  server: Server;
  queue: JobQueue;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Reads the body up to `limit` bytes; more is a 413 (and the rest is not read). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new ApiError(413, `the request body is ${declared} bytes; the limit is ${limit}`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        reject(new ApiError(413, `the request body exceeds ${limit} bytes`));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    // A client that goes away mid-body settles the promise too (nothing is answered then).
    req.on('close', () => {
      if (!req.complete) reject(new ApiError(400, 'the request body was cut off'));
    });
  });
}

async function json<S extends z.ZodType>(req: IncomingMessage, schema: S, limit: number = LIMITS.jsonBytes) {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type))
    throw new ApiError(
      415,
      `send the body as JSON with content-type application/json (got "${type || 'none'}")`,
    );
  const raw = await readBody(req, limit);
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new ApiError(400, `the body is not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new ApiError(400, 'the body must be a JSON object');
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError(400, describeIssues(r.error));
  return r.data as z.infer<S>;
}

/** An AbortSignal that fires when the client closes the connection before the answer is sent. */
function clientGone(res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}

function jobView(queue: JobQueue, job: Job) {
  const last = [...job.events].reverse().find((e) => e.type === 'progress' && typeof e.step === 'number');
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    position: queue.position(job),
    step: last ? last.step : 0,
    steps: job.params.steps,
    error: job.error,
    result: job.result,
  };
}

/** Loopback servers answer only to loopback host names (a guard against DNS rebinding). */
function hostAllowed(req: IncomingMessage, loopbackOnly: boolean): boolean {
  if (!loopbackOnly) return true;
  const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
  return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host === '';
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export async function startServer(studio: Studio, options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const webRoot = options.webRoot ?? WEB_DIST;
  const log = options.log ?? (() => {});
  const queue = new JobQueue(LIMITS.queue);
  const loopbackOnly = isLoopback(host);
  const sse = new Set<ServerResponse>();

  const routes: [
    string,
    RegExp,
    (req: IncomingMessage, res: ServerResponse, m: RegExpExecArray) => Promise<void>,
  ][] = [
    ['GET', /^\/api\/health$/, async (_q, res) => send(res, 200, { ok: true, queue: queue.list() })],
    [
      'GET',
      /^\/api\/info$/,
      // the execution provider the graphs run on (chosen once per process; --device / STYLECLIP_DEVICE)
      async (_q, res) => send(res, 200, { ...studio.info(), device: await activeProvider(), limits: LIMITS }),
    ],
    ['GET', /^\/api\/schema$/, async (_q, res) => send(res, 200, jsonSchemas())],
    ['GET', /^\/api\/gallery$/, async (_q, res) => send(res, 200, { images: studio.list() })],
    [
      'GET',
      /^\/api\/images\/([^/]+)$/,
      async (_q, res, m) => {
        const id = decodeURIComponent(m[1]);
        if (!/^(latents:\d+|seed:\d{1,10}|upload:[\w-]+:\d+)$/.test(id))
          throw new ApiError(400, 'image must be latents:N, seed:N or upload:ID:N');
        send(res, 200, { id, image: (await studio.original(id)).png });
      },
    ],
    [
      'POST',
      /^\/api\/global$/,
      async (req, res) => {
        const body = await json(req, GlobalEditRequest);
        send(res, 200, await studio.globalEdit(body, clientGone(res)));
      },
    ],
    [
      'POST',
      /^\/api\/global\/channels$/,
      async (req, res) => {
        const body = await json(req, ChannelsRequest);
        const b = await studio.boundary(body.target, body.neutral, body.beta);
        send(res, 200, { numChannels: b.numChannels, maxRelevance: b.maxRelevance });
      },
    ],
    [
      'POST',
      /^\/api\/mapper$/,
      async (req, res) => {
        const body = await json(req, MapperApplyRequest);
        send(res, 200, await studio.mapperApply(body));
      },
    ],
    [
      'POST',
      /^\/api\/latents$/,
      async (req, res) => {
        const limit = Math.ceil((LIMITS.uploadBytes * 4) / 3) + 4096;
        const body = await json(req, UploadRequest, limit);
        const bytes = Buffer.from(body.data, 'base64');
        if (bytes.length > LIMITS.uploadBytes)
          throw new ApiError(413, `the file is ${bytes.length} bytes; the limit is ${LIMITS.uploadBytes}`);
        send(res, 201, { images: studio.addUpload(body.name, bytes, LIMITS.uploadImages) });
      },
    ],
    [
      'POST',
      /^\/api\/jobs\/optimize$/,
      async (req, res) => {
        const body = studio.validateOptimize(await json(req, OptimizeRequest));
        let job: Job;
        try {
          job = queue.submit('optimize', body, (ctx) => studio.optimize(body, ctx));
        } catch (e) {
          if (e instanceof QueueFullError) throw new ApiError(429, e.message);
          throw e;
        }
        job.subscribe((e) => {
          if (e.type === 'failed') log(`job ${job.id} failed: ${e.error}`);
        });
        send(res, 202, jobView(queue, job));
      },
    ],
    [
      'POST',
      /^\/api\/jobs\/invert$/,
      async (req, res) => {
        const body = await json(req, PhotoRequest, Math.ceil((PHOTO_BYTES * 4) / 3) + 4096);
        validatePhoto(studio, body);
        let job: Job;
        try {
          job = queue.submit('invert', { steps: body.steps ?? defaultPhotoSteps() }, (ctx) =>
            invertPhotoJob(studio, body, ctx),
          );
        } catch (e) {
          if (e instanceof QueueFullError) throw new ApiError(429, e.message);
          throw e;
        }
        send(res, 202, jobView(queue, job));
      },
    ],
    ['GET', /^\/api\/jobs$/, async (_q, res) => send(res, 200, queue.list())],
    [
      'GET',
      /^\/api\/jobs\/([\w-]+)$/,
      async (_q, res, m) => {
        const job = queue.get(m[1]);
        if (!job) throw new ApiError(404, `no job ${m[1]}`);
        send(res, 200, jobView(queue, job));
      },
    ],
    [
      'DELETE',
      /^\/api\/jobs\/([\w-]+)$/,
      async (_q, res, m) => {
        const job = queue.get(m[1]);
        if (!job) throw new ApiError(404, `no job ${m[1]}`);
        const cancelled = queue.cancel(job);
        send(res, cancelled ? 202 : 409, {
          ...jobView(queue, job),
          ...(cancelled ? {} : { error: `job already ${job.state}` }),
        });
      },
    ],
    [
      'GET',
      /^\/api\/jobs\/([\w-]+)\/events$/,
      async (_q, res, m) => {
        const job = queue.get(m[1]);
        if (!job) throw new ApiError(404, `no job ${m[1]}`);
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'keep-alive',
        });
        sse.add(res);
        let unsubscribe = () => {};
        const end = () => {
          unsubscribe();
          sse.delete(res);
          res.end();
        };
        unsubscribe = job.subscribe((e) => {
          res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
          if (e.type === 'done' || e.type === 'failed' || e.type === 'cancelled') setImmediate(end);
        });
        res.on('close', () => {
          unsubscribe();
          sse.delete(res);
        });
      },
    ],
  ];

  const staticFile = (path: string, res: ServerResponse): boolean => {
    // Browsers ask for /favicon.ico whatever the page links; the page's icon is an SVG.
    const asked = path === '/' ? '/index.html' : path === '/favicon.ico' ? '/favicon.svg' : path;
    const rel = normalize(decodeURIComponent(asked)).replace(/^[/\\]+/, '');
    const file = join(webRoot, rel);
    if (!file.startsWith(webRoot + sep) || !existsSync(file) || !extname(file)) return false;
    const body = readFileSync(file);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    res.end(body);
    return true;
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    try {
      if (!hostAllowed(req, loopbackOnly)) throw new ApiError(403, 'this server answers only to localhost');
      if (url.pathname.startsWith('/api/')) {
        const matching = routes.filter(([, re]) => re.test(url.pathname));
        if (!matching.length) throw new ApiError(404, `no API route ${url.pathname}`);
        const route = matching.find(([m]) => m === method);
        if (!route) {
          res.setHeader('allow', matching.map(([m]) => m).join(', '));
          throw new ApiError(405, `${method} is not allowed on ${url.pathname}`);
        }
        await route[2](req, res, route[1].exec(url.pathname)!);
        return;
      }
      if ((method === 'GET' || method === 'HEAD') && staticFile(url.pathname, res)) return;
      if (method === 'GET' && url.pathname === '/')
        throw new ApiError(503, `the web page is not built (${webRoot} is missing): run npm run build`);
      throw new ApiError(404, `not found: ${url.pathname}`);
    } catch (e) {
      if (e instanceof ApiError) send(res, e.status, { error: e.message });
      else {
        const err = e as Error;
        log(`error in ${method} ${url.pathname}: ${err.stack ?? err.message}`);
        // Expected load/shape errors from the library name the problem; pass them on as a 4xx.
        const known = ['CheckpointError', 'NpyError', 'MapperError', 'TextTooLongError', 'RangeError'];
        send(res, known.includes(err.name) ? 400 : 500, { error: err.message });
      }
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 7860, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}`,
    server,
    queue,
    async close() {
      for (const j of queue.list().waiting) {
        const job = queue.get(j);
        if (job) queue.cancel(job);
      }
      const running = queue.list().running;
      if (running) queue.cancel(queue.get(running)!);
      for (const r of sse) r.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await queue.idle();
    },
  };
}
