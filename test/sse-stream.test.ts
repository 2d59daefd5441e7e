import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { EventSource } from 'eventsource';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { MemoryStores } from '../src/store/memory/memory-stores.js';
import { listen, makeApp, type TestAppOptions } from './support/app.js';
import { Drip, floodWorkflowType, gateWorkflowType } from './support/sse-socket-workflows.js';
import { openSse, SseParser, TERMINAL_TYPES, toRunEvent, waitFor, type RunEvent, type SseConnection } from './support/sse-sockets.js';

let app: FastifyInstance | undefined;
let base = '';
const open: Array<{ destroy(): void }> = [];

afterEach(async () => {
  for (const c of open.splice(0)) c.destroy();
  await app?.close();
  app = undefined;
});

async function start(drip = new Drip(), options: TestAppOptions = {}): Promise<Drip> {
  app = await makeApp({
    ...options,
    workflows: {
      gate: { type: 'gate' },
      drip: { type: 'gate', tokens: 8 },
      ...options.workflows,
    },
    registry: { workflowTypes: [gateWorkflowType(drip), floodWorkflowType(drip)] },
  });
  base = await listen(app);
  return drip;
}

/** Readers parked on the run's event log (waiting for its next append). */
function parked(runId: string): number {
  return (app!.runtime.stores as MemoryStores).events.parked(runId);
}

