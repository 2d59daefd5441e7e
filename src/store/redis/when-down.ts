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
  const guarded = new Set<string | symbol>(methods);
  return new Proxy(store, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (!guarded.has(key) || typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        if (LOST.has(client.status)) throw unavailable();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } catch (err) {
          if (client.status === 'ready' || err instanceof RunwayError) throw err;
          throw unavailable(err);
        }
      };
    },
  });
}
