import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ERROR_CODES, RunwayError, type ErrorCode } from '../src/core/errors.js';
import { defineWorkflow } from '../src/workflows/define-workflow.js';
import { makeApp, type TestAppOptions } from './support/app.js';
import { tick } from './support/runtime-test-kit.js';
import { blockerType, testWorkflowConfig as anyConfig, testWorkflowType, throwingType } from './support/test-workflows.js';
import type { ProblemBody } from './support/problem-body.js';

// ---------------------------------------------------------------------------------------------
// Workflow types only these tests need, registered through the real builder.
// ---------------------------------------------------------------------------------------------

/** A message that must never reach a client: 5xx details belong in the logs only. */
const SECRET = 'db password is hunter2 at 10.0.0.7';

/** Throws a plain Error: an unexpected failure, answered as `internal` without its message. */
const boomType = throwingType('boom', () => new Error(SECRET));

/** Fails the way an LLM provider outage surfaces. */
const upstreamType = throwingType('upstream', () => new RunwayError('upstream_error', 'The model provider answered 503'));

/** Takes an object input, so "input does not fit the workflow" can point inside it. */
const greetType = defineWorkflow({
  type: 'greet',
  configSchema: anyConfig('greet'),
  create: (cfg, { name }) => ({
    name,
    type: 'greet',
    description: cfg.description,
    inputSchema: z.object({ name: z.string(), times: z.number().int().min(1) }).strict(),
    async run(input) {
      const { name: who, times } = input as { name: string; times: number };
      return Array.from({ length: times }, () => `hi ${who}`).join(' ');
    },
  }),
});

/** Returns nothing: a run that succeeds without an output. */
const silentType = testWorkflowType('silent', async () => undefined);

const registry = { workflowTypes: [blockerType, boomType, upstreamType, greetType, silentType] };
const extraWorkflows = {
  echo2: { type: 'echo', token_delay_ms: 0 },
  blocker: { type: 'blocker' },
  boom: { type: 'boom' },
  upstream: { type: 'upstream' },
  greet: { type: 'greet' },
  silent: { type: 'silent' },
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const apps: FastifyInstance[] = [];

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function newApp(options: TestAppOptions = {}): Promise<FastifyInstance> {
  const app = await makeApp({
    ...options,
    workflows: { ...extraWorkflows, ...options.workflows },
    registry,
  });
  apps.push(app);
  return app;
}

const RUN_FIELDS = [
  'id',
  'workflow',
  'user_id',
  'conversation_id',
  'status',
  'input',
  'output',
  'error',
  'usage',
  'metadata',
  'created_at',
  'started_at',
  'finished_at',
  'last_event_id',
].sort();

const PROBLEM_FIELDS = new Set(['type', 'title', 'status', 'detail', 'code', 'errors', 'run_id']);

/** Asserts an RFC 9457 problem answer with the table's status, title and code; returns the body. */
function expectProblem(res: LightMyRequestResponse, code: ErrorCode): ProblemBody {
  const { status, title } = ERROR_CODES[code];
  expect({ status: res.statusCode, body: res.body }).toMatchObject({ status });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json\b/);
  expect(res.headers['x-request-id']).toEqual(expect.any(String));
  const body = res.json() as ProblemBody;
  expect(body).toMatchObject({ type: expect.any(String), title, status, code, detail: expect.any(String) });
  expect(body.type.length).toBeGreaterThan(0);
  expect(body.detail.length).toBeGreaterThan(0);
  for (const key of Object.keys(body)) expect(PROBLEM_FIELDS.has(key), `unexpected problem field ${key}`).toBe(true);
  if (status === 429 || status === 503) {
    expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/);
  }
  return body;
}

function pointers(body: ProblemBody): Array<{ in: string; pointer: string }> {
  return (body.errors ?? []).map((e) => ({ in: e.in, pointer: e.pointer }));
}

function post(app: FastifyInstance, payload: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/runs', payload: payload as InjectOptions['payload'], headers });
}

function get(app: FastifyInstance, url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url, headers });
}

/** Polls `cond` until it holds; for states no event announces. Generous deadline, no timing asserts. */
async function waitFor(cond: () => boolean | Promise<boolean>, what = 'condition', deadlineMs = 10_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function runStatus(app: FastifyInstance, id: string, user?: string): Promise<string> {
  const res = await get(app, `/runs/${id}`, user ? { 'x-user-id': user } : {});
  return (res.json() as { status: string }).status;
}

/** Starts a background run of `blocker` and waits until it holds its permit. */
async function startBlocker(app: FastifyInstance, user = 'alice'): Promise<string> {
  const res = await post(app, { workflow: 'blocker', input: 'hold', background: true }, { 'x-user-id': user });
  expect(res.statusCode).toBe(202);
  const id = (res.json() as { id: string }).id;
  await waitFor(async () => (await runStatus(app, id, user)) === 'running', 'blocker running');
  return id;
}

interface SseEvent {
  id: number;
  event: string;
  data: { id: number; run_id: string; type: string; time: string; data: Record<string, unknown> };
}

/** Parses a complete SSE body into events (comments skipped). */
function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split('\n\n')) {
    if (block.trim() === '') continue;
    const fields: Record<string, string> = {};
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const name = line.slice(0, i);
      const value = line.slice(i + 1).replace(/^ /, '');
      fields[name] = name in fields ? `${fields[name]}\n${value}` : value;
    }
    if (fields.data === undefined) continue;
    out.push({ id: Number(fields.id), event: fields.event ?? 'message', data: JSON.parse(fields.data) });
  }
  return out;
}

const TERMINAL = new Set(['run.succeeded', 'run.failed', 'run.cancelled']);

function expectWellFormedLog(events: SseEvent[], runId: string, firstId = 1): void {
  expect(events.map((e) => e.id)).toEqual(Array.from({ length: events.length }, (_, i) => firstId + i));
  for (const e of events) {
    expect(e.data.id).toBe(e.id);
    expect(e.data.type).toBe(e.event);
    expect(e.data.run_id).toBe(runId);
  }
  expect(events.filter((e) => TERMINAL.has(e.event))).toHaveLength(1);
  expect(TERMINAL.has(events.at(-1)!.event)).toBe(true);
}

