import type { FastifyServerOptions } from 'fastify';

/**
 * Where credentials can sit in a log line: the `Authorization` header (API keys) of a request
 * logged whole (under `req` or `request`), its headers, or the header on its own.
 */
export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'request.headers.authorization',
  'headers.authorization',
  'authorization',
] as const;

export const REDACTED = '[redacted]';

/**
 * The Fastify logger option with the redaction of `REDACTED_LOG_PATHS` added (kept when the caller
 * gave its own `redact`). `false` stays off.
 */
export function withRedaction(logger: FastifyServerOptions['logger'], level: string): FastifyServerOptions['logger'] {
  if (logger === false || logger === undefined) return logger;
  const base = logger === true ? { level } : logger;
  if (base.redact !== undefined) return base;
  return { ...base, redact: { paths: [...REDACTED_LOG_PATHS], censor: REDACTED } };
}
