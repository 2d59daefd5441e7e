import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisStores } from '../src/store/redis/redis-stores.js';
import { makeApp } from './support/app.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';

// Redis goes away under a running service: requests that need the store get a 503 `unavailable`
// problem with a Retry-After, at once rather than after ioredis's minute of retries, and the
// server stays up to serve what needs no store.

let server: RedisServer | undefined;
let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  await server?.stop();
  app = server = undefined;
});

const alice = { 'x-user-id': 'alice' };

describe('Runway on Redis when Redis goes down', () => {
  it('answers 503 unavailable with Retry-After for runs, and stays up', async () => {
    server = await startRedisServer();
    app = await makeApp({ stores: createRedisStores({ url: server.url, prefix: server.freshPrefix(), runTtlS: 3600 }) });
    const ok = await app.inject({ method: 'POST', url: '/runs', headers: alice, payload: { workflow: 'echo', input: 'before' } });
    expect(ok.statusCode).toBe(200);
    const runId = (ok.json() as { id: string }).id;

    await server.stop();
    for (const request of [
      { method: 'POST' as const, url: '/runs', headers: alice, payload: { workflow: 'echo', input: 'during' } },
      { method: 'GET' as const, url: `/runs/${runId}`, headers: alice },
      { method: 'GET' as const, url: '/runs', headers: alice },
    ]) {
      const res = await app.inject(request);
      expect(res.statusCode, `${request.method} ${request.url}`).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect((res.json() as { code: string }).code).toBe('unavailable');
      expect(res.headers['retry-after']).toBe('2');
    }
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
  });
});