// ---------------------------------------------------------------------------------------------
// X-Request-Id
// ---------------------------------------------------------------------------------------------

describe('POST /runs answers', () => {
  it('the finished Run with the same bytes GET /runs/:id gives', async () => {
    const app = await newApp();
    for (const payload of [{ input: 'hello "quoted" wörld\n' }, { input: 'x', metadata: { tag: 'a\u2028b', n: [1, null] }, conversation_id: 'c-1' }]) {
      const res = await post(app, payload);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      const run = res.json() as { id: string; status: string; output: unknown };
      expect(run.status).toBe('succeeded');
      const again = await get(app, `/runs/${run.id}`);
      expect(again.statusCode).toBe(200);
      expect(res.body).toBe(again.body);
    }
  });
});

describe('POST /runs content negotiation', () => {
  it('Accept: text/event-stream;q=0, application/json answers JSON, not a stream; text/event-stream alone streams', async () => {
    const app = await newApp();
    const json = await app.inject({ method: 'POST', url: '/runs', headers: { accept: 'text/event-stream;q=0, application/json' }, payload: { input: 'hi' } });
    expect(json.statusCode).toBe(200);
    expect(json.headers['content-type']).toMatch(/^application\/json/);
    expect(json.json()).toMatchObject({ status: 'succeeded', output: 'hi' });
    const sse = await app.inject({ method: 'POST', url: '/runs', headers: { accept: 'text/event-stream' }, payload: { input: 'hi' } });
    expect(sse.headers['content-type']).toMatch(/^text\/event-stream/);
  });
});

