import * as crypto from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load-config.js';
import { ApiKeyTable, bearerToken } from '../src/plugins/api-key-table.js';
import { identityPlugin, isPublicPath } from '../src/plugins/identity-plugin.js';
import { bearer, concreteUrl, KEYS, makeAccessApp, routesOf } from './support/access-app.js';
import { listen } from './support/app.js';
import { openSse, TERMINAL_TYPES } from './support/sse-sockets.js';

// The real node:crypto, with timingSafeEqual wrapped in a spy: the app's own key checks go through it.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});
const timingSafeEqualSpy = vi.mocked(crypto.timingSafeEqual);

const TWO_USERS = [
  { key: KEYS.alice, user: 'alice' },
  { key: KEYS.bob, user: 'bob' },
];

/** Authorization headers that must all be refused. */
const WRONG_AUTH: Record<string, string> = {
  'an unknown key': 'Bearer not-a-key-of-anyone-0123456789',
  'a key with one character more': `Bearer ${KEYS.alice}0`,
  'a key with one character less': `Bearer ${KEYS.alice.slice(0, -1)}`,
  'a key differing in its last character': `Bearer ${KEYS.alice.slice(0, -1)}${KEYS.alice.endsWith('9') ? '8' : '9'}`,
  'the key without the Bearer scheme': KEYS.alice,
  'the key as Basic credentials': `Basic ${Buffer.from(`alice:${KEYS.alice}`).toString('base64')}`,
  'an empty Bearer token': 'Bearer ',
  'the user name instead of a key': 'Bearer alice',
};

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/**
 * 401 `unauthorized` with a Bearer challenge: problem+json, or OpenAI's error shape on the
 * OpenAI-compatible `/v1/` routes (which its SDKs parse).
 */
function expectUnauthorized(res: { statusCode: number; headers: Record<string, unknown>; body: string; json(): unknown }, label: string, url = ''): void {
  expect(res.statusCode, label).toBe(401);
  expect(String(res.headers['www-authenticate']), label).toMatch(/^Bearer( |$)/);
  const openAi = url.startsWith('/v1/');
  expect(String(res.headers['content-type']), label).toMatch(openAi ? /^application\/json/ : /^application\/problem\+json/);
  // HEAD answers carry no body.
  if (res.body === '') return;
  const body = res.json() as { code?: string; error?: { code?: string } };
  expect(openAi ? body.error?.code : body.code, label).toBe('unauthorized');
}

