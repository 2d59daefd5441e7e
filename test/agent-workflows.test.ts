import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool } from '../src/workflows/define-tool.js';
import { deferred, firstEvent, makeAgentApp, readSse, runEvents, steps, TEST_API_KEY, type AgentAppOptions } from './support/agent-app.js';
import { listen } from './support/app.js';
import {
  contentChunk,
  deltaChunk,
  errorResponse,
  finishChunk,
  sse,
  startFakeOpenAI,
  toolCallChunk,
  usageChunk,
  type FakeOpenAIServer,
} from './support/fake-openai-server.js';

let fake: FakeOpenAIServer;
let app: FastifyInstance | undefined;

beforeEach(async () => {
  fake = await startFakeOpenAI();
});

afterEach(async () => {
  await app?.close();
  app = undefined;
  await fake.close();
});

async function start(options: AgentAppOptions = {}): Promise<FastifyInstance> {
  app = await makeAgentApp(fake, options);
  return app;
}

async function post(payload: Record<string, unknown>, userId = 'anonymous') {
  const res = await app!.inject({ method: 'POST', url: '/runs', headers: { 'x-user-id': userId }, payload });
  return { status: res.statusCode, body: res.json() as any, headers: res.headers };
}

/** A model turn that asks for one calculator call, its arguments cut into pieces. */
const calculatorCall = (id: string, expression: string) => [
  toolCallChunk(0, { id, name: 'calculator', arguments: '' }),
  ...JSON.stringify({ expression })
    .match(/.{1,4}/g)!
    .map((piece) => toolCallChunk(0, { arguments: piece })),
  finishChunk('tool_calls'),
];

