import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { createRedisStores, type RedisStores } from '../src/store/redis/redis-stores.js';
import { makeApp } from './support/app.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { SseParser, toRunEvent, waitFor, type RunEvent } from './support/sse-sockets.js';
import { testWorkflowType } from './support/test-workflows.js';

// The HTTP service on the Redis store: any replica (a second app on the same Redis and prefix)
// serves a run another one executed or is executing, its stream included; a run started with
// RUNWAY_STORE naming Redis lives there; /readyz follows Redis.

let server: RedisServer;
const apps: FastifyInstance[] = [];

beforeAll(async () => {
  server = await startRedisServer();
});
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});
afterAll(async () => {
  await server?.stop();
});

/** Counts the turns of its conversation so far, and adds its own. */
const rememberType = testWorkflowType('remember', async (input, ctx) => {
  const history = ctx.conversation ? await ctx.conversation.history() : [];
  ctx.conversation?.append({ role: 'user', content: String(input) }, { role: 'assistant', content: `heard ${history.length}` });
  return `heard ${history.length}`;
});

/** An app (a replica) on the store at `prefix`; its runtime closes the stores with the app. */
async function replica(prefix: string): Promise<FastifyInstance> {
  const stores: RedisStores = createRedisStores({ url: server.url, prefix, runTtlS: 3600 });
  const app = await makeApp({ stores, workflows: { remember: { type: 'remember' } }, registry: { workflowTypes: [rememberType] } });
  apps.push(app);
  return app;
}

const alice = { 'x-user-id': 'alice' };

function events(body: string): RunEvent[] {
  const parser = new SseParser();
  parser.push(body);
  return parser.frames.map(toRunEvent);
}

