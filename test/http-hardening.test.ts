import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ENV_OVERRIDES, RuntimeConfigSchema } from '../src/config/config-schema.js';
import { ConfigError, loadConfig } from '../src/config/load-config.js';
import { ERROR_CODES, type ErrorCode } from '../src/core/errors.js';
import { wantsEventStream } from '../src/http/accept.js';
import { excessNesting, forbiddenKey } from '../src/http/json-body.js';
import { LingeringClose, type LingerLimits } from '../src/http/lingering-close.js';
import { listen, makeApp, type TestAppOptions } from './support/app.js';
import { waitFor } from './support/sse-sockets.js';
import { blockerType } from './support/test-workflows.js';
import type { ProblemBody } from './support/problem-body.js';

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

// ---------------------------------------------------------------------------------------------
// JSON bodies: nesting depth, prototype keys, content codings
// ---------------------------------------------------------------------------------------------

/** `[[…[1]…]]` with `levels` arrays. */
function nestedArrays(levels: number): string {
  return '['.repeat(levels) + '1' + ']'.repeat(levels);
}

/** A POST /runs body nested `depth` levels deep in all (the root object is level 1, metadata level 2). */
function deepMetadataBody(depth: number): string {
  return `{"input":"deep","metadata":{"a":${nestedArrays(depth - 2)}}}`;
}

function postJson(app: FastifyInstance, payload: string, headers: Record<string, string> = {}, url = '/runs'): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', ...headers } });
}

describe('JSON nesting depth is bounded (64 levels)', () => {
  it('65 levels (in metadata) → 400 invalid_request naming /metadata; the server still answers', async () => {
    const app = await newApp();
    const body = expectProblem(await postJson(app, deepMetadataBody(65), { 'x-user-id': 'deep' }), 'invalid_request');
    expect(body.detail).toMatch(/nested deeper than 64 levels/);
    expect(body.errors).toEqual([{ in: 'body', pointer: '/metadata', message: expect.stringMatching(/64/) }]);
    await stillServes(app);
  });

  it('100,000 levels in metadata, or in input → 400; nothing was created and the user’s runs still read', async () => {
    const app = await newApp();
    const headers = { 'x-user-id': 'deep' };
    const ok = await app.inject({ method: 'POST', url: '/runs', headers, payload: { input: 'before' } });
    expect(ok.statusCode).toBe(200);
    const inMetadata = expectProblem(await postJson(app, deepMetadataBody(100_000), headers), 'invalid_request');
    expect(inMetadata.errors).toEqual([expect.objectContaining({ in: 'body', pointer: '/metadata' })]);
    const inInput = expectProblem(await postJson(app, `{"input":${nestedArrays(100_000)}}`, headers), 'invalid_request');
    expect(inInput.errors).toEqual([expect.objectContaining({ in: 'body', pointer: '/input' })]);
    const list = await app.inject({ url: '/runs', headers });
    expect(list.statusCode).toBe(200);
    expect(list.json().data).toHaveLength(1);
    expect((await app.inject({ url: `/runs/${ok.json().id}`, headers })).statusCode).toBe(200);
    await stillServes(app);
  });

  it('64 levels is accepted, answered, and reads back', async () => {
    const app = await newApp();
    const headers = { 'x-user-id': 'deep64' };
    const res = await postJson(app, deepMetadataBody(64), headers);
    expect(res.statusCode).toBe(200);
    const run = res.json();
    expect(run.metadata).toEqual(JSON.parse(deepMetadataBody(64)).metadata);
    expect((await app.inject({ url: `/runs/${run.id}`, headers })).json().metadata).toEqual(run.metadata);
    expect((await app.inject({ url: '/runs', headers })).json().data[0].metadata).toEqual(run.metadata);
  });

  it('POST /v1/chat/completions is bounded too (OpenAI’s error shape, the field as param)', async () => {
    const app = await newApp();
    const res = await postJson(app, `{"model":"echo","messages":${nestedArrays(100_000)}}`, {}, '/v1/chat/completions');
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'invalid_request', param: 'messages', message: expect.stringMatching(/64 levels/) });
    const good = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 'echo', messages: [{ role: 'user', content: 'hi' }] } });
    expect(good.statusCode).toBe(200);
  });

  it('brackets inside strings (escaped quotes too) do not count as nesting', async () => {
    const app = await newApp();
    const input = `a \\" ${'['.repeat(200)} \\\\`;
    const res = await postJson(app, `{"input":"${input}","metadata":{"k\\"[[[":"${'{'.repeat(100)}"}}`);
    expect(res.statusCode).toBe(200);
    expect(res.json().input).toBe(JSON.parse(`"${input}"`));
  });

  it('excessNesting names the root member holding the deep part', () => {
    expect(excessNesting(nestedArrays(64), 64)).toBeUndefined();
    expect(excessNesting(nestedArrays(65), 64)).toBe('/0');
    expect(excessNesting(`[1,"]",{"a":2},${nestedArrays(3)}]`, 3)).toBe('/3');
    expect(excessNesting('{"a":1,"b":[[[1]]]}', 3)).toBe('/b');
    expect(excessNesting('{"a/b~c":[[[1]]]}', 3)).toBe('/a~1b~0c');
    expect(excessNesting('{"\\u0061\\"":[[[1]]]}', 3)).toBe('/a"');
    // A key ending in an escaped backslash ends at the quote after it.
    expect(excessNesting('{"k\\\\":[[[1]]]}', 3)).toBe('/k\\');
    expect(excessNesting('{"k\\\\\\"":1,"z":[[[1]]]}', 3)).toBe('/z');
    expect(excessNesting('{"a":"[[[[[[[[", "b":"\\"[[[[[[[["}', 3)).toBeUndefined();
    // Not JSON: JSON.parse refuses it at the first stray bracket, before the nesting.
    expect(excessNesting(`]${nestedArrays(10)}`, 3)).toBeUndefined();
  });
});

