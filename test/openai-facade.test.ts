import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildApp } from '../src/app.js';
import { RunwayError } from '../src/core/errors.js';
import { defineWorkflow } from '../src/workflows/define-workflow.js';
import { deferred, makeAgentApp, runEvents } from './support/agent-app.js';
import { listen, makeApp } from './support/app.js';
import { contentChunk, finishChunk, sse, startFakeOpenAI, usageChunk, type FakeOpenAIServer } from './support/fake-openai-server.js';
import { Drip, gateWorkflowType } from './support/sse-socket-workflows.js';

// ---------------------------------------------------------------------------------------------
// Workflow types only these tests need; the state they report to belongs to the test.
// ---------------------------------------------------------------------------------------------

const anyConfig = (type: string) => z.object({ type: z.literal(type) }).strict();

/** `waiter`: tells the test its run started, then holds until the run aborts. */
function waiterType(started: (runId: string) => void) {
  return defineWorkflow({
    type: 'waiter',
    configSchema: anyConfig('waiter'),
    create: (_cfg, { name }) => ({
      name,
      type: 'waiter',
      description: 'Waits for its abort',
      inputSchema: z.string(),
      run: (_input, ctx) =>
        new Promise((_resolve, reject) => {
          const signal = ctx.signal;
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
          started(ctx.run_id);
        }),
    }),
  });
}

