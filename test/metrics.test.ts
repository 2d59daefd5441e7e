import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildApp } from '../src/app.js';
import { defineWorkflow } from '../src/workflows/define-workflow.js';
import { makeAgentApp, runEvents, steps } from './support/agent-app.js';
import { listen, makeApp, type TestAppOptions } from './support/app.js';
import { contentChunk, finishChunk, sse, startFakeOpenAI, toolCallChunk, usageChunk, type FakeOpenAIServer } from './support/fake-openai-server.js';
import { parsePrometheusText, sampleValue, type MetricFamily } from './support/prometheus-text.js';
import { openSse, waitFor } from './support/sse-sockets.js';
import { blockerType, throwingType } from './support/test-workflows.js';

const boomType = throwingType('boom', () => new Error('boom'));

let app: FastifyInstance | undefined;
let other: FastifyInstance | undefined;
let fake: FakeOpenAIServer | undefined;

afterEach(async () => {
  await app?.close();
  await other?.close();
  await fake?.close();
  app = other = fake = undefined;
});

async function start(options: TestAppOptions = {}): Promise<FastifyInstance> {
  app = await makeApp({
    ...options,
    workflows: { blocker: { type: 'blocker' }, boom: { type: 'boom' }, ...options.workflows },
    registry: { workflowTypes: [blockerType, boomType] },
  });
  return app;
}

async function scrape(target: FastifyInstance = app!): Promise<Map<string, MetricFamily>> {
  const res = await target.inject({ url: '/metrics' });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(res.body);
}

async function post(payload: Record<string, unknown>, user = 'alice') {
  const res = await app!.inject({ method: 'POST', url: '/runs', headers: { 'x-user-id': user }, payload });
  return { status: res.statusCode, body: res.json() as any };
}