describe('X-Request-Id', () => {
  it('echoes a sane client id on every kind of answer: JSON, 202, 204, SSE, problems', async () => {
    const app = await newApp({ server: { body_limit_bytes: 1024 } });
    const done = await post(app, { input: 'a b' });
    const id = (done.json() as { id: string; last_event_id: number }).id;
    const last = (done.json() as { last_event_id: number }).last_event_id;

    const cases: Array<[string, InjectOptions]> = [
      ['200 blocking run', { method: 'POST', url: '/runs', payload: { input: 'x' } }],
      ['202 background run', { method: 'POST', url: '/runs', payload: { input: 'x', background: true } }],
      ['200 run', { method: 'GET', url: `/runs/${id}` }],
      ['200 list', { method: 'GET', url: '/runs' }],
      ['SSE replay', { method: 'GET', url: `/runs/${id}/stream` }],
      ['SSE POST', { method: 'POST', url: '/runs', payload: { input: 'x' }, headers: { accept: 'text/event-stream' } }],
      ['204 stream', { method: 'GET', url: `/runs/${id}/stream`, headers: { 'last-event-id': String(last) } }],
      ['healthz', { method: 'GET', url: '/healthz' }],
      ['workflows', { method: 'GET', url: '/workflows' }],
      ['404 route', { method: 'GET', url: '/nope' }],
      ['404 run', { method: 'GET', url: '/runs/nope' }],
      ['400 validation', { method: 'POST', url: '/runs', payload: { nope: 1 } }],
      ['400 malformed JSON', { method: 'POST', url: '/runs', payload: '{"input":', headers: { 'content-type': 'application/json' } }],
      ['400 bad user', { method: 'GET', url: '/runs', headers: { 'x-user-id': 'bad user!' } }],
      ['400 bad URL encoding', { method: 'GET', url: '/runs/%E0%A4%A' }],
      ['413', { method: 'POST', url: '/runs', payload: { input: 'x'.repeat(4096) } }],
      ['415', { method: 'POST', url: '/runs', payload: 'input=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
    ];
    for (const [name, opts] of cases) {
      const rid = `req-${name.replace(/\W+/g, '-')}`;
      const res = await app.inject({ ...opts, headers: { ...opts.headers, 'x-request-id': rid } });
      expect(res.headers['x-request-id'], name).toBe(rid);
    }
  });

  it('makes one up when the client sent none or an absurd one, and never reuses it', async () => {
    const app = await newApp();
    const a = await get(app, '/healthz');
    const b = await get(app, '/healthz');
    expect(a.headers['x-request-id']).toMatch(/^[\x21-\x7e]{8,128}$/);
    expect(b.headers['x-request-id']).toMatch(/^[\x21-\x7e]{8,128}$/);
    expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);

    for (const absurd of ['x'.repeat(500), 'has spaces in it', '']) {
      for (const url of ['/healthz', '/runs/unknown-run']) {
        const res = await get(app, url, { 'x-request-id': absurd });
        const got = res.headers['x-request-id'];
        expect(got).toEqual(expect.any(String));
        expect(got).not.toBe(absurd);
        expect(String(got).length).toBeGreaterThan(0);
        expect(String(got).length).toBeLessThanOrEqual(128);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Every code of the error table reached by a real request
// ---------------------------------------------------------------------------------------------

describe('invalid_request (400)', () => {
  interface BadCase {
    name: string;
    req: InjectOptions;
    detail?: RegExp;
    errors?: Array<{ in: string; pointer: string }>;
  }
  const cases: BadCase[] = [
    {
      name: 'malformed JSON',
      req: { method: 'POST', url: '/runs', payload: '{"input": "x",', headers: { 'content-type': 'application/json' } },
    },
    {
      name: 'empty JSON body',
      req: { method: 'POST', url: '/runs', payload: '', headers: { 'content-type': 'application/json' } },
    },
    {
      name: 'wrong types',
      req: { method: 'POST', url: '/runs', payload: { input: 'x', background: 'yes', timeout_ms: 'soon' } },
      errors: [
        { in: 'body', pointer: '/background' },
        { in: 'body', pointer: '/timeout_ms' },
      ],
    },
    {
      name: 'missing input',
      req: { method: 'POST', url: '/runs', payload: { workflow: 'echo' } },
      errors: [{ in: 'body', pointer: '/input' }],
    },
    {
      name: 'unknown field',
      req: { method: 'POST', url: '/runs', payload: { input: 'x', backgorund: true } },
      errors: [{ in: 'body', pointer: '/backgorund' }],
    },
    {
      name: 'timeout_ms of 0',
      req: { method: 'POST', url: '/runs', payload: { input: 'x', timeout_ms: 0 } },
      errors: [{ in: 'body', pointer: '/timeout_ms' }],
    },
    {
      name: 'bad conversation_id',
      req: { method: 'POST', url: '/runs', payload: { input: 'x', conversation_id: 'has spaces' } },
      errors: [{ in: 'body', pointer: '/conversation_id' }],
    },
    {
      name: 'a JSON array body',
      req: { method: 'POST', url: '/runs', payload: '[1,2]', headers: { 'content-type': 'application/json' } },
    },
    {
      name: 'bad X-User-Id',
      req: { method: 'GET', url: '/runs', headers: { 'x-user-id': 'alice bob' } },
      errors: [{ in: 'headers', pointer: '/x-user-id' }],
    },
    {
      name: 'too long X-User-Id on POST /runs',
      req: { method: 'POST', url: '/runs', payload: { input: 'x' }, headers: { 'x-user-id': 'u'.repeat(129) } },
      errors: [{ in: 'headers', pointer: '/x-user-id' }],
    },
    {
      name: 'unknown workflow',
      req: { method: 'POST', url: '/runs', payload: { workflow: 'nope', input: 'x' } },
      detail: /nope/,
      errors: [{ in: 'body', pointer: '/workflow' }],
    },
    {
      name: 'input not fitting the echo workflow',
      req: { method: 'POST', url: '/runs', payload: { input: 42 } },
      errors: [{ in: 'body', pointer: '/input' }],
    },
    {
      name: 'input not fitting an object workflow (nested pointer)',
      req: { method: 'POST', url: '/runs', payload: { workflow: 'greet', input: { name: 'ann', times: 'twice' } } },
      errors: [{ in: 'body', pointer: '/input/times' }],
    },
    {
      name: 'limit=0 on GET /runs',
      req: { method: 'GET', url: '/runs?limit=0' },
      errors: [{ in: 'querystring', pointer: '/limit' }],
    },
    {
      name: 'limit=101 on GET /runs',
      req: { method: 'GET', url: '/runs?limit=101' },
      errors: [{ in: 'querystring', pointer: '/limit' }],
    },
    {
      name: 'status filter outside the enum',
      req: { method: 'GET', url: '/runs?status=done' },
      errors: [{ in: 'querystring', pointer: '/status' }],
    },
    {
      name: 'forged cursor',
      req: { method: 'GET', url: '/runs?cursor=not-a-cursor' },
      errors: [{ in: 'querystring', pointer: '/cursor' }],
    },
    {
      name: 'forged cursor that decodes to something else',
      req: { method: 'GET', url: `/runs?cursor=${Buffer.from('s:-1').toString('base64url')}` },
      errors: [{ in: 'querystring', pointer: '/cursor' }],
    },
    {
      name: 'URL that is not valid percent-encoding',
      req: { method: 'GET', url: '/runs/%E0%A4%A' },
    },
  ];

  for (const c of cases) {
    it(`${c.name} → 400 with field pointers, and the server keeps serving`, async () => {
      const app = await newApp();
      const body = expectProblem(await app.inject(c.req), 'invalid_request');
      if (c.detail) expect(body.detail).toMatch(c.detail);
      if (c.errors) {
        expect(pointers(body)).toEqual(expect.arrayContaining(c.errors));
        for (const e of body.errors!) expect(e.message).toEqual(expect.any(String));
      }
      const good = await post(app, { input: 'still here' });
      expect(good.statusCode).toBe(200);
      expect(good.json()).toMatchObject({ status: 'succeeded', output: 'still here' });
    });
  }

  it('bad Last-Event-ID, bad ?after and an id beyond a finished run are 400 on /stream', async () => {
    const app = await newApp();
    const run = (await post(app, { input: 'a b c' })).json() as { id: string; last_event_id: number };
    for (const bad of ['abc', '-1', '1.5', '9'.repeat(20)]) {
      const body = expectProblem(await get(app, `/runs/${run.id}/stream`, { 'last-event-id': bad }), 'invalid_request');
      expect(pointers(body)).toContainEqual({ in: 'headers', pointer: '/last-event-id' });
    }
    const q = expectProblem(await get(app, `/runs/${run.id}/stream?after=abc`), 'invalid_request');
    expect(pointers(q)).toContainEqual({ in: 'querystring', pointer: '/after' });
    expectProblem(await get(app, `/runs/${run.id}/stream`, { 'last-event-id': String(run.last_event_id + 1) }), 'invalid_request');
    expectProblem(await get(app, `/runs/${run.id}/stream?after=${run.last_event_id + 1}`), 'invalid_request');
    // Still serving the run.
    const ok = await get(app, `/runs/${run.id}/stream`);
    expect(ok.statusCode).toBe(200);
  });
});

describe('not_found (404)', () => {
  it('unknown routes and unknown runs', async () => {
    const app = await newApp();
    const route = expectProblem(await get(app, '/no/such/route?x=1'), 'not_found');
    expect(route.detail).toContain('/no/such/route');
    expectProblem(await app.inject({ method: 'DELETE', url: '/runs' }), 'not_found');
    expectProblem(await get(app, '/runs/00000000-0000-0000-0000-000000000000'), 'not_found');
    expectProblem(await get(app, '/runs/00000000-0000-0000-0000-000000000000/stream'), 'not_found');
    expectProblem(await app.inject({ method: 'POST', url: '/runs/00000000-0000-0000-0000-000000000000/cancel' }), 'not_found');
  });

  it("another user's run, stream and cancel are 404 (never 403), and the run is untouched", async () => {
    const app = await newApp();
    const aliceRun = await startBlocker(app, 'alice');
    const finished = (await post(app, { input: 'private words' }, { 'x-user-id': 'alice' })).json() as { id: string };

    for (const id of [aliceRun, finished.id]) {
      for (const who of [{ 'x-user-id': 'bob' }, {} as Record<string, string>]) {
        const a = expectProblem(await get(app, `/runs/${id}`, who), 'not_found');
        const b = expectProblem(await get(app, `/runs/${id}/stream`, who), 'not_found');
        const c = expectProblem(await app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: who }), 'not_found');
        // The answer for "exists but not yours" is indistinguishable from "does not exist".
        const none = expectProblem(await get(app, '/runs/00000000-0000-0000-0000-000000000000', who), 'not_found');
        expect(a.detail.replace(id, 'ID')).toBe(none.detail.replace('00000000-0000-0000-0000-000000000000', 'ID'));
        for (const body of [a, b, c]) {
          expect(body.run_id).toBeUndefined();
          expect(JSON.stringify(body)).not.toContain('private words');
        }
      }
    }
    const bobList = (await get(app, '/runs', { 'x-user-id': 'bob' })).json() as { data: unknown[] };
    expect(bobList.data).toEqual([]);

    // Alice's run is still running after all of that, and is hers to cancel.
    expect(await runStatus(app, aliceRun, 'alice')).toBe('running');
    const cancel = await app.inject({ method: 'POST', url: `/runs/${aliceRun}/cancel`, headers: { 'x-user-id': 'alice' } });
    expect(cancel.statusCode).toBe(202);
    expect(cancel.json()).toMatchObject({ id: aliceRun, status: 'cancelled' });
  });

  it('unknown workflow name on GET /workflows/:name', async () => {
    const app = await newApp();
    const body = expectProblem(await get(app, '/workflows/nope'), 'not_found');
    expect(body.detail).toContain('nope');
  });
});

describe('conflict (409)', () => {
  it('cancelling a finished run', async () => {
    const app = await newApp();
    const run = (await post(app, { input: 'done' })).json() as { id: string };
    const body = expectProblem(await app.inject({ method: 'POST', url: `/runs/${run.id}/cancel` }), 'conflict');
    expect(body.run_id).toBe(run.id);
    expect(await runStatus(app, run.id)).toBe('succeeded');
  });

  it('a blocking run cancelled by its user answers conflict with the run id; the cancel answers 202', async () => {
    const app = await newApp();
    const pending = post(app, { workflow: 'blocker', input: 'x' }, { 'x-user-id': 'alice' });
    await waitFor(() => app.runtime.sessions.stats().inFlight === 1, 'blocking run admitted');
    const list = (await get(app, '/runs', { 'x-user-id': 'alice' })).json() as { data: Array<{ id: string }> };
    const id = list.data[0]!.id;
    await waitFor(async () => (await runStatus(app, id, 'alice')) === 'running', 'running');

    const cancel = await app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: { 'x-user-id': 'alice' } });
    expect(cancel.statusCode).toBe(202);
    expect(cancel.json()).toMatchObject({ id, status: 'cancelled' });
    const body = expectProblem(await pending, 'conflict');
    expect(body.run_id).toBe(id);
    // A second cancel is a conflict too.
    expectProblem(await app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: { 'x-user-id': 'alice' } }), 'conflict');
  });
});

describe('payload_too_large (413) and unsupported_media_type (415)', () => {
  it('a body over server.body_limit_bytes is 413', async () => {
    const app = await newApp({ server: { body_limit_bytes: 1024 } });
    expectProblem(await post(app, { input: 'x'.repeat(2000) }), 'payload_too_large');
    // Just under the limit is fine.
    const ok = await post(app, { input: 'y'.repeat(900) });
    expect(ok.statusCode).toBe(200);
  });

  it('text/plain, form-encoded and other media types are 415', async () => {
    const app = await newApp();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x']) {
      const res = await app.inject({ method: 'POST', url: '/runs', payload: '{"input":"x"}', headers: { 'content-type': type } });
      const body = expectProblem(res, 'unsupported_media_type');
      expect(body.detail).toContain(type.split(';')[0]);
    }
    const ok = await app.inject({
      method: 'POST',
      url: '/runs',
      payload: '{"input":"charset ok"}',
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
    expect(ok.statusCode).toBe(200);
  });
});

describe('admission: queue_full (429), queue_timeout (503)', () => {
  it('max_concurrency 1 and max_queue 0 with the slot held: 429 queue_full with Retry-After, no run created', async () => {
    const app = await newApp({ runtime: { max_concurrency: 1, max_queue: 0 } });
    const holder = await startBlocker(app, 'alice');

    const blocking = expectProblem(await post(app, { input: 'x' }, { 'x-user-id': 'bob' }), 'queue_full');
    expect(blocking.run_id).toBeUndefined();
    expectProblem(await post(app, { input: 'x', background: true }, { 'x-user-id': 'bob' }), 'queue_full');
    expectProblem(await post(app, { input: 'x' }, { 'x-user-id': 'bob', accept: 'text/event-stream' }), 'queue_full');
    const bobRuns = (await get(app, '/runs', { 'x-user-id': 'bob' })).json() as { data: unknown[] };
    expect(bobRuns.data).toEqual([]);

    // Freeing the slot admits again.
    await app.inject({ method: 'POST', url: `/runs/${holder}/cancel`, headers: { 'x-user-id': 'alice' } });
    const ok = await post(app, { input: 'x' }, { 'x-user-id': 'bob' });
    expect(ok.statusCode).toBe(200);
  });

  it('a tiny queue_timeout_ms: blocking → 503 queue_timeout with run_id and Retry-After; background → failed run', async () => {
    const app = await newApp({ runtime: { max_concurrency: 1, queue_timeout_ms: 20 } });
    const holder = await startBlocker(app, 'alice');

    const body = expectProblem(await post(app, { input: 'x' }, { 'x-user-id': 'bob' }), 'queue_timeout');
    expect(body.run_id).toEqual(expect.any(String));
    const failed = (await get(app, `/runs/${body.run_id}`, { 'x-user-id': 'bob' })).json();
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'queue_timeout' }, started_at: null });

    const bg = await post(app, { input: 'x', background: true }, { 'x-user-id': 'bob' });
    expect(bg.statusCode).toBe(202);
    const bgId = (bg.json() as { id: string }).id;
    await waitFor(async () => (await runStatus(app, bgId, 'bob')) === 'failed', 'background run timed out in the queue');
    expect((await get(app, `/runs/${bgId}`, { 'x-user-id': 'bob' })).json()).toMatchObject({ error: { code: 'queue_timeout' } });

    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    expect(await runStatus(app, holder, 'alice')).toBe('running');
  });
});

