import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildApp } from '../src/app.js';
import { ConfigError, loadConfig } from '../src/config/load-config.js';
import type { ChatModel } from '../src/llm/chat-model.js';
import { defineLlmProvider } from '../src/llm/llm-provider.js';
import { contentChunk, finishChunk, sse, startFakeOpenAI, type FakeOpenAIServer } from './support/fake-openai-server.js';

const ROOT = resolve(import.meta.dirname, '..');
const SHIPPED = join(ROOT, 'config/runway.yaml');

/** Builds the app from a raw config; expects a ConfigError and returns its message. */
async function bootError(config: Record<string, unknown>): Promise<string> {
  let thrown: unknown;
  try {
    const app = await buildApp({ config: { server: { log_level: 'silent' }, ...config } });
    await app.close();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a ConfigError').toBeInstanceOf(ConfigError);
  return (thrown as Error).message;
}

const llm = { provider: 'openai', base_url: 'http://127.0.0.1:9/v1', model: 'm' };

describe('the builder fails fast, naming the offending key', () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['an unknown tool', { llms: { default: llm }, workflows: { a: { type: 'tool_agent', tools: ['nope'] } } }, /workflows\.a\.tools: unknown tool "nope"/],
    ['an unknown llm', { llms: { default: llm }, workflows: { a: { type: 'chat', llm: 'gpt5' } } }, /workflows\.a\.llm: unknown llm "gpt5" \(known: default\)/],
    ['an llm with no llms section', { workflows: { a: { type: 'chat' } } }, /workflows\.a\.llm: unknown llm "default"/],
    ['an unknown provider', { llms: { default: { ...llm, provider: 'telepathy' } } }, /llms\.default\.provider: unknown provider "telepathy" \(known: openai\)/],
    ['a misspelt provider key', { llms: { default: { ...llm, max_retrys: 3 } } }, /llms\.default: .*max_retrys/],
    ['a provider key of the wrong type', { llms: { default: { ...llm, max_retries: 'lots' } } }, /llms\.default\.max_retries: /],
    ['a provider key out of range', { llms: { default: { ...llm, idle_timeout_ms: 0 } } }, /llms\.default\.idle_timeout_ms: /],
    ['a non-http base_url', { llms: { default: { ...llm, base_url: 'ftp://models.example.com' } } }, /llms\.default\.base_url: /],
    ['a missing model', { llms: { default: { provider: 'openai', base_url: 'http://x/v1' } } }, /llms\.default\.model: /],
    ['an unknown tool type', { tools: { t: { type: 'teleport' } } }, /tools\.t\.type: unknown type "teleport"/],
    ['a bad http_get allow entry', { tools: { web: { type: 'http_get', allow: ['ftp://x/'] } } }, /tools\.web\.allow\.0: /],
    ['a bad time zone', { tools: { clock: { type: 'current_time', default_time_zone: 'Moon/Base' } } }, /tools\.clock\.default_time_zone: unknown time zone/],
    ['max_iterations 0', { llms: { default: llm }, workflows: { a: { type: 'tool_agent', max_iterations: 0 } } }, /workflows\.a\.max_iterations: /],
    ['a misspelt workflow key', { llms: { default: llm }, workflows: { a: { type: 'chat', system_promt: 'x' } } }, /workflows\.a: .*system_promt/],
    ['temperature out of range', { llms: { default: llm }, workflows: { a: { type: 'chat', temperature: 3 } } }, /workflows\.a\.temperature: /],
    ['a tool name models refuse', { llms: { default: llm }, tools: { 'my.calc': { type: 'calculator' } }, workflows: { a: { type: 'tool_agent', tools: ['my.calc'] } } }, /workflows\.a\.tools: tool name "my\.calc"/],
    ['a tool listed twice', { llms: { default: llm }, tools: { calc: { type: 'calculator' } }, workflows: { a: { type: 'tool_agent', tools: ['calc', 'calc'] } } }, /listed twice/],
    ['a conversations bound', { conversations: { max_messages: 1 } }, /conversations\.max_messages: /],
  ])('%s', async (_what, config, message) => {
    expect(await bootError(config)).toMatch(message);
  });

  it('takes numeric strings from ${VAR} interpolation', async () => {
    const app = await buildApp({
      config: {
        server: { log_level: 'silent' },
        llms: { default: { ...llm, max_retries: '0', idle_timeout_ms: '1500' } },
        workflows: { a: { type: 'tool_agent', max_iterations: '3', temperature: '0.2' } },
      },
    });
    await app.close();
  });
});

describe('models are released at shutdown', () => {
  it('closes every LLM client when the app closes', async () => {
    const closed: string[] = [];
    const recording = defineLlmProvider({
      provider: 'recording',
      configSchema: z.object({ provider: z.literal('recording') }).strict(),
      create: (_cfg, name): ChatModel => ({
        name,
        model: 'none',
        chat: () => Promise.reject(new Error('not used')),
        close: async () => void closed.push(name),
      }),
    });
    const app = await buildApp({
      config: { server: { log_level: 'silent' }, llms: { a: { provider: 'recording' }, b: { provider: 'recording' } } },
      registry: { llmProviders: [recording] },
    });
    await app.ready();
    expect(closed).toEqual([]);
    await app.close();
    expect(closed.sort()).toEqual(['a', 'b']);
  });
});

