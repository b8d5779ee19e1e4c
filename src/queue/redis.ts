/**
 * The Redis side of the queue: `--queue redis://HOST:PORT[/DB]` parsing, BullMQ's connection options, the
 * key names this project adds next to BullMQ's, and a reachability probe that fails fast with a clear
 * message instead of letting ioredis retry forever.
 */
import type { RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { UserError } from '../cli/common.js';

/** BullMQ's key prefix and queue name: every job kind shares one queue, so one worker serves them all. */
export const PREFIX = 'styleclip';
export const QUEUE = 'jobs';

/** Our own keys, next to BullMQ's (`styleclip:jobs:*`). */
export const keys = {
  fs3Meta: (run: string) => `${PREFIX}:fs3:${run}:meta`,
  fs3Base: (run: string) => `${PREFIX}:fs3:${run}:base`,
  worker: (id: string) => `${PREFIX}:workers:${id}`,
  workers: `${PREFIX}:workers:*`,
};

export interface RedisAddress {
  host: string;
  port: number;
  db: number;
  password?: string;
  username?: string;
}

/** `redis://[user:pass@]host[:port][/db]` → address; anything else is a UserError naming the flag. */
export function parseRedisUrl(url: string): RedisAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`--queue must be a redis://HOST:PORT address, got "${url}"`);
  }
  if (u.protocol !== 'redis:' || !u.hostname)
    throw new UserError(`--queue must be a redis://HOST:PORT address, got "${url}"`);
  const port = u.port ? Number(u.port) : 6379;
  const path = u.pathname.replace(/^\//, '');
  const db = path ? Number(path) : 0;
  if (!Number.isInteger(db) || db < 0)
    throw new UserError(`--queue: the database number after the port must be 0 or more, got "${path}"`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    db,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    username: u.username ? decodeURIComponent(u.username) : undefined,
  };
}

/**
 * Connection options for BullMQ. `maxRetriesPerRequest: null` lets a worker's blocking connection wait
 * through a Redis restart (BullMQ requires it for workers); ioredis reconnects with a capped backoff.
 */
export function connectionOptions(a: RedisAddress, blocking = true): BullRedisOptions & RedisOptions {
  return {
    host: a.host,
    port: a.port,
    db: a.db,
    password: a.password,
    username: a.username,
    maxRetriesPerRequest: blocking ? null : 20,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * times, 2000),
  };
}

/**
 * Connects once, without retries, and pings: an unreachable or non-Redis address becomes an error with the
 * address and the reason (exit 1), after at most `timeoutMs`.
 */
export async function probe(a: RedisAddress, timeoutMs = 3000): Promise<void> {
  const r = new Redis({
    ...connectionOptions(a, false),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let cause: Error | undefined; // the socket's own error (ECONNREFUSED, ENOTFOUND) says more than ioredis's
  r.on('error', (e: Error) => {
    cause ??= e;
  });
  const where = `${a.host}:${a.port}`;
  try {
    await withTimeout(r.connect(), timeoutMs, `no answer within ${timeoutMs / 1000} s`);
    await withTimeout(r.ping(), timeoutMs, `no answer to PING within ${timeoutMs / 1000} s`);
  } catch (e) {
    let why = (cause ?? (e as Error)).message;
    if (/RESP|Protocol error/i.test(why)) why = 'something answers there, but it does not speak Redis';
    throw new UserError(
      `cannot reach Redis at redis://${where} (${why}); start redis-server there or fix --queue`,
      1,
    );
  } finally {
    r.disconnect();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(why)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A plain client for our own keys (BullMQ makes its own). */
export function client(a: RedisAddress): Redis {
  const r = new Redis(connectionOptions(a, true));
  r.on('error', () => {}); // ioredis reconnects; commands wait in its offline queue
  return r;
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  concurrency: number;
  threads: number;
  done: number;
  active: string[];
  seen: number;
}

/** Workers whose heartbeat has not expired (a key with a TTL of three heartbeats). */
export async function listWorkers(redis: Redis): Promise<WorkerInfo[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.workers, 'COUNT', 200);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  if (found.length === 0) return [];
  const vals = await redis.mget(found);
  return vals.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerInfo);
}