describe('the Prometheus text parser (so the checks below mean something)', () => {
  it('refuses what Prometheus would refuse', () => {
    expect(() => parsePrometheusText('runway_x 1\n')).toThrow(/no TYPE/);
    expect(() => parsePrometheusText('# TYPE runway_x gauge\nrunway_x{a=b} 1\n')).toThrow(/unquoted/);
    expect(() => parsePrometheusText('# TYPE runway_x gauge\nrunway_x one\n')).toThrow(/value/);
    expect(() => parsePrometheusText('# TYPE runway_x counter\n# TYPE runway_x counter\n')).toThrow(/twice/);
    expect(() =>
      parsePrometheusText('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),
    ).toThrow(/cumulative/);
    expect(sampleValue(parsePrometheusText('# TYPE runway_x gauge\nrunway_x{a="q\\"b"} 3\n'), 'runway_x', { a: 'q"b' })).toBe(3);
  });
});

describe('GET /metrics', () => {
  it('serves Prometheus text: every family runway_*, with help and type, and Node process metrics', async () => {
    await start();
    const families = await scrape();
    for (const family of families.values()) {
      expect(family.name).toMatch(/^runway_/);
      expect(family.help, family.name).toBeTruthy();
    }
    const expected: Record<string, MetricFamily['type']> = {
      runway_runs_total: 'counter',
      runway_run_duration_seconds: 'histogram',
      runway_run_queue_wait_seconds: 'histogram',
      runway_runs_in_flight: 'gauge',
      runway_runs_waiting: 'gauge',
      runway_user_runs_in_flight: 'gauge',
      runway_admission_rejections_total: 'counter',
      runway_sse_connections: 'gauge',
      runway_llm_tokens_total: 'counter',
      runway_llm_time_to_first_token_seconds: 'histogram',
      runway_tool_calls_total: 'counter',
      // Node's default metrics, prefixed too
      runway_process_cpu_user_seconds_total: 'counter',
      runway_process_resident_memory_bytes: 'gauge',
      runway_nodejs_eventloop_lag_seconds: 'gauge',
      runway_nodejs_heap_size_used_bytes: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) expect(families.get(name)?.type, name).toBe(type);
    // Series of configured workflows exist at 0 before any run, so rates are defined from the start.
    expect(families.get('runway_runs_total')!.samples).toContainEqual({
      name: 'runway_runs_total',
      labels: { workflow: 'echo', status: 'succeeded' },
      value: 0,
    });
    for (const code of ['queue_full', 'queue_timeout', 'shutting_down']) {
      expect(families.get('runway_admission_rejections_total')!.samples).toContainEqual(expect.objectContaining({ labels: { code }, value: 0 }));
    }
  });

  it('is public when API keys are on', async () => {
    app = await buildApp({ config: { server: { log_level: 'silent' }, auth: { api_keys: [{ key: 'metrics-key-0123456789abcdef', user: 'ops' }] } } });
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/runs' })).statusCode).toBe(401);
  });

  it('counts runs by workflow and final status, with their durations and queue waits; each app its own registry', async () => {
    await start();
    other = await makeApp();
    for (const input of ['one', 'two words']) expect((await post({ input })).status).toBe(200);
    expect((await post({ workflow: 'boom', input: 'x' })).status).toBe(500);
    const blocked = await post({ workflow: 'blocker', input: 'x', background: true });
    expect(blocked.status).toBe(202);
    expect((await app!.inject({ method: 'POST', url: `/runs/${blocked.body.id}/cancel`, headers: { 'x-user-id': 'alice' } })).statusCode).toBe(202);

    const m = await scrape();
    const runs = (workflow: string, status: string) => sampleValue(m, 'runway_runs_total', { workflow, status });
    expect(runs('echo', 'succeeded')).toBe(2);
    expect(runs('echo', 'failed')).toBe(0);
    expect(runs('boom', 'failed')).toBe(1);
    expect(runs('blocker', 'cancelled')).toBe(1);
    expect(runs('blocker', 'succeeded')).toBe(0);
    expect(sampleValue(m, 'runway_run_duration_seconds_count', { workflow: 'echo', status: 'succeeded' })).toBe(2);
    expect(sampleValue(m, 'runway_run_duration_seconds_count', { workflow: 'boom', status: 'failed' })).toBe(1);
    expect(sampleValue(m, 'runway_run_duration_seconds_count', { workflow: 'blocker', status: 'cancelled' })).toBe(1);
    expect(sampleValue(m, 'runway_run_queue_wait_seconds_count', { workflow: 'echo' })).toBe(2);
    expect(sampleValue(m, 'runway_run_queue_wait_seconds_count', { workflow: 'blocker' })).toBe(1);
    // Runs take time: the sum of the durations is positive.
    expect(sampleValue(m, 'runway_run_duration_seconds_sum', { workflow: 'echo', status: 'succeeded' })).toBeGreaterThan(0);

    // Another app in the same process counts only its own runs.
    expect(sampleValue(await scrape(other), 'runway_runs_total', { workflow: 'echo', status: 'succeeded' })).toBe(0);
  });

  it('reads the admission gauges at scrape time and counts rejections by code', async () => {
    await start({ runtime: { max_concurrency: 1, max_queue: 1, per_user_max_concurrency: 1 } });
    const holder = await post({ workflow: 'blocker', input: 'x', background: true }, 'alice');
    const waiter = await post({ input: 'queued words', background: true }, 'bob');
    await waitFor(() => app!.runtime.sessions.stats().waiting === 1, 'bob waits');

    let m = await scrape();
    expect(sampleValue(m, 'runway_runs_in_flight')).toBe(1);
    expect(sampleValue(m, 'runway_runs_waiting')).toBe(1);
    expect(sampleValue(m, 'runway_user_runs_in_flight', { user_id: 'alice' })).toBe(1);
    expect(families(m, 'runway_user_runs_in_flight')).toHaveLength(1);

    // The queue holds one: the next run is refused before it is created.
    const refused = await post({ input: 'no room' }, 'carol');
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe('queue_full');
    m = await scrape();
    expect(sampleValue(m, 'runway_admission_rejections_total', { code: 'queue_full' })).toBe(1);
    expect(sampleValue(m, 'runway_admission_rejections_total', { code: 'queue_timeout' })).toBe(0);

    // Freeing the slot lets bob's run through; the gauges follow.
    await app!.inject({ method: 'POST', url: `/runs/${holder.body.id}/cancel`, headers: { 'x-user-id': 'alice' } });
    // Follow bob's log to its terminal event; the permit is released right after it is written.
    const bob = app!.runtime.session({ userId: 'bob' });
    const types: string[] = [];
    for await (const ev of bob.events(waiter.body.id, 0)) types.push(ev.type);
    expect(types.at(-1)).toBe('run.succeeded');
    expect((await bob.get(waiter.body.id)).status).toBe('succeeded');
    await waitFor(() => app!.runtime.activeRuns === 0, 'bob’s run has released its permit');
    m = await scrape();
    expect(sampleValue(m, 'runway_runs_in_flight')).toBe(0);
    expect(sampleValue(m, 'runway_runs_waiting')).toBe(0);
    expect(families(m, 'runway_user_runs_in_flight')).toHaveLength(0);

    // Draining: a new run is refused with shutting_down.
    await app!.runtime.shutdown(0);
    const late = await post({ input: 'too late' }, 'dave');
    expect(late.body.code).toBe('shutting_down');
    expect(sampleValue(await scrape(), 'runway_admission_rejections_total', { code: 'shutting_down' })).toBe(1);
  });

  it('counts a run that waited past queue_timeout_ms as a queue_timeout rejection', async () => {
    await start({ runtime: { max_concurrency: 1, queue_timeout_ms: 1 } });
    const holder = await post({ workflow: 'blocker', input: 'x', background: true });
    const timedOut = await post({ input: 'waits too long' }, 'bob');
    expect(timedOut.status).toBe(503);
    expect(timedOut.body.code).toBe('queue_timeout');
    const m = await scrape();
    expect(sampleValue(m, 'runway_admission_rejections_total', { code: 'queue_timeout' })).toBe(1);
    expect(sampleValue(m, 'runway_runs_total', { workflow: 'echo', status: 'failed' })).toBe(1);
    // It never started: no duration, no queue wait observed.
    expect(sampleValue(m, 'runway_run_duration_seconds_count', { workflow: 'echo', status: 'failed' })).toBe(0);
    expect(sampleValue(m, 'runway_run_queue_wait_seconds_count', { workflow: 'echo' })).toBe(0);
    await app!.inject({ method: 'POST', url: `/runs/${holder.body.id}/cancel`, headers: { 'x-user-id': 'alice' } });
  });

  it('counts open SSE connections while they are open', async () => {
    await start();
    const base = await listen(app!);
    const run = await post({ workflow: 'blocker', input: 'x', background: true });
    const url = `${base}/runs/${run.body.id}/stream`;
    const first = await openSse(url, { headers: { 'x-user-id': 'alice' } });
    const second = await openSse(url, { headers: { 'x-user-id': 'alice' } });
    await Promise.all([first.frameCount(2), second.frameCount(2)]);
    expect(sampleValue(await scrape(), 'runway_sse_connections')).toBe(2);

    // A client that leaves is no longer counted once the server sees its socket close.
    first.destroy();
    await waitFor(async () => sampleValue(await scrape(), 'runway_sse_connections') === 1, 'one stream left');

    // A stream the server ends (after the terminal event) is not counted either.
    await app!.inject({ method: 'POST', url: `/runs/${run.body.id}/cancel`, headers: { 'x-user-id': 'alice' } });
    await second.closed;
    expect(second.endedByServer).toBe(true);
    expect(sampleValue(await scrape(), 'runway_sse_connections')).toBe(0);
  });

  it('an observer that throws never fails a run', async () => {
    await start();
    app!.runtime.observe({
      onRunEvent() {
        throw new Error('observer bug');
      },
    });
    const res = await post({ input: 'still fine' });
    expect(res.status).toBe(200);
    expect(res.body.output).toBe('still fine');
    expect(sampleValue(await scrape(), 'runway_runs_total', { workflow: 'echo', status: 'succeeded' })).toBe(1);
  });
});

describe('LLM and tool metrics', () => {
  /** A model turn that asks for one tool call. */
  const toolCall = (id: string, name: string, args: string) => [toolCallChunk(0, { id, name, arguments: args }), finishChunk('tool_calls')];

  it('counts tokens in and out, time to first token and tool calls by tool and outcome', async () => {
    fake = await startFakeOpenAI();
    app = await makeAgentApp(fake);
    fake.enqueue(
      // run 1: a calculator call, then an answer
      sse([...toolCall('c1', 'calculator', '{"expression":"6*7"}'), usageChunk(20, 9)]),
      sse([contentChunk('It is '), contentChunk('42.'), finishChunk('stop'), usageChunk(40, 3)]),
      // run 2: a call of a tool the agent does not have (an error result), then an answer
      sse([...toolCall('c2', 'nope', '{}'), usageChunk(10, 4)]),
      sse([contentChunk('Sorry.'), finishChunk('stop'), usageChunk(30, 2)]),
    );
    const first = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'agent', input: 'What is 6*7?' } });
    expect(first.json().output).toBe('It is 42.');
    const second = await app.inject({ method: 'POST', url: '/runs', payload: { workflow: 'agent', input: 'Use nope.' } });
    expect(second.json().output).toBe('Sorry.');

    const m = await scrape();
    expect(sampleValue(m, 'runway_llm_tokens_total', { llm: 'default', type: 'input' })).toBe(100);
    expect(sampleValue(m, 'runway_llm_tokens_total', { llm: 'default', type: 'output' })).toBe(18);
    // Only the calls that generated text have a first token: one per run.
    expect(sampleValue(m, 'runway_llm_time_to_first_token_seconds_count', { llm: 'default' })).toBe(2);
    expect(sampleValue(m, 'runway_tool_calls_total', { tool: 'calculator', outcome: 'ok' })).toBe(1);
    // A tool the model made up is counted under one shared label, never one series per invented name.
    expect(sampleValue(m, 'runway_tool_calls_total', { tool: 'unknown_tool', outcome: 'error' })).toBe(1);
    expect(m.get('runway_tool_calls_total')!.samples.some((s) => s.labels.tool === 'nope')).toBe(false);
    expect(sampleValue(m, 'runway_tool_calls_total', { tool: 'calculator', outcome: 'error' })).toBe(0);
    expect(sampleValue(m, 'runway_runs_total', { workflow: 'agent', status: 'succeeded' })).toBe(2);

    // The time to first token is on the LLM_END step too, only where text was generated.
    const ends = steps(await runEvents(app, first.json().id), 'LLM_END');
    expect(ends.map((s) => typeof s.time_to_first_token_ms)).toEqual(['undefined', 'number']);
    expect(ends[1].time_to_first_token_ms).toBeLessThanOrEqual(ends[1].duration_ms);
  });
});

/** The samples of a family. */
function families(m: Map<string, MetricFamily>, name: string) {
  return m.get(name)?.samples ?? [];
}