describe('shutting_down (503)', () => {
  it('after runtime.shutdown(0): new runs 503 with Retry-After; /readyz 503; reads still work', async () => {
    const app = await newApp();
    const before = (await post(app, { input: 'before' })).json() as { id: string };
    const ready = await get(app, '/readyz');
    expect(ready.statusCode).toBe(200);

    await app.runtime.shutdown(0);

    expectProblem(await post(app, { input: 'x' }), 'shutting_down');
    expectProblem(await post(app, { input: 'x', background: true }), 'shutting_down');
    expectProblem(await get(app, '/readyz'), 'shutting_down');
    expect((await get(app, '/healthz')).statusCode).toBe(200);
    expect((await get(app, `/runs/${before.id}`)).json()).toMatchObject({ status: 'succeeded' });
  });

  it('a blocking run in flight when the server drains answers shutting_down with its run id', async () => {
    const app = await newApp();
    const pending = post(app, { workflow: 'blocker', input: 'x' });
    await waitFor(() => app.runtime.sessions.stats().inFlight === 1, 'run admitted');
    await app.runtime.shutdown(0);
    const body = expectProblem(await pending, 'shutting_down');
    expect(body.run_id).toEqual(expect.any(String));
    expect((await get(app, `/runs/${body.run_id}`)).json()).toMatchObject({ status: 'cancelled' });
  });
});

