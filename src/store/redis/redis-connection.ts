import { Redis, type RedisOptions } from 'ioredis';

/**
 * The connection options of a store URL:
 * - `redis://[user:password@]host[:port][/db]`
 * - `rediss://…` the same over TLS
 * - `unix:///path/to/redis.sock[?db=N]` a unix socket (the path is absolute; a user and password
 *   go as `unix://user:password@localhost/path/to/redis.sock`)
 *
 * @example
 *   connectionOptions('unix:///run/redis/redis.sock?db=2')   // { path: '/run/redis/redis.sock', db: 2 }
 */
export function connectionOptions(url: string): RedisOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('The Redis URL is not a URL (redis://, rediss:// or unix:///path)');
  }
  const auth: RedisOptions = {};
  if (parsed.username !== '') auth.username = decodeURIComponent(parsed.username);
  if (parsed.password !== '') auth.password = decodeURIComponent(parsed.password);
  if (parsed.protocol === 'unix:') {
    const path = decodeURIComponent(parsed.pathname);
    if (parsed.hostname !== '' && parsed.hostname !== 'localhost') throw new Error('A unix: Redis URL names no host: unix:///path/to/redis.sock');
    if (path === '' || path === '/') throw new Error('A unix: Redis URL needs the socket path: unix:///path/to/redis.sock');
    return { ...auth, path, db: dbOf(parsed.searchParams.get('db') ?? '0') };
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error('The Redis URL must be redis://, rediss:// or unix:///path');
  return {
    ...auth,
    host: parsed.hostname.replace(/^\[|\]$/g, '') || 'localhost',
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    db: dbOf(parsed.pathname.slice(1) || '0'),
    ...(parsed.protocol === 'rediss:' && { tls: { servername: parsed.hostname } }),
  };
}

function dbOf(text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new Error(`The Redis URL's database must be a number, got "${text}"`);
  return Number(text);
}

/**
 * A client on a store URL. `name` shows in CLIENT LIST (operators see which connection is which).
 * `onError` hears the first error after each time the connection was up: ioredis reconnects by
 * itself and reports every failed attempt (several a second at first), which would flood a log
 * with one outage (and, with no listener at all, print each one to stderr).
 */
export function connect(url: string, name: string, extra: RedisOptions, onError: (err: Error) => void): Redis {
  const client = new Redis({ ...connectionOptions(url), connectionName: name, ...extra });
  let reported = false;
  client.on('error', (err: Error) => {
    if (reported) return;
    reported = true;
    onError(err);
  });
  client.on('ready', () => {
    reported = false;
  });
  return client;
}
