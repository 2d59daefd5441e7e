import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { startRunway, type RunwayProcess } from './support/runway-process.js';
import { SseParser, toRunEvent, waitFor, type RunEvent } from './support/sse-sockets.js';

// Runway on Redis with roles (DESIGN §6): one `api` process admits and streams, `worker` processes
// execute every run as a BullMQ job. Real child processes, a real redis-server, driven over HTTP.

let redis: RedisServer;
let dir: string;
let api: RunwayProcess;
let worker: RunwayProcess;
const extra: RunwayProcess[] = [];
let env: Record<string, string>;

const alice = { 'x-user-id': 'alice', 'content-type': 'application/json' };

beforeAll(async () => {
  redis = await startRedisServer();
  dir = mkdtempSync(join(tmpdir(), 'runway-roles-'));
  const config = join(dir, 'runway.yaml');
  // quick: a few ms per word; slow: long enough to be cancelled while it runs (it never finishes on its own in a test).
  writeFileSync(config, 'workflows:\n  quick:\n    type: echo\n    token_delay_ms: 5\n  slow:\n    type: echo\n    token_delay_ms: 300\n');
  env = { RUNWAY_STORE: redis.url, RUNWAY_REDIS_PREFIX: redis.freshPrefix(), RUNWAY_CONFIG: config, RUNWAY_MAX_QUEUE: '3', RUNWAY_SHUTDOWN_GRACE_MS: '0' };
  [api, worker] = await Promise.all([startRunway({ ...env, RUNWAY_ROLE: 'api' }), startRunway({ ...env, RUNWAY_ROLE: 'worker', RUNWAY_MAX_CONCURRENCY: '1' })]);
}, 30_000);