describe('run failures: run_timeout (504), internal (500), upstream_error (502)', () => {
  it('timeout_ms on a slow run → 504 run_timeout with run_id; the run is failed', async () => {
    const app = await newApp();
    const body = expectProblem(await post(app, { workflow: 'slow', input: 'a b c d e f g h i j', timeout_ms: 30 }), 'run_timeout');
    expect(body.run_id).toEqual(expect.any(String));
    const run = (await get(app, `/runs/${body.run_id}`)).json();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'run_timeout' } });
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a workflow that returns nothing succeeds with output null, in every answer that carries the run', async () => {
    const app = await newApp();
    const res = await post(app, { workflow: 'silent', input: 'x' });
    expect(res.statusCode).toBe(200);
    const run = res.json() as { id: string; output: unknown; status: string };
    expect(run).toMatchObject({ status: 'succeeded', output: null });
    expect((await get(app, `/runs/${run.id}`)).json()).toMatchObject({ output: null });
    const list = await get(app, '/runs');
    expect(list.statusCode).toBe(200);
    expect((list.json() as { data: unknown[] }).data).toEqual([expect.objectContaining({ id: run.id, output: null })]);
    const events = parseSse((await get(app, `/runs/${run.id}/stream`)).body);
    expect(events.at(-1)).toMatchObject({ event: 'run.succeeded', data: { data: { output: null } } });
  });

  it('a workflow throwing a plain Error → 500 internal; its message appears nowhere a client can see', async () => {
    const app = await newApp();
    const res = await post(app, { workflow: 'boom', input: 'x' });
    const body = expectProblem(res, 'internal');
    expect(res.body).not.toContain(SECRET);
    expect(res.body).not.toContain('hunter2');
    expect(body.run_id).toEqual(expect.any(String));

    const run = await get(app, `/runs/${body.run_id}`);
    expect(run.json()).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    expect(run.body).not.toContain('hunter2');
    const stream = await get(app, `/runs/${body.run_id}/stream`);
    expect(stream.body).not.toContain('hunter2');
    const events = parseSse(stream.body);
    expect(events.at(-1)).toMatchObject({ event: 'run.failed', data: { data: { error: { code: 'internal' } } } });
    const list = await get(app, '/runs?status=failed');
    expect(list.body).not.toContain('hunter2');
  });

  it("a workflow throwing RunwayError('upstream_error') → 502 with run_id", async () => {
    const app = await newApp();
    const body = expectProblem(await post(app, { workflow: 'upstream', input: 'x' }), 'upstream_error');
    expect(body.run_id).toEqual(expect.any(String));
    expect((await get(app, `/runs/${body.run_id}`)).json()).toMatchObject({
      status: 'failed',
      error: { code: 'upstream_error', message: expect.any(String) },
    });
  });
});

// ---------------------------------------------------------------------------------------------
// POST /runs
// ---------------------------------------------------------------------------------------------

