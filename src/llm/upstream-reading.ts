import { UpstreamError } from './upstream-error.js';

// What the OpenAI chat model reads off an upstream's answers: error bodies, capped bodies, content
// types, error codes along a cause chain. Kept apart from the model so it stays one sitting to read.

/** The error's message from an OpenAI-style error body, or the raw text when it is not one. */
export function describeErrorBody(text: string): string {
  const trimmed = text.trim();
  try {
    const json: unknown = JSON.parse(trimmed);
    if (isRecord(json)) {
      if (json.error != null) return describeError(json.error);
      if (typeof json.message === 'string') return json.message;
      if (typeof json.detail === 'string') return json.detail;
    }
  } catch {
    // Not JSON: a proxy's HTML page or plain text; quote it as is.
  }
  return trimmed;
}

/** An OpenAI-style `error` object as one line: its message and its code or type. */
export function describeError(error: unknown): string {
  if (typeof error === 'string') return error;
  if (!isRecord(error)) return JSON.stringify(error);
  const message = typeof error.message === 'string' ? error.message : JSON.stringify(error);
  const code = typeof error.code === 'string' || typeof error.code === 'number' ? error.code : error.type;
  return typeof code === 'string' || typeof code === 'number' ? `${message} (${code})` : message;
}

/** A response body as text, at most `maxBytes` of it (the rest is not read). */
export async function readCapped(body: AsyncIterable<Buffer>, maxBytes: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    parts.push(chunk);
    size += chunk.length;
    if (size >= maxBytes) break;
  }
  return Buffer.concat(parts).subarray(0, maxBytes).toString('utf8');
}

/** The error an aborted request rejects with: the signal's AbortError, or one that wraps its reason. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return new DOMException('The chat request was aborted', { name: 'AbortError', cause: reason });
}

/** The same upstream error, saying how many attempts it took. */
export function withAttempts(err: UpstreamError, attempts: number): UpstreamError {
  return new UpstreamError(`${err.message} (after ${attempts} attempts)`, {
    retryable: err.retryable,
    cause: err.cause,
    ...(err.upstreamStatus !== undefined ? { upstreamStatus: err.upstreamStatus } : {}),
    ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
  });
}

/** Whether a Content-Type is JSON (`application/json` or `application/…+json`). */
export function isJson(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  return value !== undefined && /^application\/([\w.+-]*\+)?json\b/i.test(value.trim());
}

/** The first string `code` along the error's `cause` chain (undici wraps socket errors). */
export function errorCode(err: unknown, depth = 0): string | undefined {
  if (!isRecord(err) || depth > 4) return undefined;
  if (typeof err.code === 'string') return err.code;
  return errorCode(err.cause, depth + 1);
}

/** A non-null object, whose fields may be read. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
