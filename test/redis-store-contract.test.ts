import { afterAll, beforeAll } from 'vitest';
import { createRedisStores } from '../src/store/redis/redis-stores.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { describeStoreContract } from './support/store-contract.js';

// The store contract (test/support/store-contract.ts), the memory store's, against a real
// redis-server: each test on a prefix of its own, so no test sees another's keys.
let server: RedisServer;
beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

describeStoreContract('redis', () => createRedisStores({ url: server.url, prefix: server.freshPrefix(), runTtlS: 3600 }));
