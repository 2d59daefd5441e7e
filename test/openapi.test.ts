import SwaggerParser from '@apidevtools/swagger-parser';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ERROR_CODES } from '../src/core/errors.js';

const KEY = 'docs-test-key-0123456789abcdef';
const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/** Every (method, path) the app routes, from `printRoutes` (Fastify has no route list API). */
function appRoutes(app: FastifyInstance): Array<{ method: string; path: string }> {
  const out: Array<{ method: string; path: string }> = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│├└─\s]*)(\S.*?)(?: \(([^)]*)\))?$/.exec(line);
    if (!m || line.trim() === '') continue;
    // Each level of the tree is four characters wide ("│   ", then "├── ").
    stack.length = Math.max(0, m[1]!.length / 4 - 1);
    stack.push(m[2]!);
    if (m[3] === undefined) continue;
    const path = stack.join('');
    for (const method of m[3].split(',')) out.push({ method: method.trim(), path: path.startsWith('/') ? path : `/${path}` });
  }
  return out;
}

/** `/runs/:id` → `/runs/{id}`, as OpenAPI writes paths. */
const openapiPath = (path: string) => path.replace(/:([A-Za-z_]+)/g, '{$1}');
/** Where the documentation itself lives: served, but not part of the API it documents. */
const isDocsRoute = (path: string) => path === '/openapi.json' || path === '/docs' || path.startsWith('/docs/');

describe('OpenAPI document and Swagger UI', () => {
  let app: FastifyInstance;
  let doc: any;

  beforeAll(async () => {
    // API keys on: the documentation routes must stay public.
    app = await buildApp({
      config: {
        server: { log_level: 'silent' },
        auth: { api_keys: [{ key: KEY, user: 'alice' }] },
        workflows: { echo: { type: 'echo', token_delay_ms: 0 } },
      },
    });
    await app.ready();
    const res = await app.inject({ url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    doc = res.json();
  });
  afterAll(async () => {
    await app.close();
  });

  it('validates as an OpenAPI 3.1 document, $refs resolved', async () => {
    expect(doc.openapi).toBe('3.1.0');
    // validate() dereferences in place: give it a copy.
    await expect(SwaggerParser.validate(structuredClone(doc))).resolves.toBeTruthy();
    expect(doc.info).toMatchObject({ title: 'Runway', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it('the validator does reject a broken document (so the check above means something)', async () => {
    const broken = structuredClone(doc);
    broken.paths['/runs'].post.responses['200'].content['application/json'].schema = { $ref: '#/components/schemas/Nope' };
    await expect(SwaggerParser.validate(broken)).rejects.toThrow(/Nope/);
  });

  it('lists every route the app has, and only those', () => {
    const routes = appRoutes(app).filter((r) => r.method !== 'HEAD' && !isDocsRoute(r.path));
    // The parse found the app's routes (a broken parser would make this test vacuous).
    expect(routes).toEqual(expect.arrayContaining([{ method: 'POST', path: '/runs' }, { method: 'GET', path: '/runs/:id/stream' }]));
    expect(routes.length).toBeGreaterThanOrEqual(14);

    const documented = Object.entries<Record<string, unknown>>(doc.paths).flatMap(([path, ops]) =>
      METHODS.filter((m) => ops[m] !== undefined).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual(routes.map((r) => `${r.method} ${openapiPath(r.path)}`).sort());
  });

  it('documents request bodies and parameters from the zod schemas that validate them', () => {
    const body = doc.paths['/runs'].post.requestBody.content['application/json'].schema;
    expect(body).toMatchObject({
      type: 'object',
      required: ['input'],
      additionalProperties: false,
      properties: { on_disconnect: { enum: ['cancel', 'continue'] }, timeout_ms: { type: 'integer', minimum: 1 } },
    });
    const list = doc.paths['/runs'].get.parameters;
    expect(list).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ in: 'query', name: 'limit', schema: expect.objectContaining({ minimum: 1, maximum: 100 }) }),
        expect.objectContaining({ in: 'query', name: 'status' }),
      ]),
    );
    expect(doc.paths['/runs/{id}'].get.parameters).toEqual([expect.objectContaining({ in: 'path', name: 'id', required: true })]);
  });

  it('responses reference the shared Run schema as a component', () => {
    expect(doc.components.schemas.Run.required).toEqual(expect.arrayContaining(['id', 'status', 'usage', 'last_event_id']));
    expect(doc.paths['/runs/{id}'].get.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Run' });
    expect(doc.paths['/runs'].get.responses['200'].content['application/json'].schema.properties.data.items).toEqual({
      $ref: '#/components/schemas/Run',
    });
    expect(doc.paths['/runs'].post.responses['202'].headers.location).toBeDefined();
    expect(Object.keys(doc.paths['/runs/{id}/stream'].get.responses['200'].content)).toEqual(['text/event-stream']);
  });

  it('every operation documents a success and its errors; Runway routes as problem+json', () => {
    const codes = new Set(Object.keys(ERROR_CODES));
    for (const [path, ops] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const method of METHODS) {
        const op = ops[method];
        if (op === undefined) continue;
        const statuses = Object.keys(op.responses);
        expect(statuses.some((s) => s.startsWith('2')), `${method} ${path} success`).toBe(true);
        expect(statuses.some((s) => /^[45]/.test(s)), `${method} ${path} errors`).toBe(true);
        for (const status of statuses.filter((s) => /^[45]\d\d$/.test(s))) {
          const response = op.responses[status];
          expect(response.content['application/problem+json'].schema, `${method} ${path} ${status}`).toEqual({
            $ref: '#/components/schemas/Problem',
          });
          // The description names the stable codes that status carries.
          const named = [...response.description.matchAll(/(?:^|; )`([a-z_]+)`:/g)].map((m) => m[1]);
          expect(named.length, `${method} ${path} ${status}`).toBeGreaterThan(0);
          for (const code of named) expect(codes.has(code!), code).toBe(true);
        }
      }
    }
    expect(doc.components.schemas.Problem.required).toEqual(['type', 'title', 'status', 'detail', 'code']);
    const create = doc.paths['/runs'].post.responses;
    expect(create['429'].description).toContain('queue_full');
    expect(create['503'].description).toContain('queue_timeout');
    expect(create['503'].headers['retry-after']).toBeDefined();
    expect(doc.paths['/runs/{id}'].get.responses['404']).toBeDefined();
    // Public routes need no key: no 401 and no security requirement.
    expect(doc.paths['/healthz'].get.responses['401']).toBeUndefined();
    expect(doc.paths['/healthz'].get.security).toBeUndefined();
    expect(doc.paths['/runs/{id}'].get.security).toEqual([{ bearerAuth: [] }, {}]);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('the document matches what the server answers', async () => {
    const res = await app.inject({ url: '/runs/nope', headers: { authorization: `Bearer ${KEY}` } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const required: string[] = doc.components.schemas.Problem.required;
    for (const field of required) expect(res.json()).toHaveProperty(field);
    expect(doc.components.schemas.Problem.properties.code.enum).toContain(res.json().code);
  });

  it('serves Swagger UI at /docs, public even with API keys on', async () => {
    const page = await app.inject({ url: '/docs' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('swagger-ui');
    // The UI loads the same document.
    const json = await app.inject({ url: '/docs/json' });
    expect(json.statusCode).toBe(200);
    expect(json.json().paths).toEqual(doc.paths);
    // …while the API itself does need a key.
    expect((await app.inject({ url: '/runs' })).statusCode).toBe(401);
  });
});
