import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RunwayError } from '../src/core/errors.js';
import { backoffDelayMs, retryAfterMs } from '../src/llm/backoff.js';
import type { ChatRequest } from '../src/llm/chat-model.js';
import { OpenAIChatModel, type OpenAIChatModelConfig, type RetryEvent } from '../src/llm/openai-chat-model.js';
import {
  contentChunk,
  errorResponse,
  FAKE_MODEL,
  finishChunk,
  jsonResponse,
  reset,
  sse,
  stall,
  startFakeOpenAI,
  toolCallChunk,
  usageChunk,
  type FakeOpenAIServer,
} from './support/fake-openai-server.js';

const API_KEY = 'sk-test-0123456789abcdef-secret';

let server: FakeOpenAIServer;
const models: OpenAIChatModel[] = [];

beforeEach(async () => {
  server = await startFakeOpenAI();
});

afterEach(async () => {
  await Promise.all(models.splice(0).map((m) => m.close()));
  await server.close();
});

/** A client with test-sized timeouts and backoffs, so failure paths take milliseconds. */
function makeModel(overrides: Partial<OpenAIChatModelConfig> = {}): OpenAIChatModel {
  const model = new OpenAIChatModel({
    name: 'test',
    baseUrl: server.baseUrl,
    apiKey: API_KEY,
    model: 'gpt-test',
    connectTimeoutMs: 1000,
    firstByteTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    maxRetries: 2,
    retryBaseMs: 1,
    retryMaxMs: 20,
    ...overrides,
  });
  models.push(model);
  return model;
}

/** A request plus the tokens it delivered. */
function request(overrides: Partial<ChatRequest> = {}): { req: ChatRequest; tokens: string[] } {
  const tokens: string[] = [];
  const req: ChatRequest = {
    messages: [{ role: 'user', content: 'Hello?' }],
    signal: new AbortController().signal,
    onToken: (delta) => tokens.push(delta),
    ...overrides,
  };
  return { req, tokens };
}

/** Resolves on the first call of the returned callback; handy to gate a script on "a token arrived". */
function signalOnce(): { promise: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<void>((resolve) => (fire = resolve));
  return { promise, fire };
}