describe('chat workflow', () => {
  it('streams the answer over SSE: tokens tagged with the LLM step, LLM_START/END, usage on the run', async () => {
    await start();
    const answer = 'Héllo, wörld 👋 — streamed.';
    fake.enqueue(sse([...['Hé', 'llo, wö', 'rld 👋', ' — streamed.'].map(contentChunk), finishChunk('stop'), usageChunk(12, 7)]));
    const base = await listen(app!);

    const res = await request(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ workflow: 'chat', input: 'Say hello' }),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = await readSse(res.body);

    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    const [llmStart] = steps(events, 'LLM_START');
    const [llmEnd] = steps(events, 'LLM_END');
    expect(llmStart).toMatchObject({ kind: 'LLM_START', name: 'default', parent_id: 's0', model: 'gpt-test', message_count: 2 });
    const tokens = events.filter((e) => e.type === 'token');
    expect(tokens.length).toBeGreaterThan(1);
    expect(tokens.every((t) => t.data.step_id === llmStart.step_id)).toBe(true);
    expect(tokens.map((t) => t.data.delta).join('')).toBe(answer);
    expect(llmEnd).toMatchObject({
      step_id: llmStart.step_id,
      finish_reason: 'stop',
      usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
      data: { output: { content: answer } },
    });
    expect(typeof llmEnd.duration_ms).toBe('number');
    const terminal = events.at(-1)!;
    expect(terminal.type).toBe('run.succeeded');
    expect(terminal.data).toEqual({ output: answer, usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 } });

    // What went upstream: the system prompt, then the input; streamed, with the key as a Bearer token.
    const sent = fake.requests[0]!;
    expect(sent.headers.authorization).toBe(`Bearer ${TEST_API_KEY}`);
    expect(sent.body).toMatchObject({
      model: 'gpt-test',
      stream: true,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Say hello' },
      ],
    });
    expect(sent.body.tools).toBeUndefined();
  });

  it('takes {messages: [...]} as input, in order after the system prompt', async () => {
    await start();
    fake.enqueue(sse([contentChunk('4'), finishChunk('stop')]));
    const input = {
      messages: [
        { role: 'user', content: 'What is 2+2?' },
        { role: 'assistant', content: 'Four.' },
        { role: 'user', content: 'As a digit?' },
      ],
    };
    const { status, body } = await post({ workflow: 'chat', input });
    expect(status).toBe(200);
    expect(body.output).toBe('4');
    expect(fake.requests[0]!.body.messages).toEqual([{ role: 'system', content: 'You are terse.' }, ...input.messages]);
  });

  it('refuses an input that is neither a string nor {messages}', async () => {
    await start();
    const { status, body } = await post({ workflow: 'chat', input: { messages: [{ role: 'tool', content: 'x' }] } });
    expect(status).toBe(400);
    expect(body.code).toBe('invalid_request');
    expect(fake.requests).toHaveLength(0);
  });

  it('retries a 429 that asks to wait (Retry-After), then succeeds: one LLM step, one answer', async () => {
    await start();
    fake.enqueue(errorResponse(429, 'Rate limit reached', { 'retry-after': '1' }), sse([contentChunk('ok'), finishChunk('stop')]));
    const { status, body } = await post({ workflow: 'chat', input: 'hi' });
    expect(status).toBe(200);
    expect(body.output).toBe('ok');
    expect(fake.requests).toHaveLength(2);
    const events = await runEvents(app!, body.id);
    expect(steps(events, 'LLM_START')).toHaveLength(1);
    expect(steps(events, 'LLM_END')[0].data).toEqual({ output: { content: 'ok' } });
  });

  it('fails the run with upstream_error, without a retry, when the connection breaks after the first token', async () => {
    await start();
    fake.enqueue(sse([contentChunk('Half an ans'), contentChunk('wer')], { done: false, then: 'destroy', split: 'event' }));
    const { status, body } = await post({ workflow: 'chat', input: 'hi' });
    expect(status).toBe(502);
    expect(body.code).toBe('upstream_error');
    expect(body.detail).toMatch(/LLM "default"/);
    expect(body.detail).not.toContain(TEST_API_KEY);
    expect(fake.requests).toHaveLength(1);

    const run = (await app!.inject({ method: 'GET', url: `/runs/${body.run_id}` })).json();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'upstream_error' } });
    const events = await runEvents(app!, body.run_id);
    expect(events.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toBe('Half an answer');
    expect(steps(events, 'LLM_END')[0].data.error).toMatchObject({ code: 'upstream_error' });
    expect(events.at(-1)!.type).toBe('run.failed');
  });

  it('fails with upstream_error naming the status after 500 three times', async () => {
    await start();
    fake.enqueue(errorResponse(500, 'boom 1'), errorResponse(500, 'boom 2'), errorResponse(500, 'boom 3'));
    const { status, body } = await post({ workflow: 'chat', input: 'hi' });
    expect(status).toBe(502);
    expect(body.detail).toMatch(/HTTP 500: boom 3/);
    expect(fake.requests).toHaveLength(3);
  });

  it('cancel mid-stream closes the upstream socket and the run ends cancelled', async () => {
    await start();
    const never = new Promise<void>(() => {});
    fake.enqueue(sse([contentChunk('Once upon'), contentChunk(' a time')], { done: false, hold: never, split: 'event' }));
    const { status, body: created } = await post({ workflow: 'chat', input: 'tell a story', background: true });
    expect(status).toBe(202);

    await firstEvent(app!, created.id, (e) => e.type === 'token');
    await fake.waitForRequests(1);
    const cancel = await app!.inject({ method: 'POST', url: `/runs/${created.id}/cancel` });
    expect(cancel.statusCode).toBe(202);
    expect(cancel.json().status).toBe('cancelled');
    // The fake server sees its connection closed before it finished the response.
    await expect(fake.requests[0]!.closed).resolves.toEqual({ responseFinished: false });
    const events = await runEvents(app!, created.id);
    expect(events.at(-1)).toMatchObject({ type: 'run.cancelled', data: { reason: 'user' } });
    expect(fake.requests).toHaveLength(1);
  });

  it('fails with run_timeout when the stream stalls past the run timeout', async () => {
    await start();
    fake.enqueue(sse([contentChunk('thinking')], { done: false, then: 'stall', split: 'event' }));
    const { status, body } = await post({ workflow: 'chat', input: 'hi', timeout_ms: 200 });
    expect(status).toBe(504);
    expect(body.code).toBe('run_timeout');
    await expect(fake.requests[0]!.closed).resolves.toEqual({ responseFinished: false });
  });

  it('fails with upstream_error on a stalled stream (idle timeout)', async () => {
    await start({ llm: { idle_timeout_ms: 100, max_retries: 0 } });
    fake.enqueue(sse([contentChunk('thinking')], { done: false, then: 'stall', split: 'event' }));
    const { status, body } = await post({ workflow: 'chat', input: 'hi' });
    expect(status).toBe(502);
    expect(body.detail).toMatch(/idle timeout/);
  });
});

