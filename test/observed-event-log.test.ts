import { afterEach, describe, expect, it } from 'vitest';
import { ObservedEventLog, type RunEventObserver } from '../src/observability/observed-event-log.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { makeRun } from './support/runtime-test-kit.js';

const stores: MemoryStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function setup(): { events: ObservedEventLog; runId: string } {
  const store = new MemoryStore({ runTtlS: 3600, maxRuns: 100, maxEventsPerRun: 100 });
  stores.push(store);
  const run = makeRun({ workflow: 'w', user_id: 'u' });
  store.createNow(run);
  return { events: new ObservedEventLog(store), runId: run.id };
}

function recorder(stepKinds?: string[]): RunEventObserver & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    ...(stepKinds && { stepKinds: new Set(stepKinds) }),
    onRunEvent: (_runId, type, data) => seen.push(type === 'step' ? (data as { kind: string }).kind : type),
  };
}

describe('ObservedEventLog', () => {
  it('delivers every event but tokens, and of steps only the kinds an observer asked for', async () => {
    const { events, runId } = setup();
    const all = recorder();
    const llmOnly = recorder(['LLM_END']);
    events.observe(all);
    const stop = events.observe(llmOnly);
    events.appendNow!(runId, 'run.started', undefined);
    events.appendNow!(runId, 'step', { kind: 'LLM_START' });
    events.appendTokenNow!(runId, 'hi', 's1');
    events.appendNow!(runId, 'step', { kind: 'LLM_END' });
    stop();
    events.appendNow!(runId, 'step', { kind: 'LLM_END' });
    await events.append(runId, 'run.succeeded', {});
    expect(all.seen).toEqual(['run.started', 'LLM_START', 'LLM_END', 'LLM_END', 'run.succeeded']);
    expect(llmOnly.seen).toEqual(['run.started', 'LLM_END']);
  });

  it('skips a step no observer wants, and delivers it again once an observer wants every step', () => {
    const { events, runId } = setup();
    const tools = recorder(['TOOL_END']);
    events.observe(tools);
    events.appendNow!(runId, 'step', { kind: 'FUNCTION_END' });
    const all = recorder();
    const stop = events.observe(all);
    events.appendNow!(runId, 'step', { kind: 'FUNCTION_END' });
    stop();
    events.appendNow!(runId, 'step', { kind: 'FUNCTION_END' });
    events.appendNow!(runId, 'step', { kind: 'TOOL_END' });
    expect(all.seen).toEqual(['FUNCTION_END']);
    expect(tools.seen).toEqual(['TOOL_END']);
  });
});
