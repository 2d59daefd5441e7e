import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RunwayError, type ErrorCode, type FieldError } from '../core/errors.js';
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

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
};

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
 * (validation, body limit, media type, malformed JSON) are mapped to the table, anything else is
 * `internal` with its details kept in the log.
 */
export function toRunwayError(err: unknown, request: FastifyRequest): RunwayError {
  if (err instanceof RunwayError) return err;
  const fe = err as FastifyError;
  if (Array.isArray(fe.validation)) {
    const where = fe.validationContext ?? 'body';
    return new RunwayError('invalid_request', `The request ${where} is invalid`, { errors: validationErrors(fe) });
  }
  const code = (fe.code && FASTIFY_CODES[fe.code]) ?? (fe.statusCode && fe.statusCode < 500 ? BY_STATUS[fe.statusCode] : undefined);
  if (code) {
    const detail =
      code === 'payload_too_large'
        ? 'The request body is larger than the server accepts'
        : code === 'unsupported_media_type'
          ? `Unsupported content type ${JSON.stringify(request.headers['content-type'] ?? '')}: send application/json`
          : fe.message;
    return new RunwayError(code, detail);
  }
  return new RunwayError('internal', 'Internal server error', { cause: err });
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const error = toRunwayError(err, request);
    if (error.status >= 500 && error.code === 'internal') {
      request.log.error({ err }, 'request failed');
    }
    if (reply.sent || reply.raw.headersSent) return;
    return sendProblem(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, new RunwayError('not_found', `Route ${request.method} ${request.url.split('?')[0]} does not exist`)),
  );
}
