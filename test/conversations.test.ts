import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryConversationStore } from '../src/store/memory/memory-conversation-store.js';
import type { ConversationMessage } from '../src/store/conversation-store.js';
import { makeAgentApp, type AgentAppOptions } from './support/agent-app.js';
import { contentChunk, errorResponse, finishChunk, sse, startFakeOpenAI, toolCallChunk, type FakeOpenAIServer } from './support/fake-openai-server.js';

describe('conversations through the API', () => {
  let fake: FakeOpenAIServer;
  let app: FastifyInstance;

  beforeEach(async () => {
    fake = await startFakeOpenAI();
  });
  afterEach(async () => {
    await app?.close();
    await fake.close();
  });

  async function start(options: AgentAppOptions = {}) {
    app = await makeAgentApp(fake, options);
  }

  const answer = (text: string) => sse([contentChunk(text), finishChunk('stop')]);

  async function run(userId: string, payload: Record<string, unknown>) {
    const res = await app.inject({ method: 'POST', url: '/runs', headers: { 'x-user-id': userId }, payload: { workflow: 'chat', ...payload } });
    return { status: res.statusCode, body: res.json() as any };
  }

  const getConv = (userId: string, id: string) => app.inject({ method: 'GET', url: `/conversations/${id}`, headers: { 'x-user-id': userId } });
  const deleteConv = (userId: string, id: string) => app.inject({ method: 'DELETE', url: `/conversations/${id}`, headers: { 'x-user-id': userId } });

  it('carries the history of earlier runs into the prompt and lists it, oldest first', async () => {
    await start();
    fake.enqueue(answer('Hi Ada.'), answer('Your name is Ada.'));
    const first = await run('alice', { input: 'My name is Ada.', conversation_id: 'c1' });
    expect(first.status).toBe(200);
    expect(first.body.conversation_id).toBe('c1');
    const second = await run('alice', { input: 'What is my name?', conversation_id: 'c1' });
    expect(second.body.output).toBe('Your name is Ada.');

    expect(fake.requests[1]!.body.messages).toEqual([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Hi Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);

    const res = await getConv('alice', 'c1');
    expect(res.statusCode).toBe(200);
    const conv = res.json();
    expect(conv.id).toBe('c1');
    expect(conv.user_id).toBeUndefined();
    expect(conv.messages.map((m: ConversationMessage) => [m.role, m.content, m.run_id])).toEqual([
      ['user', 'My name is Ada.', first.body.id],
      ['assistant', 'Hi Ada.', first.body.id],
      ['user', 'What is my name?', second.body.id],
      ['assistant', 'Your name is Ada.', second.body.id],
    ]);
    expect(Date.parse(conv.updated_at)).toBeGreaterThanOrEqual(Date.parse(conv.created_at));
  });

  it("keeps conversations per user: another user's is 404 and their runs do not see it", async () => {
    await start();
    fake.enqueue(answer('Noted.'), answer('I do not know.'));
    await run('alice', { input: 'The code is 1234.', conversation_id: 'shared-id' });

    expect((await getConv('bob', 'shared-id')).statusCode).toBe(404);
    expect((await getConv('bob', 'shared-id')).json().code).toBe('not_found');
    expect((await deleteConv('bob', 'shared-id')).statusCode).toBe(404);

    // Bob's run with the same id starts from nothing and leaves Alice's conversation alone.
    await run('bob', { input: 'What is the code?', conversation_id: 'shared-id' });
    expect(fake.requests[1]!.body.messages).toEqual([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'What is the code?' },
    ]);
    expect((await getConv('alice', 'shared-id')).json().messages.map((m: ConversationMessage) => m.content)).toEqual([
      'The code is 1234.',
      'Noted.',
    ]);
    expect((await getConv('bob', 'shared-id')).json().messages.map((m: ConversationMessage) => m.content)).toEqual([
      'What is the code?',
      'I do not know.',
    ]);
  });

  it('adds nothing when the run fails', async () => {
    await start();
    fake.enqueue(answer('One.'), errorResponse(400, 'context too long'));
    await run('alice', { input: 'Count.', conversation_id: 'c2' });
    const failed = await run('alice', { input: 'Again.', conversation_id: 'c2' });
    expect(failed.status).toBe(502);
    expect((await getConv('alice', 'c2')).json().messages).toHaveLength(2);
  });

  it('keeps only the user message and the final answer of a tool_agent run, not the tool traffic', async () => {
    await start();
    fake.enqueue(
      sse([toolCallChunk(0, { id: 't', name: 'calculator', arguments: '{"expression":"6*7"}' }), finishChunk('tool_calls')]),
      answer('42'),
      answer('Still 42'),
    );
    await run('alice', { workflow: 'agent', input: '6*7?', conversation_id: 'math' });
    await run('alice', { workflow: 'agent', input: 'And again?', conversation_id: 'math' });
    expect(fake.requests[2]!.body.messages.slice(1)).toEqual([
      { role: 'user', content: '6*7?' },
      { role: 'assistant', content: '42' },
      { role: 'user', content: 'And again?' },
    ]);
  });

  it('appends every message of a {messages} input', async () => {
    await start();
    fake.enqueue(answer('Blue.'));
    await run('alice', {
      input: { messages: [{ role: 'user', content: 'Sky colour?' }, { role: 'assistant', content: 'Which sky?' }, { role: 'user', content: 'Ours.' }] },
      conversation_id: 'sky',
    });
    expect((await getConv('alice', 'sky')).json().messages.map((m: ConversationMessage) => m.role)).toEqual([
      'user',
      'assistant',
      'user',
      'assistant',
    ]);
  });

  it('DELETE forgets the conversation (204), then it is 404; the next run starts afresh', async () => {
    await start();
    fake.enqueue(answer('A'), answer('B'));
    await run('alice', { input: 'first', conversation_id: 'gone' });
    const del = await deleteConv('alice', 'gone');
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    expect((await getConv('alice', 'gone')).statusCode).toBe(404);
    expect((await deleteConv('alice', 'gone')).statusCode).toBe(404);
    await run('alice', { input: 'second', conversation_id: 'gone' });
    expect(fake.requests[1]!.body.messages).toHaveLength(2);
  });

  it('refuses a malformed conversation id', async () => {
    await start();
    const res = await getConv('alice', 'bad%20id');
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('invalid_request');
  });

  it('trims the history to the configured bounds', async () => {
    await start({ conversations: { max_messages: 3 } });
    fake.enqueue(answer('a1'), answer('a2'), answer('a3'));
    for (const q of ['q1', 'q2', 'q3']) await run('alice', { input: q, conversation_id: 'short' });
    expect(fake.requests[2]!.body.messages.slice(1).map((m: { content: string }) => m.content)).toEqual(['a1', 'q2', 'a2', 'q3']);
    expect((await getConv('alice', 'short')).json().messages.map((m: ConversationMessage) => m.content)).toEqual(['a2', 'q3', 'a3']);
  });
});

