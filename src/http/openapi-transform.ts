import type { RouteOptions } from 'fastify';
import { EVENT_TYPES } from '../core/events.js';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { ERROR_CODES, type ErrorCode } from '../core/errors.js';

/**
 * How the OpenAPI document is made from the routes (see openapi-plugin): request schemas are the
 * zod schemas that validate requests, converted by fastify-type-provider-zod; responses are the
 * routes' own JSON Schemas (what fast-json-stringify serializes with); and every operation gets
 * the problem+json error answers it can give, so no route has to list them twice.
 */

type Schema = Record<string, unknown>;
type TransformInput = Parameters<typeof jsonSchemaTransform>[0];

/** A problem+json answer (RFC 9457), as `sendProblem` writes it. */
export const PROBLEM_SCHEMA_ID = 'Problem';
export const ProblemComponent = {
  type: 'object',
  description: 'An RFC 9457 problem document; `code` is stable and machine-readable.',
  properties: {
    type: { type: 'string', examples: ['urn:runway:problem:not_found'] },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string', enum: Object.keys(ERROR_CODES) },
    errors: {
      type: 'array',
      description: 'Which parts of the request were wrong (invalid_request).',
      items: {
        type: 'object',
        properties: {
          in: { type: 'string', enum: ['body', 'querystring', 'params', 'headers'] },
          pointer: { type: 'string', description: 'JSON Pointer into that part' },
          message: { type: 'string' },
        },
        required: ['in', 'pointer', 'message'],
      },
    },
    run_id: { type: 'string', description: 'The run the error is about, when one was created.' },
  },
  required: ['type', 'title', 'status', 'detail', 'code'],
} as const;

/** Why a code happens, in the words the document shows. */
const WHY: Record<ErrorCode, string> = {
  invalid_request: 'the request does not validate (see `errors`)',
  unauthorized: 'no valid API key (only when `RUNWAY_API_KEYS` is set)',
  forbidden: 'the path is not one that may be served (static files)',
  not_found: 'no such resource for this caller',
  request_timeout: 'the client took too long to send its request',
  conflict: 'the run already finished, or was cancelled before it did',
  precondition_failed: 'a conditional header (`If-Match`…) does not hold (static files)',
  payload_too_large: 'the body is over the size limit',
  unsupported_media_type: 'the body is not `application/json`, or is compressed (`Content-Encoding`)',
  range_not_satisfiable: 'no part of the `Range` lies within the file (static files)',
  queue_full: 'the run queue is full; retry after `Retry-After`',
  rate_limited:
    "the caller's request rate, or its open event streams (`max_streams_per_user`), is over the limit; retry after `Retry-After`",
  headers_too_large: 'the request line and headers are over the size limit',
  internal: 'an unexpected server error',
  upstream_error: 'the LLM upstream failed',
  unavailable: 'the store cannot be reached; retry after `Retry-After`',
  queue_timeout: 'no run slot became free in time; retry after `Retry-After`',
  shutting_down: 'the server is draining; retry after `Retry-After` (elsewhere)',
  run_timeout: 'the run exceeded its time limit',
  worker_lost: 'on Redis: the worker executing the run died; the run is not executed again',
};

/** Error codes a route answers with beyond those inferred from its shape (see `errorCodes`). */
const ROUTE_ERRORS: Record<string, readonly ErrorCode[]> = {
  'POST /runs': ['conflict', 'queue_full', 'upstream_error', 'queue_timeout', 'shutting_down', 'run_timeout'],
  'POST /runs/:id/cancel': ['conflict'],
};

