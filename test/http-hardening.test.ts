import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ERROR_CODES, type ErrorCode } from '../src/errors.js';
import { wantsEventStream } from '../src/http/accept.js';
import { makeApp, type TestAppOptions } from './support/app.js';

// ---------------------------------------------------------------------------------------------
// Findings of a new user's audit of the HTTP layer, each with a test that fails without its fix.
// ---------------------------------------------------------------------------------------------

const apps: FastifyInstance[] = [];

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function newApp(options: TestAppOptions = {}): Promise<FastifyInstance> {
  const app = await makeApp(options);
  apps.push(app);
  return app;
}

/** The real app with its log lines kept (pino's JSON, one object per line). */
async function loggedApp(
  routes?: (app: FastifyInstance) => void,
): Promise<{ app: FastifyInstance; lines: Array<{ level: number; msg?: string }> }> {
  const lines: Array<{ level: number; msg?: string }> = [];
  const app = await buildApp({
    config: { server: { log_level: 'trace' }, runtime: { shutdown_grace_ms: 0 }, workflows: { echo: { type: 'echo', token_delay_ms: 0 } } },
    logger: { level: 'trace', stream: { write: (line: string) => void lines.push(JSON.parse(line)) } },
  });
  apps.push(app);
  routes?.(app);
  await app.ready();
  return { app, lines };
}

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: Array<{ in: string; pointer: string; message: string }>;
}

/** Asserts a problem+json answer with the table's status, title and code; returns the body. */
function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; body: string }, code: ErrorCode): ProblemBody {
  const { status, title } = ERROR_CODES[code];
  expect({ status: res.statusCode, body: res.body }).toMatchObject({ status });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json\b/);
  const body = JSON.parse(res.body) as ProblemBody;
  expect(body).toMatchObject({ type: `urn:runway:problem:${code}`, title, status, code, detail: expect.any(String) });
  expect(body.detail.length).toBeGreaterThan(0);
  return body;
}

async function stillServes(app: FastifyInstance): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'still here' } });
  expect(res.statusCode).toBe(200);
  expect(res.json()).toMatchObject({ status: 'succeeded', output: 'still here' });
}

describe('4xx raised by libraries (static docs files) are 4xx problems, logged below error', () => {
  const cases: Array<{ name: string; url: string; headers?: Record<string, string>; code: ErrorCode }> = [
    { name: 'a NUL byte in the path', url: '/docs/static/%00', code: 'forbidden' },
    { name: 'a non-canonical (forbidden) path', url: '/docs/static//index.css', code: 'forbidden' },
    { name: 'an If-Match that does not match', url: '/docs/static/index.css', headers: { 'if-match': '"nope"' }, code: 'precondition_failed' },
    { name: 'an unsatisfiable Range', url: '/docs/static/index.css', headers: { range: 'bytes=999999-9999999' }, code: 'range_not_satisfiable' },
  ];
  for (const c of cases) {
    it(`${c.name} → ${ERROR_CODES[c.code].status} ${c.code}`, async () => {
      const { app, lines } = await loggedApp();
      const res = await app.inject({ method: 'GET', url: c.url, ...(c.headers && { headers: c.headers }) });
      expectProblem(res, c.code);
      expect(res.headers['x-request-id']).toEqual(expect.any(String));
      // The client's mistake is no alert: nothing at error level or above (pino: error = 50).
      expect(lines.filter((l) => l.level >= 50)).toEqual([]);
      expect(lines.some((l) => l.msg === 'request refused' && l.level < 50)).toBe(true);
    });
  }

  it('the 416 keeps the Content-Range that says how long the file is', async () => {
    const app = await newApp();
    const res = await app.inject({ method: 'GET', url: '/docs/static/index.css', headers: { range: 'bytes=999999-' } });
    expectProblem(res, 'range_not_satisfiable');
    expect(res.headers['content-range']).toMatch(/^bytes \*\/\d+$/);
  });

  it('a satisfiable Range and a matching If-Match are still served', async () => {
    const app = await newApp();
    const full = await app.inject({ method: 'GET', url: '/docs/static/index.css' });
    expect(full.statusCode).toBe(200);
    const part = await app.inject({ method: 'GET', url: '/docs/static/index.css', headers: { range: 'bytes=0-3' } });
    expect(part.statusCode).toBe(206);
    expect(part.body).toBe(full.body.slice(0, 4));
    const matching = await app.inject({ method: 'GET', url: '/docs/static/index.css', headers: { 'if-match': String(full.headers.etag) } });
    expect(matching.statusCode).toBe(200);
  });

  it('an error with a 5xx status is still internal (logged at error level); an unlisted 4xx is the nearest code', async () => {
    const { app, lines } = await loggedApp((a) => {
      a.get('/boom-503', async () => {
        throw Object.assign(new Error('library says 503'), { statusCode: 503 });
      });
      a.get('/boom-418', async () => {
        throw Object.assign(new Error('a teapot'), { status: 418 });
      });
    });
    const b503 = expectProblem(await app.inject({ url: '/boom-503' }), 'internal');
    expect(b503.detail).not.toContain('library says');
    expect(lines.filter((l) => l.level >= 50)).toHaveLength(1);
    // A 4xx with no code of its own in the table: the nearest one, invalid_request.
    expect(expectProblem(await app.inject({ url: '/boom-418' }), 'invalid_request').detail).toBe('a teapot');
    expect(lines.filter((l) => l.level >= 50)).toHaveLength(1);
    await stillServes(app);
  });
});

describe('wantsEventStream: Accept negotiation between JSON and SSE', () => {
  const cases: Array<[accept: string | undefined, streams: boolean]> = [
    [undefined, false],
    ['', false],
    ['application/json', false],
    ['*/*', false],
    ['text/*', false],
    ['text/html,application/xhtml+xml,*/*;q=0.8', false],
    ['text/event-stream', true],
    ['TEXT/Event-Stream', true],
    ['text/event-stream; charset=utf-8', true],
    ['text/event-stream, application/json', true],
    ['application/json, text/event-stream', true],
    // q=0 means "not this": the audit's case.
    ['text/event-stream;q=0, application/json', false],
    ['text/event-stream; q=0.0', false],
    ['text/event-stream;q=0', false],
    ['application/json, text/event-stream;q=0.5', false],
    ['application/json;q=0.4, text/event-stream;q=0.5', true],
    ['text/event-stream;q=0.5, */*;q=0.1', true],
    ['text/event-stream;q=0.5, */*', false],
    ['text/event-stream;q=0.5, application/*;q=0.9', false],
    // The most specific range decides JSON's q: application/json;q=0.1 beats */*.
    ['text/event-stream;q=0.5, application/json;q=0.1, */*', true],
    ['text/event-stream;q=0.5, text/event-stream;q=0.9, application/json;q=0.8', true],
    // A malformed q makes the element count as not sent.
    ['text/event-stream;q=2', false],
    ['text/event-stream;q=abc, application/json', false],
    ['text/event-stream;q=0.1234', false],
    ['application/json;q=nope, text/event-stream;q=0.1', true],
    // Parameters after q are accept extensions; a comma inside quotes does not split.
    ['text/event-stream;q=0.9;q=0, application/json;q=0.8', true],
    ['text/event-stream;foo="a, application/json", application/json;q=0.5', true],
    // Not a media range at all.
    ['text/event-stream/x', false],
    ['event-stream', false],
  ];
  for (const [accept, streams] of cases) {
    it(`${JSON.stringify(accept)} → ${streams ? 'stream' : 'JSON'}`, () => {
      expect(wantsEventStream(accept)).toBe(streams);
    });
  }
});