describe('MemoryConversationStore', () => {
  let now = 0;
  const message = (content: string, role: ConversationMessage['role'] = 'user'): ConversationMessage => ({
    role,
    content,
    run_id: 'r',
    created_at: new Date(now).toISOString(),
  });
  const make = (options: Partial<ConstructorParameters<typeof MemoryConversationStore>[0]> = {}) =>
    new MemoryConversationStore({ maxMessages: 100, maxChars: 10_000, ttlS: 60, maxConversations: 100, now: () => now, ...options });

  beforeEach(() => {
    now = 1_000_000;
  });

  it('keys conversations by (user, id)', async () => {
    const store = make();
    await store.append('alice', 'c', [message('for alice')]);
    await store.append('bob', 'c', [message('for bob')]);
    expect((await store.get('alice', 'c'))!.messages.map((m) => m.content)).toEqual(['for alice']);
    expect((await store.get('bob', 'c'))!.messages.map((m) => m.content)).toEqual(['for bob']);
    expect(await store.get('carol', 'c')).toBeUndefined();
    expect(await store.delete('carol', 'c')).toBe(false);
  });

  it('hands out copies: changing a result does not change the store', async () => {
    const store = make();
    const conv = await store.append('alice', 'c', [message('kept')]);
    conv.messages[0]!.content = 'tampered';
    conv.messages.push(message('extra'));
    expect((await store.get('alice', 'c'))!.messages.map((m) => m.content)).toEqual(['kept']);
  });

  it('drops the oldest messages beyond max_messages and max_chars, always keeping the newest', async () => {
    const store = make({ maxMessages: 3, maxChars: 10 });
    await store.append('u', 'c', [message('1'), message('2'), message('3'), message('4')]);
    expect((await store.get('u', 'c'))!.messages.map((m) => m.content)).toEqual(['2', '3', '4']);
    await store.append('u', 'c', [message('123456789')]);
    expect((await store.get('u', 'c'))!.messages.map((m) => m.content)).toEqual(['4', '123456789']);
    await store.append('u', 'c', [message('a message longer than the bound')]);
    expect((await store.get('u', 'c'))!.messages.map((m) => m.content)).toEqual(['a message longer than the bound']);
  });

  it('forgets a conversation not written to within the TTL, and a write renews it', async () => {
    const store = make({ ttlS: 60 });
    await store.append('u', 'old', [message('x')]);
    await store.append('u', 'renewed', [message('x')]);
    now += 50_000;
    await store.append('u', 'renewed', [message('y')]);
    now += 20_000;
    expect(await store.get('u', 'old')).toBeUndefined();
    expect((await store.get('u', 'renewed'))!.messages).toHaveLength(2);
    // An expired conversation restarts empty.
    const restarted = await store.append('u', 'old', [message('z')]);
    expect(restarted.messages.map((m) => m.content)).toEqual(['z']);
  });

  it('evicts the least recently written conversations beyond the cap, and expired ones first', async () => {
    const store = make({ maxConversations: 2 });
    await store.append('u', 'a', [message('a')]);
    await store.append('u', 'b', [message('b')]);
    await store.append('u', 'a', [message('a2')]);
    await store.append('u', 'c', [message('c')]);
    expect(store.size).toBe(2);
    expect(await store.get('u', 'b')).toBeUndefined();
    expect(await store.get('u', 'a')).toBeDefined();
    expect(await store.get('u', 'c')).toBeDefined();
  });

  it('sweeps expired conversations on write, so memory stays bounded without reads', async () => {
    const store = make({ ttlS: 1 });
    for (let i = 0; i < 50; i++) await store.append('u', `c${i}`, [message('x')]);
    now += 2_000;
    await store.append('u', 'fresh', [message('x')]);
    expect(store.size).toBe(1);
  });
});
