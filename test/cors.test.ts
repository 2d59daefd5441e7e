import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load-config.js';
import { bearer, KEYS, makeAccessApp, type AccessAppOptions } from './support/access-app.js';
import { listen } from './support/app.js';
import { openSse, TERMINAL_TYPES, type SseConnection } from './support/sse-sockets.js';

const APP_ORIGIN = 'http://app.test:3000';
const OTHER_ORIGIN = 'https://other.test';
const EVIL_ORIGIN = 'http://evil.test';

let app: FastifyInstance | undefined;
let base = '';
const open: SseConnection[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) c.destroy();
  await app?.close();
  app = undefined;
});

async function start(options: AccessAppOptions): Promise<void> {
  app = await makeAccessApp(options);
  base = await listen(app);
}

/** A real request over a socket, as a browser would send it (the Origin header included). */
async function call(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers: { ...headers, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers as IncomingHttpHeaders, text };
}

const list = (value: string | string[] | undefined) =>
  String(value ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);

function expectReadableBy(headers: IncomingHttpHeaders, origin: string, label: string): void {
  expect(headers['access-control-allow-origin'], label).toBe(origin);
  expect(list(headers['access-control-expose-headers']), label).toEqual(expect.arrayContaining(['location', 'retry-after', 'x-request-id', 'x-runway-run-id']));
  if (origin !== '*') expect(list(headers.vary), label).toContain('origin');
}

const PREFLIGHT_HEADERS = ['authorization', 'content-type', 'last-event-id', 'x-user-id', 'x-request-id'];

