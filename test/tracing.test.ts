import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseTraceparent } from '../src/observability/traceparent.js';
import { tracingRegistered } from '../src/plugins/tracing-plugin.js';
import { makeAgentApp, runEvents, type RunEvent } from './support/agent-app.js';
import { makeApp } from './support/app.js';
import {
  contentChunk,
  errorResponse,
  finishChunk,
  sse,
  startFakeOpenAI,
  toolCallChunk,
  usageChunk,
  type FakeOpenAIServer,
} from './support/fake-openai-server.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`;

describe('parseTraceparent (W3C Trace Context)', () => {
  it('reads a valid header as a remote parent, with its tracestate', () => {
    const ctx = parseTraceparent(TRACEPARENT, 'vendor=abc,other=1');
    expect(ctx).toMatchObject({ traceId: TRACE_ID, spanId: PARENT_SPAN_ID, traceFlags: 1, isRemote: true });
    expect(ctx?.traceState?.get('vendor')).toBe('abc');
    expect(parseTraceparent(`00-${TRACE_ID}-${PARENT_SPAN_ID}-00`)?.traceFlags).toBe(0);
    // A later version may carry more fields; it is read as version 00.
    expect(parseTraceparent(`01-${TRACE_ID}-${PARENT_SPAN_ID}-01-extra`)?.traceId).toBe(TRACE_ID);
  });

  it.each([
    ['version ff', `ff-${TRACE_ID}-${PARENT_SPAN_ID}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT_SPAN_ID}-01`],
    ['all-zero span id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`],
    ['upper-case hex', `00-${TRACE_ID.toUpperCase()}-${PARENT_SPAN_ID}-01`],
    ['extra field on version 00', `${TRACEPARENT}-extra`],
    ['short trace id', `00-${TRACE_ID.slice(2)}-${PARENT_SPAN_ID}-01`],
    ['garbage', 'hello'],
  ])('refuses %s', (_label, header) => {
    expect(parseTraceparent(header)).toBeUndefined();
  });
});

describe('run tracing with an OpenTelemetry SDK registered', () => {
  const exporter = new InMemorySpanExporter();
  // As an SDK is usually set up: a batch processor that exports every few seconds (here: never
  // on its own), so only a flush gets its spans out.
  const batched = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter), new BatchSpanProcessor(batched, { scheduledDelayMillis: 3_600_000 })],
  });
  const contextManager = new AsyncLocalStorageContextManager();
  let fake: FakeOpenAIServer;
  let app: FastifyInstance | undefined;
  let untraced: FastifyInstance | undefined;

  beforeAll(async () => {
    // Built before any SDK is registered: tracing stays off for this app (decided at build).
    untraced = await makeApp();
    expect(tracingRegistered()).toBe(false);
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(provider);
    expect(tracingRegistered()).toBe(true);
  });

  afterAll(async () => {
    await untraced?.close();
    trace.disable();
    context.disable();
    await provider.shutdown();
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await fake?.close();
    exporter.reset();
    batched.reset();
  });

  async function agentApp(): Promise<FastifyInstance> {
    fake = await startFakeOpenAI();
    app = await makeAgentApp(fake);
    return app;
  }

  async function finishedSpans(): Promise<ReadableSpan[]> {
    await provider.forceFlush();
    return exporter.getFinishedSpans();
  }

  const stepId = (span: ReadableSpan) => span.attributes['runway.step.id'];

  it("a tool_agent run: one span per run, child spans nested as its steps' parent_ids, under the request's traceparent", async () => {
    await agentApp();
    fake.enqueue(
      sse([toolCallChunk(0, { id: 'c1', name: 'calculator', arguments: '{"expression":"6*7"}' }), finishChunk('tool_calls'), usageChunk(20, 9)]),
      sse([contentChunk('It is '), contentChunk('42.'), finishChunk('stop'), usageChunk(40, 3)]),
    );
    const res = await app!.inject({
      method: 'POST',
      url: '/runs',
      headers: { traceparent: TRACEPARENT, tracestate: 'vendor=abc' },
      payload: { workflow: 'agent', input: 'What is 6*7?' },
    });
    expect(res.statusCode).toBe(200);
    const runId = res.json().id as string;
    const spans = await finishedSpans();

    // The run span: child of the caller's span, in the caller's trace.
    const runSpans = spans.filter((s) => s.attributes['runway.run.id'] === runId);
    expect(runSpans).toHaveLength(1);
    const runSpan = runSpans[0]!;
    expect(runSpan.name).toBe('run agent');
    expect(runSpan.spanContext().traceId).toBe(TRACE_ID);
    expect(runSpan.parentSpanContext).toMatchObject({ traceId: TRACE_ID, spanId: PARENT_SPAN_ID, isRemote: true });
    expect(runSpan.spanContext().traceState?.get('vendor')).toBe('abc');
    expect(runSpan.attributes).toMatchObject({
      'runway.workflow': 'agent',
      'runway.user.id': 'anonymous',
      'runway.run.status': 'succeeded',
      'runway.request.id': res.headers['x-request-id'],
      'gen_ai.usage.input_tokens': 60,
      'gen_ai.usage.output_tokens': 12,
    });
    expect(runSpan.events.map((e) => e.name)).toEqual(['run.started']);

    // One span per step, nested exactly as the steps' parent_id say.
    const events = await runEvents(app!, runId);
    const starts = events.filter((e: RunEvent) => e.type === 'step' && e.data.kind.endsWith('_START')).map((e) => e.data);
    const stepSpans = spans.filter((s) => s !== runSpan);
    expect(stepSpans.map(stepId).sort()).toEqual(starts.map((s) => s.step_id).sort());
    const spanOfStep = new Map(stepSpans.map((s) => [stepId(s), s]));
    for (const step of starts) {
      const span = spanOfStep.get(step.step_id)!;
      const parent = step.parent_id === null ? runSpan : spanOfStep.get(step.parent_id)!;
      expect(span.parentSpanContext?.spanId, `${step.kind} ${step.step_id}`).toBe(parent.spanContext().spanId);
      expect(span.spanContext().traceId).toBe(TRACE_ID);
      expect(span.attributes['runway.step.kind']).toBe(step.kind.replace(/_START$/, ''));
    }
    expect(starts.map((s) => `${s.kind} ${s.parent_id}`)).toEqual(['WORKFLOW_START null', 'LLM_START s0', 'TOOL_START s0', 'LLM_START s0']);

    // Names and attributes after OpenTelemetry's GenAI conventions; never the run's text.
    const byKind = (kind: string) => stepSpans.filter((s) => s.attributes['runway.step.kind'] === kind);
    expect(byKind('WORKFLOW').map((s) => s.name)).toEqual(['workflow agent']);
    const llm = byKind('LLM');
    expect(llm.map((s) => s.name)).toEqual(['chat gpt-test', 'chat gpt-test']);
    expect(llm[0]!.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-test',
      'gen_ai.usage.input_tokens': 20,
      'gen_ai.usage.output_tokens': 9,
      'gen_ai.response.finish_reasons': ['tool_calls'],
    });
    expect(llm[1]!.attributes['runway.llm.time_to_first_token_ms']).toEqual(expect.any(Number));
    const [tool] = byKind('TOOL');
    expect(tool!.name).toBe('execute_tool calculator');
    expect(tool!.attributes).toMatchObject({ 'gen_ai.tool.name': 'calculator', 'gen_ai.tool.call.id': 'c1' });
    for (const span of spans) {
      expect(span.status.code, span.name).not.toBe(SpanStatusCode.ERROR);
      expect(JSON.stringify(span.attributes)).not.toContain('6*7');
    }
  });

  it('without a traceparent the run span starts a trace of its own; a malformed one is ignored', async () => {
    app = await makeApp();
    const plain = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'no parent' } });
    const bad = await app.inject({ method: 'POST', url: '/runs', headers: { traceparent: 'ff-nonsense' }, payload: { input: 'bad parent' } });
    const spans = await finishedSpans();
    for (const res of [plain, bad]) {
      const runSpan = spans.find((s) => s.attributes['runway.run.id'] === res.json().id)!;
      expect(runSpan.parentSpanContext).toBeUndefined();
      const children = spans.filter((s) => s.spanContext().traceId === runSpan.spanContext().traceId && s !== runSpan);
      // echo: the WORKFLOW step, and its FUNCTION step under it
      expect(children.map((s) => s.name).sort()).toEqual(['function echo', 'workflow echo']);
    }
    const traces = new Set(spans.map((s) => s.spanContext().traceId));
    expect(traces.size).toBe(2);
  });

  it('a failed run and its failed LLM step end with error status and the error code', async () => {
    await agentApp();
    fake.enqueue(errorResponse(400, 'bad request upstream'));
    const res = await app!.inject({ method: 'POST', url: '/runs', headers: { traceparent: TRACEPARENT }, payload: { workflow: 'chat', input: 'hi' } });
    expect(res.statusCode).toBe(502);
    const spans = await finishedSpans();
    const runSpan = spans.find((s) => s.name === 'run chat')!;
    expect(runSpan.status.code).toBe(SpanStatusCode.ERROR);
    expect(runSpan.attributes).toMatchObject({ 'runway.run.status': 'failed', 'error.type': 'upstream_error' });
    const llm = spans.find((s) => s.attributes['runway.step.kind'] === 'LLM')!;
    expect(llm.status.code).toBe(SpanStatusCode.ERROR);
    expect(llm.attributes['error.type']).toBe('upstream_error');
    expect(llm.parentSpanContext?.spanId).toBe(spans.find((s) => s.name === 'workflow chat')!.spanContext().spanId);
  });

  it("closing the app flushes the SDK's batched spans (the server exits right after)", async () => {
    app = await makeApp();
    batched.reset();
    const res = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'flush me' } });
    const runSpan = (spans: ReadableSpan[]) => spans.find((s) => s.attributes['runway.run.id'] === res.json().id);
    expect(runSpan(batched.getFinishedSpans())).toBeUndefined();
    await app.close();
    app = undefined;
    expect(runSpan(batched.getFinishedSpans())?.name).toBe('run echo');
  });

  it('an app built before the SDK was registered adds no tracing at all', async () => {
    const res = await untraced!.inject({ method: 'POST', url: '/runs', headers: { traceparent: TRACEPARENT }, payload: { input: 'untraced' } });
    expect(res.statusCode).toBe(200);
    expect(await finishedSpans()).toEqual([]);
  });
});
