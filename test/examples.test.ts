import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { shoutWorkflow } from '../examples/custom-workflow.js';
import { wordCount } from '../examples/custom-tool.js';
import { buildApp } from '../src/app.js';
import { makeAgentApp, runEvents } from './support/agent-app.js';
import { contentChunk, finishChunk, sse, startFakeOpenAI, toolCallChunk, type FakeOpenAIServer } from './support/fake-openai-server.js';

// The examples are documentation: these keep them true.
let app: FastifyInstance | undefined;
let fake: FakeOpenAIServer | undefined;
afterEach(async () => {
  await app?.close();
  await fake?.close();
  app = fake = undefined;
});

describe('examples/', () => {
  it('custom-workflow.ts: the shout type registers, validates its config and streams tokens that make the output', async () => {
    app = await buildApp({
      config: { server: { log_level: 'silent' }, workflows: { loud: { type: 'shout', delay_ms: 0 } } },
      registry: { workflowTypes: [shoutWorkflow] },
    });
    const res = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'loud', input: 'make some noise' } });
    expect(res.json()).toMatchObject({ status: 'succeeded', output: 'MAKE SOME NOISE' });
    const tokens = (await runEvents(app, res.json().id)).filter((e) => e.type === 'token');
    expect(tokens.map((t) => t.data.delta).join('')).toBe('MAKE SOME NOISE');

    await expect(
      buildApp({ config: { server: { log_level: 'silent' }, workflows: { loud: { type: 'shout', delay: 1 } } }, registry: { workflowTypes: [shoutWorkflow] } }),
    ).rejects.toThrow(/workflows\.loud: .*delay/);
  });

  it('custom-tool.ts: word_count is offered to the model and its answer goes back', async () => {
    fake = await startFakeOpenAI();
    app = await makeAgentApp(fake, {
      registry: { tools: [wordCount] },
      workflows: { counter: { type: 'tool_agent', tools: ['word_count'] } },
    });
    fake.enqueue(
      sse([toolCallChunk(0, { id: 'w', name: 'word_count', arguments: '{"text":"the quick brown fox"}' }), finishChunk('tool_calls')]),
      sse([contentChunk('Four words.'), finishChunk('stop')]),
    );
    const res = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'counter', input: 'count' } });
    expect(res.json().output).toBe('Four words.');
    expect(fake.requests[0]!.body.tools[0].function).toMatchObject({ name: 'word_count', parameters: { required: ['text'] } });
    expect(fake.requests[1]!.body.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: 'w', content: '{"words":4,"characters":19}' });
  });
});
