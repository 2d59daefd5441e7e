import type { FastifyInstance, FastifyReply } from 'fastify';
import { RunwayError, type FieldError } from '../src/core/errors.js';
import { toRunwayError } from '../src/http/error-handler.js';

/** `{error: {message, type, param, code}}`: how OpenAI answers errors, which its SDKs parse. */
export interface OpenAiError {
  error: { message: string; type: string; param: string | null; code: string };
}

/** OpenAI's `type` for an HTTP status. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** `/messages/0/content` → `messages[0].content`, the way OpenAI names a parameter. */
export function paramOf(field: FieldError | undefined): string | null {
  if (field === undefined || (field.in !== 'body' && field.in !== 'params') || field.pointer === '/') return null;
  let out = '';
  for (const part of field.pointer.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(key) ? `[${key}]` : out === '' ? key : `.${key}`;
  }
  return out;
}

/**
 * The OpenAI error body for a RunwayError. `code` keeps Runway's stable code (`invalid_request`,
 * `not_found`, `queue_full`…); field errors are folded into the message, the first one as `param`.
 */
export function openAiError(error: RunwayError): OpenAiError {
  const fields = error.errors ?? [];
  let message = error.message;
  // Field messages the main message already says (the route's own errors) are not repeated.
  const details = fields.filter((f) => !message.includes(f.message));
  if (details.length > 0) {
    message += ` (${details.map((f) => (paramOf(f) !== null ? `${paramOf(f)}: ${f.message}` : f.message)).join('; ')})`;
  }
  return { error: { message, type: errorType(error.status), param: paramOf(fields[0]), code: error.code } };
}

/**
 * A run that ran and failed (or was cancelled) must not be started again by an SDK's automatic
 * retry (OpenAI's SDKs retry 409 and 5xx unless told `x-should-retry: false`); a run that never got
 * to run (queue timeout, shutdown) may be, like any admission refusal.
 */
const RETRYABLE_OUTCOMES: ReadonlySet<string> = new Set(['queue_timeout', 'shutting_down']);

export function sendOpenAiError(reply: FastifyReply, error: RunwayError): FastifyReply {
  if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
  if (error.runId !== undefined && !RETRYABLE_OUTCOMES.has(error.code)) reply.header('x-should-retry', 'false');
  return reply.code(error.status).type('application/json; charset=utf-8').send(openAiError(error));
}

/** Errors (validation, media type, body size, unknown routes) on these routes in OpenAI's shape. */
export function installOpenAiErrors(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const error = toRunwayError(err, request);
    if (error.status >= 500 && error.code === 'internal') request.log.error({ err }, 'request failed');
    if (reply.sent || reply.raw.headersSent) return;
    return sendOpenAiError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendOpenAiError(reply, new RunwayError('not_found', `Route ${request.method} ${request.url.split('?')[0]} does not exist`)),
  );
}
