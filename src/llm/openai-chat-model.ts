import { setTimeout as sleep } from 'node:timers/promises';
import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import { Pool } from 'undici';
import type { ChatModel, ChatRequest, ChatResult } from './chat-model.js';
import { backoffDelayMs, retryAfterMs } from './backoff.js';
import { StreamAccumulator } from './stream-accumulator.js';
import { UpstreamError } from './upstream-error.js';
import { describeErrorBody, describeError, readCapped, abortError, withAttempts, isJson, errorCode, isRecord } from './upstream-reading.js';

export interface OpenAIChatModelConfig {
  /** The config key (`llms.<name>`), used in error messages. Default `'openai'`. */
  name?: string;
  /** E.g. `https://api.openai.com/v1`; `/chat/completions` is appended. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …` when set; never appears in errors. */
  apiKey?: string;
  model: string;
  /** TCP (+TLS) connect. Default 10 s. */
  connectTimeoutMs?: number;
  /** From sending the request until the first byte of the body (headers included). Default 60 s. */
  firstByteTimeoutMs?: number;
  /** Longest silence between two body chunks once the body started. Default 30 s. */
  idleTimeoutMs?: number;
  /** Extra attempts after the first, only while no token was delivered. Default 2. */
  maxRetries?: number;
  /** First backoff step. Default 500 ms. */
  retryBaseMs?: number;
  /** Cap on any single wait, Retry-After included. Default 8 s. */
  retryMaxMs?: number;
  /** Extra request headers (e.g. an organisation id). */
  headers?: Record<string, string>;
  /** Told about every retry before its wait starts: for logs and metrics. */
  onRetry?: (event: RetryEvent) => void;
}

export interface RetryEvent {
  /** 1-based number of the attempt that failed. */
  attempt: number;
  /** The wait before the next attempt. */
  delayMs: number;
  error: UpstreamError;
}

/** Bounds on what we are willing to buffer from a misbehaving upstream. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_JSON_BODY_BYTES = 16 * 1024 * 1024;
const MAX_SSE_EVENT_CHARS = 4 * 1024 * 1024;
const MAX_QUOTED_MESSAGE_CHARS = 1000;

const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

type Timeout = 'first-byte' | 'idle';

/**
 * A `ChatModel` for any server that speaks OpenAI Chat Completions (OpenAI, NVIDIA NIM, vLLM,
 * Ollama, llama.cpp). Always streams; one undici connection pool per endpoint.
 *
 * @example
 *   const model = new OpenAIChatModel({ baseUrl: 'https://api.openai.com/v1', apiKey, model: 'gpt-4o-mini' })
 *   const { content } = await model.chat({ messages: [{ role: 'user', content: 'Hi' }], signal, onToken: write })
 *   await model.close()
 */
export class OpenAIChatModel implements ChatModel {
  readonly name: string;
  readonly model: string;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly apiKey: string | undefined;
  private readonly firstByteTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly onRetry: ((event: RetryEvent) => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(config: OpenAIChatModelConfig) {
    this.name = config.name ?? 'openai';
    this.model = config.model;
    const url = new URL(config.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`LLM "${this.name}": baseUrl must be http(s), got ${url.protocol}`);
    }
    this.path = `${url.pathname.replace(/\/+$/, '')}/chat/completions${url.search}`;
    this.apiKey = config.apiKey !== undefined && config.apiKey !== '' ? config.apiKey : undefined;
    this.headers = {
      ...config.headers,
      'content-type': 'application/json',
      accept: 'text/event-stream, application/json',
      ...(this.apiKey !== undefined ? { authorization: `Bearer ${this.apiKey}` } : {}),
    };
    this.connectTimeoutMs = config.connectTimeoutMs ?? 10_000;
    this.firstByteTimeoutMs = config.firstByteTimeoutMs ?? 60_000;
    this.idleTimeoutMs = config.idleTimeoutMs ?? 30_000;
    this.maxRetries = config.maxRetries ?? 2;
    this.retryBaseMs = config.retryBaseMs ?? 500;
    this.retryMaxMs = config.retryMaxMs ?? 8_000;
    this.onRetry = config.onRetry;
    // Our own timers name the timeout that fired; undici's would only say "timeout".
    this.pool = new Pool(url.origin, {
      connect: { timeout: this.connectTimeoutMs },
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  async chat(req: ChatRequest): Promise<ChatResult> {
    if (req.signal.aborted) throw abortError(req.signal);
    if (this.closing !== undefined) throw new UpstreamError(`${this.label()}: the model client is closed`);
    const body = JSON.stringify(this.requestBody(req));
    const progress = { delivered: false };

    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(req, body, progress);
      } catch (err) {
        if (req.signal.aborted) throw abortError(req.signal);
        if (!(err instanceof UpstreamError)) throw err;
        // Once text reached the caller a retry would repeat or contradict it: fail instead.
        if (!err.retryable || progress.delivered || attempt > this.maxRetries) {
          throw attempt > 1 ? withAttempts(err, attempt) : err;
        }
        const delayMs =
          err.retryAfterMs !== undefined
            ? Math.min(err.retryAfterMs, this.retryMaxMs)
            : backoffDelayMs(attempt - 1, this.retryBaseMs, this.retryMaxMs);
        this.onRetry?.({ attempt, delayMs, error: err });
        try {
          await sleep(delayMs, undefined, { signal: req.signal });
        } catch {
          throw abortError(req.signal);
        }
      }
    }
  }

  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }

