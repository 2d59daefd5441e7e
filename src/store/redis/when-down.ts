import type { Redis } from 'ioredis';
import { RunwayError } from '../../core/errors.js';

/** How long a client is told to wait before it tries again while Redis is down. */
const RETRY_AFTER_S = 2;

/** Connection states after the connection was lost (before the first connect it is `connecting`/`wait`). */
const LOST = new Set(['reconnecting', 'close', 'end']);

function unavailable(cause?: unknown): RunwayError {
  return new RunwayError('unavailable', 'The run store cannot be reached; try again shortly', { retryAfterS: RETRY_AFTER_S, cause });
}

/**
 * `store` with its `methods` answering `unavailable` (503, Retry-After) while Redis is down: at
 * once once the connection was lost (ioredis would queue the command until it reconnects), and
 * for a command that fails while the connection is not up. A client learns that the store is
 * down, not that the server broke. Failures while the connection is up pass through as they are.
 *
 * @example
 *   const runs = whenDown(new RedisRunStore(…), commands, ['create', 'get', 'update', 'list', 'ping'])
 *   await runs.get(id)   // Redis stopped: rejects with RunwayError code 'unavailable'
 */
export function whenDown<T extends object>(store: T, client: Redis, methods: readonly (keyof T & string)[]): T {
  // One wrapper per method, made once: store calls are on every run's path.
  const wrappers = new Map<string | symbol, unknown>();
  for (const key of methods) {
    const method = store[key] as unknown as (...a: unknown[]) => Promise<unknown>;
    wrappers.set(key, async (...args: unknown[]) => {
      if (LOST.has(client.status)) throw unavailable();
      try {
        return await method.apply(store, args);
      } catch (err) {
        if (client.status === 'ready' || err instanceof RunwayError) throw err;
        throw unavailable(err);
      }
    });
  }
  return new Proxy(store, {
    get: (target, key, receiver) => (wrappers.has(key) ? wrappers.get(key) : Reflect.get(target, key, receiver)),
  });
}
