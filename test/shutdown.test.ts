import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { Run } from '../src/core/run.js';
import { listen, makeApp } from './support/app.js';
import { Drip, floodWorkflowType, gateWorkflowType } from './support/sse-socket-workflows.js';
import { openSse, startRequest, TERMINAL_TYPES, waitFor, type RunEvent, type SseConnection } from './support/sse-sockets.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A port that was free a moment ago (the server reads its port from config, so 0 will not do). */
async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  srv.close();
  await once(srv, 'close');
  return port;
}

interface ServerProcess {
  proc: ChildProcess;
  base: string;
  /** pino lines parsed as JSON (non-JSON lines are kept as `{ raw }`). */
  logs: Array<Record<string, any>>;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(msg: string): Promise<Record<string, any>>;
}

const procs: ChildProcess[] = [];
let app: FastifyInstance | undefined;
const cleanup: Array<() => void> = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0)) fn();
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await app?.close();
  app = undefined;
});

async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      RUNWAY_CONFIG: '',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  const logs: Array<Record<string, any>> = [];
  const listeners = new Set<() => void>();
  let pending = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ raw: line });
      }
    }
    for (const fn of [...listeners]) fn();
  });
  const server: ServerProcess = {
    proc,
    base: `http://127.0.0.1:${port}`,
    logs,
    stderr: '',
    exited: new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal }))),
    waitForLog: (msg) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const hit = logs.find((l) => l.msg === msg);
          if (hit) {
            listeners.delete(check);
            resolve(hit);
          }
        };
        listeners.add(check);
        check();
        void server.exited.then(() => {
          check();
          reject(new Error(`server exited without logging "${msg}"; stderr: ${server.stderr}`));
        });
      }),
  };
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (server.stderr += chunk));
  // Ready when /readyz answers 200 (connection refused until it listens).
  const probe = new Agent({ pipelining: 0 });
  try {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`server exited at start: ${server.stderr}`);
        try {
          const res = await request(`${server.base}/readyz`, { dispatcher: probe });
          await res.body.dump();
          return res.statusCode === 200;
        } catch {
          return false;
        }
      },
      'the server becomes ready',
      15_000,
    );
  } finally {
    await probe.close();
  }
  return server;
}

/** One request on a fresh connection that asks the server to close it afterwards. */
async function once503(url: string, init: { method?: 'GET' | 'POST'; body?: unknown } = {}) {
  const dispatcher = new Agent({ pipelining: 0 });
  try {
    const res = await request(url, {
      dispatcher,
      method: init.method ?? 'GET',
      headers: { connection: 'close', ...(init.body !== undefined && { 'content-type': 'application/json' }) },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
    });
    return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as any };
  } finally {
    await dispatcher.close();
  }
}

function expectOneTerminal(c: SseConnection): RunEvent {
  const events = c.events;
  events.forEach((e, i) => expect(e.id).toBe(i + 1));
  const terminals = events.filter((e) => TERMINAL_TYPES.has(e.type));
  expect(terminals).toHaveLength(1);
  expect(events.at(-1)).toBe(terminals[0]);
  return terminals[0]!;
}

const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');