describe('CORS with a list of origins (auth on)', () => {
  const options: AccessAppOptions = {
    apiKeys: [{ key: KEYS.alice, user: 'alice' }],
    corsOrigins: `${APP_ORIGIN}, ${OTHER_ORIGIN}`,
  };

  it('a preflight needs no key and allows the methods and the five request headers', async () => {
    await start(options);
    for (const [method, path] of [
      ['POST', '/runs'],
      ['GET', '/runs/abc/stream'],
      ['DELETE', '/conversations/c1'],
    ] as const) {
      const res = await call('OPTIONS', path, {
        origin: APP_ORIGIN,
        'access-control-request-method': method,
        'access-control-request-headers': PREFLIGHT_HEADERS.join(','),
      });
      expect(res.status, `${method} ${path}`).toBe(204);
      expect(res.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
      expect(list(res.headers['access-control-allow-methods'])).toEqual(expect.arrayContaining(['get', 'post', 'delete']));
      expect(list(res.headers['access-control-allow-headers'])).toEqual(expect.arrayContaining(PREFLIGHT_HEADERS));
      expect(list(res.headers.vary)).toContain('origin');
      expect(res.headers['access-control-max-age']).toBe('600');
    }
    // The second configured origin is allowed too, and is the one echoed.
    const other = await call('OPTIONS', '/runs', { origin: OTHER_ORIGIN, 'access-control-request-method': 'POST' });
    expect(other.headers['access-control-allow-origin']).toBe(OTHER_ORIGIN);
  });

  it('an origin that is not listed gets no Access-Control-Allow-Origin, on preflights and requests', async () => {
    await start(options);
    const pre = await call('OPTIONS', '/runs', { origin: EVIL_ORIGIN, 'access-control-request-method': 'POST' });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const res = await call('GET', '/workflows', { origin: EVIL_ORIGIN, ...bearer(KEYS.alice) });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('simple and JSON requests: the answer is readable by the origin, Location and X-Request-Id exposed; so is a 401', async () => {
    await start(options);
    const list1 = await call('GET', '/workflows', { origin: APP_ORIGIN, ...bearer(KEYS.alice) });
    expect(list1.status).toBe(200);
    expectReadableBy(list1.headers, APP_ORIGIN, 'GET /workflows');

    const created = await call('POST', '/runs', { origin: APP_ORIGIN, ...bearer(KEYS.alice) }, { input: 'hi', background: true });
    expect(created.status).toBe(202);
    expect(created.headers.location).toMatch(/^\/runs\//);
    expectReadableBy(created.headers, APP_ORIGIN, 'POST /runs');

    // Errors too: a browser app can read why it was refused.
    const refused = await call('GET', '/runs', { origin: APP_ORIGIN });
    expect(refused.status).toBe(401);
    expectReadableBy(refused.headers, APP_ORIGIN, '401');
    expect(JSON.parse(refused.text).code).toBe('unauthorized');
  });

  it('SSE responses (written by hand after hijacking) carry the CORS headers: GET /runs/:id/stream and POST /runs as a stream', async () => {
    await start(options);
    const created = await call('POST', '/runs', bearer(KEYS.alice), { input: 'stream me please' });
    const runId = JSON.parse(created.text).id as string;

    const follow = await openSse(`${base}/runs/${runId}/stream`, { headers: { origin: APP_ORIGIN, ...bearer(KEYS.alice) } });
    open.push(follow);
    await follow.closed;
    expect(follow.status).toBe(200);
    expect(String(follow.headers['content-type'])).toMatch(/^text\/event-stream/);
    expectReadableBy(follow.headers, APP_ORIGIN, 'GET stream');
    expect(TERMINAL_TYPES.has(follow.events.at(-1)!.type)).toBe(true);

    const live = await openSse(`${base}/runs`, {
      method: 'POST',
      headers: { origin: APP_ORIGIN, ...bearer(KEYS.alice) },
      body: { input: 'live stream' },
    });
    open.push(live);
    await live.closed;
    expect(live.status).toBe(200);
    expectReadableBy(live.headers, APP_ORIGIN, 'POST stream');
    expect(live.headers.location).toMatch(/^\/runs\//);
    expect(live.events.at(-1)!.type).toBe('run.succeeded');
  });
});

describe('CORS with *', () => {
  it('any origin may read answers and streams; Authorization is still named in the preflight (a * does not cover it)', async () => {
    await start({ corsOrigins: '*' });
    const pre = await call('OPTIONS', '/runs', {
      origin: EVIL_ORIGIN,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type',
    });
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('*');
    expect(list(pre.headers['access-control-allow-headers'])).toEqual(expect.arrayContaining(PREFLIGHT_HEADERS));

    const res = await call('GET', '/workflows', { origin: 'https://anywhere.test' });
    expectReadableBy(res.headers, '*', 'GET');
    const created = await call('POST', '/runs', {}, { input: 'x' });
    const sse = await openSse(`${base}/runs/${JSON.parse(created.text).id}/stream`, { headers: { origin: 'https://anywhere.test' } });
    open.push(sse);
    await sse.closed;
    expectReadableBy(sse.headers, '*', 'stream');
  });
});

describe('CORS off (RUNWAY_CORS_ORIGINS unset)', () => {
  it('no CORS headers at all, and a preflight is not answered as one', async () => {
    await start({});
    const res = await call('GET', '/workflows', { origin: APP_ORIGIN });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers['access-control-expose-headers']).toBeUndefined();
    const pre = await call('OPTIONS', '/runs', { origin: APP_ORIGIN, 'access-control-request-method': 'POST' });
    expect(pre.status).toBe(404);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('configuration: RUNWAY_CORS_ORIGINS', () => {
  const env = { RUNWAY_CONFIG: '/dev/null' };

  it('a comma list of origins, * allowed, unset = off', () => {
    expect(loadConfig(env).cors.origins).toEqual([]);
    expect(loadConfig({ ...env, RUNWAY_CORS_ORIGINS: ` ${APP_ORIGIN},${OTHER_ORIGIN}, ` }).cors.origins).toEqual([APP_ORIGIN, OTHER_ORIGIN]);
    expect(loadConfig({ ...env, RUNWAY_CORS_ORIGINS: '*' }).cors.origins).toEqual(['*']);
  });

  it('something that is not an origin fails boot naming cors.origins and the variable', () => {
    for (const bad of ['http://app.test/', 'https://app.test/path', 'app.test', 'ftp://app.test', 'http://*.app.test']) {
      let message = '';
      try {
        loadConfig({ ...env, RUNWAY_CORS_ORIGINS: `${APP_ORIGIN},${bad}` });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message, bad).toContain('cors.origins');
      expect(message, bad).toContain(`"${bad}" is not an origin`);
      expect(message, bad).toContain('RUNWAY_CORS_ORIGINS=');
    }
  });
});