describe('API keys: every route but the public ones needs one', () => {
  it('missing, wrong and right keys on every protected route (discovered from the app itself)', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS });
    const routes = routesOf(app).filter((r) => r.method !== 'OPTIONS');
    const prot = routes.filter((r) => !isPublicPath(r.path));
    // The discovery works: the routes of DESIGN §2 that hold user data are all there.
    for (const known of ['POST /runs', 'GET /runs', 'GET /runs/:id', 'GET /runs/:id/stream', 'POST /runs/:id/cancel', 'GET /workflows', 'GET /workflows/:name', 'GET /conversations/:id', 'DELETE /conversations/:id']) {
      expect(prot.map((r) => `${r.method} ${r.path}`)).toContain(known);
    }
    for (const route of prot) {
      const url = concreteUrl(route.path);
      const method = route.method as 'GET';
      const label = `${route.method} ${route.path}`;
      expectUnauthorized(await app.inject({ method, url }), `${label} without a key`, url);
      for (const [what, authorization] of Object.entries(WRONG_AUTH)) {
        expectUnauthorized(await app.inject({ method, url, headers: { authorization } }), `${label} with ${what}`, url);
      }
      // A good key gets past auth: whatever the route answers next (404 for an unknown id, 400 for no body), not 401.
      const ok = await app.inject({ method, url, headers: bearer(KEYS.bob) });
      expect(ok.statusCode, `${label} with a good key`).not.toBe(401);
      expect(ok.headers['www-authenticate'], label).toBeUndefined();
    }
  });

  it('the scheme is case-insensitive and surrounding spaces do not matter; a wrong key says invalid_token', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS });
    for (const authorization of [`bearer ${KEYS.alice}`, `BEARER ${KEYS.alice}`, `Bearer   ${KEYS.alice}  `]) {
      expect((await app.inject({ url: '/workflows', headers: { authorization } })).statusCode, authorization).toBe(200);
    }
    const missing = await app.inject({ url: '/workflows' });
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="runway"');
    const wrong = await app.inject({ url: '/workflows', headers: { authorization: 'Bearer nope-nope-nope-nope' } });
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="runway", error="invalid_token"');
    // The 401 never echoes what was sent.
    expect(wrong.body).not.toContain('nope-nope');
    // Unknown routes do not tell an anonymous caller what exists.
    expectUnauthorized(await app.inject({ url: '/no/such/route' }), 'unknown route');
    expect((await app.inject({ url: '/no/such/route', headers: bearer(KEYS.alice) })).statusCode).toBe(404);
  });

  it('public routes of the app answer without a key, and with a wrong one', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS });
    const pub = routesOf(app).filter((r) => r.method !== 'OPTIONS' && isPublicPath(r.path));
    expect(pub.map((r) => `${r.method} ${r.path}`)).toEqual(expect.arrayContaining(['GET /healthz', 'GET /readyz']));
    for (const route of pub) {
      const url = concreteUrl(route.path);
      for (const headers of [{}, { authorization: 'Bearer wrong-wrong-wrong-wrong' }]) {
        const res = await app.inject({ method: route.method as 'GET', url, headers });
        expect(res.statusCode, `${route.method} ${url}`).not.toBe(401);
      }
    }
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
  });

  it('/, /healthz, /readyz, /metrics, /docs (and its assets), /openapi.json are public whoever registers them; nothing else is', async () => {
    const bare = Fastify();
    app = bare;
    await bare.register(identityPlugin, { apiKeys: TWO_USERS });
    const open = ['/', '/healthz', '/readyz', '/metrics', '/openapi.json', '/docs', '/docs/', '/docs/json', '/docs/static/index.html'];
    const closed = ['/docsx', '/metrics/x', '/healthz/x', '/openapi.yaml', '/private'];
    for (const url of [...open, ...closed]) bare.get(url, async () => 'ok');
    bare.get('/flagged', { config: { public: true } }, async () => 'ok');
    await bare.ready();
    for (const url of [...open, '/flagged']) expect((await bare.inject({ url })).statusCode, url).toBe(200);
    // A docs asset that does not exist is a 404 for everyone; an unknown path elsewhere says nothing without a key.
    expect((await bare.inject({ url: '/docs/static/missing.js?v=1' })).statusCode).toBe(404);
    expect((await bare.inject({ url: '/docsmissing' })).statusCode).toBe(401);
    expect((await bare.inject({ url: '/metrics/missing' })).statusCode).toBe(401);
    for (const url of closed) {
      expect((await bare.inject({ url })).statusCode, url).toBe(401);
      expect((await bare.inject({ url, headers: bearer(KEYS.alice) })).statusCode, url).toBe(200);
    }
  });

  it('with auth off (no keys), nothing needs a key and X-User-Id names the user', async () => {
    app = await makeAccessApp();
    const res = await app.inject({ method: 'POST', url: '/runs', headers: { 'x-user-id': 'carol' }, payload: { input: 'hi' } });
    expect(res.statusCode).toBe(200);
    expect(res.json().user_id).toBe('carol');
    expect((await app.inject({ method: 'POST', url: '/runs', payload: { input: 'hi' } })).json().user_id).toBe('anonymous');
  });
});

describe('the user is the key’s user; X-User-Id is ignored', () => {
  it('runs belong to the key’s user whatever X-User-Id says, and a malformed X-User-Id is not even looked at', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS });
    const res = await app.inject({
      method: 'POST',
      url: '/runs',
      headers: { ...bearer(KEYS.alice), 'x-user-id': 'bob' },
      payload: { input: 'mine' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().user_id).toBe('alice');
    const odd = await app.inject({ method: 'POST', url: '/runs', headers: { ...bearer(KEYS.bob), 'x-user-id': 'not a valid id!' }, payload: { input: 'x' } });
    expect(odd.statusCode).toBe(200);
    expect(odd.json().user_id).toBe('bob');
    // Without a key, claiming a user gets nowhere.
    expectUnauthorized(await app.inject({ url: '/runs', headers: { 'x-user-id': 'alice' } }), 'X-User-Id alone');
  });
});

