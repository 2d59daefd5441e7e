import { randomUUID } from 'node:crypto';
import { STATUS_CODES, maxHeaderSize } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { ErrorCode, FieldError } from '../core/errors.js';
import type { LingeringClose } from './lingering-close.js';
import { problem } from './problem.js';

/** What Node's HTTP parser (llhttp) refused, as the problem it is answered with. */
interface Refusal {
  code: ErrorCode;
  detail: string;
  errors?: FieldError[];
}

const CONTENT_LENGTH: FieldError[] = [{ in: 'headers', pointer: '/content-length', message: 'Invalid Content-Length' }];

/** The problem for a parser error code (`HPE_*`, or Node's own `ERR_HTTP_REQUEST_TIMEOUT`). */
function refusal(err: Error & { code?: string; reason?: string }): Refusal {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { code: 'headers_too_large', detail: `The request line and headers are larger than the server accepts (${maxHeaderSize} bytes)` };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { code: 'payload_too_large', detail: 'The chunk extensions of the request body are larger than the server accepts' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { code: 'request_timeout', detail: 'The request was not received in time' };
    case 'HPE_INVALID_CONTENT_LENGTH':
      return { code: 'invalid_request', detail: 'The Content-Length header is not a valid length', errors: CONTENT_LENGTH };
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      // Two different Content-Lengths, or one beside Transfer-Encoding: a request-smuggling shape.
      return { code: 'invalid_request', detail: `The Content-Length header is not acceptable: ${err.reason ?? 'unexpected'}`, errors: CONTENT_LENGTH };
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return {
        code: 'invalid_request',
        detail: `The Transfer-Encoding header is not acceptable: ${err.reason ?? 'invalid'}`,
        errors: [{ in: 'headers', pointer: '/transfer-encoding', message: 'Invalid Transfer-Encoding' }],
      };
    default:
      return { code: 'invalid_request', detail: `The request is not valid HTTP/1.1${err.reason ? `: ${err.reason}` : ''}` };
  }
}

/** The in-flight response of a keep-alive socket (Node's own field), if one has started writing. */
function answerStarted(socket: Socket): boolean {
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  return inFlight?.headersSent === true;
}

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser refuses before any request exists
 * (headers too large: 431; a malformed or contradictory Content-Length, a malformed request: 400;
 * Node's request timeout: 408) is answered as problem+json, as every other error, instead of
 * Fastify's default plain JSON. Written on the raw socket (there is no request or reply), with a
 * fresh `X-Request-Id` and `Connection: close`, and the connection lingers (LingeringClose) so a
 * client still sending gets the answer rather than a reset.
 *
 * What this cannot do, as no Fastify request is ever made for these: no hook runs (no CORS
 * headers, so a browser on another origin cannot read the answer; no request log line or
 * metrics), the client's `X-Request-Id` is not echoed (its headers were never parsed), routes'
 * own error shapes (OpenAI's on `/v1`) do not apply, and nothing is written when a response on
 * the same keep-alive connection has already started (the socket is then only closed).
 */
export function clientErrorHandler(lingering: LingeringClose) {
  // Fastify calls it with the app as `this`.
  return function onClientError(this: FastifyInstance, err: Error & { code?: string; reason?: string }, socket: Socket): void {
    // A reset connection has nobody left to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // Answered already: the parser errs again on what the client still sends.
    if (lingering.has(socket)) {
      lingering.checkBudget(socket);
      return;
    }
    if (!socket.writable || answerStarted(socket)) {
      socket.destroy();
      return;
    }
    const { code, detail, errors } = refusal(err);
    const doc = problem(code, detail, errors ? { errors } : {});
    const body = JSON.stringify(doc);
    // Rare enough for crypto's own UUIDs (the hot path's ids come from runtime/random-id).
    const requestId = randomUUID();
    this.log.debug({ err, request_id: requestId, code }, 'client error');
    lingering.closeWith(
      socket,
      `HTTP/1.1 ${doc.status} ${STATUS_CODES[doc.status] ?? ''}\r\n` +
        'content-type: application/problem+json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${requestId}\r\n` +
        'connection: close\r\n' +
        '\r\n' +
        body,
    );
  };
}
