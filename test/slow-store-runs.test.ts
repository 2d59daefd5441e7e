import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { RunwayError } from '../src/core/errors.js';
import { createMemoryStores } from '../src/store/memory/memory-stores.js';
import { makeApp, type TestAppOptions } from './support/app.js';
import { deferred, expectOneTerminalLast, readLog, waitFor } from './support/runtime-test-kit.js';
import { slowStores } from './support/slow-stores.js';
import { blockerType, testWorkflowType, throwingType } from './support/test-workflows.js';

// The whole run path over a store whose every call answers after a macrotask and a jittered delay:
// the async path is the tested path (issue: one run core for every store).

const gate = deferred<void>();
const gatedType = testWorkflowType('gated', async (input, ctx) => {
  const step = ctx.startStep('FUNCTION', 'gated');
  for (let i = 0; i < 5; i++) ctx.token(`t${i} `, step.step_id);
  await gate.promise;
  step.end({ output: input });
  return input;
});
const floodType = testWorkflowType('flood', async (_input, ctx) => {
  for (let i = 0; i < 50; i++) ctx.token(`t${i} `, ctx.root_step_id);
  return 'flooded';
});
const politeType = testWorkflowType('polite', async (input, ctx) => {
  // Finishes on its own shortly after shutdown begins, within the grace.
  await new Promise((resolve) => setTimeout(resolve, 30));
  ctx.token('done', ctx.root_step_id);
  return input;
});

const registry = { workflowTypes: [blockerType, gatedType, floodType, politeType, throwingType('boom', () => new Error('secret')), throwingType('nope', () => new RunwayError('upstream_error', 'the model said no'))] };

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function slowApp(options: TestAppOptions = {}): Promise<FastifyInstance> {
  const stores = slowStores(createMemoryStores({ runTtlS: 3600, maxRuns: 1000 }), { maxMs: 4, seed: 7 });
  const app = await makeApp({
    ...options,
    stores,
    registry,
    workflows: { blocker: { type: 'blocker' }, gated: { type: 'gated' }, flood: { type: 'flood' }, polite: { type: 'polite' }, boom: { type: 'boom' }, nope: { type: 'nope' }, ...options.workflows },
  });
  apps.push(app);
  return app;
}

async function finishedLog(app: FastifyInstance, runId: string) {
  const events = await readLog(app.runtime.stores.events, runId);
  return { events, terminal: expectOneTerminalLast(events, runId) };
}

async function start(app: FastifyInstance, workflow: string, input: unknown = 'a b c') {
  return app.runtime.session({ userId: 'alice' }).run(input, { workflow });
}

describe('runs over a slow async store', () => {
  it('a blocking POST /runs succeeds with every event written once, ids 1..n without gaps', async () => {
    const app = await slowApp();
    const res = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'one two three four' } });
    expect(res.statusCode).toBe(200);
    const run = res.json() as { id: string; status: string; output: string; last_event_id: number };
    expect(run).toMatchObject({ status: 'succeeded', output: 'one two three four' });
    const { events, terminal } = await finishedLog(app, run.id);
    expect(terminal.type).toBe('run.succeeded');
    expect(run.last_event_id).toBe(events.length);
    expect(events.filter((e) => e.type === 'token').map((e) => e.data.delta).join('')).toBe('one two three four');
    expect(events.map((e) => e.type).slice(0, 3)).toEqual(['run.queued', 'run.started', 'step']);
  });

  it('every terminal path writes exactly one terminal event: success, throw, RunwayError, cancel queued, cancel running, timeout, event cap', async () => {
    const app = await slowApp({ runtime: { max_concurrency: 1, max_events_per_run: 20 } });
    const holder = await start(app, 'blocker');
    const queued = await start(app, 'echo');
    await waitFor(() => app.runtime.sessions.stats().waiting === 1, 'second run queued');
    const cancelledQueued = await queued.cancel();
    const cancelledRunning = await holder.cancel();
    const outcomes = [
      [cancelledQueued, 'run.cancelled'],
      [cancelledRunning, 'run.cancelled'],
      [await (await start(app, 'echo')).result(), 'run.succeeded'],
      [await (await start(app, 'boom')).result(), 'run.failed'],
      [await (await start(app, 'nope')).result(), 'run.failed'],
      [await (await app.runtime.session({ userId: 'alice' }).run('x', { workflow: 'blocker', timeoutMs: 20 })).result(), 'run.failed'],
      [await (await start(app, 'flood')).result(), 'run.failed'],
    ] as const;
    for (const [run, type] of outcomes) {
      const { terminal } = await finishedLog(app, run.id);
      expect(terminal.type).toBe(type);
      expect((await app.runtime.session({ userId: 'alice' }).get(run.id)).status).toBe(run.status);
    }
    expect(outcomes.map(([run]) => run.error?.code ?? run.status)).toEqual(['cancelled', 'cancelled', 'succeeded', 'internal', 'upstream_error', 'run_timeout', 'internal']);
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(app.runtime.activeRuns).toBe(0);
  });

  it('a follower of a live run gets every event in order, across slow writes', async () => {
    const app = await slowApp();
    const run = await start(app, 'gated');
    const seen: number[] = [];
    const following = (async () => {
      for await (const ev of run.events(0)) seen.push(ev.id);
    })();
    await waitFor(() => seen.length >= 4, 'tokens followed');
    gate.resolve();
    await following;
    const { events } = await finishedLog(app, run.id);
    expect(seen).toEqual(events.map((e) => e.id));
  });

  it('shutdown with a slow store gives running runs their grace, and cancels queued runs with their terminal event', async () => {
    const app = await slowApp({ runtime: { max_concurrency: 1, shutdown_grace_ms: 5000 } });
    const running = await start(app, 'polite', 'kept');
    // Running as its recorder has it (the slow store has taken the transition), not only holding a
    // permit: shutdown cancels runs still queued.
    await waitFor(() => running.snapshot().status === 'running', 'polite running');
    const queued = await start(app, 'echo');
    await app.runtime.shutdown(5000);
    expect((await running.result()).status).toBe('succeeded');
    expect(await queued.result()).toMatchObject({ status: 'cancelled' });
    expect((await finishedLog(app, queued.id)).terminal.data).toEqual({ reason: 'shutdown' });
    expect(app.runtime.activeRuns).toBe(0);
  });
});