async function backgroundRun(workflow: string, input: string, user = 'alice'): Promise<string> {
  const res = await request(`${base}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-user-id': user },
    body: JSON.stringify({ workflow, input, background: true }),
  });
  const body = (await res.body.json()) as { id: string };
  expect(res.statusCode).toBe(202);
  return body.id;
}

async function stream(runId: string, headers: Record<string, string> = {}, user = 'alice'): Promise<SseConnection> {
  const c = await openSse(`${base}/runs/${runId}/stream`, { headers: { 'x-user-id': user, ...headers } });
  open.push(c);
  return c;
}

/** Reads a finished run's whole stream (a fresh connection, replay only). */
async function replay(runId: string, headers: Record<string, string> = {}): Promise<SseConnection> {
  const c = await stream(runId, headers);
  await c.closed;
  return c;
}

function expectWellFormed(events: RunEvent[], runId: string, firstId = 1): void {
  expect(events.length).toBeGreaterThan(0);
  events.forEach((ev, i) => {
    expect(ev.id).toBe(firstId + i);
    expect(ev.run_id).toBe(runId);
  });
  const terminals = events.filter((e) => TERMINAL_TYPES.has(e.type));
  expect(terminals).toHaveLength(1);
  expect(TERMINAL_TYPES.has(events.at(-1)!.type)).toBe(true);
}

const terminalSeen = (c: SseConnection) => c.frames.some((f) => TERMINAL_TYPES.has(f.event ?? ''));

describe('GET /runs/:id/stream over a real socket', () => {
  it('answers with the SSE headers', async () => {
    const drip = await start();
    const id = await backgroundRun('gate', 'x');
    const c = await stream(id, { 'x-request-id': 'req-sse-1' });
    expect(c.status).toBe(200);
    expect(c.headers['content-type']).toMatch(/^text\/event-stream\b/);
    expect(c.headers['cache-control']).toBe('no-cache');
    expect(c.headers['x-accel-buffering']).toBe('no');
    // Headers set by hooks survive the hijack.
    expect(c.headers['x-request-id']).toBe('req-sse-1');
    drip.release();
    await c.closed;
    expect(c.endedByServer).toBe(true);
  });

  it('follows a slow run live and the server ends the response after the terminal event', async () => {
    await start();
    const input = 'one two three four five six';
    const id = await backgroundRun('slow', input);
    const c = await stream(id);
    await c.closed;
    expect(c.endedByServer).toBe(true);
    const events = c.events;
    expectWellFormed(events, id);
    expect(events[0]!.type).toBe('run.queued');
    expect(events.map((e) => e.type)).toContain('run.started');
    expect(events.at(-1)!.type).toBe('run.succeeded');
    expect(events.at(-1)!.data.output).toBe(input);
    // Nothing after the terminal frame: the body ends right after its blank line.
    expect(c.raw.endsWith(`${c.frames.at(-1)!.data}\n\n`)).toBe(true);
  });

  it('echo: the concatenated token deltas equal the output', async () => {
    await start();
    const input = 'Hello,  world!\n  second line\twith tabs, ünïcödé and 🚀 emoji   trailing ';
    const id = await backgroundRun('echo', input);
    const c = await stream(id);
    await c.closed;
    const events = c.events;
    expectWellFormed(events, id);
    const deltas = events.filter((e) => e.type === 'token').map((e) => e.data.delta as string);
    expect(deltas.length).toBeGreaterThan(5);
    const terminal = events.at(-1)!;
    expect(terminal.type).toBe('run.succeeded');
    expect(deltas.join('')).toBe(terminal.data.output);
    expect(terminal.data.output).toBe(input);
    // Every token names an open step.
    const steps = new Set(events.filter((e) => e.type === 'step').map((e) => e.data.step_id));
    for (const t of events.filter((e) => e.type === 'token')) expect(steps.has(t.data.step_id)).toBe(true);
  });

  it('resumes from Last-Event-ID mid-run with no gaps and no duplicates', async () => {
    const drip = await start();
    const id = await backgroundRun('drip', 'ignored');
    drip.allow(2);

    const first = await stream(id);
    // run.queued, run.started, WORKFLOW_START, FUNCTION_START, t1, t2
    await first.frameCount(6);
    expect(first.frames.map((f) => f.event)).toEqual(['run.queued', 'run.started', 'step', 'step', 'token', 'token']);
    await waitFor(() => parked(id) === 1, 'the first reader parks');
    first.destroy();
    await first.closed;
    const lastId = first.frames.at(-1)!.id!;
    expect(lastId).toBe('6');

    // Events written while nobody listens are replayed on reconnect.
    drip.allow(3);
    await waitFor(async () => (await app!.runtime.session({ userId: 'alice' }).get(id)).last_event_id >= 9, 'three more tokens');
    const second = await stream(id, { 'last-event-id': lastId });
    await second.frameCount(3);
    expect(second.frames[0]!.id).toBe('7');
    expect((await app!.runtime.session({ userId: 'alice' }).get(id)).status).toBe('running');

    // …then it follows live to the end.
    drip.release();
    await second.closed;
    expect(second.endedByServer).toBe(true);
    const joined = [...first.events, ...second.events];
    expectWellFormed(joined, id);
    expect(joined.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toBe(
      't1 t2 t3 t4 t5 t6 t7 t8 ',
    );

    // The two halves together are exactly what a full replay gives, byte for byte.
    const full = await replay(id);
    expect(first.raw + second.raw).toBe(full.raw);
  });

  it('replays a finished run fully, from ?after= and Last-Event-ID, and answers 204 after its terminal event', async () => {
    await start();
    const input = 'alpha beta gamma delta';
    const id = await backgroundRun('echo', input);
    await waitFor(async () => (await app!.runtime.session({ userId: 'alice' }).get(id)).status === 'succeeded', 'run succeeds');

    const full = await replay(id);
    expect(full.endedByServer).toBe(true);
    const events = full.events;
    expectWellFormed(events, id);
    const lastId = events.at(-1)!.id;
    expect(lastId).toBe((await app!.runtime.session({ userId: 'alice' }).get(id)).last_event_id);

    const fromHeader = await replay(id, { 'last-event-id': '3' });
    expect(fromHeader.events.map((e) => e.id)).toEqual(events.slice(3).map((e) => e.id));
    expect(fromHeader.raw).toBe(full.raw.slice(full.raw.indexOf('id: 4\n')));

    const fromQuery = await openSse(`${base}/runs/${id}/stream?after=${lastId - 1}`, { headers: { 'x-user-id': 'alice' } });
    open.push(fromQuery);
    await fromQuery.closed;
    expect(fromQuery.events.map((e) => e.type)).toEqual(['run.succeeded']);

    const done = await request(`${base}/runs/${id}/stream`, {
      headers: { 'x-user-id': 'alice', 'last-event-id': String(lastId), accept: 'text/event-stream' },
    });
    expect(done.statusCode).toBe(204);
    expect(await done.body.text()).toBe('');
  });

  it('gives two concurrent readers of one run byte-identical event sequences', async () => {
    const drip = await start();
    const id = await backgroundRun('drip', 'ignored');
    const a = await stream(id);
    const b = await stream(id);
    await waitFor(() => parked(id) === 2, 'both readers park');
    drip.release();
    await Promise.all([a.closed, b.closed]);
    expect(a.endedByServer && b.endedByServer).toBe(true);
    expectWellFormed(a.events, id);
    expect(a.events.filter((e) => e.type === 'token')).toHaveLength(8);
    expect(b.raw).toBe(a.raw);
    expect((await replay(id)).raw).toBe(a.raw);
  });

  it('drops the subscription of a reader that disconnects mid-stream (no leak), and the run goes on', async () => {
    const drip = await start();
    const id = await backgroundRun('drip', 'ignored');
    drip.allow(1);
    const stays = await stream(id);
    const leaves = await stream(id);
    await leaves.frameCount(5);
    await stays.frameCount(5);
    await waitFor(() => parked(id) === 2, 'both readers park');

    leaves.destroy();
    await waitFor(() => parked(id) === 1, 'the gone reader unsubscribes');

    drip.allow(1);
    await stays.frameCount(6);
    // After another append the staying reader parks again; the gone one never comes back.
    await waitFor(() => parked(id) === 1, 'only the staying reader parks');

    stays.destroy();
    await waitFor(() => parked(id) === 0, 'no subscriber left');
    expect((await app!.runtime.session({ userId: 'alice' }).get(id)).status).toBe('running');

    drip.release();
    await waitFor(async () => (await app!.runtime.session({ userId: 'alice' }).get(id)).status === 'succeeded', 'run succeeds');
  });

  it('sends `: keepalive` comments on an idle stream', async () => {
    const drip = await start(new Drip(), { runtime: { sse_keepalive_ms: 20 } });
    const id = await backgroundRun('gate', 'x');
    const c = await stream(id);
    await c.until((s) => s.comments.filter((m) => m === 'keepalive').length >= 2, 'two keep-alive comments');
    expect(c.raw).toContain(': keepalive\n\n');
    drip.release();
    await c.closed;
    // Comments never disturb the event sequence.
    expectWellFormed(c.events, id);
    expect(c.events.at(-1)!.type).toBe('run.succeeded');
  });

  it('is followed to its terminal event by the eventsource client, which then stops on 204', async () => {
    await start();
    const input = 'the quick brown fox';
    const id = await backgroundRun('slow', input, 'anonymous');
    const attempts: Array<string | null> = [];
    const es = new EventSource(`${base}/runs/${id}/stream`, {
      fetch: (url, init) => {
        attempts.push(new Headers(init?.headers).get('last-event-id'));
        return fetch(url, init);
      },
    });
    open.push({ destroy: () => es.close() });
    const got: Array<{ type: string; id: string; data: any }> = [];
    const types = ['run.queued', 'run.started', 'step', 'token', 'run.succeeded', 'run.failed', 'run.cancelled'];
    for (const type of types) {
      es.addEventListener(type, (ev) => got.push({ type, id: ev.lastEventId, data: JSON.parse(ev.data) }));
    }
    const stopped = new Promise<{ code: number | undefined }>((resolve) => {
      es.addEventListener('error', (ev) => {
        if (es.readyState === es.CLOSED) resolve({ code: ev.code });
      });
    });

    const { code } = await stopped;
    expect(code).toBe(204);
    expect(es.readyState).toBe(es.CLOSED);
    expect(got.map((g) => Number(g.id))).toEqual(got.map((_, i) => i + 1));
    expect(got[0]!.type).toBe('run.queued');
    const terminal = got.at(-1)!;
    expect(terminal.type).toBe('run.succeeded');
    expect(terminal.data.data.output).toBe(input);
    expect(got.filter((g) => g.type === 'token').map((g) => g.data.data.delta).join('')).toBe(input);
    // The reconnect carried the terminal id, and the 204 ended it for good.
    expect(attempts).toEqual([null, terminal.id]);
  });

  it('POST /runs with Accept: text/event-stream is the stream itself', async () => {
    await start();
    const input = 'stream me please';
    const c = await openSse(`${base}/runs`, {
      method: 'POST',
      headers: { 'x-user-id': 'alice' },
      body: { workflow: 'echo', input },
    });
    open.push(c);
    expect(c.status).toBe(200);
    expect(c.headers['content-type']).toMatch(/^text\/event-stream\b/);
    expect(c.headers['cache-control']).toBe('no-cache');
    expect(c.headers['x-accel-buffering']).toBe('no');
    const location = c.headers.location;
    expect(location).toMatch(/^\/runs\/[\w-]+$/);
    await c.closed;
    expect(c.endedByServer).toBe(true);
    const runId = location!.slice('/runs/'.length);
    const events = c.events;
    expectWellFormed(events, runId);
    expect(events[0]).toMatchObject({ id: 1, type: 'run.queued' });
    expect(events.at(-1)!.type).toBe('run.succeeded');
    expect(events.at(-1)!.data.output).toBe(input);
    expect((await app!.runtime.session({ userId: 'alice' }).get(runId)).status).toBe('succeeded');
  });

  it('a reader that stops reading does not stall another reader of the same run', async () => {
    // 3000 tokens of 8 KiB: ~25 MB of SSE, far more than the socket buffers between server and client.
    const drip = await start(new Drip(), {
      workflows: { flood: { type: 'flood', tokens: 3000, size: 8192 } },
      runtime: { max_events_per_run: 5000 },
    });
    const id = await backgroundRun('flood', 'x');

    // The slow reader: a raw socket that reads the response head and the first event, then stops.
    const slow: Socket = connect({ host: '127.0.0.1', port: Number(new URL(base).port) });
    open.push(slow);
    await once(slow, 'connect');
    slow.write(`GET /runs/${id}/stream HTTP/1.1\r\nHost: x\r\nX-User-Id: alice\r\nAccept: text/event-stream\r\n\r\n`);
    slow.setEncoding('utf8');
    let head = '';
    await new Promise<void>((resolve) => {
      const onData = (chunk: string) => {
        head += chunk;
        if (head.includes('event: run.queued')) {
          slow.off('data', onData);
          slow.pause();
          resolve();
        }
      };
      slow.on('data', onData);
    });
    expect(head).toMatch(/^HTTP\/1\.1 200/);

    const fast = await stream(id);
    await waitFor(() => parked(id) === 2, 'both readers park');
    drip.release();

    await fast.closed;
    expect(fast.endedByServer).toBe(true);
    const fastEvents = fast.events;
    expectWellFormed(fastEvents, id);
    expect(fastEvents.filter((e) => e.type === 'token')).toHaveLength(3000);
    // The slow reader really was held back: it has read only part of the stream so far.
    expect(slow.bytesRead).toBeLessThan(Buffer.byteLength(fast.raw));

    // When it reads again it gets everything, in order, up to the terminal event.
    const parser = new SseParser();
    const chunks = [head.slice(head.indexOf('\r\n\r\n') + 4)];
    let tail = '';
    const done = new Promise<void>((resolve) => {
      const onData = (chunk: string) => {
        chunks.push(chunk);
        tail = (tail + chunk).slice(-4096);
        if (/event: run\.succeeded\n(?:data: .*\n)+\n/.test(tail)) {
          slow.off('data', onData);
          resolve();
        }
      };
      slow.on('data', onData);
      slow.resume();
    });
    await done;
    slow.destroy();
    // The body is chunked: strip the chunk framing before parsing.
    parser.push(dechunk(chunks.join('')));
    const slowEvents = parser.frames.map(toRunEvent);
    expect(slowEvents.map((e) => e.id)).toEqual(fastEvents.map((e) => e.id));
    expect(slowEvents.at(-1)!.type).toBe('run.succeeded');
  });
});

/** Undoes HTTP/1.1 chunked transfer coding of a (possibly unfinished) body. */
function dechunk(body: string): string {
  const buf = Buffer.from(body, 'utf8');
  const parts: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    const lineEnd = buf.indexOf('\r\n', i);
    if (lineEnd === -1) break;
    const size = parseInt(buf.subarray(i, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
    i = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts).toString('utf8');
}