describe('POST /runs', () => {
  it('blocking: 200 with the finished Run, every field of DESIGN §2 and nothing else', async () => {
    const app = await newApp();
    const res = await post(
      app,
      { input: 'hello brave world', conversation_id: 'conv-1', metadata: { source: 'test', n: 1 } },
      { 'x-user-id': 'alice' },
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const run = res.json() as Record<string, unknown>;
    expect(Object.keys(run).sort()).toEqual(RUN_FIELDS);
    expect(run).toMatchObject({
      id: expect.any(String),
      workflow: 'echo',
      user_id: 'alice',
      conversation_id: 'conv-1',
      status: 'succeeded',
      input: 'hello brave world',
      output: 'hello brave world',
      error: null,
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
      metadata: { source: 'test', n: 1 },
    });
    for (const key of ['created_at', 'started_at', 'finished_at'] as const) {
      expect(new Date(run[key] as string).toISOString()).toBe(run[key]);
    }
    expect(Date.parse(run.created_at as string)).toBeLessThanOrEqual(Date.parse(run.started_at as string));
    expect(Date.parse(run.started_at as string)).toBeLessThanOrEqual(Date.parse(run.finished_at as string));
    expect(Number.isInteger(run.last_event_id) && (run.last_event_id as number) > 0).toBe(true);
    // GET answers the same document.
    expect((await get(app, `/runs/${run.id as string}`, { 'x-user-id': 'alice' })).json()).toEqual(run);
  });

  it('a run without X-User-Id belongs to anonymous; nulls where nothing was given', async () => {
    const app = await newApp();
    const run = (await post(app, { input: 'x' })).json();
    expect(run).toMatchObject({ user_id: 'anonymous', conversation_id: null, metadata: {}, error: null });
  });

  it('background: 202 + Location at once, then GET shows it finishing', async () => {
    const app = await newApp();
    const res = await post(app, { workflow: 'slow', input: 'one two three', background: true }, { 'x-user-id': 'alice' });
    expect(res.statusCode).toBe(202);
    const run = res.json() as Record<string, unknown>;
    expect(Object.keys(run).sort()).toEqual(RUN_FIELDS);
    expect(res.headers.location).toBe(`/runs/${run.id as string}`);
    expect(['queued', 'running']).toContain(run.status);
    expect(run.finished_at).toBeNull();
    expect(run.output).toBeNull();

    const location = res.headers.location as string;
    await waitFor(async () => (await runStatus(app, run.id as string, 'alice')) === 'succeeded', 'background run finished');
    const done = (await get(app, location, { 'x-user-id': 'alice' })).json();
    expect(done).toMatchObject({ status: 'succeeded', output: 'one two three', finished_at: expect.any(String) });
  });

  it('Accept: text/event-stream: the answer is the run’s SSE stream, with Location', async () => {
    const app = await newApp();
    const res = await post(app, { input: 'streamed words here' }, { accept: 'text/event-stream' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = parseSse(res.body);
    const runId = events[0]!.data.run_id;
    expect(res.headers.location).toBe(`/runs/${runId}`);
    expectWellFormedLog(events, runId);
    expect(events.at(-1)!.event).toBe('run.succeeded');
  });
});

// ---------------------------------------------------------------------------------------------
// GET /runs
// ---------------------------------------------------------------------------------------------

describe('GET /runs', () => {
  type RunDoc = { id: string; status: string; workflow: string; conversation_id: string | null; user_id: string };
  type Page = { data: RunDoc[]; next_cursor: string | null };

  async function seed(app: FastifyInstance): Promise<{ alice: string[]; bob: string[] }> {
    const specs: Array<[string, Record<string, unknown>]> = [
      ['alice', { input: 'a1', conversation_id: 'c1' }],
      ['bob', { input: 'b1', conversation_id: 'c1' }],
      ['alice', { workflow: 'echo2', input: 'a2' }],
      ['alice', { workflow: 'boom', input: 'a3', conversation_id: 'c1' }],
      ['alice', { input: 'a4' }],
      ['bob', { workflow: 'echo2', input: 'b2' }],
      ['alice', { workflow: 'echo2', input: 'a5', conversation_id: 'c2' }],
      ['alice', { workflow: 'boom', input: 'a6' }],
      ['alice', { input: 'a7', conversation_id: 'c1' }],
    ];
    const ids = { alice: [] as string[], bob: [] as string[] };
    for (const [user, body] of specs) {
      const res = await post(app, body, { 'x-user-id': user });
      ids[user as 'alice' | 'bob'].push((res.json() as { id?: string; run_id?: string }).id ?? (res.json() as { run_id: string }).run_id);
    }
    return ids;
  }

  async function page(app: FastifyInstance, user: string, query: string): Promise<Page> {
    const res = await get(app, `/runs${query}`, { 'x-user-id': user });
    expect(res.statusCode).toBe(200);
    return res.json() as Page;
  }

  async function walk(app: FastifyInstance, user: string, query: string, limit: number): Promise<{ ids: string[]; pages: number[] }> {
    const ids: string[] = [];
    const pages: number[] = [];
    let cursor: string | null = null;
    do {
      const sep = query ? '&' : '?';
      const p: Page = await page(app, user, `${query}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      pages.push(p.data.length);
      ids.push(...p.data.map((r) => r.id));
      cursor = p.next_cursor;
      expect(pages.length).toBeLessThan(50);
    } while (cursor !== null);
    return { ids, pages };
  }

  it('lists only the caller’s runs, newest first, as full Runs', async () => {
    const app = await newApp();
    const ids = await seed(app);
    const alice = await page(app, 'alice', '');
    expect(alice.data.map((r) => r.id)).toEqual([...ids.alice].reverse());
    expect(alice.next_cursor).toBeNull();
    for (const r of alice.data) {
      expect(r.user_id).toBe('alice');
      expect(Object.keys(r).sort()).toEqual(RUN_FIELDS);
    }
    const bob = await page(app, 'bob', '');
    expect(bob.data.map((r) => r.id)).toEqual([...ids.bob].reverse());
    const anon = await page(app, 'anonymous', '');
    expect(anon.data).toEqual([]);
    const noHeader = (await get(app, '/runs')).json() as Page;
    expect(noHeader.data).toEqual([]);
  });

  it('filters by status, workflow and conversation_id, alone and combined', async () => {
    const app = await newApp();
    const ids = await seed(app);
    const [a1, a2, a3, a4, a5, a6, a7] = ids.alice;

    expect((await page(app, 'alice', '?status=failed')).data.map((r) => r.id)).toEqual([a6, a3]);
    expect((await page(app, 'alice', '?status=succeeded')).data.map((r) => r.id)).toEqual([a7, a5, a4, a2, a1]);
    expect((await page(app, 'alice', '?status=running')).data).toEqual([]);
    expect((await page(app, 'alice', '?workflow=echo2')).data.map((r) => r.id)).toEqual([a5, a2]);
    expect((await page(app, 'alice', '?conversation_id=c1')).data.map((r) => r.id)).toEqual([a7, a3, a1]);
    expect((await page(app, 'alice', '?conversation_id=c1&status=succeeded')).data.map((r) => r.id)).toEqual([a7, a1]);
    expect((await page(app, 'alice', '?workflow=nope')).data).toEqual([]);
    // Bob's c1 run does not leak into Alice's conversation filter, nor hers into his.
    expect((await page(app, 'bob', '?conversation_id=c1')).data.map((r) => r.id)).toEqual([ids.bob[0]]);
  });

  it('cursor pagination walks every run once, in order, and ends with next_cursor null', async () => {
    const app = await newApp();
    const ids = await seed(app);
    const newestFirst = [...ids.alice].reverse();

    for (const limit of [1, 2, 3, 6, 7, 100]) {
      const { ids: walked, pages } = await walk(app, 'alice', '', limit);
      expect(walked, `limit ${limit}`).toEqual(newestFirst);
      expect(pages.slice(0, -1).every((n) => n === limit), `full pages for limit ${limit}`).toBe(true);
      expect(pages.at(-1)!).toBeGreaterThan(0);
    }
    const filtered = await walk(app, 'alice', '?status=succeeded', 2);
    const [a1, a2, , a4, a5, , a7] = ids.alice;
    expect(filtered.ids).toEqual([a7, a5, a4, a2, a1]);

    // Runs created between pages do not shift the pages already handed out.
    const first = await page(app, 'alice', '?limit=3');
    await post(app, { input: 'newer' }, { 'x-user-id': 'alice' });
    const second = await page(app, 'alice', `?limit=3&cursor=${encodeURIComponent(first.next_cursor!)}`);
    expect([...first.data, ...second.data].map((r) => r.id)).toEqual(newestFirst.slice(0, 6));
  });
});

// ---------------------------------------------------------------------------------------------
// Workflows, health
// ---------------------------------------------------------------------------------------------

describe('GET /workflows', () => {
  it('lists every configured workflow with name, description, type and a JSON Schema of its input', async () => {
    const app = await newApp();
    const res = await get(app, '/workflows');
    expect(res.statusCode).toBe(200);
    const { data } = res.json() as { data: Array<Record<string, any>> };
    const names = data.map((w) => w.name);
    expect(names).toEqual(expect.arrayContaining(['echo', 'slow', 'echo2', 'blocker', 'boom', 'upstream', 'greet']));
    for (const wf of data) {
      expect(Object.keys(wf).sort()).toEqual(['description', 'input_schema', 'name', 'type']);
      expect(wf.input_schema).toEqual(expect.any(Object));
    }
    const echo = data.find((w) => w.name === 'echo')!;
    expect(echo).toMatchObject({ type: 'echo', description: expect.any(String) });
    expect(echo.input_schema).toMatchObject({ type: 'string' });
    expect(String(echo.input_schema.$schema)).toContain('json-schema.org');

    const one = await get(app, '/workflows/greet');
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({
      name: 'greet',
      type: 'greet',
      input_schema: {
        type: 'object',
        properties: { name: { type: 'string' }, times: { type: 'integer' } },
        required: expect.arrayContaining(['name', 'times']),
        additionalProperties: false,
      },
    });
    expect(one.json()).toEqual(data.find((w) => w.name === 'greet'));
  });
});

describe('health', () => {
  it('/healthz 200; /readyz 200 until shutdown, then 503 shutting_down', async () => {
    const app = await newApp();
    const live = await get(app, '/healthz');
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ status: 'ok' });
    const ready = await get(app, '/readyz');
    expect(ready.statusCode).toBe(200);
    // Health is public: a malformed X-User-Id does not make a probe fail.
    expect((await get(app, '/healthz', { 'x-user-id': 'bad user' })).statusCode).toBe(200);

    await app.runtime.shutdown(0);
    expectProblem(await get(app, '/readyz'), 'shutting_down');
    expect((await get(app, '/healthz')).statusCode).toBe(200);
  });

  it('/readyz is not ready, with a problem whose status matches, when the store cannot be reached', async () => {
    const app = await newApp();
    // The memory store is always reachable: stand in for a store whose connection is down.
    app.runtime.stores.runs.ping = async () => {
      throw new Error('connection refused');
    };
    const res = await get(app, '/readyz');
    expectProblem(res, 'unavailable');
    expect(res.headers['retry-after']).toBe('5');
    expect(res.json().detail).not.toMatch(/refused/);
  });

  it('HEAD on a stream is not a route: it would follow the run with every frame discarded', async () => {
    const app = await newApp();
    const run = (await post(app, { input: 'hi' })).json() as { id: string };
    const res = await app.inject({ method: 'HEAD', url: `/runs/${run.id}/stream` });
    // A HEAD answer has no body; its status and type say not_found.
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('a run whose record cannot be written leaves the queue at once and creates nothing', async () => {
    // A queue timeout far beyond the test: the waiter must leave because its run failed, not by timing out.
    const app = await newApp({ runtime: { max_concurrency: 1, queue_timeout_ms: 3_600_000 } });
    const holder = await post(app, { workflow: 'blocker', input: 'x', background: true });
    expect(holder.statusCode).toBe(202);
    const runs = app.runtime.stores.runs;
    const create = runs.create;
    runs.create = async () => {
      throw new Error('disk on fire');
    };
    expectProblem(await post(app, { input: 'queued' }), 'internal');
    runs.create = create;
    expect((await app.runtime.session({ userId: 'anonymous' }).list({ limit: 10 })).data.map((r) => r.id)).toEqual([(holder.json() as { id: string }).id]);
    // The answer can go out before the waiter's own promise chain has unwound: let it settle.
    await tick();
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    await app.inject({ method: 'POST', url: `/runs/${(holder.json() as { id: string }).id}/cancel` });
  });
});

// ---------------------------------------------------------------------------------------------
// Replay of a finished run's stream
// ---------------------------------------------------------------------------------------------

describe('GET /runs/:id/stream on a finished run', () => {
  it('replays the full log: ids 1..n gapless, exactly one terminal event, last; tokens = output', async () => {
    const app = await newApp();
    const run = (await post(app, { input: 'the quick brown fox' }, { 'x-user-id': 'alice' })).json() as {
      id: string;
      output: string;
      last_event_id: number;
    };
    const res = await get(app, `/runs/${run.id}/stream`, { 'x-user-id': 'alice' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-accel-buffering']).toBe('no');
    const events = parseSse(res.body);
    expectWellFormedLog(events, run.id);
    expect(events).toHaveLength(run.last_event_id);
    expect(events[0]!.event).toBe('run.queued');
    expect(events[1]!.event).toBe('run.started');
    expect(events.at(-1)).toMatchObject({ event: 'run.succeeded', data: { data: { output: run.output } } });
    const deltas = events.filter((e) => e.event === 'token').map((e) => e.data.data.delta as string);
    expect(deltas.join('')).toBe(run.output);
    const kinds = events.filter((e) => e.event === 'step').map((e) => e.data.data.kind);
    expect(kinds[0]).toBe('WORKFLOW_START');
    expect(kinds.at(-1)).toBe('WORKFLOW_END');

    // The same replay twice is identical.
    const again = parseSse((await get(app, `/runs/${run.id}/stream`, { 'x-user-id': 'alice' })).body);
    expect(again).toEqual(events);
  });

  it('resumes after ?after=N and Last-Event-ID: N (the header wins); terminal id → 204', async () => {
    const app = await newApp();
    const run = (await post(app, { input: 'one two three four' })).json() as { id: string; last_event_id: number };
    const n = run.last_event_id;
    const full = parseSse((await get(app, `/runs/${run.id}/stream`)).body);

    const afterQ = parseSse((await get(app, `/runs/${run.id}/stream?after=3`)).body);
    expect(afterQ).toEqual(full.slice(3));
    expectWellFormedLog(afterQ, run.id, 4);

    const afterH = parseSse((await get(app, `/runs/${run.id}/stream`, { 'last-event-id': '5' })).body);
    expect(afterH).toEqual(full.slice(5));

    const both = parseSse((await get(app, `/runs/${run.id}/stream?after=2`, { 'last-event-id': '6' })).body);
    expect(both).toEqual(full.slice(6));

    const zero = parseSse((await get(app, `/runs/${run.id}/stream?after=0`)).body);
    expect(zero).toEqual(full);

    const lastButOne = parseSse((await get(app, `/runs/${run.id}/stream`, { 'last-event-id': String(n - 1) })).body);
    expect(lastButOne).toHaveLength(1);
    expect(TERMINAL.has(lastButOne[0]!.event)).toBe(true);

    for (const headers of [{ 'last-event-id': String(n) }, {} as Record<string, string>]) {
      const url = headers['last-event-id'] ? `/runs/${run.id}/stream` : `/runs/${run.id}/stream?after=${n}`;
      const res = await get(app, url, headers);
      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      expect(res.headers['x-request-id']).toEqual(expect.any(String));
    }
  });

  it('a cancelled run replays to its run.cancelled event', async () => {
    const app = await newApp();
    const id = await startBlocker(app, 'alice');
    await app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: { 'x-user-id': 'alice' } });
    const events = parseSse((await get(app, `/runs/${id}/stream`, { 'x-user-id': 'alice' })).body);
    expectWellFormedLog(events, id);
    expect(events.at(-1)!.event).toBe('run.cancelled');
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

describe('robustness', () => {
  it('a barrage of bad requests from one user leaves the server and another user’s running run intact', async () => {
    const app = await newApp({ server: { body_limit_bytes: 1024 } });
    const aliceRun = await startBlocker(app, 'alice');
    const bad: InjectOptions[] = [
      { method: 'POST', url: '/runs', payload: '{', headers: { 'content-type': 'application/json', 'x-user-id': 'mallory' } },
      { method: 'POST', url: '/runs', payload: { input: 'x'.repeat(5000) }, headers: { 'x-user-id': 'mallory' } },
      { method: 'POST', url: '/runs', payload: 'x', headers: { 'content-type': 'text/plain' } },
      { method: 'POST', url: '/runs', payload: { input: { deep: [1, 2, { x: null }] } } },
      { method: 'POST', url: '/runs', payload: { input: 'x', workflow: '../../etc/passwd' } },
      { method: 'GET', url: `/runs/${aliceRun}`, headers: { 'x-user-id': 'mallory' } },
      { method: 'POST', url: `/runs/${aliceRun}/cancel`, headers: { 'x-user-id': 'mallory' } },
      { method: 'GET', url: `/runs/${aliceRun}/stream`, headers: { 'x-user-id': 'mallory', 'last-event-id': 'zzz' } },
      { method: 'GET', url: `/runs/${'x'.repeat(300)}` },
      { method: 'GET', url: '/runs/%' },
      { method: 'GET', url: '/runs?cursor=%00%01' },
      { method: 'POST', url: '/runs', payload: { input: 'x', metadata: { ['k'.repeat(65)]: 1 } } },
    ];
    for (const req of bad) {
      const res = await app.inject(req);
      expect(res.statusCode, `${req.method} ${String(req.url).slice(0, 40)}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${req.method} ${String(req.url).slice(0, 40)}`).toBeLessThan(500);
      expect(res.headers['content-type'], `${req.method} ${String(req.url).slice(0, 40)}`).toMatch(/^application\/problem\+json/);
      const good = await post(app, { input: 'fine' }, { 'x-user-id': 'bob' });
      expect(good.statusCode).toBe(200);
    }
    expect(await runStatus(app, aliceRun, 'alice')).toBe('running');
    const list = (await get(app, '/runs', { 'x-user-id': 'alice' })).json() as { data: Array<{ id: string }> };
    expect(list.data.map((r) => r.id)).toEqual([aliceRun]);
    expect((await get(app, '/runs', { 'x-user-id': 'mallory' })).json()).toEqual({ data: [], next_cursor: null });
  });
});