describe('__proto__ and constructor.prototype keys are refused, saying so', () => {
  const cases: Array<{ name: string; body: string; pointer: string; message: RegExp }> = [
    { name: '__proto__ in metadata', body: '{"input":"x","metadata":{"__proto__":{"admin":true}}}', pointer: '/metadata/__proto__', message: /"__proto__"/ },
    { name: '__proto__ deep in input', body: '{"input":{"a":[1,{"__proto__":1}]}}', pointer: '/input/a/1/__proto__', message: /"__proto__"/ },
    { name: '__proto__ spelt with \\u escapes', body: '{"input":"x","metadata":{"\\u005f_proto_\\u005F":{}}}', pointer: '/metadata/__proto__', message: /"__proto__"/ },
    { name: 'constructor.prototype', body: '{"input":{"constructor":{"prototype":{"admin":true}}}}', pointer: '/input/constructor', message: /"constructor".*"prototype"/ },
  ];
  for (const c of cases) {
    it(`${c.name} → 400 invalid_request naming the key and its pointer`, async () => {
      const app = await newApp();
      const body = expectProblem(await postJson(app, c.body), 'invalid_request');
      expect(body.detail).toMatch(c.message);
      expect(body.detail).not.toMatch(/not valid JSON/);
      expect(body.errors).toEqual([{ in: 'body', pointer: c.pointer, message: expect.stringMatching(c.message) }]);
      expect(({} as Record<string, unknown>).admin).toBeUndefined();
      await stillServes(app);
    });
  }

  it('a "constructor" key holding anything else is ordinary data', async () => {
    const app = await newApp();
    const res = await postJson(app, '{"input":"x","metadata":{"constructor":"Bob","prototype":{"a":1}}}');
    expect(res.statusCode).toBe(200);
    expect(res.json().metadata).toEqual({ constructor: 'Bob', prototype: { a: 1 } });
  });

  it('forbiddenKey walks without recursion and reports the first offender', () => {
    expect(forbiddenKey(JSON.parse('{"a":{"b":[{"c":1}]}}'))).toBeUndefined();
    expect(forbiddenKey(JSON.parse('[0,{"x~/":{"__proto__":null}}]'))).toEqual({ key: '__proto__', pointer: '/1/x~0~1/__proto__' });
    const deep = JSON.parse(nestedArrays(64));
    expect(forbiddenKey(deep)).toBeUndefined();
  });
});

