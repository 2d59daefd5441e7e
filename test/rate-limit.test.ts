import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load-config.js';
import { isPublicPath } from '../src/plugins/identity-plugin.js';
import { bearer, concreteUrl, KEYS, makeAccessApp, routesOf } from './support/access-app.js';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const TWO_USERS = [
  { key: KEYS.alice, user: 'alice' },
  { key: KEYS.bob, user: 'bob' },
];

function expectRateLimited(res: LightMyRequestResponse, label: string): void {
  expect(res.statusCode, label).toBe(429);
  expect(String(res.headers['content-type']), label).toMatch(/^application\/problem\+json/);
  expect(res.json().code, label).toBe('rate_limited');
  // Whole seconds until the window ends: at most the window (60 s here), at least 1.
  const retryAfter = Number(res.headers['retry-after']);
  expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${label}: Retry-After ${res.headers['retry-after']}`).toBe(true);
}

describe('per-user request rate limit (auth on: keyed by the key’s user)', () => {
  it('user A is limited after max requests across routes, user B is not; health, readiness are never limited', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS, rateLimit: { max: 3, window_ms: 60_000 } });
    const alice = bearer(KEYS.alice);
    // One budget per user across every route.
    expect((await app.inject({ url: '/workflows', headers: alice })).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/runs', headers: alice, payload: { input: 'one' } })).statusCode).toBe(200);
    const third = await app.inject({ url: '/runs', headers: alice });
    expect(third.statusCode).toBe(200);
    expect(third.headers['x-ratelimit-remaining']).toBe('0');

    expectRateLimited(await app.inject({ url: '/workflows', headers: alice }), 'alice 4th');
    // A refused POST /runs creates no run.
    expectRateLimited(await app.inject({ method: 'POST', url: '/runs', headers: alice, payload: { input: 'two' } }), 'alice 5th');

    // Bob has his own budget, whatever X-User-Id claims.
    for (let i = 1; i <= 3; i++) {
      expect((await app.inject({ url: '/workflows', headers: { ...bearer(KEYS.bob), 'x-user-id': 'alice' } })).statusCode, `bob ${i}`).toBe(200);
    }
    expectRateLimited(await app.inject({ url: '/workflows', headers: bearer(KEYS.bob) }), 'bob 4th');

    // Public routes (health, readiness, metrics, docs, whichever the app has) are not counted and not refused.
    const publicUrls = routesOf(app)
      .filter((r) => r.method === 'GET' && isPublicPath(r.path))
      .map((r) => concreteUrl(r.path));
    expect(publicUrls).toEqual(expect.arrayContaining(['/healthz', '/readyz']));
    for (let i = 0; i < 10; i++) {
      for (const url of publicUrls) {
        const res = await app.inject({ url, headers: alice });
        expect(res.statusCode, url).not.toBe(429);
        expect(res.headers['x-ratelimit-limit'], url).toBeUndefined();
      }
    }
    expect((await app.inject({ url: '/healthz', headers: alice })).statusCode).toBe(200);
    // Alice has exactly one run: the refused POST made none.
    const runs = app.runtime.session({ userId: 'alice' }).list({ limit: 100 });
    expect((await runs).data.map((r) => r.input)).toEqual(['one']);
  });

  it('requests refused with 401 do not use up the user’s budget', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS, rateLimit: { max: 2 } });
    for (let i = 0; i < 5; i++) expect((await app.inject({ url: '/workflows', headers: { authorization: 'Bearer wrong-wrong-wrong-wrong' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/workflows', headers: bearer(KEYS.alice) })).statusCode).toBe(200);
    expect((await app.inject({ url: '/workflows', headers: bearer(KEYS.alice) })).statusCode).toBe(200);
    expectRateLimited(await app.inject({ url: '/workflows', headers: bearer(KEYS.alice) }), 'alice 3rd');
  });
});

describe('per-user request rate limit (auth off: keyed by X-User-Id or anonymous)', () => {
  it('each X-User-Id, and anonymous, has its own budget', async () => {
    app = await makeAccessApp({ rateLimit: { max: 2 } });
    for (const headers of [{ 'x-user-id': 'alice' }, { 'x-user-id': 'bob' }, {}]) {
      expect((await app.inject({ url: '/workflows', headers })).statusCode).toBe(200);
      expect((await app.inject({ url: '/workflows', headers })).statusCode).toBe(200);
      expectRateLimited(await app.inject({ url: '/workflows', headers }), JSON.stringify(headers));
    }
    expect((await app.inject({ url: '/workflows', headers: { 'x-user-id': 'carol' } })).statusCode).toBe(200);
  });

  it('max 0 (the default) means no limit and no rate-limit headers', async () => {
    app = await makeAccessApp();
    for (let i = 0; i < 50; i++) {
      const res = await app.inject({ url: '/workflows', headers: { 'x-user-id': 'alice' } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
    }
  });
});

describe('configuration: RUNWAY_RATE_LIMIT_MAX and RUNWAY_RATE_LIMIT_WINDOW_MS', () => {
  const env = { RUNWAY_CONFIG: '/dev/null' };

  it('default off with a one-minute window; the variables set both', () => {
    expect(loadConfig(env).rate_limit).toEqual({ max: 0, window_ms: 60_000 });
    expect(loadConfig({ ...env, RUNWAY_RATE_LIMIT_MAX: '120', RUNWAY_RATE_LIMIT_WINDOW_MS: '1000' }).rate_limit).toEqual({ max: 120, window_ms: 1000 });
  });

  it('bad values fail boot naming the key and the variable', () => {
    for (const [name, value, key] of [
      ['RUNWAY_RATE_LIMIT_MAX', '-1', 'rate_limit.max'],
      ['RUNWAY_RATE_LIMIT_MAX', 'lots', 'rate_limit.max'],
      ['RUNWAY_RATE_LIMIT_WINDOW_MS', '0', 'rate_limit.window_ms'],
      ['RUNWAY_RATE_LIMIT_WINDOW_MS', '86400001', 'rate_limit.window_ms'],
    ] as const) {
      let message = '';
      try {
        loadConfig({ ...env, [name]: value });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message, `${name}=${value}`).toContain(key);
      expect(message).toContain(`${name}="${value}"`);
    }
  });
});