describe('graceful shutdown of a real server process (SIGTERM)', () => {
  it('drains: readyz 503, new runs 503 shutting_down, in-flight runs cancelled with one terminal event, exit 0', async () => {
    const server = await startServer({ RUNWAY_ECHO_DELAY_MS: '100', RUNWAY_SHUTDOWN_GRACE_MS: '1500' });

    // A long SSE run (~10 s of tokens) and a long blocking run, both running when the signal comes.
    const sse = await openSse(`${server.base}/runs`, {
      method: 'POST',
      headers: { 'x-user-id': 'streamer' },
      body: { workflow: 'echo', input: words(100) },
    });
    cleanup.push(() => sse.destroy());
    const blocking = startRequest(`${server.base}/runs`, {
      headers: { 'x-user-id': 'blocker' },
      body: { workflow: 'echo', input: words(100) },
    });
    cleanup.push(blocking.destroy);
    await sse.until((c) => c.frames.some((f) => f.event === 'token'), 'a first token');
    await waitFor(async () => {
      const res = await request(`${server.base}/runs?status=running`, { headers: { 'x-user-id': 'blocker', connection: 'close' } });
      return ((await res.body.json()) as { data: Run[] }).data.length === 1;
    }, 'the blocking run runs');

    server.proc.kill('SIGTERM');
    const stopping = await server.waitForLog('shutting down');
    expect(stopping).toMatchObject({ signal: 'SIGTERM', grace_ms: 1500 });

    // While draining (inside the grace): not ready, and no new runs.
    const ready = await once503(`${server.base}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body.code).toBe('shutting_down');
    const refused = await once503(`${server.base}/runs`, { method: 'POST', body: { input: 'too late' } });
    expect(refused.status).toBe(503);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.body).toMatchObject({ code: 'shutting_down', status: 503 });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);

    // The grace runs out: the stream gets exactly one terminal event, then the server ends it.
    await sse.closed;
    expect(sse.endedByServer).toBe(true);
    expect(expectOneTerminal(sse)).toMatchObject({ type: 'run.cancelled', data: { reason: 'shutdown' } });

    // The blocking client gets a clear answer naming its run.
    const res = await blocking.response;
    expect(res.statusCode).toBe(503);
    res.setEncoding('utf8');
    let text = '';
    for await (const chunk of res) text += chunk;
    const problem = JSON.parse(text);
    expect(problem).toMatchObject({ code: 'shutting_down' });
    expect(problem.run_id).toMatch(/[\w-]+/);

    const { code, signal } = await server.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(server.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);
    const cancelled = server.logs.filter((l) => l.msg === 'run cancelled');
    expect(cancelled).toHaveLength(2);
    for (const line of cancelled) expect(line).toMatchObject({ reason: 'shutdown' });
    expect(server.stderr).not.toMatch(/error|failed/i);
  });

  it('lets a run that finishes inside the grace succeed, then exits 0', async () => {
    const server = await startServer({ RUNWAY_ECHO_DELAY_MS: '100', RUNWAY_SHUTDOWN_GRACE_MS: '10000' });
    const input = words(6);
    const sse = await openSse(`${server.base}/runs`, { method: 'POST', body: { workflow: 'echo', input } });
    cleanup.push(() => sse.destroy());
    await sse.until((c) => c.frames.some((f) => f.event === 'token'), 'a first token');

    server.proc.kill('SIGTERM');
    await server.waitForLog('shutting down');

    await sse.closed;
    expect(sse.endedByServer).toBe(true);
    const terminal = expectOneTerminal(sse);
    expect(terminal).toMatchObject({ type: 'run.succeeded', data: { output: input } });
    const { code } = await server.exited;
    expect(code).toBe(0);
    expect(server.logs.some((l) => l.msg === 'shut down cleanly')).toBe(true);
    expect(server.logs.some((l) => l.msg === 'run cancelled')).toBe(false);
  });
});

describe('app.close() with runs in flight (in process)', () => {
  it('cancels running runs with their terminal event written, and answers the blocking client 503', async () => {
    const drip = new Drip();
    app = await makeApp({
      runtime: { shutdown_grace_ms: 0 },
      workflows: { gate: { type: 'gate' } },
      registry: { workflowTypes: [gateWorkflowType(drip)] },
    });
    const base = await listen(app);
    const bg = await request(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({ workflow: 'gate', input: 'bg', background: true }),
    });
    const { id } = (await bg.body.json()) as Run;
    const reader = await openSse(`${base}/runs/${id}/stream`);
    cleanup.push(() => reader.destroy());
    const blocking = startRequest(`${base}/runs`, { body: { workflow: 'gate', input: 'blocking' } });
    cleanup.push(blocking.destroy);
    await reader.until((c) => c.frames.some((f) => f.event === 'run.started'), 'run.started');
    await waitFor(() => app!.runtime.sessions.stats().inFlight === 2, 'both runs hold a permit');

    const closed = app.close();
    await reader.closed;
    expect(reader.endedByServer).toBe(true);
    expect(expectOneTerminal(reader)).toMatchObject({ type: 'run.cancelled', data: { reason: 'shutdown' } });
    const res = await blocking.response;
    expect(res.statusCode).toBe(503);
    await closed;

    const run = await app.runtime.session({ userId: 'anonymous' }).get(id);
    expect(run.status).toBe('cancelled');
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    app = undefined;
  });

  it('waits up to the grace for a running run, which then succeeds, while refusing new ones', async () => {
    const drip = new Drip();
    app = await makeApp({
      runtime: { shutdown_grace_ms: 10_000 },
      workflows: { gate: { type: 'gate' } },
      registry: { workflowTypes: [gateWorkflowType(drip)] },
    });
    const base = await listen(app);
    const reader = await openSse(`${base}/runs`, { method: 'POST', body: { workflow: 'gate', input: 'finish me' } });
    cleanup.push(() => reader.destroy());
    await reader.until((c) => c.frames.some((f) => f.event === 'run.started'), 'run.started');

    const closed = app.close();
    await waitFor(() => app!.runtime.isDraining, 'draining');
    const refused = await once503(`${base}/runs`, { method: 'POST', body: { input: 'too late' } });
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe('shutting_down');

    drip.release();
    await reader.closed;
    expect(expectOneTerminal(reader)).toMatchObject({ type: 'run.succeeded', data: { output: 'finish me' } });
    await closed;
    app = undefined;
  });

  it('does not hang on an SSE reader that stopped reading: the server cuts it after the runs are over', async () => {
    const drip = new Drip();
    app = await makeApp({
      // ~25 MB of events: far more than the socket buffers can absorb for a reader that never reads.
      workflows: { flood: { type: 'flood', tokens: 3000, size: 8192 } },
      runtime: { max_events_per_run: 5000 },
      registry: { workflowTypes: [floodWorkflowType(drip)] },
    });
    const base = await listen(app);
    drip.release();
    const res = await request(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({ workflow: 'flood', input: 'x' }),
    });
    const run = (await res.body.json()) as Run;
    expect(run.status).toBe('succeeded');

    const stalled = connect({ host: '127.0.0.1', port: Number(new URL(base).port) });
    cleanup.push(() => stalled.destroy());
    await once(stalled, 'connect');
    stalled.write(`GET /runs/${run.id}/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    stalled.pause();
    const gone = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
    stalled.on('error', () => {});
    // The server is blocked writing to it (its bytes fill the buffers) before we close.
    await waitFor(() => stalled.readableLength > 0 || stalled.bytesRead > 0, 'the reader received its first bytes');

    const closing = app.close();
    app = undefined;
    let timer: NodeJS.Timeout | undefined;
    const verdict = await Promise.race([
      closing.then(() => 'closed'),
      new Promise((resolve) => (timer = setTimeout(() => resolve('app.close() still waiting on the stalled reader'), 10_000))),
    ]);
    clearTimeout(timer);
    expect(verdict).toBe('closed');
    // The server ended the connection (the client never did): reading again reaches the end.
    stalled.resume();
    await gone;
  });
});