afterAll(async () => {
  await Promise.all([api?.stop(), worker?.stop(), ...extra.map((p) => p.stop())]);
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Record<string, unknown> }> {
  const res = await request(`${api.url}${path}`, { method: 'POST', headers: { ...alice, ...headers }, body: JSON.stringify(body) });
  return { status: res.statusCode, json: await res.body.json(), headers: res.headers };
}

async function get(path: string): Promise<any> {
  const res = await request(`${api.url}${path}`, { headers: alice });
  return res.body.json();
}

/** The run's events as its stream has them now, to the terminal event (the run must be ending). */
async function eventsOf(runId: string): Promise<RunEvent[]> {
  const res = await request(`${api.url}/runs/${runId}/stream`, { headers: { ...alice, accept: 'text/event-stream' } });
  const parser = new SseParser();
  parser.push(await res.body.text());
  return parser.frames.map(toRunEvent);
}

/** Ids of the runs a worker process has picked up, from its log. */
function pickedUp(p: RunwayProcess): string[] {
  return p.lines.filter((l) => l.msg === 'run picked up').map((l) => String(l.run_id));
}

/** Follows a run's stream until `until` holds for an event it got (then stops reading). */
async function followUntil(runId: string, until: (ev: RunEvent) => boolean): Promise<RunEvent[]> {
  const controller = new AbortController();
  const res = await request(`${api.url}/runs/${runId}/stream`, { headers: { ...alice, accept: 'text/event-stream' }, signal: controller.signal });
  const parser = new SseParser();
  try {
    for await (const chunk of res.body) {
      parser.push(chunk.toString());
      if (parser.frames.map(toRunEvent).some(until)) break;
    }
  } finally {
    controller.abort();
  }
  return parser.frames.map(toRunEvent);
}

describe('Runway on Redis: an api process and worker processes', () => {
  it('a blocking POST /runs is executed by the worker and answered with the final run', async () => {
    const res = await post('/runs', { workflow: 'quick', input: 'hello from the worker' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'succeeded', output: 'hello from the worker' });
    // Executed by the worker, not the api process (which has no worker at all).
    expect(pickedUp(worker)).toContain(res.json.id);
    expect(pickedUp(api)).toEqual([]);
    const events = await eventsOf(res.json.id);
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => e.type === 'run.started')).toHaveLength(1);
    expect(events.at(-1)!.id).toBe(res.json.last_event_id);
  });

  it('an SSE POST /runs streams every event, from run.queued to the terminal one', async () => {
    const res = await request(`${api.url}/runs`, { method: 'POST', headers: { ...alice, accept: 'text/event-stream' }, body: JSON.stringify({ workflow: 'quick', input: 'one two three' }) });
    expect(res.statusCode).toBe(200);
    const parser = new SseParser();
    parser.push(await res.body.text());
    const events = parser.frames.map(toRunEvent);
    expect(events.slice(0, 3).map((e) => e.type)).toEqual(['run.queued', 'run.started', 'step']);
    expect(events.filter((e) => e.type === 'token')).toHaveLength(3);
    expect(events.at(-1)!.type).toBe('run.succeeded');
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toBe('one two three');
    expect(events.at(-1)!.data.output).toBe('one two three');
  });

  it('/v1/chat/completions, blocking and streaming, is answered from the run on the worker', async () => {
    const res = await post('/v1/chat/completions', { model: 'quick', messages: [{ role: 'user', content: 'hello there' }] });
    expect(res.status).toBe(200);
    expect(res.json.choices[0].message.content).toBe('hello there');
    expect(pickedUp(worker)).toContain(res.headers['x-runway-run-id']);
    const streamed = await request(`${api.url}/v1/chat/completions`, { method: 'POST', headers: alice, body: JSON.stringify({ model: 'quick', stream: true, messages: [{ role: 'user', content: 'a b c' }] }) });
    const text = await streamed.body.text();
    const chunks = text.split('\n\n').filter((f) => f.startsWith('data: ') && f !== 'data: [DONE]').map((f) => JSON.parse(f.slice(6)));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('a b c');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('a cancel through the api process reaches the worker executing the run: it ends cancelled', async () => {
    const started = await post('/runs', { workflow: 'slow', input: 'a b c d e f g h i j k l m n o p', background: true });
    expect(started.status).toBe(202);
    const id = started.json.id as string;
    await followUntil(id, (ev) => ev.type === 'token');
    const cancelled = await post(`/runs/${id}/cancel`, {});
    expect(cancelled.status).toBe(202);
    const events = await eventsOf(id);
    expect(events.at(-1)).toMatchObject({ type: 'run.cancelled', data: { reason: 'user' } });
    expect(events.filter((e) => e.type === 'token').length).toBeLessThan(16);
    expect(await get(`/runs/${id}`)).toMatchObject({ status: 'cancelled' });
  });

  it('a client that leaves its SSE POST cancels its run on the worker', async () => {
    const controller = new AbortController();
    const res = await request(`${api.url}/runs`, { method: 'POST', headers: { ...alice, accept: 'text/event-stream' }, body: JSON.stringify({ workflow: 'slow', input: 'a b c d e f g h i j k l m n o p' }), signal: controller.signal });
    const parser = new SseParser();
    let id: string | undefined;
    for await (const chunk of res.body) {
      parser.push(chunk.toString());
      const events = parser.frames.map(toRunEvent);
      id = events[0]?.run_id;
      if (events.some((e) => e.type === 'token')) break;
    }
    controller.abort();
    await waitFor(async () => (await get(`/runs/${id}`)).status === 'cancelled', 'the run ends cancelled');
    expect((await eventsOf(id!)).at(-1)).toMatchObject({ type: 'run.cancelled', data: { reason: 'client_disconnected' } });
  });

  it('a run cancelled while queued leaves the queue, ends cancelled and is never executed; max_queue holds', async () => {
    // The worker executes one run at once: `ahead` holds it, so the next runs wait in the queue.
    const ahead = (await post('/runs', { workflow: 'slow', input: 'a b c d e f g h i j k l m n o p', background: true })).json.id as string;
    await followUntil(ahead, (ev) => ev.type === 'run.started');
    const queued = await post('/runs', { workflow: 'quick', input: 'never run', background: true });
    expect(queued.status).toBe(202);
    const id = queued.json.id as string;
    expect(await get(`/runs/${id}`)).toMatchObject({ status: 'queued' });
    // Two more wait (three in all): the fourth is refused, whichever process would execute it.
    const more = [await post('/runs', { workflow: 'quick', input: 'x', background: true }), await post('/runs', { workflow: 'quick', input: 'y', background: true })];
    expect(more.map((r) => r.status)).toEqual([202, 202]);
    const refused = await post('/runs', { workflow: 'quick', input: 'z', background: true });
    expect(refused.status).toBe(429);
    expect(refused.json.code).toBe('queue_full');

    const cancelled = await post(`/runs/${id}/cancel`, {});
    expect(cancelled.status).toBe(202);
    expect(cancelled.json).toMatchObject({ status: 'cancelled' });
    const events = await eventsOf(id);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    // The worker goes on with the others in order; the cancelled one's job is gone from the queue.
    await post(`/runs/${ahead}/cancel`, {});
    const last = (await post('/runs', { workflow: 'quick', input: 'after' })).json;
    expect(last.status).toBe('succeeded');
    for (const r of more) expect(await get(`/runs/${r.json.id}`)).toMatchObject({ status: 'succeeded' });
    expect(pickedUp(worker)).toContain(last.id);
    expect(pickedUp(worker)).not.toContain(id);
  });

  it('two workers share the load: every run executed exactly once', async () => {
    const second = await startRunway({ ...env, RUNWAY_ROLE: 'worker', RUNWAY_MAX_CONCURRENCY: '1' });
    extra.push(second);
    const before = new Set([...pickedUp(worker)]);
    const ids: string[] = [];
    // Two clients at once, so max_queue (3) never refuses one even counting a run in flight twice; twelve runs.
    await Promise.all(
      [0, 1].map(async (client) => {
        for (let i = 0; i < 6; i++) {
          const res = await post('/runs', { workflow: 'quick', input: `client ${client} run ${i} w w w w w w` });
          expect(res.status).toBe(200);
          expect(res.json.status).toBe('succeeded');
          ids.push(res.json.id);
        }
      }),
    );
    const first = pickedUp(worker).filter((id) => !before.has(id));
    const other = pickedUp(second);
    expect([...first, ...other].sort()).toEqual([...ids].sort());
    expect(first.length).toBeGreaterThan(0);
    expect(other.length).toBeGreaterThan(0);
    for (const id of ids) expect((await eventsOf(id)).filter((e) => e.type === 'run.started')).toHaveLength(1);
  });
});
