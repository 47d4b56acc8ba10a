/**
 * The Redis connection of a cluster run (coordinator, workers, `uvu cluster status`).
 *
 * Policy: the URL comes from `--redis` or UVU_REDIS_URL; its password is never printed (every
 * message shows `maskRedisUrl`); a URL whose host is not loopback must carry a password or an
 * ACL user, because an open Redis lets anyone on the network queue jobs for the workers.
 * `connectRedis` checks the server once (PING) with no retries, so a wrong password or a dead
 * server is one clear line instead of ioredis's endless reconnect loop; BullMQ's own connections
 * made afterwards from the same options do reconnect (a Redis restart is survived).
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'bullmq';
import { UsageError, UvuError } from '../util/errors.js';

export const REDIS_URL_ENV = 'UVU_REDIS_URL';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** `url` with its password replaced by "***" (for messages and logs). */
export function maskRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable Redis URL>';
  }
}

/** A checked Redis URL and the ioredis options it stands for. */
export interface RedisTarget {
  /** The URL with the password masked: the only form that is ever printed. */
  shown: string;
  options: RedisOptions;
}

/** The URL from the flag or UVU_REDIS_URL, or undefined when neither is set. */
export function redisUrlFrom(flag: string | undefined): string | undefined {
  return flag ?? (process.env[REDIS_URL_ENV] || undefined);
}

/** Parse and check a Redis URL against the policy above (usage errors, password masked). */
export function parseRedisUrl(url: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--redis: not a URL (expected redis://[user]:password@host:port[/db])`);
  }
  const shown = maskRedisUrl(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UsageError(`--redis ${shown}: the scheme must be redis:// or rediss://`);
  const host = u.hostname;
  if (!host) throw new UsageError(`--redis ${shown}: no host`);
  const password = decodeURIComponent(u.password);
  const username = decodeURIComponent(u.username);
  if (!LOOPBACK.has(host) && !password && !username) {
    throw new UsageError(`--redis ${shown}: a Redis on another machine needs a password (redis://:PASSWORD@${host}:${u.port || 6379}) or an ACL user; start it with --requirepass`);
  }
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new UsageError(`--redis ${shown}: the database "${u.pathname.slice(1)}" is not a number`);
  const options: RedisOptions = {
    host: host.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    db,
    ...(password ? { password } : {}),
    ...(username ? { username } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // BullMQ needs blocking commands to wait as long as it takes (its workers block on the queue).
    maxRetriesPerRequest: null,
  };
  return { shown, options };
}

/** One line for a failed connection or command, naming the (masked) URL and the likely cause. */
export function describeRedisError(target: RedisTarget, err: unknown): string {
  const msg = String((err as Error)?.message ?? err);
  if (/WRONGPASS|invalid username-password|NOAUTH|invalid password/i.test(msg)) return `${target.shown}: Redis refused the password (wrong password or user); check --redis / ${REDIS_URL_ENV}`;
  if (/ECONNREFUSED/.test(msg)) return `${target.shown}: no Redis answers there (connection refused); is redis-server running on that host and port?`;
  if (/ETIMEDOUT|timed? ?out/i.test(msg)) return `${target.shown}: Redis did not answer in time (firewall, wrong host?)`;
  return `${target.shown}: Redis error: ${msg.split('\n')[0]}`;
}

/**
 * Connect once, without retries, and PING: returns a client on success (the caller closes it),
 * or throws a UvuError naming the cause (wrong password, nothing listening, timeout).
 */
export async function connectRedis(target: RedisTarget, timeoutMs = 5000): Promise<Redis> {
  const client = new Redis({ ...target.options, lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: timeoutMs, retryStrategy: () => null, enableOfflineQueue: false });
  // The cause (WRONGPASS, ECONNREFUSED) arrives as an 'error' event; the rejected promise may only
  // say "Connection is closed", so the event's message is the one reported.
  let cause: unknown = null;
  client.on('error', (err) => {
    cause ??= err;
  });
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    client.disconnect();
    throw new UvuError(describeRedisError(target, cause ?? err));
  }
  return client;
}

/** The target as BullMQ's connection option (BullMQ declares its own ioredis option type). */
export const bullConnection = (target: RedisTarget): ConnectionOptions => target.options as ConnectionOptions;
