import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP server on 127.0.0.1 that speaks just enough of OpenAI Chat Completions to drive a
 * client through its failure modes. Each incoming request takes the next queued `Script`; a
 * request with nothing queued gets a 500 so a test that under-scripts fails loudly.
 *
 * @example
 *   const server = await startFakeOpenAI()
 *   server.enqueue(sse([contentChunk('Hel'), contentChunk('lo'), finishChunk('stop')]))
 *   // … point a client at server.baseUrl …
 *   expect(server.requests[0]?.body.stream).toBe(true)
 *   await server.close()
 */
export interface FakeOpenAIServer {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseUrl: string;
  /** Every request received, in arrival order. */
  readonly requests: RecordedRequest[];
  enqueue(...scripts: Script[]): void;
  /** Resolves once `count` requests have arrived (at once if they already have). */
  waitForRequests(count: number): Promise<void>;
  close(): Promise<void>;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body (undefined when it was not JSON). */
  body: any;
  /**
   * Resolves when the TCP connection this request came on closes, telling whether the response
   * had been completely written by then. `responseFinished: false` means the connection was cut
   * mid-response: by the client (cancel, timeout) or by a `destroy` script.
   */
  closed: Promise<{ responseFinished: boolean }>;
}

export type Script = SseScript | JsonScript | ResetScript | StallScript;

/** A 200 `text/event-stream` answer. */
export interface SseScript {
  kind: 'sse';
  /** Each becomes one `data:` event; objects are JSON-encoded, strings sent verbatim (e.g. malformed data). */
  events: Array<object | string>;
  /** Send `data: [DONE]` after the events. Default true. */
  done?: boolean;
  /**
   * How the byte stream is cut into writes. 'awkward' (default) cuts at small, uneven sizes, so
   * writes end mid-line, mid-field and mid-UTF-8 character; 'event' writes one event at a time.
   */
  split?: 'awkward' | 'event';
  /** Line ending; some servers use CRLF. Default '\n'. */
  eol?: '\n' | '\r\n';
  /** Waited on after the events are written, before `then` happens. */
  hold?: Promise<unknown>;
  /** What happens after the events: end the response (default), cut the connection, or go silent. */
  then?: 'end' | 'destroy' | 'stall';
  /** Extra response headers. */
  headers?: Record<string, string>;
}

/** A complete JSON answer with any status: an error body, or a non-streamed completion. */
export interface JsonScript {
  kind: 'json';
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Cut the connection after reading the request, before any response byte. */
export interface ResetScript {
  kind: 'reset';
}

/** Read the request and never answer. */
export interface StallScript {
  kind: 'stall';
}

/** Cut sizes for 'awkward' splitting: uneven, mostly smaller than a 4-byte UTF-8 character. */
const AWKWARD_SIZES = [1, 3, 2, 7, 1, 5, 2, 11, 3];

export async function startFakeOpenAI(): Promise<FakeOpenAIServer> {
  const queue: Script[] = [];
  const requests: RecordedRequest[] = [];
  const arrivals = new EventEmitter();

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const closed = new Promise<{ responseFinished: boolean }>((resolve) => {
      req.socket.once('close', () => resolve({ responseFinished: res.writableFinished }));
    });
    const raw = await readBody(req);
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      body = undefined;
    }
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, closed });
    arrivals.emit('request');

    const script = queue.shift();
    if (script === undefined) {
      writeJson(res, 500, { error: { message: `fake server: no script queued for request #${requests.length}` } });
      return;
    }
    switch (script.kind) {
      case 'json':
        writeJson(res, script.status, script.body, script.headers);
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'stall':
        return;
      case 'sse':
        await writeSse(res, script);
        return;
    }
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    enqueue: (...scripts) => void queue.push(...scripts),
    async waitForRequests(count) {
      while (requests.length < count) await once(arrivals, 'request');
    },
    async close() {
      // Stalled responses would otherwise keep close() waiting forever.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function writeSse(res: ServerResponse, script: SseScript): Promise<void> {
  const eol = script.eol ?? '\n';
  const frames = script.events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}${eol}${eol}`);
  if (script.done ?? true) frames.push(`data: [DONE]${eol}${eol}`);

  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...script.headers });
  res.flushHeaders();

  const pieces = script.split === 'event' ? frames.map((f) => Buffer.from(f)) : cutAwkwardly(Buffer.from(frames.join('')));
  for (const piece of pieces) {
    if (res.destroyed) return;
    await write(res, piece);
  }
  if (script.hold !== undefined) await script.hold;
  switch (script.then ?? 'end') {
    case 'end':
      res.end();
      return;
    case 'destroy':
      res.socket?.destroy();
      return;
    case 'stall':
      return;
  }
}

function cutAwkwardly(bytes: Buffer): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = AWKWARD_SIZES[i % AWKWARD_SIZES.length]!;
    pieces.push(bytes.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

/** Writes one piece and yields a turn of the event loop, so pieces tend to leave as separate packets. */
async function write(res: ServerResponse, piece: Buffer): Promise<void> {
  await new Promise<void>((resolve) => res.write(piece, () => resolve()));
  await new Promise<void>((resolve) => setImmediate(resolve));
}

function writeJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

// ---- script and chunk builders -------------------------------------------------------------

export function sse(events: Array<object | string>, options: Omit<SseScript, 'kind' | 'events'> = {}): SseScript {
  return { kind: 'sse', events, ...options };
}

export function jsonResponse(status: number, body: unknown, headers?: Record<string, string>): JsonScript {
  return { kind: 'json', status, body, ...(headers !== undefined ? { headers } : {}) };
}

export function errorResponse(status: number, message: string, headers?: Record<string, string>): JsonScript {
  return jsonResponse(status, { error: { message, type: 'server_error', code: null } }, headers);
}

export const reset = (): ResetScript => ({ kind: 'reset' });
export const stall = (): StallScript => ({ kind: 'stall' });

const MODEL = 'fake-model-1';

/** A `chat.completion.chunk` with one choice and the given delta. Extra fields mimic real servers. */
export function deltaChunk(delta: object, finishReason: string | null = null): object {
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion.chunk',
    created: 1_790_000_000,
    model: MODEL,
    system_fingerprint: 'fp_fake',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  };
}

export const contentChunk = (text: string): object => deltaChunk({ content: text });

export const finishChunk = (reason: string): object => deltaChunk({}, reason);

/** The trailing chunk `stream_options.include_usage` asks for: no choices, just usage. */
export function usageChunk(prompt: number, completion: number): object {
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion.chunk',
    created: 1_790_000_000,
    model: MODEL,
    choices: [],
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  };
}

/** One fragment of a streamed tool call; the first fragment of a call carries `id` and `name`. */
export function toolCallChunk(index: number, fragment: { id?: string; name?: string; arguments?: string }): object {
  return deltaChunk({
    tool_calls: [
      {
        index,
        ...(fragment.id !== undefined ? { id: fragment.id, type: 'function' } : {}),
        function: {
          ...(fragment.name !== undefined ? { name: fragment.name } : {}),
          ...(fragment.arguments !== undefined ? { arguments: fragment.arguments } : {}),
        },
      },
    ],
  });
}

export const FAKE_MODEL = MODEL;