describe('a body with a Content-Encoding is 415', () => {
  it('gzip (a real gzip body) → 415 unsupported_media_type naming the encoding; identity is fine', async () => {
    const app = await newApp();
    const payload = gzipSync('{"input":"zipped"}');
    const res = await app.inject({ method: 'POST', url: '/runs', payload, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    const body = expectProblem(res, 'unsupported_media_type');
    expect(body.detail).toMatch(/Content-Encoding "gzip"/);
    expect(body.errors).toEqual([expect.objectContaining({ in: 'headers', pointer: '/content-encoding' })]);
    for (const encoding of ['br', 'deflate', 'identity, gzip']) {
      const other = await postJson(app, '{"input":"x"}', { 'content-encoding': encoding });
      expect(expectProblem(other, 'unsupported_media_type').detail).toContain(JSON.stringify(encoding));
    }
    const plain = await postJson(app, '{"input":"plain"}', { 'content-encoding': 'identity' });
    expect(plain.statusCode).toBe(200);
    await stillServes(app);
  });
});

// ---------------------------------------------------------------------------------------------
// Bodies over the size limit: 413 for every client, never a reset
// ---------------------------------------------------------------------------------------------

/**
 * POSTs a 4 MB JSON body to `url` `tries` times with Node's global fetch (undici), from a worker
 * thread: a client on an event loop of its own, as a real one is (on the server's own loop, the
 * server reads everything before the client gets to notice the reset). Each try's outcome: the
 * status, headers and problem code, or the network error's code.
 */
function fetchFromWorker(url: string, tries: number, chunked: boolean): Promise<string[]> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const MB4 = 4 * 1024 * 1024;
    const text = JSON.stringify({ input: 'x'.repeat(MB4) });
    const bytes = new TextEncoder().encode(text);
    function body() {
      if (!workerData.chunked) return text;
      // A stream: sent chunked, with no Content-Length.
      let at = 0;
      return new ReadableStream({
        pull(c) {
          if (at >= bytes.length) return c.close();
          c.enqueue(bytes.subarray(at, at + 65536));
          at += 65536;
        },
      });
    }
    (async () => {
      const out = [];
      for (let i = 0; i < workerData.tries; i++) {
        try {
          const res = await fetch(workerData.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(), duplex: 'half' });
          const problem = await res.json().catch(() => ({}));
          out.push([res.status, res.headers.get('content-type'), res.headers.get('connection'), problem.code].join(' '));
        } catch (err) {
          out.push('error ' + (err.cause?.code ?? err.message));
        }
      }
      parentPort.postMessage(out);
    })();
  `;
  const worker = new Worker(code, { eval: true, workerData: { url, tries, chunked } });
  return new Promise<string[]>((resolve, reject) => {
    worker.once('message', (out: string[]) => {
      resolve(out);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

const REFUSED = '413 application/problem+json; charset=utf-8 close payload_too_large';

describe('a body over server.body_limit_bytes is 413 for every client, with Connection: close', () => {
  it('4 MB with Content-Length, 40 times with fetch: every try gets the 413 problem (no ECONNRESET, no EPIPE)', async () => {
    const app = await newApp();
    const base = await listen(app);
    const out = await fetchFromWorker(`${base}/runs`, 40, false);
    expect(out).toEqual(Array.from({ length: 40 }, () => REFUSED));
    await stillServes(app);
  });

  it('4 MB chunked (no Content-Length), 10 times with fetch: every try gets the 413 problem', async () => {
    const app = await newApp();
    const base = await listen(app);
    const out = await fetchFromWorker(`${base}/runs`, 10, true);
    expect(out).toEqual(Array.from({ length: 10 }, () => REFUSED));
    await stillServes(app);
  });

  it('a client that writes its whole body before reading still reads the 413 (raw socket)', async () => {
    const app = await newApp({ server: { body_limit_bytes: 1024 } });
    const base = await listen(app);
    const { port } = new URL(base);
    const body = Buffer.alloc(4 * 1024 * 1024, 'x');
    const answer = await new Promise<{ text: string; error?: string }>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1');
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ text: Buffer.concat(received).toString(), error: err.code ?? err.message }));
      socket.on('close', () => resolve({ text: Buffer.concat(received).toString() }));
      socket.write(`POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
      socket.write(body);
    });
    expect(answer.error).toBeUndefined();
    expect(answer.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer.text).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer.text).toContain('"code":"payload_too_large"');
    await stillServes(app);
  });

  it('a chunked body over the limit is refused once it passes the limit, with a problem (inject)', async () => {
    const app = await newApp({ server: { body_limit_bytes: 1024 } });
    const res = await app.inject({
      method: 'POST',
      url: '/runs',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      payload: Readable.from([Buffer.from('{"input":"'), Buffer.alloc(4096, 'x'), Buffer.from('"}')]),
    });
    expect(expectProblem(res, 'payload_too_large').detail).toContain('1024 bytes');
    expect(res.headers.connection).toBe('close');
    const ok = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'y'.repeat(900) } });
    expect(ok.statusCode).toBe(200);
  });
});

