import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../src/runtime/run-context.js';
import { currentTimeTool, currentTimeToolType, timeIn } from '../src/workflows/tools/current-time.js';
import { httpGetTool, httpGetToolType } from '../src/workflows/tools/http-get.js';
import { allowEntryProblem, UrlAllowList } from '../src/workflows/tools/url-allow-list.js';
import { deferred } from './support/agent-app.js';

/** Tools see only their context; these need nothing of it but the signal. */
const ctxWith = (signal: AbortSignal = new AbortController().signal) => ({ signal }) as RunContext;

describe('current_time', () => {
  const instant = Date.UTC(2026, 10, 25, 9, 47, 21); // a Wednesday, winter time in Europe and the US

  it.each([
    ['UTC', '2026-11-25T09:47:21+00:00', '+00:00', 'Wednesday'],
    ['Europe/Paris', '2026-11-25T10:47:21+01:00', '+01:00', 'Wednesday'],
    ['America/New_York', '2026-11-25T04:47:21-05:00', '-05:00', 'Wednesday'],
    ['Asia/Kolkata', '2026-11-25T15:17:21+05:30', '+05:30', 'Wednesday'],
    ['Pacific/Kiritimati', '2026-11-25T23:47:21+14:00', '+14:00', 'Wednesday'],
    ['Pacific/Pago_Pago', '2026-11-24T22:47:21-11:00', '-11:00', 'Tuesday'],
  ])('%s → %s', (zone, local, offset, weekday) => {
    expect(timeIn(zone, instant)).toEqual({ time_zone: zone, local, utc: '2026-11-25T09:47:21.000Z', utc_offset: offset, weekday });
  });

  it('follows daylight saving time', () => {
    expect(timeIn('Europe/Paris', Date.UTC(2026, 6, 1, 12)).utc_offset).toBe('+02:00');
    expect(timeIn('America/New_York', Date.UTC(2026, 6, 1, 12)).utc_offset).toBe('-04:00');
  });

  it('uses the configured default zone when the model names none', async () => {
    const tool = currentTimeTool('clock', { defaultTimeZone: 'Asia/Tokyo', now: () => instant });
    expect(await tool.run(tool.input.parse({}), ctxWith())).toMatchObject({ time_zone: 'Asia/Tokyo', local: '2026-11-25T18:47:21+09:00' });
  });

  it.each(['Mars/Olympus_Mons', 'Europe/Paris; rm -rf /', '', 'x'.repeat(100)])('refuses the time zone %j with a hint', (zone) => {
    const result = currentTimeTool().input.safeParse({ time_zone: zone });
    expect(result.success).toBe(false);
    expect(result.error!.issues[0]!.message).toMatch(/IANA name such as "Europe\/Paris"/);
  });

  it('validates default_time_zone in the config', () => {
    expect(currentTimeToolType.configSchema.safeParse({ type: 'current_time', default_time_zone: 'Nowhere/Land' }).success).toBe(false);
    expect(currentTimeToolType.configSchema.safeParse({ type: 'current_time', default_time_zone: 'Europe/Berlin' }).success).toBe(true);
  });
});

describe('UrlAllowList', () => {
  const list = new UrlAllowList(['https://api.example.com/v1/items', 'docs.example.org', '*.cdn.example.net', 'internal.example.com:8443']);

  it.each([
    ['https://api.example.com/v1/items', true],
    ['https://api.example.com/v1/items/3', true],
    ['https://api.example.com/v1/items?page=2', true],
    ['https://API.EXAMPLE.COM/v1/items/3', true],
    ['https://api.example.com/v1/itemsX', false],
    ['https://api.example.com/v1/', false],
    ['https://api.example.com/v1/items/../../admin', false], // normalised to /admin by the URL parser
    ['http://api.example.com/v1/items', false], // scheme is part of the prefix
    ['https://api.example.com:444/v1/items', false],
    ['https://api.example.com.evil.org/v1/items', false],
    ['https://api.example.com@evil.org/v1/items', false],
    ['https://user:pw@api.example.com/v1/items', false],
    ['http://docs.example.org/anything', true],
    ['https://docs.example.org:8080/', true],
    ['https://sub.docs.example.org/', false],
    ['https://docs.example.org.evil.org/', false],
    ['https://a.cdn.example.net/x.js', true],
    ['https://cdn.example.net/x.js', false],
    ['https://evilcdn.example.net/', false],
    ['https://internal.example.com:8443/', true],
    ['https://internal.example.com/', false],
    ['ftp://docs.example.org/', false],
    ['file:///etc/passwd', false],
    ['javascript:alert(1)', false],
  ])('%s → %s', (url, allowed) => {
    expect(list.allows(new URL(url))).toBe(allowed);
  });

  it.each(['ftp://example.com/', 'https://user@example.com/', 'https://example.com/?q=1', 'not a host!', 'http://', ''])(
    'refuses the entry %j',
    (entry) => {
      expect(allowEntryProblem(entry)).toEqual(expect.any(String));
    },
  );
});

