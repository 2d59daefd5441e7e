import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, RunwayError, type ErrorCode, type FieldError } from '../core/errors.js';
import { problem } from './problem.js';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_EMPTY_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported_media_type',
  FST_ERR_BAD_URL: 'invalid_request',
  FST_ERR_MAX_PARAM_LENGTH: 'invalid_request',
};

/**
 * The code for a 4xx a library raised (`statusCode`, or `status` as http-errors also sets): static
 * files (403 forbidden path, 412 `If-Match`, 416 `Range`, 400 bad path), Node, plugins. A 4xx
 * with no code of its own is the nearest one, `invalid_request`: a client's fault is never
 * answered (or logged) as the server's.
 */
const BY_STATUS: Record<number, ErrorCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  408: 'request_timeout',
  409: 'conflict',
  412: 'precondition_failed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  416: 'range_not_satisfiable',
  429: 'rate_limited',
  431: 'headers_too_large',
};

/** Headers a library's 4xx carries that belong on our answer too (a 416 says the file's length). */
const PASSED_HEADERS = ['content-range', 'allow'] as const;

interface LibraryError {
  code?: unknown;
  statusCode?: unknown;
  status?: unknown;
  message?: unknown;
  expose?: unknown;
  headers?: unknown;
}

/** The 4xx status a library error carries, if it carries one. */
function clientStatus(err: LibraryError): number | undefined {
  const status = typeof err.statusCode === 'number' ? err.statusCode : err.status;
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 499 ? status : undefined;
}

interface ValidationItem {
  keyword?: string;
  instancePath?: string;
  message?: string;
  params?: { keys?: unknown };
}

function validationErrors(err: FastifyError): FieldError[] {
  const where = (err.validationContext ?? 'body') as FieldError['in'];
  return (err.validation as ValidationItem[]).flatMap((item) => {
    const base = item.instancePath && item.instancePath !== '/' ? item.instancePath : '';
    // Point at each unknown field itself rather than at the object that holds it.
    if (item.keyword === 'unrecognized_keys' && Array.isArray(item.params?.keys)) {
      return item.params.keys.map((key) => ({ in: where, pointer: `${base}/${String(key)}`, message: 'Unknown field' }));
    }
    return [{ in: where, pointer: base || '/', message: item.message ?? 'Invalid value' }];
  });
}

/** Sends a problem+json answer; `Retry-After` when the error says when to come back. */
export function sendProblem(reply: FastifyReply, error: RunwayError): FastifyReply {
  if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
  const body = problem(error.code, error.message, {
    ...(error.errors && { errors: error.errors }),
    ...(error.runId && { runId: error.runId }),
  });
  return reply.code(body.status).type('application/problem+json').send(body);
}

/**
 * The one place errors become HTTP answers: RunwayErrors keep their code, Fastify's own errors
 * (validation, body limit, media type, malformed JSON) are mapped to the table, any other error
 * with a 4xx status (a library's: static files, Node) keeps its status as the matching code (or
 * `invalid_request`), and anything else is `internal` with its details kept in the log.
 */
export function toRunwayError(err: unknown, request: FastifyRequest): RunwayError {
  if (err instanceof RunwayError) return err;
  const fe = err as FastifyError;
  if (Array.isArray(fe.validation)) {
    const where = fe.validationContext ?? 'body';
    return new RunwayError('invalid_request', `The request ${where} is invalid`, { errors: validationErrors(fe) });
  }
  const known = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  const status = known === undefined && typeof err === 'object' && err !== null ? clientStatus(err as LibraryError) : undefined;
  const code = known ?? (status === undefined ? undefined : (BY_STATUS[status] ?? 'invalid_request'));
  if (code === undefined) return new RunwayError('internal', 'Internal server error', { cause: err });
  if (code === 'payload_too_large') return new RunwayError(code, 'The request body is larger than the server accepts', { cause: err });
  if (code === 'unsupported_media_type' && known !== undefined) {
    return new RunwayError(code, `Unsupported content type ${JSON.stringify(request.headers['content-type'] ?? '')}: send application/json`, { cause: err });
  }
  return new RunwayError(code, libraryDetail(err as LibraryError, code), { cause: err });
}

/** A library's own message when it is meant for clients (http-errors' `expose`), else the code's title. */
function libraryDetail(err: LibraryError, code: ErrorCode): string {
  const message = typeof err.message === 'string' ? err.message.trim() : '';
  return message !== '' && err.expose !== false ? message : ERROR_CODES[code].title;
}

/** Copies the headers of PASSED_HEADERS a library error carries (http-errors' `headers`) onto the reply. */
function passHeaders(err: unknown, reply: FastifyReply): void {
  const headers = (err as LibraryError | null)?.headers;
  if (typeof headers !== 'object' || headers === null) return;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if ((PASSED_HEADERS as readonly string[]).includes(lower) && typeof value === 'string') reply.header(lower, value);
  }
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const error = toRunwayError(err, request);
    if (error.status >= 500 && error.code === 'internal') {
      request.log.error({ err }, 'request failed');
    } else if (error !== err && error.status < 500) {
      // A client's mistake a library or Fastify noticed: worth a line when debugging, never an alert.
      request.log.debug({ err }, 'request refused');
    }
    if (reply.sent || reply.raw.headersSent) return;
    if (error !== err) passHeaders(err, reply);
    return sendProblem(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, new RunwayError('not_found', `Route ${request.method} ${request.url.split('?')[0]} does not exist`)),
  );
}