describe('the shipped config', () => {
  let fake: FakeOpenAIServer;
  beforeEach(async () => {
    fake = await startFakeOpenAI();
  });
  afterEach(async () => {
    await fake.close();
  });

  it('without OPENAI_API_KEY/OPENAI_BASE_URL: echo stays the default, assistant answers upstream_error saying what to set', async () => {
    const config = loadConfig({ RUNWAY_CONFIG: SHIPPED, LOG_LEVEL: 'silent' });
    const app = await buildApp({ config });
    try {
      expect(app.runtime.defaultWorkflow).toBe('echo');
      const listed = (await app.inject({ method: 'GET', url: '/workflows' })).json().data.map((w: { name: string }) => w.name);
      expect(listed).toEqual(expect.arrayContaining(['echo', 'assistant']));

      const echo = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'offline works' } });
      expect(echo.json()).toMatchObject({ workflow: 'echo', output: 'offline works' });

      const res = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'assistant', input: 'What is 2+2?' } });
      expect(res.statusCode).toBe(502);
      const problem = res.json();
      expect(problem.code).toBe('upstream_error');
      expect(problem.detail).toMatch(/not configured/);
      expect(problem.detail).toContain('OPENAI_API_KEY');
      expect(problem.detail).toContain('OPENAI_BASE_URL');
    } finally {
      await app.close();
    }
  });

  it('with OPENAI_BASE_URL: assistant is the default, a tool_agent with calculator and clock on that server', async () => {
    const config = loadConfig({ RUNWAY_CONFIG: SHIPPED, LOG_LEVEL: 'silent', OPENAI_BASE_URL: fake.baseUrl, RUNWAY_MODEL: 'local-model' });
    const app = await buildApp({ config });
    try {
      expect(app.runtime.defaultWorkflow).toBe('assistant');
      fake.enqueue(sse([contentChunk('Hello!'), finishChunk('stop')]));
      const res = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'Hi' } });
      expect(res.json()).toMatchObject({ workflow: 'assistant', status: 'succeeded', output: 'Hello!' });
      const sent = fake.requests[0]!;
      expect(sent.body.model).toBe('local-model');
      expect(sent.headers.authorization).toBeUndefined();
      expect(sent.body.tools.map((t: { function: { name: string } }) => t.function.name)).toEqual(['calculator', 'clock']);
      expect(sent.body.messages[0].role).toBe('system');
    } finally {
      await app.close();
    }
  });

  it('with OPENAI_API_KEY: assistant is the default and sends the key', async () => {
    const config = loadConfig({ RUNWAY_CONFIG: SHIPPED, LOG_LEVEL: 'silent', OPENAI_API_KEY: 'sk-shipped' });
    expect(config.llms.default).toMatchObject({ base_url: 'https://api.openai.com/v1', api_key: 'sk-shipped', model: 'gpt-4o-mini' });
    const app = await buildApp({ config });
    try {
      expect(app.runtime.defaultWorkflow).toBe('assistant');
    } finally {
      await app.close();
    }
  });

  it('RUNWAY_DEFAULT_WORKFLOW still wins', async () => {
    const config = loadConfig({ RUNWAY_CONFIG: SHIPPED, LOG_LEVEL: 'silent', OPENAI_API_KEY: 'sk-x', RUNWAY_DEFAULT_WORKFLOW: 'echo' });
    const app = await buildApp({ config });
    try {
      expect(app.runtime.defaultWorkflow).toBe('echo');
    } finally {
      await app.close();
    }
  });
});

describe('npm start with no environment', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  });

  it('boots offline from the shipped config, serves echo, explains assistant, and stops cleanly', async () => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && !k.startsWith('OPENAI_') && !k.startsWith('RUNWAY_')) env[k] = v;
    }
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { ...env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    let base: string | undefined;
    let warned = false;
    for await (const line of lines) {
      const entry = JSON.parse(line) as { msg: string; llm?: string };
      if (entry.llm === 'default' && /not configured/.test(entry.msg)) warned = true;
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(entry.msg);
      if (m) {
        base = m[1];
        break;
      }
    }
    expect(base).toBeDefined();
    expect(warned).toBe(true);

    const echo = await fetch(`${base}/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"input":"hi there"}' });
    expect(await echo.json()).toMatchObject({ workflow: 'echo', output: 'hi there' });
    const assistant = await fetch(`${base}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"workflow":"assistant","input":"hi"}',
    });
    expect(assistant.status).toBe(502);
    expect(((await assistant.json()) as { detail: string }).detail).toContain('OPENAI_API_KEY');

    lines.close();
    child.stdout!.resume();
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });
});