/** Summaries and tags of the known routes; a route missing here is still documented. */
const ROUTE_DOCS: Record<string, { summary: string; description?: string; tags: string[] }> = {
  'POST /runs': {
    summary: 'Create a run',
    description:
      'Blocks and answers `200` with the Run once it succeeded (a failed run answers with its problem code and `run_id`). ' +
      '`background: true` answers `202` at once with `Location: /runs/{id}`. With `Accept: text/event-stream` the ' +
      "response is the run's event stream (as `GET /runs/{id}/stream`).",
    tags: ['runs'],
  },
  'GET /runs': { summary: "List the caller's runs, newest first", tags: ['runs'] },
  'GET /runs/:id': { summary: 'Get a run', tags: ['runs'] },
  'GET /runs/:id/stream': {
    summary: "Follow a run's events (Server-Sent Events)",
    description:
      'Replays the events after `Last-Event-ID` (header) or `?after=N`, then follows live and closes after the terminal ' +
      `event. Frames: \`id: N\`, \`event: ${EVENT_TYPES.join('|')}\`, ` +
      '`data: {id, run_id, type, time, data}`. `204` when `Last-Event-ID` is already the terminal event.',
    tags: ['runs'],
  },
  'POST /runs/:id/cancel': { summary: 'Cancel a queued or running run', tags: ['runs'] },
  'GET /workflows': { summary: 'List the workflows', tags: ['workflows'] },
  'GET /workflows/:name': { summary: 'Get a workflow and the JSON Schema of its input', tags: ['workflows'] },
  'GET /conversations/:id': { summary: "Get a conversation's messages", tags: ['conversations'] },
  'DELETE /conversations/:id': { summary: 'Forget a conversation', tags: ['conversations'] },
  'GET /v1/models': { summary: 'OpenAI-compatible: list the workflows as models', tags: ['openai'] },
  'GET /v1/models/:model': { summary: 'OpenAI-compatible: get a workflow as a model', tags: ['openai'] },
  'POST /v1/chat/completions': {
    summary: 'OpenAI-compatible chat completion (model = workflow)',
    description: 'With `stream: true` the answer is `text/event-stream` with `chat.completion.chunk` frames and `data: [DONE]`.',
    tags: ['openai'],
  },
  'GET /healthz': { summary: 'Liveness', tags: ['operations'] },
  'GET /readyz': { summary: 'Readiness: false while draining or when the store is unreachable', tags: ['operations'] },
  'GET /metrics': { summary: 'Prometheus metrics', tags: ['operations'] },
  'GET /': { summary: 'The playground page', tags: ['operations'] },
};

/** Extra success answers routes give outside their serialized schema (streams, empty bodies). */
const ROUTE_SUCCESS: Record<string, Record<string, Schema>> = {
  'POST /runs': {
    200: { content: { 'text/event-stream': { schema: { type: 'string', description: 'With `Accept: text/event-stream`' } } } },
    202: { description: 'Accepted (`background: true`): the run as it is at that instant (usually `queued`; a fast workflow may already be `running` or finished): follow `Location` or its stream', headers: { location: { type: 'string', description: '`/runs/{id}`' } } },
  },
  'GET /runs/:id/stream': {
    200: { description: 'The event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
    204: { description: 'The client already has the terminal event', type: 'null' },
  },
  'DELETE /conversations/:id': { 204: { description: 'Forgotten', type: 'null' } },
  'POST /runs/:id/cancel': { 202: { description: 'Accepted: the run as it ended (cancelled, or finished meanwhile)' } },
  'GET /readyz': {
    503: {
      description: '`shutting_down`: the server is draining; `internal`: the store is unreachable',
      content: { 'application/problem+json': { schema: { $ref: `${PROBLEM_SCHEMA_ID}#` } } },
    },
  },
  'POST /v1/chat/completions': {
    200: { content: { 'text/event-stream': { schema: { type: 'string', description: 'With `stream: true`' } } } },
  },
};

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

function routeKey(route: RouteOptions): string {
  const method = Array.isArray(route.method) ? route.method.join(',') : route.method;
  return `${method} ${route.url}`;
}

/** The problem codes a route can answer with: inferred from its shape, plus ROUTE_ERRORS. */
export function errorCodes(route: RouteOptions, schema: Schema | undefined): ErrorCode[] {
  const codes = new Set<ErrorCode>();
  const isPublic = route.config?.public === true;
  const validates = schema !== undefined && ['body', 'querystring', 'params', 'headers'].some((k) => schema[k] !== undefined);
  // Non-public routes check X-User-Id (400) or the API key (401) and count against the rate limit.
  if (!isPublic || validates) codes.add('invalid_request');
  if (!isPublic) codes.add('unauthorized');
  if (route.url.includes(':')) codes.add('not_found');
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  if (methods.some((m) => BODY_METHODS.has(m)) && schema?.body !== undefined) {
    codes.add('payload_too_large');
    codes.add('unsupported_media_type');
  }
  if (!isPublic) codes.add('rate_limited');
  for (const code of ROUTE_ERRORS[routeKey(route)] ?? []) codes.add(code);
  codes.add('internal');
  return [...codes].sort((a, b) => ERROR_CODES[a].status - ERROR_CODES[b].status);
}

/** `{404: {description, content: problem+json}}` for the codes, grouped by status. */
export function problemResponses(codes: readonly ErrorCode[]): Record<string, Schema> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Schema> = {};
  for (const [status, group] of byStatus) {
    out[status] = {
      description: group.map((code) => `\`${code}\`: ${WHY[code]}`).join('; '),
      content: { 'application/problem+json': { schema: { $ref: `${PROBLEM_SCHEMA_ID}#` } } },
      ...(group.some((code) => ERROR_CODES[code].status === 429 || ERROR_CODES[code].status === 503) && {
        headers: { 'retry-after': { type: 'integer', description: 'Seconds to wait before retrying' } },
      }),
    };
  }
  return out;
}