describe('tool_agent workflow', () => {
  it('executes a tool call whose arguments arrive split across chunks, then answers', async () => {
    await start();
    fake.enqueue(
      sse([...calculatorCall('call_1', '(3 + 4) * 6'), usageChunk(20, 9)]),
      sse([contentChunk('It is '), contentChunk('42.'), finishChunk('stop'), usageChunk(40, 3)]),
    );
    const { status, body } = await post({ workflow: 'agent', input: 'What is (3+4)*6?' });
    expect(status).toBe(200);
    expect(body.output).toBe('It is 42.');

    // The second request carries the assistant's tool call and the tool's result.
    const first = fake.requests[0]!.body;
    expect(first.tools).toEqual([
      expect.objectContaining({ type: 'function', function: expect.objectContaining({ name: 'calculator' }) }),
    ]);
    expect(first.tools[0].function.parameters).toMatchObject({ type: 'object', required: ['expression'] });
    const second = fake.requests[1]!.body.messages;
    expect(second.slice(-2)).toEqual([
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"(3 + 4) * 6"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"expression":"(3 + 4) * 6","result":42}' },
    ]);

    const events = await runEvents(app!, body.id);
    const kinds = events.filter((e) => e.type === 'step').map((e) => e.data.kind);
    expect(kinds).toEqual(['WORKFLOW_START', 'LLM_START', 'LLM_END', 'TOOL_START', 'TOOL_END', 'LLM_START', 'LLM_END', 'WORKFLOW_END']);
    const [toolStart] = steps(events, 'TOOL_START');
    const [toolEnd] = steps(events, 'TOOL_END');
    expect(toolStart).toMatchObject({ name: 'calculator', parent_id: 's0', tool_call_id: 'call_1', data: { input: { expression: '(3 + 4) * 6' } } });
    expect(toolEnd).toMatchObject({ step_id: toolStart.step_id, data: { output: { result: 42 } } });
    expect(typeof toolEnd.duration_ms).toBe('number');
    expect(steps(events, 'LLM_END')[0]).toMatchObject({
      finish_reason: 'tool_calls',
      data: { output: { tool_calls: [{ id: 'call_1', name: 'calculator' }] } },
    });
  });

  it('sums usage over every LLM call of the run', async () => {
    await start();
    fake.enqueue(
      sse([...calculatorCall('c1', '1+1'), usageChunk(10, 5)]),
      sse([...calculatorCall('c2', '2+2'), usageChunk(30, 6)]),
      sse([contentChunk('2 and 4'), finishChunk('stop'), usageChunk(50, 4)]),
    );
    const { body } = await post({ workflow: 'agent', input: 'sums' });
    expect(body.usage).toEqual({ prompt_tokens: 90, completion_tokens: 15, total_tokens: 105 });
    const events = await runEvents(app!, body.id);
    expect(steps(events, 'LLM_END').map((s) => s.usage.total_tokens)).toEqual([15, 36, 54]);
    expect(events.at(-1)!.data.usage).toEqual(body.usage);
  });

  it('runs two tool calls of one turn in parallel and returns both results in call order', async () => {
    // Each call waits until both have started: run one after the other, they would never finish.
    const started: string[] = [];
    const bothStarted = deferred();
    const rendezvous = defineTool({
      name: 'rendezvous',
      description: 'Waits for its partner',
      input: z.object({ who: z.string() }),
      async run({ who }, ctx) {
        started.push(who);
        if (started.length === 2) bothStarted.resolve();
        await Promise.race([
          bothStarted.promise,
          new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true })),
        ]);
        return `${who} met ${started.find((s) => s !== who)}`;
      },
    });
    await start({
      registry: { tools: [rendezvous] },
      workflows: { pair: { type: 'tool_agent', tools: ['rendezvous'] } },
    });
    fake.enqueue(
      sse([
        toolCallChunk(0, { id: 'call_a', name: 'rendezvous', arguments: '{"who":' }),
        toolCallChunk(1, { id: 'call_b', name: 'rendezvous', arguments: '{"who":"bob"}' }),
        toolCallChunk(0, { arguments: '"alice"}' }),
        finishChunk('tool_calls'),
      ]),
      sse([contentChunk('They met.'), finishChunk('stop')]),
    );
    const { status, body } = await post({ workflow: 'pair', input: 'introduce them', timeout_ms: 5000 });
    expect(status).toBe(200);
    expect(body.output).toBe('They met.');
    expect(fake.requests[1]!.body.messages.slice(-2)).toEqual([
      { role: 'tool', tool_call_id: 'call_a', content: 'alice met bob' },
      { role: 'tool', tool_call_id: 'call_b', content: 'bob met alice' },
    ]);
    const events = await runEvents(app!, body.id);
    const toolKinds = events.filter((e) => e.type === 'step' && e.data.kind.startsWith('TOOL')).map((e) => e.data.kind);
    expect(toolKinds.slice(0, 2)).toEqual(['TOOL_START', 'TOOL_START']);
  });

  it('fails with upstream_error and a clear message when max_iterations calls all asked for tools', async () => {
    await start({ workflows: { agent: { type: 'tool_agent', tools: ['calculator'], max_iterations: 2 } } });
    fake.enqueue(sse(calculatorCall('c1', '1+1')), sse(calculatorCall('c2', '2+2')), sse([contentChunk('never asked'), finishChunk('stop')]));
    const { status, body } = await post({ workflow: 'agent', input: 'loop forever' });
    expect(status).toBe(502);
    expect(body.code).toBe('upstream_error');
    expect(body.detail).toMatch(/max_iterations \(2\)/);
    expect(fake.requests).toHaveLength(2);
    const run = (await app!.inject({ method: 'GET', url: `/runs/${body.run_id}` })).json();
    expect(run.error.code).toBe('upstream_error');
    // Both iterations' tools did run.
    expect(steps(await runEvents(app!, body.run_id), 'TOOL_END')).toHaveLength(2);
  });

  it('hands a tool that throws back to the model as the tool result, and the run goes on', async () => {
    const boom = defineTool({
      name: 'boom',
      description: 'Always fails',
      input: z.object({}),
      run() {
        throw new Error('disk on fire');
      },
    });
    await start({ registry: { tools: [boom] }, workflows: { agent: { type: 'tool_agent', tools: ['boom'] } } });
    fake.enqueue(
      sse([toolCallChunk(0, { id: 'c1', name: 'boom', arguments: '{}' }), finishChunk('tool_calls')]),
      sse([contentChunk('The tool failed.'), finishChunk('stop')]),
    );
    const { status, body } = await post({ workflow: 'agent', input: 'try it' });
    expect(status).toBe(200);
    expect(body.output).toBe('The tool failed.');
    const toolMessage = fake.requests[1]!.body.messages.at(-1);
    expect(toolMessage).toEqual({ role: 'tool', tool_call_id: 'c1', content: JSON.stringify({ error: 'disk on fire' }) });
    const [end] = steps(await runEvents(app!, body.id), 'TOOL_END');
    expect(end.data).toEqual({ error: { message: 'disk on fire' } });
  });

  it('returns bad arguments (schema, JSON, unknown tool) to the model without running the tool', async () => {
    const calls: unknown[] = [];
    const strict = defineTool({
      name: 'strict',
      description: 'Wants a positive count',
      input: z.object({ count: z.number().int().positive() }),
      run(input) {
        calls.push(input);
        return 'ran';
      },
    });
    await start({ registry: { tools: [strict] }, workflows: { agent: { type: 'tool_agent', tools: ['strict', 'calculator'] } } });
    fake.enqueue(
      sse([
        toolCallChunk(0, { id: 'schema', name: 'strict', arguments: '{"count": -3}' }),
        toolCallChunk(1, { id: 'json', name: 'calculator', arguments: '{"expression": "1+' }),
        toolCallChunk(2, { id: 'unknown', name: 'rm_rf', arguments: '{}' }),
        toolCallChunk(3, { id: 'missing', name: 'calculator', arguments: '{"expr": "1+1"}' }),
        finishChunk('tool_calls'),
      ]),
      sse([contentChunk('Sorry.'), finishChunk('stop')]),
    );
    const { status, body } = await post({ workflow: 'agent', input: 'go' });
    expect(status).toBe(200);
    expect(calls).toEqual([]);
    const results = fake.requests[1]!.body.messages.slice(-4) as Array<{ tool_call_id: string; content: string }>;
    const byId = Object.fromEntries(results.map((m) => [m.tool_call_id, JSON.parse(m.content).error as string]));
    expect(byId.schema).toMatch(/^invalid arguments: count: /);
    expect(byId.json).toMatch(/not valid JSON/);
    expect(byId.unknown).toMatch(/unknown tool "rm_rf".*strict, calculator/);
    expect(byId.missing).toMatch(/^invalid arguments: expression: /);
    const events = await runEvents(app!, body.id);
    expect(steps(events, 'TOOL_END').every((s) => typeof s.data.error.message === 'string')).toBe(true);
    // The malformed arguments are shown as the raw text they were.
    expect(steps(events, 'TOOL_START').find((s) => s.tool_call_id === 'json').data.input).toBe('{"expression": "1+');
    // A tool name the model invented does not become a step (and metric label) name of its own.
    const unknownStart = steps(events, 'TOOL_START').find((s) => s.tool_call_id === 'unknown');
    expect(unknownStart.name).toBe('unknown_tool');
    expect(unknownStart.requested_tool).toBe('rm_rf');
  });

  it('tells the model a tool timed out, abandoning a tool that never answers', async () => {
    const hang = defineTool({ name: 'hang', description: 'Never answers', input: z.object({}), run: () => new Promise(() => {}) });
    await start({ registry: { tools: [hang] }, workflows: { agent: { type: 'tool_agent', tools: ['hang'], tool_timeout_ms: 50 } } });
    fake.enqueue(
      sse([toolCallChunk(0, { id: 'h', name: 'hang', arguments: '{}' }), finishChunk('tool_calls')]),
      sse([contentChunk('It hung.'), finishChunk('stop')]),
    );
    const { status, body } = await post({ workflow: 'agent', input: 'go' });
    expect(status).toBe(200);
    expect(JSON.parse(fake.requests[1]!.body.messages.at(-1).content)).toEqual({ error: 'the tool did not answer within 50 ms' });
    expect(body.output).toBe('It hung.');
  });

  it('abandons a tool that ignores the abort: cancel ends the run at once', async () => {
    const toolStarted = deferred();
    const stubborn = defineTool({
      name: 'stubborn',
      description: 'Ignores its signal',
      input: z.object({}),
      run: () => {
        toolStarted.resolve();
        return new Promise(() => {});
      },
    });
    await start({ registry: { tools: [stubborn] }, workflows: { agent: { type: 'tool_agent', tools: ['stubborn'] } } });
    fake.enqueue(sse([toolCallChunk(0, { id: 's', name: 'stubborn', arguments: '{}' }), finishChunk('tool_calls')]));
    const { body: created } = await post({ workflow: 'agent', input: 'go', background: true });
    await toolStarted.promise;
    const cancel = await app!.inject({ method: 'POST', url: `/runs/${created.id}/cancel` });
    expect(cancel.json().status).toBe('cancelled');
    expect((await runEvents(app!, created.id)).at(-1)!.type).toBe('run.cancelled');
    expect(fake.requests).toHaveLength(1);
  });

  it('streams the text a model says next to its tool calls, tagged with that LLM step', async () => {
    await start();
    fake.enqueue(
      sse([contentChunk('Let me compute. '), ...calculatorCall('c1', '2^10')]),
      sse([contentChunk('1024'), finishChunk('stop')]),
    );
    const { body } = await post({ workflow: 'agent', input: '2^10?' });
    expect(body.output).toBe('1024');
    const events = await runEvents(app!, body.id);
    const llmIds = steps(events, 'LLM_START').map((s) => s.step_id);
    const tokens = events.filter((e) => e.type === 'token');
    expect(tokens.map((t) => [t.data.step_id, t.data.delta])).toEqual([
      [llmIds[0], 'Let me compute. '],
      [llmIds[1], '1024'],
    ]);
    expect(fake.requests[1]!.body.messages.at(-2)).toMatchObject({ role: 'assistant', content: 'Let me compute. ' });
  });

  it('fails as upstream_error when the stream reports an error in-band', async () => {
    await start();
    fake.enqueue(sse([deltaChunk({ role: 'assistant' }), { error: { message: 'model overloaded', code: 'overloaded' } }]));
    const { status, body } = await post({ workflow: 'agent', input: 'hi' });
    expect(status).toBe(502);
    expect(body.detail).toMatch(/model overloaded/);
  });
});