/** `sputter`: streams one token, then fails the way an LLM provider outage does. */
const sputterType = defineWorkflow({
  type: 'sputter',
  configSchema: anyConfig('sputter'),
  create: (_cfg, { name }) => ({
    name,
    type: 'sputter',
    description: 'Fails after one token',
    inputSchema: z.string(),
    async run(_input, ctx) {
      const step = ctx.startStep('FUNCTION', 'sputter');
      ctx.token('partial ', step.step_id);
      step.end();
      throw new RunwayError('upstream_error', 'The model provider answered 503');
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

let app: FastifyInstance | undefined;
let fake: FakeOpenAIServer | undefined;

afterEach(async () => {
  await app?.close();
  app = undefined;
  await fake?.close();
  fake = undefined;
});

interface Started {
  base: string;
  drip: Drip;
  /** Resolves with the run id of the next `waiter` run to start. */
  nextWaiter: () => Promise<string>;
}

async function start(): Promise<Started> {
  const drip = new Drip();
  let waiting = deferred<string>();
  app = await makeApp({
    workflows: {
      gate: { type: 'gate', tokens: 5 },
      waiter: { type: 'waiter' },
      sputter: { type: 'sputter' },
    },
    registry: { workflowTypes: [gateWorkflowType(drip), waiterType((id) => waiting.resolve(id)), sputterType] },
  });
  const base = await listen(app);
  return {
    base,
    drip,
    nextWaiter: async () => {
      const id = await waiting.promise;
      waiting = deferred<string>();
      return id;
    },
  };
}

/** The official SDK, unchanged, pointed at the facade. */
function client(base: string, user = 'alice', options: { maxRetries?: number } = {}): OpenAI {
  return new OpenAI({
    baseURL: `${base}/v1`,
    apiKey: 'not-checked-with-auth-off',
    maxRetries: options.maxRetries ?? 0,
    defaultHeaders: { 'x-user-id': user },
  });
}

async function getJson(base: string, path: string, user = 'alice'): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, { headers: { 'x-user-id': user } });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
}

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Follows the run's log to its end and returns the finished run and its terminal event. */
async function finished(runId: string, user = 'alice') {
  const events = await runEvents(app!, runId, user);
  return { run: await app!.runtime.session({ userId: user }).get(runId), terminal: events.at(-1)! };
}

const TEXT = 'The quick brown fox — jumps over 👋 the lazy dog.';

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

describe('GET /v1/models', () => {
  it('lists every workflow as a model, in the shape models.list() reads', async () => {
    const { base } = await start();
    const openai = client(base);
    const ids: string[] = [];
    for await (const model of openai.models.list()) {
      expect(model).toEqual({ id: model.id, object: 'model', created: expect.any(Number), owned_by: 'runway' });
      expect(Number.isInteger(model.created)).toBe(true);
      ids.push(model.id);
    }
    expect(ids.sort()).toEqual([...app!.runtime.workflows.keys()].sort());
    expect(ids).toContain('echo');

    const raw = await getJson(base, '/v1/models');
    expect(raw.body.object).toBe('list');
  });

  it('retrieves one model; an unknown one is the SDK NotFoundError with code not_found', async () => {
    const { base } = await start();
    const openai = client(base);
    expect(await openai.models.retrieve('echo')).toMatchObject({ id: 'echo', object: 'model', owned_by: 'runway' });
    const err = await rejection(openai.models.retrieve('no-such-model'));
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.status).toBe(404);
    expect(err.error).toMatchObject({ type: 'invalid_request_error', code: 'not_found', param: 'model' });
    expect(err.message).toContain('no-such-model');
  });
});

// ---------------------------------------------------------------------------------------------
// Non-streaming
// ---------------------------------------------------------------------------------------------

describe('POST /v1/chat/completions (stream: false)', () => {
  it('answers a chat.completion whose content is the echo input; the run is an ordinary run of the caller', async () => {
    const { base } = await start();
    const { data, response } = await client(base)
      .chat.completions.create({
        model: 'echo',
        messages: [{ role: 'user', content: TEXT }],
        temperature: 0.2,
        max_tokens: 50,
        user: 'end-user-7',
        n: 1,
        seed: 3,
      })
      .withResponse();

    const runId = response.headers.get('x-runway-run-id')!;
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(data).toEqual({
      id: `chatcmpl-${runId}`,
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'echo',
      choices: [{ index: 0, message: { role: 'assistant', content: TEXT, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    });

    // An ordinary run: in the caller's GET /runs, readable, replayable; nobody else's.
    const list = await getJson(base, '/runs');
    expect(list.body.data.map((r: any) => r.id)).toContain(runId);
    const run = await getJson(base, `/runs/${runId}`);
    expect(run.body).toMatchObject({ id: runId, workflow: 'echo', user_id: 'alice', status: 'succeeded', input: TEXT, output: TEXT });
    expect(data.created).toBe(Math.floor(Date.parse(run.body.created_at) / 1000));
    expect((await getJson(base, `/runs/${runId}`, 'bob')).status).toBe(404);
    expect((await getJson(base, '/runs', 'bob')).body.data).toEqual([]);
    const events = await runEvents(app!, runId, 'alice');
    expect(events.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toBe(TEXT);
  });

  it('gives a string workflow the text of the last user message (text parts joined by newlines)', async () => {
    const { base } = await start();
    const openai = client(base);
    const reply = await openai.chat.completions.create({
      model: 'echo',
      messages: [
        { role: 'system', content: 'ignored by echo' },
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: 'an answer' },
        { role: 'user', content: [{ type: 'text', text: 'line one' }, { type: 'text', text: 'line two' }] },
      ],
    });
    expect(reply.choices[0]!.message.content).toBe('line one\nline two');
  });

  it('a run that fails answers the SDK error of its code and is not retried by the SDK', async () => {
    const { base } = await start();
    // maxRetries 2: the SDK would retry a 502, but x-should-retry: false says the run already ran.
    const err = await rejection(client(base, 'alice', { maxRetries: 2 }).chat.completions.create({ model: 'sputter', messages: [{ role: 'user', content: 'x' }] }));
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(502);
    expect(err.error).toMatchObject({ type: 'server_error', code: 'upstream_error', param: null, message: 'The model provider answered 503' });
    expect(err.headers.get('x-should-retry')).toBe('false');
    const runs = await getJson(base, '/runs?workflow=sputter');
    expect(runs.body.data).toHaveLength(1);
    expect(runs.body.data[0]).toMatchObject({ status: 'failed', error: { code: 'upstream_error' } });
    expect(err.headers.get('x-runway-run-id')).toBe(runs.body.data[0].id);
  });
});

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

describe('POST /v1/chat/completions (stream: true)', () => {
  it('streams chat.completion.chunk deltas that concatenate to the echo input, then finish_reason stop', async () => {
    const { base } = await start();
    const { data: stream, response } = await client(base)
      .chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: TEXT }], stream: true })
      .withResponse();
    const runId = response.headers.get('x-runway-run-id')!;
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);

    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks.length).toBeGreaterThan(3);
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: `chatcmpl-${runId}`, object: 'chat.completion.chunk', model: 'echo', created: chunks[0]!.created });
      expect(chunk.usage).toBeUndefined();
      expect(chunk.choices).toHaveLength(1);
    }
    expect(chunks[0]!.choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
    const middle = chunks.slice(1, -1);
    expect(middle.every((c) => c.choices[0]!.finish_reason === null && Object.keys(c.choices[0]!.delta).join() === 'content')).toBe(true);
    expect(middle.map((c) => c.choices[0]!.delta.content).join('')).toBe(TEXT);
    expect(chunks.at(-1)!.choices[0]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' });

    const run = await getJson(base, `/runs/${runId}`);
    expect(run.body).toMatchObject({ status: 'succeeded', output: TEXT });
  });

  it('stream_options.include_usage adds a final chunk with no choices and the usage; others carry usage: null', async () => {
    const { base } = await start();
    const stream = await client(base).chat.completions.create({
      model: 'echo',
      messages: [{ role: 'user', content: 'a b c' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('on the wire: data-only frames ending with data: [DONE], and the run replays at /runs/:id/stream', async () => {
    const { base } = await start();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'alice' },
      body: JSON.stringify({ model: 'echo', messages: [{ role: 'user', content: 'one two' }], stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const runId = res.headers.get('x-runway-run-id')!;
    const text = await res.text();
    const frames = text.split('\n\n').filter((f) => f !== '');
    expect(frames.every((f) => f.startsWith('data: ') && !f.includes('\n'))).toBe(true);
    expect(frames.at(-1)).toBe('data: [DONE]');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);

    const replay = await fetch(`${base}/runs/${runId}/stream`, { headers: { 'x-user-id': 'alice' } });
    expect(replay.status).toBe(200);
    expect(await replay.text()).toContain('event: run.succeeded');
  });

  it('a run that fails mid-stream ends the stream with an {error} frame the SDK raises', async () => {
    const { base } = await start();
    const stream = await client(base).chat.completions.create({ model: 'sputter', messages: [{ role: 'user', content: 'x' }], stream: true });
    const contents: string[] = [];
    const err = await rejection(
      (async () => {
        for await (const chunk of stream) contents.push(chunk.choices[0]?.delta.content ?? '');
      })(),
    );
    expect(contents.join('')).toBe('partial ');
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.error).toMatchObject({ code: 'upstream_error', type: 'server_error', message: 'The model provider answered 503' });
  });
});

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

describe('errors in OpenAI shape', () => {
  it('an unknown model is NotFoundError (stream or not), no run made', async () => {
    const { base } = await start();
    const openai = client(base);
    for (const stream of [false, true]) {
      const err = await rejection(openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], stream }));
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
      expect(err.error).toEqual({ message: expect.stringContaining('gpt-4o'), type: 'invalid_request_error', param: 'model', code: 'not_found' });
    }
    expect((await getJson(base, '/runs')).body.data).toEqual([]);
  });

  const BAD: Array<[string, Record<string, unknown>, string | null, string]> = [
    ['no messages', { model: 'echo' }, 'messages', 'expected array'],
    ['empty messages', { model: 'echo', messages: [] }, 'messages', ''],
    ['a bad role', { model: 'echo', messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role', ''],
    ['n > 1', { model: 'echo', messages: [{ role: 'user', content: 'x' }], n: 2 }, 'n', 'Only n=1'],
    ['client tools', { model: 'echo', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', 'tools'],
    ['tool_choice required', { model: 'echo', messages: [{ role: 'user', content: 'x' }], tool_choice: 'required' }, 'tool_choice', 'tool_choice'],
    ['a JSON response format', { model: 'echo', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, 'response_format.type', 'json_object'],
    ['a tool message', { model: 'echo', messages: [{ role: 'tool', content: 'x', tool_call_id: 'c1' }] }, 'messages[0].role', 'tool'],
    ['an image part', { model: 'echo', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }] }] }, 'messages[0].content[0]', 'image_url'],
    ['no user message for a string workflow', { model: 'echo', messages: [{ role: 'system', content: 'x' }] }, 'messages', 'no'],
    ['stream not a boolean', { model: 'echo', messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 'stream', ''],
  ];

  it.each(BAD)('%s is BadRequestError with param and code invalid_request', async (_name, body, param, fragment) => {
    const { base } = await start();
    const err = await rejection(client(base).chat.completions.create(body as any));
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request', param });
    expect(err.message).toContain(fragment);
    expect((await getJson(base, '/runs')).body.data).toEqual([]);
  });

  it('malformed JSON, a wrong media type and an unknown /v1 route answer in the same shape', async () => {
    const { base } = await start();
    const post = (body: string, type: string) =>
      fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': type }, body });

    const malformed = await post('{"model":', 'application/json');
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_request' } });

    const media = await post('model=echo', 'application/x-www-form-urlencoded');
    expect(media.status).toBe(415);
    expect(await media.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'unsupported_media_type' } });

    const unknown = await fetch(`${base}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('x-request-id')).toBeTruthy();
    const body = await unknown.json();
    expect(body).toEqual({ error: { message: expect.stringContaining('/v1/embeddings'), type: 'invalid_request_error', param: null, code: 'not_found' } });

    // Outside /v1 errors stay problem+json.
    const runs = await fetch(`${base}/nope`);
    expect(runs.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});

// ---------------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------------

describe('cancellation', () => {
  it('aborting a streaming request through the SDK cancels the run', async () => {
    const { base, drip } = await start();
    drip.allow(1);
    const abort = new AbortController();
    const { data: stream, response } = await client(base)
      .chat.completions.create({ model: 'gate', messages: [{ role: 'user', content: 'go' }], stream: true }, { signal: abort.signal })
      .withResponse();
    const runId = response.headers.get('x-runway-run-id')!;

    let content = '';
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? '';
      if (content === 't1 ') abort.abort();
    }
    expect(content).toBe('t1 ');

    const { run, terminal } = await finished(runId);
    expect(run.status).toBe('cancelled');
    expect(terminal).toMatchObject({ type: 'run.cancelled', data: { reason: 'client_disconnected' } });
  });

  it('aborting a non-streaming request through the SDK cancels the run', async () => {
    const { base, nextWaiter } = await start();
    const abort = new AbortController();
    const outcome = rejection(
      client(base).chat.completions.create({ model: 'waiter', messages: [{ role: 'user', content: 'wait' }] }, { signal: abort.signal }),
    );
    const runId = await nextWaiter();
    abort.abort();
    expect(await outcome).toBeInstanceOf(OpenAI.APIUserAbortError);

    const { run, terminal } = await finished(runId);
    expect(run.status).toBe('cancelled');
    expect(terminal).toMatchObject({ type: 'run.cancelled', data: { reason: 'client_disconnected' } });
  });

  it('POST /runs/:id/cancel ends a streaming completion with a conflict error', async () => {
    const { base, drip } = await start();
    drip.allow(1);
    const { data: stream, response } = await client(base)
      .chat.completions.create({ model: 'gate', messages: [{ role: 'user', content: 'go' }], stream: true })
      .withResponse();
    const runId = response.headers.get('x-runway-run-id')!;
    const err = await rejection(
      (async () => {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content === 't1 ') {
            const res = await fetch(`${base}/runs/${runId}/cancel`, { method: 'POST', headers: { 'x-user-id': 'alice' } });
            expect(res.status).toBe(202);
          }
        }
      })(),
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.error).toMatchObject({ code: 'conflict', type: 'invalid_request_error' });
    expect((await finished(runId)).terminal).toMatchObject({ type: 'run.cancelled', data: { reason: 'user' } });
  });

  it('a server shutting down ends an open streaming completion with a shutting_down error, and closes', async () => {
    const { base, drip } = await start();
    drip.allow(1);
    const stream = await client(base).chat.completions.create({ model: 'gate', messages: [{ role: 'user', content: 'go' }], stream: true });
    let closing: Promise<void> | undefined;
    const err = await rejection(
      (async () => {
        for await (const chunk of stream) if (chunk.choices[0]?.delta.content === 't1 ') closing = app!.close();
      })(),
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.error).toMatchObject({ code: 'shutting_down', type: 'server_error' });
    await closing;
    app = undefined;
  });

  it('a non-streaming completion cancelled through /runs is ConflictError, not retried by the SDK', async () => {
    const { base, nextWaiter } = await start();
    const outcome = rejection(
      client(base, 'alice', { maxRetries: 2 }).chat.completions.create({ model: 'waiter', messages: [{ role: 'user', content: 'w' }] }),
    );
    const runId = await nextWaiter();
    const res = await fetch(`${base}/runs/${runId}/cancel`, { method: 'POST', headers: { 'x-user-id': 'alice' } });
    expect(res.status).toBe(202);
    const err = await outcome;
    expect(err).toBeInstanceOf(OpenAI.ConflictError);
    expect(err.error).toMatchObject({ code: 'conflict' });
    expect((await getJson(base, '/runs?workflow=waiter')).body.data).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

describe('with API keys', () => {
  it("the SDK's apiKey is the Runway key: the run belongs to the key's user; a wrong key is AuthenticationError", async () => {
    const key = 'carol-key-5d4c3b2a19f8e7d6c5b4';
    app = await buildApp({
      config: {
        server: { log_level: 'silent' },
        auth: { api_keys: [{ key, user: 'carol' }] },
        workflows: { echo: { type: 'echo', token_delay_ms: 0 } },
      },
    });
    const base = await listen(app);
    const sdk = (apiKey: string) => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, defaultHeaders: { 'x-user-id': 'mallory' } });

    const { data, response } = await sdk(key).chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    expect(data.choices[0]!.message.content).toBe('hi');
    const runId = response.headers.get('x-runway-run-id')!;
    expect((await app.runtime.session({ userId: 'carol' }).get(runId)).user_id).toBe('carol');

    const err = await rejection(sdk('wrong-key-00000000000000000').chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'hi' }] }));
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(err.error).toMatchObject({ type: 'authentication_error', code: 'unauthorized' });
    const list = await rejection(sdk('wrong-key-00000000000000000').models.list());
    expect(list).toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

// ---------------------------------------------------------------------------------------------
// A real model behind the facade
// ---------------------------------------------------------------------------------------------

describe('a chat workflow backed by an OpenAI-protocol model', () => {
  it("streams the model's tokens and usage through, with the client's history as the prompt", async () => {
    fake = await startFakeOpenAI();
    app = await makeAgentApp(fake);
    const base = await listen(app);
    const answer = 'Héllo, wörld 👋 — streamed.';
    fake.enqueue(sse([...['Hé', 'llo, wö', 'rld 👋', ' — streamed.'].map(contentChunk), finishChunk('stop'), usageChunk(12, 7)]));

    const { data: stream, response } = await client(base)
      .chat.completions.create({
        model: 'chat',
        messages: [
          { role: 'developer', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
          { role: 'user', content: 'Say hello' },
        ],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(answer);
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(1);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 });

    const sent = fake.requests[0]!.body.messages.map((m: any) => ({ role: m.role, content: m.content }));
    expect(sent).toEqual([
      { role: 'system', content: 'You are terse.' },
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'Say hello' },
    ]);
    const runId = response.headers.get('x-runway-run-id')!;
    expect(await app.runtime.session({ userId: 'alice' }).get(runId)).toMatchObject({ status: 'succeeded', output: answer, usage: { total_tokens: 19 } });
  });

  it("a model cut off by its token limit answers finish_reason 'length' (stream and not)", async () => {
    fake = await startFakeOpenAI();
    app = await makeAgentApp(fake);
    const base = await listen(app);
    const openai = client(base);
    fake.enqueue(sse([contentChunk('Once upon a'), finishChunk('length'), usageChunk(5, 3)]));
    fake.enqueue(sse([contentChunk('Once upon a'), finishChunk('length'), usageChunk(5, 3)]));

    const reply = await openai.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'A story' }] });
    expect(reply.choices[0]).toMatchObject({ message: { content: 'Once upon a' }, finish_reason: 'length' });
    expect(reply.usage).toEqual({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });

    const stream = await openai.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'A story' }], stream: true });
    const reasons: Array<string | null> = [];
    for await (const chunk of stream) reasons.push(chunk.choices[0]?.finish_reason ?? null);
    expect(reasons.at(-1)).toBe('length');
  });
});