function withoutDescription(schema: Schema): Schema {
  const { description: _description, ...rest } = schema;
  return rest;
}

function isZod(schema: unknown): boolean {
  return typeof schema === 'object' && schema !== null && '_zod' in schema;
}

function hasErrorResponses(response: Schema): boolean {
  return Object.keys(response).some((status) => /^[45]/.test(status));
}

/**
 * `@fastify/swagger`'s `transform`: zod request schemas through fastify-type-provider-zod, JSON
 * Schema responses as they are, plus documented successes (streams, 204s) and error answers.
 */
export function transformRoute(input: TransformInput): { schema: Schema; url: string } {
  const schema = input.schema as Schema | undefined;
  const route = input.route as RouteOptions;
  if (schema?.hide) return { schema: { hide: true }, url: input.url };
  const { response, ...request } = (schema ?? {}) as Schema & { response?: Schema };

  // Requests: the zod schemas that validate them (fastify-type-provider-zod refuses JSON Schema
  // responses, so only the request parts go through it, plus any zod response).
  const zodResponses = Object.fromEntries(Object.entries(response ?? {}).filter(([, s]) => isZod(s)));
  const converted = jsonSchemaTransform({
    ...input,
    schema: { ...request, ...(Object.keys(zodResponses).length > 0 && { response: zodResponses }) },
  } as TransformInput).schema as Schema;

  const key = routeKey(route);
  const responses: Record<string, Schema> = {};
  for (const [status, s] of Object.entries(response ?? {})) {
    responses[status] = isZod(s) ? ((converted.response as Schema)[status] as Schema) : described(status, s as Schema);
  }
  for (const [status, extra] of Object.entries(ROUTE_SUCCESS[key] ?? {})) {
    responses[status] = mergeSuccess(responses[status], extra);
  }
  if (Object.keys(responses).every((s) => !/^2/.test(s))) {
    responses['200'] = { description: 'OK', content: { 'application/json': { schema: { type: 'object' } } } };
  }
  // Routes that document their own errors (the OpenAI facade, in OpenAI's error shape) keep them.
  if (!hasErrorResponses(response ?? {})) {
    for (const [status, problem] of Object.entries(problemResponses(errorCodes(route, schema)))) responses[status] ??= problem;
  }

  const docs = ROUTE_DOCS[key];
  const out: Schema = { ...converted, response: responses };
  if (docs !== undefined) {
    out.summary ??= docs.summary;
    if (docs.description !== undefined) out.description ??= docs.description;
    out.tags ??= docs.tags;
  }
  if (route.config?.public !== true) out.security = [{ bearerAuth: [] }, {}];
  return { schema: out, url: input.url };
}

const STATUS_TEXT: Record<string, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', '4xx': 'Client error', '5xx': 'Server error' };

/** A JSON response schema as a described response (its schema as it is, for the JSON body). */
function described(status: string, schema: Schema): Schema {
  if (schema.description !== undefined || schema.content !== undefined) return schema;
  const description = STATUS_TEXT[status.toLowerCase()] ?? (/^2/.test(status) ? 'OK' : 'Error');
  return { description, content: { 'application/json': { schema } } };
}

/** A route's JSON success schema with extra content types or headers documented beside it. */
function mergeSuccess(existing: Schema | undefined, extra: Schema): Schema {
  if (existing === undefined) return extra;
  // `existing` is a described response (see `described`) or a schema with its own description.
  const existingContent =
    (existing.content as Record<string, unknown> | undefined) ?? { 'application/json': { schema: withoutDescription(existing) } };
  return {
    description: (extra.description as string | undefined) ?? (existing.description as string | undefined) ?? 'OK',
    content: { ...existingContent, ...(extra.content as Record<string, unknown> | undefined) },
    ...(extra.headers !== undefined && { headers: extra.headers }),
  };
}
