import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createRedisStores, type RedisStoreOptions, type RedisStores } from '../../src/store/redis/redis-stores.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

export interface RedisFixture {
  /** The file's own redis-server (set once its `beforeAll` ran). */
  readonly server: RedisServer;
  /** A plain client on it, for looking at keys and connections. */
  readonly admin: Redis;
  /** Redis stores on a fresh prefix, closed after the test. */
  open(options?: Partial<RedisStoreOptions>): RedisStores;
  /** Closes the stores opened so far (done after each test anyway). */
  closeOpened(): Promise<void>;
}

/**
 * For a test file: a redis-server started before its tests and stopped after them, an admin
 * client on it, and stores on fresh prefixes closed after each test.
 *
 * @example
 *   const redis = redisFixture()
 *   it('…', async () => { const stores = redis.open(); … await redis.admin.keys('*') })
 */
export function redisFixture(): RedisFixture {
  let server: RedisServer | undefined;
  let admin: Redis | undefined;
  const opened: RedisStores[] = [];
  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis({ path: server.socket });
  });
  const closeOpened = async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  };
  afterEach(closeOpened);
  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });
  return {
    get server() {
      return server!;
    },
    get admin() {
      return admin!;
    },
    open(options = {}) {
      const stores = createRedisStores({ url: server!.url, prefix: server!.freshPrefix(), runTtlS: 3600, ...options });
      opened.push(stores);
      return stores;
    },
    closeOpened,
  };
}
