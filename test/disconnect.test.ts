import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { eventJson } from '../src/core/events.js';
import type { Run } from '../src/core/run.js';
import type { MemoryStores } from '../src/store/memory/memory-stores.js';
import { listen, makeApp } from './support/app.js';
import { Drip, gateWorkflowType } from './support/sse-socket-workflows.js';
import { openSse, startRequest, TERMINAL_TYPES, toRunEvent, waitFor, type RunEvent } from './support/sse-sockets.js';

let app: FastifyInstance | undefined;
let base = '';
const cleanup: Array<() => void> = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0)) fn();
  await app?.close();
  app = undefined;
});

async function start(runtime: Record<string, unknown> = {}): Promise<Drip> {
  const drip = new Drip();
  app = await makeApp({
    runtime: { max_concurrency: 1, queue_timeout_ms: 5000, ...runtime },
    workflows: { gate: { type: 'gate' } },
    registry: { workflowTypes: [gateWorkflowType(drip)] },
  });
  base = await listen(app);
  return drip;
}

/** TCP connections the server holds open. */
function connections(): Promise<number> {
  return new Promise((resolve, reject) => app!.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** The user's runs, newest first (read through the runtime, not HTTP, so no socket is involved). */
async function runsOf(user: string): Promise<Run[]> {
  return (await app!.runtime.session({ userId: user }).list({ limit: 100 })).data;
}

async function onlyRunOf(user: string, status?: Run['status']): Promise<Run> {
  let run: Run | undefined;
  await waitFor(async () => {
    const runs = await runsOf(user);
    run = runs.length === 1 && (status === undefined || runs[0]!.status === status) ? runs[0] : undefined;
    return run !== undefined;
  }, `one ${status ?? ''} run of ${user}`);
  return run!;
}

async function waitForStatus(id: string, user: string, status: Run['status']): Promise<Run> {
  const session = app!.runtime.session({ userId: user });
  await waitFor(async () => (await session.get(id)).status === status, `run ${id} ${status}`);
  return session.get(id);
}

/** A finished run's events, read through the event log (replay only). */
async function eventsOf(id: string): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  const { events } = app!.runtime.stores as MemoryStores;
  for await (const ev of events.read(id, 0, { follow: false })) {
    out.push(toRunEvent({ id: String(ev.id), event: ev.type, data: eventJson(id, ev) }));
  }
  return out;
}

function terminalOf(events: RunEvent[]): RunEvent {
  const terminals = events.filter((e) => TERMINAL_TYPES.has(e.type));
  expect(terminals).toHaveLength(1);
  expect(events.at(-1)).toBe(terminals[0]);
  return terminals[0]!;
}

async function blockingEcho(user: string): Promise<{ status: number; body: any }> {
  const res = await request(`${base}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-user-id': user },
    body: JSON.stringify({ workflow: 'echo', input: 'next one' }),
  });
  return { status: res.statusCode, body: await res.body.json() };
}

describe('client disconnects over real sockets', () => {
  it('a blocking POST /runs whose client leaves mid-run is cancelled and frees its permit', async () => {
    await start();
    const client = startRequest(`${base}/runs`, { headers: { 'x-user-id': 'alice' }, body: { workflow: 'gate', input: 'x' } });
    cleanup.push(client.destroy);
    const running = await onlyRunOf('alice', 'running');
    expect(app!.runtime.sessions.stats().inFlight).toBe(1);

    client.destroy();

    const run = await waitForStatus(running.id, 'alice', 'cancelled');
    expect(run.finished_at).not.toBeNull();
    const terminal = terminalOf(await eventsOf(run.id));
    expect(terminal).toMatchObject({ type: 'run.cancelled', data: { reason: 'client_disconnected' } });
    await waitFor(() => app!.runtime.sessions.stats().inFlight === 0, 'permit released');
    expect(app!.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });

    // The single slot is free again: the next run is admitted at once and succeeds.
    const next = await blockingEcho('bob');
    expect(next.status).toBe(200);
    expect(next.body.status).toBe('succeeded');
    expect(app!.runtime.sessions.stats().highWater).toBe(1);
  });

  it('with on_disconnect: "continue" the run outlives its client and succeeds', async () => {
    const drip = await start();
    const client = startRequest(`${base}/runs`, {
      headers: { 'x-user-id': 'alice' },
      body: { workflow: 'gate', input: 'keep going', on_disconnect: 'continue' },
    });
    cleanup.push(client.destroy);
    const running = await onlyRunOf('alice', 'running');

    expect(await connections()).toBe(1);
    client.destroy();
    // The server has seen the socket close before the run may finish.
    await waitFor(async () => (await connections()) === 0, 'server sees the connection close');
    const blocker = startRequest(`${base}/runs`, { headers: { 'x-user-id': 'carol' }, body: { workflow: 'echo', input: 'probe' } });
    cleanup.push(blocker.destroy);
    await waitFor(() => app!.runtime.sessions.stats().waiting === 1, 'a probe waits behind the still-running run');
    expect((await app!.runtime.session({ userId: 'alice' }).get(running.id)).status).toBe('running');

    drip.release();
    const run = await waitForStatus(running.id, 'alice', 'succeeded');
    expect(run.output).toBe('keep going');
    expect(terminalOf(await eventsOf(run.id)).type).toBe('run.succeeded');
    expect((await blocker.response).statusCode).toBe(200);
    await waitFor(() => app!.runtime.sessions.stats().inFlight === 0, 'permits released');
  });

  it('an SSE POST /runs whose client leaves is cancelled', async () => {
    await start();
    const c = await openSse(`${base}/runs`, { method: 'POST', headers: { 'x-user-id': 'alice' }, body: { workflow: 'gate', input: 'x' } });
    cleanup.push(() => c.destroy());
    await c.until((s) => s.frames.some((f) => f.event === 'run.started'), 'run.started');
    const runId = c.events[0]!.run_id;

    c.destroy();

    await waitForStatus(runId, 'alice', 'cancelled');
    expect(terminalOf(await eventsOf(runId))).toMatchObject({ type: 'run.cancelled', data: { reason: 'client_disconnected' } });
    await waitFor(() => app!.runtime.sessions.stats().inFlight === 0, 'permit released');
    expect((await blockingEcho('bob')).status).toBe(200);
  });

  it('a queued blocking client that leaves gives up its place and its run never starts', async () => {
    const drip = await start();
    // Hold the only slot with a background run.
    const hold = await request(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'holder' },
      body: JSON.stringify({ workflow: 'gate', input: 'hold', background: true }),
    });
    expect(hold.statusCode).toBe(202);
    const held = (await hold.body.json()) as Run;
    await waitForStatus(held.id, 'holder', 'running');

    const client = startRequest(`${base}/runs`, { headers: { 'x-user-id': 'alice' }, body: { workflow: 'echo', input: 'never runs' } });
    cleanup.push(client.destroy);
    await waitFor(() => app!.runtime.sessions.stats().waiting === 1, 'the client waits in the queue');
    const queued = await onlyRunOf('alice', 'queued');

    client.destroy();

    await waitFor(() => app!.runtime.sessions.stats().waiting === 0, 'the waiter leaves the queue');
    const run = await waitForStatus(queued.id, 'alice', 'cancelled');
    expect(run.started_at).toBeNull();
    const events = await eventsOf(run.id);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    expect(events[1]!.data).toMatchObject({ reason: 'client_disconnected' });
    expect(app!.runtime.sessions.stats().inFlight).toBe(1);

    // The holder finishes; the slot goes to the next caller, not to the departed waiter.
    drip.release();
    await waitForStatus(held.id, 'holder', 'succeeded');
    await waitFor(() => app!.runtime.sessions.stats().inFlight === 0, 'holder released its permit');
    expect((await blockingEcho('bob')).status).toBe(200);
    expect(app!.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });

  it('a GET /runs/:id/stream reader that leaves never cancels the run', async () => {
    const drip = await start();
    const res = await request(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'alice' },
      body: JSON.stringify({ workflow: 'gate', input: 'watched', background: true }),
    });
    const { id } = (await res.body.json()) as Run;
    const reader = await openSse(`${base}/runs/${id}/stream`, { headers: { 'x-user-id': 'alice' } });
    cleanup.push(() => reader.destroy());
    await reader.until((s) => s.frames.some((f) => f.event === 'run.started'), 'run.started');
    const { events } = app!.runtime.stores as MemoryStores;
    await waitFor(() => events.parked(id) === 1, 'reader parks');

    reader.destroy();
    await waitFor(() => events.parked(id) === 0, 'reader unsubscribes');
    expect((await app!.runtime.session({ userId: 'alice' }).get(id)).status).toBe('running');

    drip.release();
    const run = await waitForStatus(id, 'alice', 'succeeded');
    expect(run.output).toBe('watched');
  });

  it('a background run is not tied to the connection that created it', async () => {
    const drip = await start();
    const client = startRequest(`${base}/runs`, {
      headers: { 'x-user-id': 'alice' },
      body: { workflow: 'gate', input: 'bg', background: true },
    });
    cleanup.push(client.destroy);
    const res = await client.response;
    expect(res.statusCode).toBe(202);
    client.destroy();
    const running = await onlyRunOf('alice', 'running');
    await waitFor(async () => (await connections()) === 0, 'server sees the connection close');

    drip.release();
    expect((await waitForStatus(running.id, 'alice', 'succeeded')).output).toBe('bg');
  });

  describe('a client that leaves before the handler runs (e.g. during a slow auth or store lookup)', () => {
    /** The real app with one test hook: requests wait in preHandler until the test lets them through. */
    async function startWithSlowPreHandler(): Promise<{ letThrough: () => void; drip: Drip }> {
      const drip = new Drip();
      let letThrough!: () => void;
      const gate = new Promise<void>((resolve) => (letThrough = resolve));
      app = await buildApp({
        config: {
          server: { log_level: 'silent' },
          runtime: { max_concurrency: 1, shutdown_grace_ms: 0 },
          workflows: { gate: { type: 'gate' } },
        },
        registry: { workflowTypes: [gateWorkflowType(drip)] },
      });
      app.addHook('preHandler', async (request) => {
        if (request.url === '/runs' && request.method === 'POST') await gate;
      });
      base = await listen(app);
      return { letThrough, drip };
    }

    for (const mode of ['blocking', 'sse'] as const) {
      it(`${mode}: the run is still cancelled (the close happened before the handler listened for it)`, async () => {
        const { letThrough, drip } = await startWithSlowPreHandler();
        cleanup.push(() => drip.release());
        const client = startRequest(`${base}/runs`, {
          headers: { 'x-user-id': 'alice', ...(mode === 'sse' && { accept: 'text/event-stream' }) },
          body: { workflow: 'gate', input: 'x' },
        });
        cleanup.push(client.destroy);
        await waitFor(async () => (await connections()) === 1, 'the request reached the server');
        client.destroy();
        await waitFor(async () => (await connections()) === 0, 'server sees the connection close');

        letThrough();
        const run = await onlyRunOf('alice');
        await waitForStatus(run.id, 'alice', 'cancelled');
        expect(terminalOf(await eventsOf(run.id))).toMatchObject({ type: 'run.cancelled', data: { reason: 'client_disconnected' } });
        await waitFor(() => app!.runtime.sessions.stats().inFlight === 0, 'permit released');
      });
    }
  });
});