describe('http_get', () => {
  let server: Server;
  let outside: Server;
  let base: string;
  let outsideBase: string;
  let outsideHits = 0;
  const closedSockets: Array<Promise<void>> = [];
  /** Told when a request to /slow arrived. */
  let onSlow: (() => void) | undefined;

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    '/text': (_req, res) => res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('héllo'),
    '/json': (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
    '/missing': (_req, res) => res.writeHead(404, { 'content-type': 'text/plain' }).end('no such page'),
    '/big': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(100_000));
    },
    '/image': (_req, res) => res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.alloc(64)),
    '/hop': (_req, res) => res.writeHead(302, { location: '/text' }).end(),
    '/hop-out': (_req, res) => res.writeHead(301, { location: `${outsideBase}/secret` }).end(),
    '/loop': (_req, res) => res.writeHead(307, { location: '/loop' }).end(),
    '/slow': (req) => {
      closedSockets.push(new Promise((resolve) => req.socket.once('close', () => resolve())));
      onSlow?.();
    },
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      const route = routes[new URL(req.url!, 'http://x').pathname];
      if (route) route(req, res);
      else res.writeHead(404).end();
    });
    outside = createServer((_req, res) => {
      outsideHits++;
      res.writeHead(200, { 'content-type': 'text/plain' }).end('secret');
    });
    server.listen(0, '127.0.0.1');
    outside.listen(0, '127.0.0.2');
    await Promise.all([once(server, 'listening'), once(outside, 'listening')]);
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    outsideBase = `http://127.0.0.2:${(outside.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    outside.closeAllConnections();
    await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => outside.close(r))]);
  });

  const tool = (options: Partial<Parameters<typeof httpGetTool>[1]> = {}) => httpGetTool('web', { allow: [`${base}/`], timeoutMs: 2000, ...options });
  const get = (url: string, options: Partial<Parameters<typeof httpGetTool>[1]> = {}, signal?: AbortSignal) =>
    Promise.resolve(tool(options).run({ url }, ctxWith(signal)));

  it('fetches an allowed URL as text, with status and content type', async () => {
    expect(await get(`${base}/text`)).toEqual({ url: `${base}/text`, status: 200, content_type: 'text/plain; charset=utf-8', body: 'héllo', truncated: false });
    expect(await get(`${base}/json`)).toMatchObject({ body: '{"ok":true}' });
    expect(await get(`${base}/missing`)).toMatchObject({ status: 404, body: 'no such page' });
  });

  it('refuses a URL outside the allow-list without fetching it', async () => {
    const hits = outsideHits;
    await expect(get(`${outsideBase}/secret`)).rejects.toThrow(/is not allowed; allowed: http:\/\/127\.0\.0\.1/);
    expect(outsideHits).toBe(hits);
  });

  it('follows a redirect inside the list, refuses one that leaves it, and stops redirect loops', async () => {
    expect(await get(`${base}/hop`)).toMatchObject({ url: `${base}/text`, body: 'héllo' });
    const hits = outsideHits;
    await expect(get(`${base}/hop-out`)).rejects.toThrow(/redirected to http:\/\/127\.0\.0\.2.*is not allowed/);
    expect(outsideHits).toBe(hits);
    await expect(get(`${base}/loop`, { maxRedirects: 2 })).rejects.toThrow(/too many redirects \(more than 2\)/);
    await expect(get(`${base}/hop`, { maxRedirects: 0 })).rejects.toThrow(/too many redirects/);
  });

  it('cuts a body beyond max_bytes and says so', async () => {
    const result = await get(`${base}/big`, { maxBytes: 1000 });
    expect(result.truncated).toBe(true);
    expect(result.body).toBe('x'.repeat(1000));
  });

  it('does not return binary bodies', async () => {
    expect(await get(`${base}/image`)).toMatchObject({ status: 200, content_type: 'image/png', body: null });
  });

  it('gives up after its time limit and drops the connection', async () => {
    const before = closedSockets.length;
    await expect(get(`${base}/slow`, { timeoutMs: 100 })).rejects.toThrow(/within 100 ms/);
    await closedSockets[before];
  });

  it("aborts with the run's signal: rejects with the abort and drops the connection", async () => {
    const controller = new AbortController();
    const before = closedSockets.length;
    const arrived = deferred();
    onSlow = arrived.resolve;
    const pending = get(`${base}/slow`, { timeoutMs: 60_000 }, controller.signal);
    await arrived.promise;
    onSlow = undefined;
    controller.abort(new DOMException('run cancelled', 'AbortError'));
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await closedSockets[before];
  });

  it('validates its config: at least one allow entry, each one usable', () => {
    expect(httpGetToolType.configSchema.safeParse({ type: 'http_get', allow: [] }).success).toBe(false);
    const bad = httpGetToolType.configSchema.safeParse({ type: 'http_get', allow: ['https://ok.example.com/', 'ftp://x/'] });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['allow', 1]);
    expect(httpGetToolType.configSchema.safeParse({ type: 'http_get', allow: ['example.com'], max_bytes: '4096' }).data).toMatchObject({
      max_bytes: 4096,
      timeout_ms: 10_000,
      max_redirects: 3,
    });
  });
});
