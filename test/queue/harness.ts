/**
 * Test harness for the queue: Debian's redis-server on a free loopback port with its own temp folder (and
 * append-only persistence when asked), and `styleclip` processes (workers, submitters) run as a user runs
 * them, with their output collected and awaitable.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** A port nobody listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = new Socket();
    let data = '';
    s.setTimeout(500);
    s.once('timeout', () => {
      s.destroy();
      res(false);
    });
    s.once('error', () => res(false));
    s.on('data', (d) => {
      data += d.toString();
      if (data.includes('\n')) {
        s.destroy();
        res(data.startsWith('+PONG'));
      }
    });
    s.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
  });
}

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** SIGKILL: no shutdown save, only what the append-only file already holds survives. */
  kill(): Promise<void>;
  /** Starts it again on the same port and folder (it reloads the append-only file). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(opts: { appendonly?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'styleclip-redis-'));
  let proc: ChildProcess | undefined;
  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
    args.push('--appendonly', opts.appendonly ? 'yes' : 'no');
    if (opts.appendonly) args.push('--appendfsync', 'always');
    const p = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    proc = p;
    const t0 = Date.now();
    while (!(await ping(port))) {
      if (p.exitCode !== null) throw new Error(`redis-server exited with ${p.exitCode}`);
      if (Date.now() - t0 > 10_000) throw new Error('redis-server did not answer within 10 s');
      await sleep(50);
    }
  };
  const end = async (signal: NodeJS.Signals) => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await gone;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill: () => end('SIGKILL'),
    restart: launch,
    stop: async () => {
      await end('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A running `styleclip …` process: its output so far, a wait for a line, and its exit. */
export interface Proc {
  child: ChildProcess;
  output(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
}

export function styleclip(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const waiters: { re: RegExp; res: (m: RegExpMatchArray) => void }[] = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) {
      const m = out.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.res(m);
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>((res) =>
    child.on('exit', (code, signal) => res({ code, signal, output: out })),
  );
  return {
    child,
    output: () => out,
    exited,
    waitFor: (re, timeoutMs = 120_000) => {
      const m = out.match(re);
      if (m) return Promise.resolve(m);
      return new Promise((res, rej) => {
        const w = { re, res };
        waiters.push(w);
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          rej(new Error(`no ${re} within ${timeoutMs} ms; output so far:\n${out}`));
        }, timeoutMs);
        timer.unref();
        void exited.then(() => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(w), 1);
            rej(new Error(`exited before ${re}; output:\n${out}`));
          }
        });
      });
    },
  };
}

/** A worker with test-sized lock and stall intervals (a killed worker's job is retried within ~6 s; shorter locks expire while a loaded machine builds the models' sessions). */
export function worker(url: string, extra: string[] = []): Proc {
  return styleclip([
    'worker',
    '--queue',
    url,
    '--threads',
    '1',
    '--lock-ms',
    '5000',
    '--stalled-ms',
    '1000',
    ...extra,
  ]);
}

/** Stops a process if it still runs (SIGKILL) and waits for it. */
export async function reap(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGKILL');
  await p.exited;
}
