import { RunwayError } from '../core/errors.js';

/**
 * An `upstream_error` that also remembers what the upstream said, so the retry loop can decide
 * and logs can tell a 429 from a reset. To the HTTP layer it is an ordinary `RunwayError` (502).
 *
 * @example
 *   throw new UpstreamError('LLM "default": upstream answered HTTP 503: overloaded', { upstreamStatus: 503, retryable: true })
 */
export class UpstreamError extends RunwayError {
  /** The upstream's HTTP status, when it answered with one. */
  readonly upstreamStatus: number | undefined;
  /** Whether another attempt could succeed (429, 5xx, connection failures, timeouts). */
  readonly retryable: boolean;
  /** The wait the upstream asked for (Retry-After), in ms, uncapped. */
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    options: { upstreamStatus?: number; retryable?: boolean; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super('upstream_error', message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = 'UpstreamError';
    this.upstreamStatus = options.upstreamStatus;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }
}
