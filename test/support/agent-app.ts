import type { FastifyInstance } from 'fastify';
import { createParser } from 'eventsource-parser';
import { buildApp, type BuildAppOptions } from '../../src/app.js';
import { eventJson } from '../../src/core/events.js';
import type { FakeOpenAIServer } from './fake-openai-server.js';

/** The test key; tests check it never shows up where it must not. */
export const TEST_API_KEY = 'sk-agent-test-0123456789';

export interface AgentAppOptions {
  /** Merged into `llms.default` (which points at the fake server). */
  llm?: Record<string, unknown>;
  llms?: Record<string, Record<string, unknown>>;
  tools?: Record<string, Record<string, unknown>>;
  workflows?: Record<string, Record<string, unknown>>;
  runtime?: Record<string, unknown>;
  conversations?: Record<string, unknown>;
  default_workflow?: string;
  registry?: BuildAppOptions['registry'];
}

/**
 * The real app wired to a fake OpenAI-protocol server on loopback, with test-sized timeouts and
 * backoffs: `llms.default` → the fake, tools `calculator` and `clock`, workflows `chat` (a `chat`
 * with a system prompt) and `agent` (a `tool_agent` with the calculator), plus whatever a test adds.
 */
export async function makeAgentApp(fake: FakeOpenAIServer, options: AgentAppOptions = {}): Promise<FastifyInstance> {
  const config: Record<string, unknown> = {
    server: { log_level: 'silent' },
    runtime: { shutdown_grace_ms: 0, ...options.runtime },
    conversations: { ...options.conversations },
    llms: {
      default: {
        provider: 'openai',
        base_url: fake.baseUrl,
        api_key: TEST_API_KEY,
        model: 'gpt-test',
        connect_timeout_ms: 2000,
        first_byte_timeout_ms: 5000,
        idle_timeout_ms: 5000,
        max_retries: 2,
        retry_base_ms: 1,
        retry_max_ms: 20,
        ...options.llm,
      },
      ...options.llms,
    },
    tools: { calculator: { type: 'calculator' }, clock: { type: 'current_time' }, ...options.tools },
    workflows: {
      echo: { type: 'echo', token_delay_ms: 0 },
      chat: { type: 'chat', system_prompt: 'You are terse.' },
      agent: { type: 'tool_agent', system_prompt: 'Use tools.', tools: ['calculator'], max_iterations: 4 },
      ...options.workflows,
    },
  };
  if (options.default_workflow !== undefined) config.default_workflow = options.default_workflow;
  const app = await buildApp({ config, ...(options.registry && { registry: options.registry }) });
  await app.ready();
  return app;
}

export interface RunEvent {
  id: number;
  type: string;
  data: any;
}

/** Every event of a run, from its log (replays a finished run; follows a live one to its end). */
export async function runEvents(app: FastifyInstance, runId: string, userId = 'anonymous'): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const ev of app.runtime.session({ userId }).events(runId, 0, new AbortController().signal)) {
    const parsed = JSON.parse(eventJson(runId, ev)) as { id: number; type: string; data: unknown };
    out.push({ id: parsed.id, type: parsed.type, data: parsed.data });
  }
  return out;
}

/** Resolves with the first event of the run that matches, following the log live. */
export async function firstEvent(app: FastifyInstance, runId: string, match: (ev: RunEvent) => boolean, userId = 'anonymous'): Promise<RunEvent> {
  const stop = new AbortController();
  try {
    for await (const ev of app.runtime.session({ userId }).events(runId, 0, stop.signal)) {
      const parsed = JSON.parse(eventJson(runId, ev)) as RunEvent;
      if (match(parsed)) return parsed;
    }
  } finally {
    stop.abort();
  }
  throw new Error(`run ${runId} ended without a matching event`);
}

/** `step` events of a kind (`LLM_START`, `TOOL_END`…), their data only. */
export function steps(events: readonly RunEvent[], kind: string): any[] {
  return events.filter((e) => e.type === 'step' && e.data.kind === kind).map((e) => e.data);
}

/** Parses an SSE response body into events (id, event, parsed data). */
export async function readSse(body: AsyncIterable<Uint8Array>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  const parser = createParser({
    onEvent: (e) => out.push({ id: Number(e.id), type: e.event ?? 'message', data: (JSON.parse(e.data) as { data: unknown }).data }),
  });
  const decoder = new TextDecoder();
  for await (const chunk of body) parser.feed(decoder.decode(chunk, { stream: true }));
  return out;
}

/** A promise plus the function that settles it. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