async function upstreamFailure(promise: Promise<unknown>): Promise<RunwayError> {
  const err = await promise.then(
    () => {
      throw new Error('expected the chat to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RunwayError);
  expect((err as RunwayError).code).toBe('upstream_error');
  return err as RunwayError;
}

describe('OpenAIChatModel: streaming', () => {
  it('delivers a streamed answer token by token, even when SSE framing and UTF-8 characters are split', async () => {
    const deltas = ['Hé', 'llo, ', 'wörld ', '🌍', '! ', '日本語'];
    server.enqueue(sse([...deltas.map(contentChunk), finishChunk('stop'), usageChunk(9, 6)]));
    const { req, tokens } = request();

    const result = await makeModel().chat(req);

    expect(tokens).toEqual(deltas);
    expect(result.content).toBe(deltas.join(''));
    expect(result.finishReason).toBe('stop');
    expect(result.toolCalls).toEqual([]);
    expect(result.model).toBe(FAKE_MODEL);
  });

  it('sends a Chat Completions request that always streams and asks for usage', async () => {
    server.enqueue(sse([contentChunk('ok'), finishChunk('stop')]));
    const { req } = request({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
      tools: [{ name: 'calculator', description: 'Evaluates arithmetic', parameters: { type: 'object' } }],
      temperature: 0.2,
      maxTokens: 64,
    });

    await makeModel({ headers: { 'x-extra': 'yes' } }).chat(req);

    const [received] = server.requests;
    expect(received?.method).toBe('POST');
    expect(received?.url).toBe('/v1/chat/completions');
    expect(received?.headers['content-type']).toBe('application/json');
    expect(received?.headers['x-extra']).toBe('yes');
    expect(received?.body).toEqual({
      model: 'gpt-test',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      tools: [
        {
          type: 'function',
          function: { name: 'calculator', description: 'Evaluates arithmetic', parameters: { type: 'object' } },
        },
      ],
      temperature: 0.2,
      max_tokens: 64,
    });
  });

  it('completes when the stream ends without data: [DONE], and accepts CRLF line endings', async () => {
    server.enqueue(sse([contentChunk('no '), contentChunk('done'), finishChunk('stop')], { done: false, eol: '\r\n' }));
    const { req, tokens } = request();

    const result = await makeModel().chat(req);

    expect(tokens).toEqual(['no ', 'done']);
    expect(result.content).toBe('no done');
    expect(result.finishReason).toBe('stop');
  });

  it('takes a non-streamed JSON completion from a server that ignores stream: true', async () => {
    server.enqueue(
      jsonResponse(200, {
        id: 'chatcmpl-x',
        object: 'chat.completion',
        model: FAKE_MODEL,
        choices: [{ index: 0, message: { role: 'assistant', content: 'whole answer' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
      }),
    );
    const { req, tokens } = request();

    const result = await makeModel().chat(req);

    expect(tokens).toEqual(['whole answer']);
    expect(result).toMatchObject({ content: 'whole answer', finishReason: 'stop', usage: { total_tokens: 5 } });
  });
});

describe('OpenAIChatModel: tool calls', () => {
  it('reassembles a tool call whose arguments arrive split across chunks', async () => {
    server.enqueue(
      sse([
        toolCallChunk(0, { id: 'call_abc', name: 'calculator', arguments: '' }),
        toolCallChunk(0, { arguments: '{"expr' }),
        toolCallChunk(0, { arguments: 'ession": "2 ' }),
        toolCallChunk(0, { arguments: '+ 2"}' }),
        finishChunk('tool_calls'),
      ]),
    );
    const { req, tokens } = request();

    const result = await makeModel().chat(req);

    expect(tokens).toEqual([]);
    expect(result.content).toBe('');
    expect(result.finishReason).toBe('tool_calls');
    expect(result.toolCalls).toEqual([
      { id: 'call_abc', type: 'function', function: { name: 'calculator', arguments: '{"expression": "2 + 2"}' } },
    ]);
  });

  it('keeps two parallel tool calls apart by index, in index order, even when their fragments interleave', async () => {
    server.enqueue(
      sse([
        toolCallChunk(0, { id: 'call_1', name: 'calculator', arguments: '{"expression":' }),
        toolCallChunk(1, { id: 'call_2', name: 'current_time', arguments: '{"time' }),
        toolCallChunk(1, { arguments: 'zone":"Europe/Paris"}' }),
        toolCallChunk(0, { arguments: '"6*7"}' }),
        finishChunk('tool_calls'),
        usageChunk(40, 30),
      ]),
    );
    const { req } = request();

    const result = await makeModel().chat(req);

    expect(result.toolCalls).toEqual([
      { id: 'call_1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"6*7"}' } },
      { id: 'call_2', type: 'function', function: { name: 'current_time', arguments: '{"timezone":"Europe/Paris"}' } },
    ]);
    expect(result.finishReason).toBe('tool_calls');
  });
});

describe('OpenAIChatModel: usage', () => {
  it('records the usage chunk', async () => {
    server.enqueue(sse([contentChunk('four'), finishChunk('stop'), usageChunk(12, 5)]));
    const { req } = request();

    const result = await makeModel().chat(req);

    expect(result.usage).toEqual({ prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 });
  });

  it('reports null usage when the server sends none', async () => {
    server.enqueue(sse([contentChunk('four'), finishChunk('stop')]));
    const { req } = request();

    const result = await makeModel().chat(req);

    expect(result.usage).toBeNull();
    expect(result.content).toBe('four');
  });
});

describe('OpenAIChatModel: retries', () => {
  it('retries a 429 after the wait its Retry-After asked for, then succeeds', async () => {
    server.enqueue(errorResponse(429, 'Rate limit reached', { 'retry-after': '1' }), sse([contentChunk('ok'), finishChunk('stop')]));
    const retries: Array<RetryEvent & { requestsSeen: number }> = [];
    const model = makeModel({
      retryBaseMs: 1,
      retryMaxMs: 5000,
      onRetry: (e) => retries.push({ ...e, requestsSeen: server.requests.length }),
    });
    const { req } = request();

    const result = await model.chat(req);

    expect(result.content).toBe('ok');
    expect(server.requests).toHaveLength(2);
    expect(retries).toHaveLength(1);
    // The wait is Retry-After's 1 s, not the 1 ms backoff step; and it was decided before the retry went out.
    expect(retries[0]).toMatchObject({ attempt: 1, delayMs: 1000, requestsSeen: 1 });
    expect(retries[0]?.error.message).toContain('HTTP 429');
  });

  it('caps a Retry-After HTTP date at retryMaxMs', async () => {
    const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
    server.enqueue(errorResponse(503, 'busy', { 'retry-after': inAnHour }), sse([contentChunk('ok'), finishChunk('stop')]));
    const retries: RetryEvent[] = [];
    const { req } = request();

    await makeModel({ retryMaxMs: 25, onRetry: (e) => retries.push(e) }).chat(req);

    expect(retries.map((r) => r.delayMs)).toEqual([25]);
    expect(server.requests).toHaveLength(2);
  });

  it('gives up after a 500 three times, with the status and the upstream message', async () => {
    server.enqueue(errorResponse(500, 'boom'), errorResponse(500, 'boom'), errorResponse(500, 'boom'));
    const retries: RetryEvent[] = [];
    const { req } = request();

    const err = await upstreamFailure(makeModel({ onRetry: (e) => retries.push(e) }).chat(req));

    expect(err.message).toContain('HTTP 500');
    expect(err.message).toContain('boom');
    expect(err.message).toContain('after 3 attempts');
    expect(err.status).toBe(502);
    expect(server.requests).toHaveLength(3);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
  });

  it('does not retry a 400: the request itself is wrong', async () => {
    server.enqueue(errorResponse(400, "This model's maximum context length is 8192 tokens"), sse([contentChunk('never')]));
    const { req } = request();

    const err = await upstreamFailure(makeModel().chat(req));

    expect(err.message).toContain('HTTP 400');
    expect(err.message).toContain('maximum context length');
    expect(server.requests).toHaveLength(1);
  });

  it('retries a connection reset before the first token, then succeeds', async () => {
    server.enqueue(reset(), sse([contentChunk('second '), contentChunk('try'), finishChunk('stop')]));
    const { req, tokens } = request();

    const result = await makeModel().chat(req);

    expect(result.content).toBe('second try');
    expect(tokens).toEqual(['second ', 'try']);
    expect(server.requests).toHaveLength(2);
  });

  it('retries a stream that breaks before any token (a half-sent tool call is not delivered)', async () => {
    server.enqueue(
      sse([toolCallChunk(0, { id: 'call_1', name: 'calculator', arguments: '{"expr' })], { done: false, then: 'destroy' }),
      sse([toolCallChunk(0, { id: 'call_2', name: 'calculator', arguments: '{}' }), finishChunk('tool_calls')]),
    );
    const { req } = request();

    const result = await makeModel().chat(req);

    expect(result.toolCalls.map((c) => c.id)).toEqual(['call_2']);
    expect(server.requests).toHaveLength(2);
  });

  it('never retries once a token was delivered: a reset mid-stream fails the call', async () => {
    const firstToken = signalOnce();
    server.enqueue(
      sse([contentChunk('partial')], { done: false, hold: firstToken.promise, then: 'destroy' }),
      // Would turn the failure into a success if the client wrongly retried.
      sse([contentChunk('retried'), finishChunk('stop')]),
    );
    const { req, tokens } = request({
      onToken: (delta) => {
        tokens.push(delta);
        firstToken.fire();
      },
    });

    const err = await upstreamFailure(makeModel().chat(req));

    expect(err.message).toContain('connection to upstream failed');
    expect(tokens).toEqual(['partial']);
    expect(server.requests).toHaveLength(1);
  });

  it('retries a refused connection and then reports it', async () => {
    const gone = server.baseUrl;
    // The replacement (afterEach closes it) is started while the old one still holds its port: started
    // after, it could be given the very port just freed, and the "refused" requests would reach it.
    const next = await startFakeOpenAI();
    await server.close();
    server = next;
    const retries: RetryEvent[] = [];
    const { req } = request();

    const err = await upstreamFailure(makeModel({ baseUrl: gone, onRetry: (e) => retries.push(e) }).chat(req));

    expect(err.message).toContain('ECONNREFUSED');
    // The address it could not reach is for the log (the error's cause), not for the client.
    expect(err.message).not.toContain(new URL(gone).host);
    expect(String((err.cause as Error).message)).toContain(new URL(gone).port);
    expect(retries).toHaveLength(2);
  });
});

describe('OpenAIChatModel: timeouts', () => {
  it('fails a stalled stream with the idle timeout and closes the upstream connection', async () => {
    server.enqueue(sse([contentChunk('thinking…')], { done: false, split: 'event', then: 'stall' }));
    const { req, tokens } = request();

    const err = await upstreamFailure(makeModel({ idleTimeoutMs: 100 }).chat(req));

    expect(err.message).toContain('idle timeout (100 ms)');
    expect(tokens).toEqual(['thinking…']);
    expect(server.requests).toHaveLength(1);
    await expect(server.requests[0]!.closed).resolves.toEqual({ responseFinished: false });
  });

  it('fails a server that never answers with the first-byte timeout, after its retries', async () => {
    server.enqueue(stall(), stall());
    const { req } = request();

    const err = await upstreamFailure(makeModel({ firstByteTimeoutMs: 100, maxRetries: 1 }).chat(req));

    expect(err.message).toContain('first-byte timeout (100 ms)');
    expect(err.message).toContain('after 2 attempts');
    expect(server.requests).toHaveLength(2);
  });
});

describe('OpenAIChatModel: cancellation', () => {
  it('abort mid-stream closes the upstream socket and rejects with an AbortError', async () => {
    server.enqueue(sse([contentChunk('Hel'), contentChunk('lo')], { done: false, then: 'stall' }));
    const controller = new AbortController();
    const { req } = request({ signal: controller.signal, onToken: () => controller.abort() });

    await expect(makeModel().chat(req)).rejects.toMatchObject({ name: 'AbortError' });

    await expect(server.requests[0]!.closed).resolves.toEqual({ responseFinished: false });
    expect(server.requests).toHaveLength(1);
  });

  it('abort from inside onToken wins even when the rest of the answer is already buffered', async () => {
    server.enqueue(sse([contentChunk('a'), contentChunk('b'), finishChunk('stop')], { split: 'event' }));
    const controller = new AbortController();
    const { req, tokens } = request({
      signal: controller.signal,
      onToken: (delta) => {
        tokens.push(delta);
        controller.abort();
      },
    });

    await expect(makeModel().chat(req)).rejects.toMatchObject({ name: 'AbortError' });
    expect(tokens).toEqual(['a']);
  });

  it('abort while waiting for the first byte closes the upstream socket too', async () => {
    server.enqueue(stall());
    const controller = new AbortController();
    const { req } = request({ signal: controller.signal });

    const pending = makeModel().chat(req);
    await server.waitForRequests(1);
    controller.abort();

    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await expect(server.requests[0]!.closed).resolves.toEqual({ responseFinished: false });
  });

  it('abort during a backoff wait ends the wait at once, without another request', async () => {
    // A 60 s Retry-After: the test would time out if the wait were not abortable.
    server.enqueue(errorResponse(429, 'slow down', { 'retry-after': '60' }), sse([contentChunk('never')]));
    const controller = new AbortController();
    const { req } = request({ signal: controller.signal });

    const pending = makeModel({ retryMaxMs: 60_000, onRetry: () => controller.abort() }).chat(req);

    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.requests).toHaveLength(1);
  });

  it('rejects at once, without a request, when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const { req } = request({ signal: controller.signal });

    await expect(makeModel().chat(req)).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.requests).toHaveLength(0);
  });
});

describe('OpenAIChatModel: upstream errors', () => {
  it('turns an in-band error in a 200 stream into an upstream_error, not text', async () => {
    server.enqueue(
      sse([contentChunk('Par'), { error: { message: 'The model is overloaded', type: 'server_error', code: 'overloaded' } }]),
      sse([contentChunk('retried'), finishChunk('stop')]),
    );
    const { req, tokens } = request();

    const err = await upstreamFailure(makeModel().chat(req));

    expect(err.message).toContain('The model is overloaded');
    expect(err.message).toContain('in the stream');
    expect(tokens).toEqual(['Par']);
    expect(server.requests).toHaveLength(1);
  });

  it('fails on a malformed data line instead of guessing', async () => {
    server.enqueue(sse([contentChunk('a'), '{"choices": [ nope']));
    const { req } = request();

    const err = await upstreamFailure(makeModel().chat(req));

    expect(err.message).toContain('malformed JSON');
  });

  it('sends the API key as a Bearer token and never puts it in an error message, even when upstream echoes it', async () => {
    server.enqueue(errorResponse(401, `Incorrect API key provided: ${API_KEY}. You can find your API key at …`));
    const { req } = request();

    const err = await upstreamFailure(makeModel().chat(req));

    expect(server.requests[0]?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(err.message).toContain('HTTP 401');
    expect(err.message).toContain('Incorrect API key provided: [redacted]');
    expect(err.message).not.toContain(API_KEY);
    expect(String(err.stack)).not.toContain(API_KEY);
  });

  it('sends no Authorization header when no key is configured', async () => {
    server.enqueue(sse([contentChunk('ok'), finishChunk('stop')]));
    const { req } = request();

    await makeModel({ apiKey: '' }).chat(req);

    expect(server.requests[0]?.headers.authorization).toBeUndefined();
  });

  it('lets an error thrown by onToken through unchanged, without retrying', async () => {
    server.enqueue(sse([contentChunk('a'), contentChunk('b')]), sse([contentChunk('retried')]));
    const mine = new Error('consumer failed');
    const { req } = request({
      onToken: () => {
        throw mine;
      },
    });

    await expect(makeModel().chat(req)).rejects.toBe(mine);
    expect(server.requests).toHaveLength(1);
  });

  it('refuses new requests after close()', async () => {
    const model = makeModel();
    await model.close();
    const { req } = request();

    await upstreamFailure(model.chat(req));
    expect(server.requests).toHaveLength(0);
  });
});

describe('backoff', () => {
  it('grows exponentially with jitter inside [ceiling/2, ceiling], capped', () => {
    expect(backoffDelayMs(0, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelayMs(0, 100, 1000, () => 1)).toBe(100);
    expect(backoffDelayMs(2, 100, 1000, () => 0.5)).toBe(300);
    expect(backoffDelayMs(10, 100, 1000, () => 1)).toBe(1000);
  });

  it.each([
    [{ 'retry-after': '3' }, 3000],
    [{ 'retry-after': '0' }, 0],
    [{ 'retry-after': 'Thu, 01 Jan 2026 00:00:10 GMT' }, 10_000],
    [{ 'retry-after': 'Wed, 31 Dec 2025 00:00:00 GMT' }, 0],
    [{ 'retry-after': '-1' }, undefined],
    [{ 'retry-after': '1.5' }, undefined],
    [{ 'retry-after': 'soon' }, undefined],
    [{ 'retry-after-ms': '250', 'retry-after': '3' }, 250],
    [{}, undefined],
  ])('reads Retry-After %j as %s ms', (headers, expected) => {
    expect(retryAfterMs(headers, Date.parse('2026-01-01T00:00:00Z'))).toBe(expected);
  });
});