  private requestBody(req: ChatRequest): Record<string, unknown> {
    return {
      model: this.model,
      messages: req.messages,
      stream: true,
      stream_options: { include_usage: true },
      ...(req.tools !== undefined && req.tools.length > 0
        ? {
            tools: req.tools.map((t) => ({
              type: 'function',
              function: { name: t.name, description: t.description, parameters: t.parameters },
            })),
          }
        : {}),
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
      ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
    };
  }

  /** One HTTP exchange. Every failure leaves as an UpstreamError, an abort, or the caller's own onToken error. */
  private async attempt(req: ChatRequest, body: string, progress: { delivered: boolean }): Promise<ChatResult> {
    // A controller of our own, so a timeout can tear down the socket exactly like the caller's abort.
    const controller = new AbortController();
    const forwardAbort = (): void => controller.abort(req.signal.reason);
    req.signal.addEventListener('abort', forwardAbort, { once: true });
    let timedOut: Timeout | undefined;
    const expire = (which: Timeout) => (): void => {
      timedOut = which;
      controller.abort();
    };
    let timer = setTimeout(expire('first-byte'), this.firstByteTimeoutMs);
    let callbackError: { error: unknown } | undefined;

    const acc = new StreamAccumulator(this.model);
    const deliver = (text: string): void => {
      if (text === '') return;
      progress.delivered = true;
      try {
        req.onToken?.(text);
      } catch (error) {
        callbackError = { error };
        throw error;
      }
      // A consumer that aborts from inside onToken must not see the rest of an already-buffered stream.
      if (req.signal.aborted) throw abortError(req.signal);
    };

    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: this.headers,
        body,
        signal: controller.signal,
      });

      if (res.statusCode < 200 || res.statusCode > 299) {
        const text = await readCapped(res.body, MAX_ERROR_BODY_BYTES);
        throw this.httpError(res.statusCode, res.headers, text);
      }

      if (isJson(res.headers['content-type'])) {
        // The server ignored `stream: true`; take the whole completion as one delta.
        const text = await readCapped(res.body, MAX_JSON_BODY_BYTES);
        const json = this.parseJson(text);
        if (isRecord(json) && json.error != null) throw this.inBandError(json.error);
        deliver(acc.addCompletion(json));
        return acc.result();
      }

      const events: EventSourceMessage[] = [];
      let parseFailure: ParseError | undefined;
      const parser = createParser({
        maxBufferSize: MAX_SSE_EVENT_CHARS,
        onEvent: (event) => events.push(event),
        onError: (error) => {
          if (error.type === 'max-buffer-size-exceeded') parseFailure = error;
        },
      });
      // Stream-decoding keeps a UTF-8 character split across two chunks intact.
      const decoder = new TextDecoder();
      let started = false;
      let done = false;

      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (!started) {
          started = true;
          clearTimeout(timer);
          timer = setTimeout(expire('idle'), this.idleTimeoutMs);
        } else {
          timer.refresh();
        }
        parser.feed(decoder.decode(chunk, { stream: true }));
        if (parseFailure !== undefined) {
          throw new UpstreamError(`${this.label()}: a stream event exceeded ${MAX_SSE_EVENT_CHARS} characters`);
        }
        done = this.drain(events, acc, deliver);
        // Anything after [DONE] is not ours to read; leaving now frees us from a server that lingers.
        if (done) break;
      }
      if (!done) {
        parser.feed(decoder.decode());
        // A final event without its blank line still counts (no [DONE] servers end this way).
        parser.reset({ consume: true });
        this.drain(events, acc, deliver);
      }
      if (acc.chunkCount === 0) {
        throw new UpstreamError(`${this.label()}: upstream ended the stream without sending any data`, {
          upstreamStatus: res.statusCode,
          retryable: true,
        });
      }
      return acc.result();
    } catch (err) {
      if (callbackError !== undefined) throw callbackError.error;
      if (req.signal.aborted) throw abortError(req.signal);
      if (timedOut !== undefined) throw this.timeoutError(timedOut, err);
      if (err instanceof UpstreamError) throw err;
      throw this.networkError(err);
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener('abort', forwardAbort);
    }
  }

  /** Folds the parsed SSE events in; returns true once `[DONE]` arrived. */
  private drain(events: EventSourceMessage[], acc: StreamAccumulator, deliver: (text: string) => void): boolean {
    while (events.length > 0) {
      const event = events.shift()!;
      const data = event.data.trim();
      if (data === '') continue;
      if (data === '[DONE]') return true;
      const json = this.parseJson(data);
      if (event.event === 'error') throw this.inBandError(isRecord(json) && json.error != null ? json.error : json);
      if (isRecord(json) && json.error != null) throw this.inBandError(json.error);
      deliver(acc.addChunk(json));
    }
    return false;
  }

  private parseJson(text: string): unknown {
    try {
      return JSON.parse(text);
    } catch {
      throw new UpstreamError(`${this.label()}: upstream sent malformed JSON: ${this.quote(text, 200)}`);
    }
  }

  private httpError(status: number, headers: Record<string, string | string[] | undefined>, bodyText: string): UpstreamError {
    const detail = describeErrorBody(bodyText);
    const retryable = status === 408 || status === 429 || status >= 500;
    const wait = retryAfterMs(headers);
    return new UpstreamError(
      `${this.label()}: upstream answered HTTP ${status}${detail !== '' ? `: ${this.quote(detail)}` : ''}`,
      { upstreamStatus: status, retryable, ...(wait !== undefined ? { retryAfterMs: wait } : {}) },
    );
  }

  private inBandError(error: unknown): UpstreamError {
    const detail = describeError(error);
    return new UpstreamError(`${this.label()}: upstream reported an error in the stream: ${this.quote(detail)}`, {
      upstreamStatus: 200,
    });
  }

  private timeoutError(which: Timeout, cause: unknown): UpstreamError {
    const message =
      which === 'first-byte'
        ? `no response within the first-byte timeout (${this.firstByteTimeoutMs} ms)`
        : `stream stalled: nothing received within the idle timeout (${this.idleTimeoutMs} ms)`;
    return new UpstreamError(`${this.label()}: ${message}`, { retryable: true, cause });
  }

  private networkError(err: unknown): UpstreamError {
    const code = errorCode(err);
    if (code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new UpstreamError(
        `${this.label()}: could not connect within the connect timeout (${this.connectTimeoutMs} ms)`,
        { retryable: true, cause: err },
      );
    }
    // The error code says what happened; the socket's own message names internal hosts and
    // ports, which clients of a 502 have no business seeing: it stays in the cause, for the log.
    return new UpstreamError(`${this.label()}: connection to upstream failed: ${code ?? 'network error'}`, {
      retryable: code !== undefined && RETRYABLE_NETWORK_CODES.has(code),
      cause: err,
    });
  }

  private label(): string {
    return `LLM "${this.name}" (${this.model})`;
  }

  /** Upstream text goes into our messages shortened, and with the API key scrubbed out: some servers echo it. */
  private quote(text: string, max = MAX_QUOTED_MESSAGE_CHARS): string {
    const clipped = text.length > max ? `${text.slice(0, max)}…` : text;
    return this.apiKey !== undefined ? clipped.replaceAll(this.apiKey, '[redacted]') : clipped;
  }
}
