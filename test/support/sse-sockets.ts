import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';

/**
 * Helpers for the socket-level tests (SSE streams, disconnects, load, shutdown): a raw node:http SSE
 * reader whose socket can be cut at will, an incremental SSE parser, and a condition poller.
 */

/** Polls `cond` until it holds; fails with `label` after a generous deadline (not a timing assertion). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  label = 'condition',
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`waitFor: ${label} did not hold within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export interface SseFrame {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/** A parsed Runway event: the frame's fields plus its JSON payload. */
export interface RunEvent {
  id: number;
  type: string;
  run_id: string;
  data: any;
}

/** Incremental SSE parser (WHATWG rules for the fields Runway uses). */
export class SseParser {
  readonly frames: SseFrame[] = [];
  readonly comments: string[] = [];
  private buffer = '';

  push(text: string): void {
    this.buffer += text;
    for (;;) {
      const match = /\r\n\r\n|\n\n|\r\r/.exec(this.buffer);
      if (!match) return;
      const block = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.block(block);
    }
  }

  private block(block: string): void {
    let id: string | undefined;
    let event: string | undefined;
    const data: string[] = [];
    let hasData = false;
    for (const line of block.split(/\r\n|\r|\n/)) {
      if (line.startsWith(':')) {
        this.comments.push(line.slice(1).trimStart());
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') {
        data.push(value);
        hasData = true;
      }
    }
    if (hasData) this.frames.push({ id, event, data: data.join('\n') });
  }
}

export function toRunEvent(frame: SseFrame): RunEvent {
  const json = JSON.parse(frame.data);
  return { id: Number(frame.id), type: frame.event ?? 'message', run_id: json.run_id, data: json.data };
}

export const TERMINAL_TYPES = new Set(['run.succeeded', 'run.failed', 'run.cancelled']);

export interface OpenSseOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: unknown;
}

/**
 * One SSE response read over its own TCP connection (no agent, no pooling), so `destroy()` really
 * closes the socket the server sees.
 */
export class SseConnection {
  readonly parser = new SseParser();
  /** Every byte of the body, as text. */
  raw = '';
  /** True once the server ended the response. */
  endedByServer = false;
  /** Settles when the response is over: ended by the server, or the socket closed. */
  readonly closed: Promise<void>;
  private readonly listeners = new Set<() => void>();
  private over = false;

  constructor(
    readonly req: ClientRequest,
    readonly res: IncomingMessage,
  ) {
    res.setEncoding('utf8');
    this.closed = new Promise((resolve) => {
      const finish = () => {
        this.over = true;
        this.notify();
        resolve();
      };
      res.on('end', () => {
        this.endedByServer = true;
        finish();
      });
      res.on('close', finish);
      res.on('error', finish);
    });
    res.on('data', (chunk: string) => {
      this.raw += chunk;
      this.parser.push(chunk);
      this.notify();
    });
  }

  get status(): number {
    return this.res.statusCode ?? 0;
  }
  get headers(): IncomingHttpHeaders {
    return this.res.headers;
  }
  get frames(): SseFrame[] {
    return this.parser.frames;
  }
  get events(): RunEvent[] {
    return this.parser.frames.map(toRunEvent);
  }
  get comments(): string[] {
    return this.parser.comments;
  }

  /** Resolves once `pred` holds; rejects if the response is over first, or after the deadline. */
  until(pred: (c: SseConnection) => boolean, label = 'stream condition', timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pred(this)) {
          cleanup();
          resolve();
        } else if (this.over) {
          cleanup();
          reject(new Error(`stream ended before ${label}; got ${this.frames.length} frames`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${label} did not happen within ${timeoutMs} ms; got ${this.frames.length} frames`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits until at least `n` event frames arrived. */
  frameCount(n: number): Promise<void> {
    return this.until((c) => c.frames.length >= n, `${n} frames`);
  }

  /** Closes the TCP connection from the client side. */
  destroy(): void {
    this.req.destroy();
    this.res.destroy();
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }
}

/** Opens an SSE request on a fresh socket; resolves once the response head arrived. */
export function openSse(url: string, options: OpenSseOptions = {}): Promise<SseConnection> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: options.method ?? 'GET',
      agent: false,
      headers: {
        accept: 'text/event-stream',
        ...(body !== undefined && { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }),
        ...options.headers,
      },
    });
    req.once('response', (res) => resolve(new SseConnection(req, res)));
    req.once('error', reject);
    req.end(body);
  });
}

/**
 * Starts a request on a fresh socket and never reads the answer; `destroy()` cuts the connection
 * (a client that gives up on a blocking `POST /runs`). `response` settles if an answer comes.
 */
export function startRequest(
  url: string,
  options: OpenSseOptions = {},
): { req: ClientRequest; response: Promise<IncomingMessage>; destroy(): void } {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const req = httpRequest(url, {
    method: options.method ?? 'POST',
    agent: false,
    headers: {
      ...(body !== undefined && { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }),
      ...options.headers,
    },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  // A destroyed request rejects `response`; tests that cut the socket do not care.
  response.catch(() => {});
  req.end(body);
  return {
    req,
    response,
    destroy: () => req.destroy(),
  };
}