describe('another user’s runs and conversations are 404, never 403 (auth on, two keys)', () => {
  let shared: FastifyInstance;
  let base = '';
  let finishedId = '';
  let runningId = '';
  let bobRunId = '';
  const CONV = 'notes-1';

  beforeAll(async () => {
    shared = await makeAccessApp({ apiKeys: TWO_USERS });
    base = await listen(shared);
    const post = async (key: string, body: object) => {
      const res = await request(`${base}/runs`, {
        method: 'POST',
        headers: { ...bearer(key), 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await res.body.json()) as { id: string; status: string };
      expect(res.statusCode, JSON.stringify(json)).toBeLessThan(300);
      return json;
    };
    finishedId = (await post(KEYS.alice, { workflow: 'note', input: 'the code is 1234', conversation_id: CONV })).id;
    runningId = (await post(KEYS.alice, { workflow: 'blocker', input: 'hold', background: true })).id;
    bobRunId = (await post(KEYS.bob, { workflow: 'echo', input: 'bob was here' })).id;
  });
  afterAll(() => shared.close());

  interface Answer {
    status: number;
    type: string;
    body: string;
  }
  async function call(method: string, path: string, key: string, extra: Record<string, string> = {}): Promise<Answer> {
    if (path.endsWith('/stream')) {
      const c = await openSse(`${base}${path}`, { headers: { ...bearer(key), ...extra } });
      await c.closed;
      return { status: c.status, type: String(c.headers['content-type']), body: c.raw };
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers: { ...bearer(key), ...extra } });
    return { status: res.statusCode, type: String(res.headers['content-type']), body: await res.body.text() };
  }

  /** Each route that touches a user's data: what the owner gets, asked after the other user was refused. */
  const TABLE: Array<{ route: string; method: string; path: () => string; owner: (a: Answer) => void }> = [
    {
      route: 'GET /runs/:id',
      method: 'GET',
      path: () => `/runs/${finishedId}`,
      owner: (a) => {
        expect(a.status).toBe(200);
        expect(JSON.parse(a.body).user_id).toBe('alice');
      },
    },
    {
      route: 'GET /runs/:id/stream',
      method: 'GET',
      path: () => `/runs/${finishedId}/stream`,
      owner: (a) => {
        expect(a.status).toBe(200);
        expect(a.type).toMatch(/^text\/event-stream/);
        expect([...TERMINAL_TYPES].some((t) => a.body.includes(`event: ${t}`))).toBe(true);
      },
    },
    {
      route: 'POST /runs/:id/cancel',
      method: 'POST',
      path: () => `/runs/${runningId}/cancel`,
      owner: (a) => {
        expect(a.status).toBe(202);
        expect(JSON.parse(a.body).status).toBe('cancelled');
      },
    },
    {
      route: 'GET /conversations/:id',
      method: 'GET',
      path: () => `/conversations/${CONV}`,
      owner: (a) => {
        expect(a.status).toBe(200);
        expect(JSON.parse(a.body).messages.map((m: { content: string }) => m.content)).toEqual(['the code is 1234', 'noted']);
      },
    },
    {
      route: 'DELETE /conversations/:id',
      method: 'DELETE',
      path: () => `/conversations/${CONV}`,
      owner: (a) => expect(a.status).toBe(204),
    },
  ];

  it.each(TABLE)('$route: the other user gets 404 not_found (X-User-Id of the owner or not); the owner is served', async (row) => {
    for (const extra of [{}, { 'x-user-id': 'alice' }] as Array<Record<string, string>>) {
      const other = await call(row.method, row.path(), KEYS.bob, extra);
      expect(other.status, `${row.route} as bob ${JSON.stringify(extra)}`).toBe(404);
      expect(other.type).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(other.body).code).toBe('not_found');
      expect(other.body).not.toContain('alice');
    }
    // The refusal changed nothing: the running run still runs, the conversation is still there.
    if (row.route === 'POST /runs/:id/cancel') {
      const still = JSON.parse((await call('GET', `/runs/${runningId}`, KEYS.alice)).body);
      expect(['queued', 'running']).toContain(still.status);
    }
    row.owner(await call(row.method, row.path(), KEYS.alice));
  });

  it('GET /runs: each user lists only their own runs, with any filter', async () => {
    const list = async (key: string, query = '') => JSON.parse((await call('GET', `/runs${query}`, key, { 'x-user-id': 'alice' })).body) as { data: Array<{ id: string; user_id: string }> };
    const bob = await list(KEYS.bob);
    expect(bob.data.map((r) => r.id)).toEqual([bobRunId]);
    expect((await list(KEYS.bob, `?conversation_id=${CONV}`)).data).toEqual([]);
    expect((await list(KEYS.bob, '?workflow=note')).data).toEqual([]);
    const alice = await list(KEYS.alice);
    expect(alice.data.map((r) => r.id).sort()).toEqual([finishedId, runningId].sort());
    expect(alice.data.every((r) => r.user_id === 'alice')).toBe(true);
  });
});

