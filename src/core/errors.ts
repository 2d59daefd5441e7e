/**
 * The one table of error codes Runway answers with (DESIGN §2). Every layer throws `RunwayError`
 * with one of these codes; the HTTP error handler turns it into problem+json.
 *
 * @example
 *   throw new RunwayError('not_found', `Run ${id} does not exist`)
 */
export const ERROR_CODES = {
  invalid_request: { status: 400, title: 'Invalid request' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not found' },
  /** Node's own answer to a client that took too long to send its request (`requestTimeout`). */
  request_timeout: { status: 408, title: 'Request timeout' },
  conflict: { status: 409, title: 'Conflict' },
  /** A conditional request (`If-Match`, `If-Unmodified-Since`) whose condition does not hold. */
  precondition_failed: { status: 412, title: 'Precondition failed' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  /** A `Range` none of whose ranges lies within the file. */
  range_not_satisfiable: { status: 416, title: 'Range not satisfiable' },
  queue_full: { status: 429, title: 'Queue full' },
  rate_limited: { status: 429, title: 'Rate limited' },
  /** The request line and headers are larger than Node's `maxHeaderSize`. */
  headers_too_large: { status: 431, title: 'Request headers too large' },
  internal: { status: 500, title: 'Internal error' },
  upstream_error: { status: 502, title: 'Upstream error' },
  unavailable: { status: 503, title: 'Unavailable' },
  queue_timeout: { status: 503, title: 'Queue timeout' },
  shutting_down: { status: 503, title: 'Shutting down' },
  run_timeout: { status: 504, title: 'Run timeout' },
  /** On Redis: the worker executing the run died (BullMQ found its job stalled); the run is not executed again. */
  worker_lost: { status: 500, title: 'Worker lost' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface FieldError {
  /** JSON Pointer into the request part named by `in`, e.g. `/input` or `/timeout_ms`. */
  pointer: string;
  in: 'body' | 'querystring' | 'params' | 'headers';
  message: string;
}

/**
 * What was wrong with one argument of a runtime call (`input`, `workflow`, `metadata`), with the
 * path inside it. The runtime knows nothing of HTTP: routes turn issues into JSON pointers into
 * their own request (`/input/…`, or `/model` on the OpenAI facade).
 */
export interface FieldIssue {
  field: string;
  path: readonly PropertyKey[];
  message: string;
}

export interface RunwayErrorOptions {
  retryAfterS?: number;
  errors?: FieldError[];
  issues?: FieldIssue[];
  runId?: string;
  cause?: unknown;
}

export class RunwayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfterS: number | undefined;
  errors: FieldError[] | undefined;
  readonly issues: FieldIssue[] | undefined;
  runId: string | undefined;

  constructor(code: ErrorCode, message: string, options: RunwayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RunwayError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryAfterS = options.retryAfterS;
    this.errors = options.errors;
    this.issues = options.issues;
    this.runId = options.runId;
  }
}

/** True for the ways an aborted operation surfaces: DOMException AbortError, undici/timers aborts. */
export function isAbortError(err: unknown): boolean {
  return (
    typeof err === 'object' &&
    err !== null &&
    ((err as { name?: unknown }).name === 'AbortError' || (err as { code?: unknown }).code === 'ABORT_ERR')
  );
}