// ---------------------------------------------------------------------------------------------
// What Node's HTTP parser refuses (no request exists): problem+json on the socket
// ---------------------------------------------------------------------------------------------

/** Writes `text` on a fresh connection and returns all that comes back until the server closes. */
function rawExchange(port: number, text: string): Promise<{ status: number; headers: Record<string, string>; body: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let error: string | undefined;
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => {
      const all = Buffer.concat(received).toString();
      const [head = '', ...rest] = all.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n'), ...(error !== undefined && { error }) });
    });
    socket.write(text);
  });
}

describe("Node's own refusals (431, bad Content-Length, malformed requests) are problem+json", () => {
  const post = (headers: string) => `POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${headers}\r\n{"input":"x"}`;
  const cases: Array<{ name: string; request: string; code: ErrorCode; pointer?: string }> = [
    { name: 'headers over maxHeaderSize → 431', request: `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, code: 'headers_too_large' },
    { name: 'Content-Length: abc → 400', request: post('content-length: abc\r\n'), code: 'invalid_request', pointer: '/content-length' },
    { name: 'two different Content-Lengths → 400', request: post('content-length: 13\r\ncontent-length: 14\r\n'), code: 'invalid_request', pointer: '/content-length' },
    {
      name: 'Content-Length beside Transfer-Encoding → 400',
      request: post('content-length: 13\r\ntransfer-encoding: chunked\r\n'),
      code: 'invalid_request',
      pointer: '/transfer-encoding',
    },
    { name: 'a malformed request line → 400', request: 'HELLO THERE\r\n\r\n', code: 'invalid_request' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const app = await newApp();
      const base = await listen(app);
      const res = await rawExchange(Number(new URL(base).port), c.request);
      expect(res.error).toBeUndefined();
      const body = expectProblem({ statusCode: res.status, headers: res.headers, body: res.body }, c.code);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers.connection).toBe('close');
      if (c.pointer) expect(body.errors).toEqual([expect.objectContaining({ in: 'headers', pointer: c.pointer })]);
      // The server goes on serving.
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    });
  }

  it('a 431 answered while the client is still sending a 4 MB body reaches it (the connection lingers, no EPIPE)', async () => {
    const app = await newApp();
    const base = await listen(app);
    const port = Number(new URL(base).port);
    for (let i = 0; i < 5; i++) {
      const head = `POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4000000\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`;
      const res = await rawExchange(port, head + 'x'.repeat(4_000_000));
      expect(res.error).toBeUndefined();
      expectProblem({ statusCode: res.status, headers: res.headers, body: res.body }, 'headers_too_large');
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Open SSE streams per user are capped (runtime.max_streams_per_user)
// ---------------------------------------------------------------------------------------------

describe('open SSE streams per user are capped', () => {
  async function cappedApp(cap: number): Promise<{ app: FastifyInstance; base: string }> {
    const app = await newApp({ runtime: { max_streams_per_user: cap }, workflows: { blocker: { type: 'blocker' } }, registry: { workflowTypes: [blockerType] } });
    return { app, base: await listen(app) };
  }

  /** A run that stays live until cancelled, of `user`. */
  async function liveRun(app: FastifyInstance, user: string): Promise<string> {
    const res = await app.inject({ method: 'POST', url: '/runs', headers: { 'x-user-id': user }, payload: { workflow: 'blocker', input: 'wait', background: true } });
    expect(res.statusCode).toBe(202);
    return res.json().id as string;
  }

  /** Opens a stream; resolves once its headers are in (the server counts it before sending them). */
  function stream(base: string, id: string, user: string, signal?: AbortSignal): Promise<Response> {
    return fetch(`${base}/runs/${id}/stream`, { headers: { 'x-user-id': user, accept: 'text/event-stream' }, ...(signal && { signal }) });
  }

  async function expectTooMany(res: Response): Promise<void> {
    const body = await res.text();
    expectProblem({ statusCode: res.status, headers: Object.fromEntries(res.headers), body }, 'rate_limited');
    expect(JSON.parse(body).detail).toMatch(/max_streams_per_user/);
    expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(res.headers.get('x-request-id')).toEqual(expect.any(String));
  }

  it('with cap 2: a third stream of the same user is 429; another user’s is fine; after one closes, a new one is accepted', async () => {
    const { app, base } = await cappedApp(2);
    const [a1, a2, b1] = [await liveRun(app, 'alice'), await liveRun(app, 'alice'), await liveRun(app, 'bob')];
    const first = await stream(base, a1, 'alice');
    const second = await stream(base, a2, 'alice');
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(first.headers.get('content-type')).toMatch(/^text\/event-stream/);

    await expectTooMany(await stream(base, a2, 'alice'));
    const bobs = await stream(base, b1, 'bob');
    expect(bobs.status).toBe(200);

    // The first stream ends with its run: read it to its end, then there is room again.
    expect((await app.inject({ method: 'POST', url: `/runs/${a1}/cancel`, headers: { 'x-user-id': 'alice' } })).statusCode).toBe(202);
    expect(await first.text()).toContain('event: run.cancelled');
    const again = await stream(base, a2, 'alice');
    expect(again.status).toBe(200);
    await expectTooMany(await stream(base, a2, 'alice'));

    for (const id of [a2]) await app.inject({ method: 'POST', url: `/runs/${id}/cancel`, headers: { 'x-user-id': 'alice' } });
    await app.inject({ method: 'POST', url: `/runs/${b1}/cancel`, headers: { 'x-user-id': 'bob' } });
    await Promise.all([second.text(), again.text(), bobs.text()]);
  });

  it('a stream whose client goes away frees its place', async () => {
    const { app, base } = await cappedApp(1);
    const run = await liveRun(app, 'carol');
    const leaving = new AbortController();
    const gone = await stream(base, run, 'carol', leaving.signal);
    expect(gone.status).toBe(200);
    await expectTooMany(await stream(base, run, 'carol'));
    leaving.abort();
    // No event tells the client when the server has seen it leave: poll the count (no timing assertion).
    await waitFor(() => app.streamQuota.count('carol') === 0, 'the stream released');
    const next = await stream(base, run, 'carol');
    expect(next.status).toBe(200);
    await app.inject({ method: 'POST', url: `/runs/${run}/cancel`, headers: { 'x-user-id': 'carol' } });
    await next.text();
  });

  it('POST /runs asking for a stream is refused the same way at the cap', async () => {
    const { app, base } = await cappedApp(1);
    const run = await liveRun(app, 'frank');
    const open = await stream(base, run, 'frank');
    expect(open.status).toBe(200);
    const refused = await fetch(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-user-id': 'frank' },
      body: JSON.stringify({ input: 'hi' }),
    });
    await expectTooMany(refused);
    // Refused before the run was made: nothing is left running for the refused stream.
    expect((await app.runtime.session({ userId: 'frank' }).list({ limit: 10 })).data.map((r) => r.id)).toEqual([run]);
    await app.inject({ method: 'POST', url: `/runs/${run}/cancel`, headers: { 'x-user-id': 'frank' } });
    await open.text();
  });

  it('concurrent streaming POST /runs at the cap: one streams, the others are 429 and leave no run behind', async () => {
    const { app, base } = await cappedApp(1);
    const post = () =>
      fetch(`${base}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-user-id': 'gina' },
        body: JSON.stringify({ workflow: 'blocker', input: 'hold' }),
      });
    const answers = await Promise.all([post(), post(), post(), post(), post()]);
    expect(answers.map((r) => r.status).sort()).toEqual([200, 429, 429, 429, 429]);
    const runs = (await app.runtime.session({ userId: 'gina' }).list({ limit: 10 })).data;
    expect(runs).toHaveLength(1);
    await app.inject({ method: 'POST', url: `/runs/${runs[0]!.id}/cancel`, headers: { 'x-user-id': 'gina' } });
    await Promise.all(answers.map((r) => r.text()));
  });

  it('the runs streams and the /v1 streams count together', async () => {
    const { app, base } = await cappedApp(1);
    const run = await liveRun(app, 'dave');
    const open = await stream(base, run, 'dave');
    expect(open.status).toBe(200);
    const v1 = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'dave' },
      body: JSON.stringify({ model: 'echo', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(v1.status).toBe(429);
    expect(v1.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(((await v1.json()) as { error: unknown }).error).toMatchObject({ code: 'rate_limited', type: 'rate_limit_error' });
    // Another user streams on /v1 meanwhile.
    const other = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'erin' },
      body: JSON.stringify({ model: 'echo', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(other.status).toBe(200);
    expect(await other.text()).toContain('data: [DONE]');
    await app.inject({ method: 'POST', url: `/runs/${run}/cancel`, headers: { 'x-user-id': 'dave' } });
    await open.text();
  });

  it('0 means no cap; the default is 32; RUNWAY_MAX_STREAMS_PER_USER sets it and is validated', async () => {
    const app = await newApp({ runtime: { max_streams_per_user: 0 } });
    expect(app.streamQuota.maxPerUser).toBe(0);
    expect(RuntimeConfigSchema.parse({}).max_streams_per_user).toBe(32);
    // From the environment, over the shipped config file (the tests run in the repository).
    expect(loadConfig({ RUNWAY_MAX_STREAMS_PER_USER: '5' }).runtime.max_streams_per_user).toBe(5);
    expect(loadConfig({ RUNWAY_MAX_STREAMS_PER_USER: '0' }).runtime.max_streams_per_user).toBe(0);
    for (const bad of ['-1', '1.5', 'many']) {
      let thrown: unknown;
      try {
        loadConfig({ RUNWAY_MAX_STREAMS_PER_USER: bad });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ConfigError);
      expect((thrown as Error).message).toContain('runtime.max_streams_per_user');
      expect((thrown as Error).message).toContain('RUNWAY_MAX_STREAMS_PER_USER');
    }
    expect(ENV_OVERRIDES).toContainEqual(['RUNWAY_MAX_STREAMS_PER_USER', ['runtime', 'max_streams_per_user']]);
  });
});

describe('LingeringClose is bounded', () => {
  /** A bare server refusing every request at once with a 413, as the JSON parser does, lingering with `limits`. */
  async function refusingServer(limits: LingerLimits): Promise<{ port: number; lingering: LingeringClose; server: Server }> {
    const lingering = new LingeringClose(limits);
    const server = createServer((req, res) => {
      lingering.afterAnswer(req);
      res.writeHead(413, { connection: 'close', 'content-length': '2' }).end('no');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { port: (server.address() as AddressInfo).port, lingering, server };
  }

  function closeServer(server: Server): Promise<void> {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  it('a client that never stops sending is cut once the byte budget is spent, after reading its answer', async () => {
    const { port, lingering, server } = await refusingServer({ maxBytes: 256 * 1024, maxMs: 60_000 });
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', () => {});
    socket.write('POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n');
    const chunk = `10000\r\n${'x'.repeat(0x10000)}\r\n`;
    let stop = false;
    const pump = (): void => {
      while (!stop && socket.write(chunk));
      if (!stop) socket.once('drain', pump);
    };
    pump();
    await new Promise((resolve) => socket.once('close', resolve));
    stop = true;
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(lingering.has(socket)).toBe(false);
    await closeServer(server);
  });

  it('a client that neither sends nor closes is cut at the deadline', async () => {
    const { port, server } = await refusingServer({ maxBytes: 1024 * 1024, maxMs: 50 });
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    // Half the promised body, then silence: only the deadline ends this connection.
    socket.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n' + 'x'.repeat(50));
    await new Promise((resolve) => socket.once('close', resolve));
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    await closeServer(server);
  });

  it("the app's close ends lingering connections rather than waiting for them", async () => {
    // Lingering far longer than the test may run: only the close can end these connections.
    const app = await buildApp({
      config: { server: { log_level: 'silent', body_limit_bytes: 1024 }, runtime: { shutdown_grace_ms: 0 } },
      linger: { maxBytes: 1024 * 1024, maxMs: 3_600_000 },
    });
    const port = Number(new URL(await listen(app)).port);
    const serverSides: Array<Promise<unknown>> = [];
    app.server.on('connection', (socket: Socket) => serverSides.push(new Promise((resolve) => socket.once('close', resolve))));
    /** A client that reads its answer, then keeps its side open (no FIN back) and sends nothing more. */
    const client = async (request: string): Promise<void> => {
      const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      socket.on('error', () => {});
      const answered = new Promise((resolve) => socket.once('data', resolve));
      socket.write(request);
      await answered;
    };
    // Refused at once by the JSON parser (declared too large; the body never comes), and by Node's parser (431).
    await client('POST /runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{"input":');
    await client(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(serverSides).toHaveLength(2);
    // Without the close ending them, the server would wait on the first one for the hour.
    await app.close();
    await Promise.all(serverSides);
  });
});