describe('constant-time key comparison', () => {
  it('every check hashes the presented key and compares 32-byte digests with crypto.timingSafeEqual against every key, with no early exit', () => {
    const table = new ApiKeyTable([
      { key: KEYS.alice, user: 'alice' },
      { key: KEYS.bob, user: 'bob' },
      { key: 'carol-key-aaaaaaaaaaaaaaaaaaaaaaaa', user: 'carol' },
    ]);
    for (const [presented, user] of [
      [KEYS.alice, 'alice'], // the first entry: the loop still visits the other two
      ['carol-key-aaaaaaaaaaaaaaaaaaaaaaaa', 'carol'],
      ['x', undefined], // one byte: still 32 against 32
      ['y'.repeat(4000), undefined],
    ] as const) {
      timingSafeEqualSpy.mockClear();
      expect(table.userOfKey(presented)).toBe(user);
      expect(timingSafeEqualSpy).toHaveBeenCalledTimes(3);
      for (const [a, b] of timingSafeEqualSpy.mock.calls) {
        expect(Buffer.isBuffer(a) && Buffer.isBuffer(b)).toBe(true);
        expect([(a as Buffer).length, (b as Buffer).length]).toEqual([32, 32]);
      }
      // The digest compared is the presented key's SHA-256, not the key itself.
      expect((timingSafeEqualSpy.mock.calls[0]![0] as Buffer).equals(crypto.createHash('sha256').update(presented).digest())).toBe(true);
    }
  });

  it('the app’s requests go through it: a good key, a wrong key and a short key each cost one comparison per configured key', async () => {
    app = await makeAccessApp({ apiKeys: TWO_USERS });
    for (const authorization of [`Bearer ${KEYS.bob}`, `Bearer ${KEYS.alice}x`, 'Bearer k']) {
      timingSafeEqualSpy.mockClear();
      await app.inject({ url: '/workflows', headers: { authorization } });
      expect(timingSafeEqualSpy, authorization).toHaveBeenCalledTimes(2);
    }
    // And the comparison decides: if it says "no", a good key is refused.
    timingSafeEqualSpy.mockReturnValue(false);
    try {
      expectUnauthorized(await app.inject({ url: '/workflows', headers: bearer(KEYS.alice) }), 'good key, comparison says no');
    } finally {
      timingSafeEqualSpy.mockReset();
      const actual = await vi.importActual<typeof import('node:crypto')>('node:crypto');
      timingSafeEqualSpy.mockImplementation(actual.timingSafeEqual);
    }
    expect((await app.inject({ url: '/workflows', headers: bearer(KEYS.alice) })).statusCode).toBe(200);
  });

  it('bearerToken reads only the Bearer scheme', () => {
    expect(bearerToken(`Bearer ${KEYS.alice}`)).toBe(KEYS.alice);
    expect(bearerToken('bearer abc')).toBe('abc');
    for (const h of [undefined, '', 'Bearer', 'Bearer ', 'Bearer    ', 'Bearerabc', 'Basic abc', 'Token abc']) expect(bearerToken(h), String(h)).toBeUndefined();
  });
});

describe('keys never appear in logs', () => {
  it('requests with good and wrong keys, and anything logging the Authorization header, leave no key in the log lines', async () => {
    const lines: string[] = [];
    app = await makeAccessApp({
      apiKeys: TWO_USERS,
      logger: { level: 'trace', stream: { write: (line: string) => void lines.push(line) } },
    });
    const wrong = 'wrong-key-that-must-not-be-logged-0000';
    await app.inject({ method: 'POST', url: '/runs', headers: bearer(KEYS.alice), payload: { input: 'logged run' } });
    await app.inject({ url: '/workflows', headers: { authorization: `Bearer ${wrong}` } });
    await app.inject({ url: '/runs/nope', headers: bearer(KEYS.bob) });
    // Code that logs a request's headers (a plugin, a debugging session) gets them redacted.
    app.log.info({ req: { headers: { authorization: `Bearer ${KEYS.alice}` } } }, 'req headers');
    app.log.info({ request: { headers: { authorization: `Bearer ${KEYS.alice}` } } }, 'request headers');
    app.log.info({ headers: { authorization: `Bearer ${KEYS.bob}` } }, 'bare headers');
    app.log.info({ authorization: `Bearer ${KEYS.bob}` }, 'the header alone');
    await app.close();
    app = undefined;

    const text = lines.join('');
    // The capture works: the requests and the runs were logged at trace level.
    expect(text).toContain('incoming request');
    expect(text).toContain('request completed');
    for (const secret of [KEYS.alice, KEYS.bob, wrong]) expect(text).not.toContain(secret);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, any>);
    // `req` goes through Fastify's request serializer, which keeps no headers; the others are redacted in place.
    expect(logged.find((l) => l.msg === 'req headers')?.req?.headers).toBeUndefined();
    expect(logged.filter((l) => /^(request headers|bare headers|the header alone)$/.test(l.msg)).map((l) => l.request?.headers?.authorization ?? l.headers?.authorization ?? l.authorization)).toEqual(
      Array(3).fill('[redacted]'),
    );
  });
});