describe('Runway on Redis over HTTP', () => {
  it('a run executed on one replica is served by another after the first is gone: record, list, replay and resume', async () => {
    const prefix = server.freshPrefix();
    const first = await replica(prefix);
    const res = await first.inject({ method: 'POST', url: '/runs', headers: alice, payload: { workflow: 'echo', input: 'hello from redis' } });
    expect(res.statusCode).toBe(200);
    const run = res.json() as { id: string; status: string; output: unknown; last_event_id: number };
    expect(run.status).toBe('succeeded');
    const liveReplay = await first.inject({ method: 'GET', url: `/runs/${run.id}/stream`, headers: alice });
    await first.close();

    const second = await replica(prefix);
    const got = await second.inject({ method: 'GET', url: `/runs/${run.id}`, headers: alice });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(run);
    expect((await second.inject({ method: 'GET', url: `/runs/${run.id}`, headers: { 'x-user-id': 'bob' } })).statusCode).toBe(404);
    const list = (await second.inject({ method: 'GET', url: '/runs?limit=10', headers: alice })).json() as { data: { id: string }[] };
    expect(list.data.map((r) => r.id)).toEqual([run.id]);

    const stream = await second.inject({ method: 'GET', url: `/runs/${run.id}/stream`, headers: alice });
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    const replayed = events(stream.body);
    expect(replayed.map((e) => e.id)).toEqual(Array.from({ length: run.last_event_id }, (_, i) => i + 1));
    expect(replayed[0]!.type).toBe('run.queued');
    expect(replayed.at(-1)!.type).toBe('run.succeeded');
    expect(replayed.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toContain('hello from redis');
    // Byte for byte what the replica that ran it streamed.
    expect(replayed).toEqual(events(liveReplay.body));

    const resumed = await second.inject({ method: 'GET', url: `/runs/${run.id}/stream`, headers: { ...alice, 'last-event-id': '2' } });
    expect(events(resumed.body)).toEqual(replayed.slice(2));
    const done = await second.inject({ method: 'GET', url: `/runs/${run.id}/stream`, headers: { ...alice, 'last-event-id': String(run.last_event_id) } });
    expect(done.statusCode).toBe(204);
  });

  it('a replica follows a run while another executes it, and a cancel sent to it reaches the executor', async () => {
    const prefix = server.freshPrefix();
    const executor = await replica(prefix);
    const other = await replica(prefix);
    const words = Array.from({ length: 8 }, (_, i) => `w${i}`).join(' ');
    const started = await executor.inject({ method: 'POST', url: '/runs', headers: alice, payload: { workflow: 'slow', input: words, background: true } });
    expect(started.statusCode).toBe(202);
    const { id } = started.json() as { id: string };
    const followed = await other.inject({ method: 'GET', url: `/runs/${id}/stream`, headers: alice });
    const seen = events(followed.body);
    expect(seen.map((e) => e.id)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
    expect(seen.at(-1)!.type).toBe('run.succeeded');
    expect(seen.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toBe(words);

    const long = await executor.inject({ method: 'POST', url: '/runs', headers: alice, payload: { workflow: 'slow', input: 'a '.repeat(200), background: true } });
    const longId = (long.json() as { id: string }).id;
    await waitFor(async () => (await other.inject({ method: 'GET', url: `/runs/${longId}`, headers: alice })).json().status === 'running', 'running');
    expect((await other.inject({ method: 'POST', url: `/runs/${longId}/cancel`, headers: alice })).statusCode).toBe(202);
    await waitFor(async () => (await executor.inject({ method: 'GET', url: `/runs/${longId}`, headers: alice })).json().status === 'cancelled', 'cancelled by the other replica');
    const tail = events((await other.inject({ method: 'GET', url: `/runs/${longId}/stream`, headers: alice })).body).at(-1)!;
    expect(tail).toMatchObject({ type: 'run.cancelled', data: { reason: 'user' } });
  });

  it('conversations written through one replica carry on through another', async () => {
    const prefix = server.freshPrefix();
    const first = await replica(prefix);
    const a = await first.inject({ method: 'POST', url: '/runs', headers: alice, payload: { workflow: 'remember', input: 'one', conversation_id: 'c1' } });
    expect(a.json()).toMatchObject({ status: 'succeeded', output: 'heard 0' });
    await first.close();
    const second = await replica(prefix);
    const b = await second.inject({ method: 'POST', url: '/runs', headers: alice, payload: { workflow: 'remember', input: 'two', conversation_id: 'c1' } });
    expect(b.json()).toMatchObject({ status: 'succeeded', output: 'heard 2' });
    const conv = (await second.inject({ method: 'GET', url: '/conversations/c1', headers: alice })).json() as { messages: { content: string }[] };
    expect(conv.messages.map((m) => m.content)).toEqual(['one', 'heard 0', 'two', 'heard 2']);
  });

  it('store: a Redis URL in the config runs the app on Redis under the configured prefix', async () => {
    const prefix = server.freshPrefix();
    const config = { server: { log_level: 'silent' }, runtime: { shutdown_grace_ms: 0 }, store: server.url, redis: { prefix }, workflows: { echo: { type: 'echo', token_delay_ms: 0 } } };
    const app = await buildApp({ config });
    apps.push(app);
    await app.ready();
    const res = await app.inject({ method: 'POST', url: '/runs', headers: alice, payload: { input: 'configured' } });
    const run = res.json() as { id: string; status: string };
    expect(run.status).toBe('succeeded');
    expect((app.runtime.stores as RedisStores).keys.prefix).toBe(prefix);
    // Read back through a replica of its own: the run is in Redis, not in the app's memory.
    const other = await replica(prefix);
    expect((await other.inject({ method: 'GET', url: `/runs/${run.id}`, headers: alice })).json()).toEqual(run);
  });

  it('/readyz is 503 unavailable while Redis cannot be reached, and answers within its bound', async () => {
    const own = await startRedisServer();
    try {
      const stores = createRedisStores({ url: own.url, prefix: 'r:', runTtlS: 60, pingTimeoutMs: 300 });
      const app = await makeApp({ stores });
      apps.push(app);
      expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      await own.stop();
      const started = Date.now();
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ code: 'unavailable' });
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      await own.stop();
    }
  });
});