describe('configuration: RUNWAY_API_KEYS and RUNWAY_API_KEYS_FILE', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'runway-auth-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  // An empty YAML file: the built-in defaults, whatever config/runway.yaml says.
  const noFile = { get RUNWAY_CONFIG() {
    return file('empty.yaml', '');
  } };
  const configError = (env: Record<string, string>): string => {
    try {
      loadConfig({ ...noFile, ...env });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('expected a ConfigError');
  };

  it('RUNWAY_API_KEYS="key:user,key:user" turns auth on (and boots: it is no longer refused)', async () => {
    const config = loadConfig({ ...noFile, RUNWAY_API_KEYS: ` ${KEYS.alice}:alice , ${KEYS.bob}:bob ` });
    expect(config.auth.api_keys).toEqual(TWO_USERS);
    expect(loadConfig(noFile).auth.api_keys).toEqual([]);
    expect(loadConfig({ ...noFile, RUNWAY_API_KEYS: '' }).auth.api_keys).toEqual([]);
  });

  it('RUNWAY_API_KEYS_FILE: key:user lines with # comments and blank lines (CRLF too); both variables together add up', () => {
    const path = file('keys.txt', `# team keys\r\n\r\n${KEYS.alice}:alice   # rotated 2026-11\r\n  ${KEYS.bob}:bob\n# old:\n`);
    expect(loadConfig({ ...noFile, RUNWAY_API_KEYS_FILE: path }).auth.api_keys).toEqual(TWO_USERS);
    const carol = 'carol-key-bbbbbbbbbbbbbbbbbbbbbbbbbbb';
    expect(loadConfig({ ...noFile, RUNWAY_API_KEYS_FILE: path, RUNWAY_API_KEYS: `${carol}:carol` }).auth.api_keys).toEqual([{ key: carol, user: 'carol' }, ...TWO_USERS]);
  });

  it('the YAML file may list {key, user} entries under auth.api_keys', () => {
    const path = file('auth.yaml', `auth:\n  api_keys:\n    - {key: ${KEYS.alice}, user: alice}\n    - {key: ${KEYS.bob}, user: bob}\n`);
    expect(loadConfig({ RUNWAY_CONFIG: path }).auth.api_keys).toEqual(TWO_USERS);
  });

  it('bad entries fail boot naming auth.api_keys, the entry and the variable, and never show a key', () => {
    const cases: Array<[string, RegExp]> = [
      [`${KEYS.alice}`, /entry 1: expected key:user/],
      [`${KEYS.alice}:not valid!`, /entry 1: user "not valid!" must be/],
      [`${KEYS.alice}:alice,short-key:bob`, /entry 2: the key of user "bob" must be 16-512 characters/],
      [`${KEYS.alice}:alice,${KEYS.bob}x y:bob`, /entry 2: the key of user "bob"/],
      [`${KEYS.alice}:alice,${KEYS.alice}:mallory`, /entry 2: the key of user "mallory" is the same as entry 1's/],
    ];
    for (const [value, pattern] of cases) {
      const message = configError({ RUNWAY_API_KEYS: value });
      expect(message).toMatch(/auth\.api_keys/);
      expect(message).toMatch(pattern);
      expect(message).toContain('(from RUNWAY_API_KEYS)');
      for (const secret of [KEYS.alice, KEYS.bob, 'short-key']) expect(message).not.toContain(secret);
    }
  });

  it('an unreadable file, or keys set but empty, fail boot instead of serving without auth', () => {
    expect(configError({ RUNWAY_API_KEYS_FILE: join(dir, 'missing.txt') })).toMatch(/RUNWAY_API_KEYS_FILE: cannot read .*missing\.txt: ENOENT/);
    const onlyComments = file('comments.txt', '# nobody yet\n\n');
    expect(configError({ RUNWAY_API_KEYS_FILE: onlyComments })).toMatch(/auth\.api_keys: no key:user entry found \(from RUNWAY_API_KEYS_FILE=/);
    expect(configError({ RUNWAY_API_KEYS: ' , ' })).toMatch(/auth\.api_keys: no key:user entry found \(from RUNWAY_API_KEYS\)/);
  });
});
