import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { RunwayError } from '../src/core/errors.js';
import { isTerminalEvent } from '../src/core/events.js';
import { isTerminalStatus, type Run } from '../src/core/run.js';
import { currentRunContext, type RunContext } from '../src/runtime/run-context.js';
import type { RunHandle } from '../src/runtime/run-handle.js';
import type { MemoryStores } from '../src/store/memory/memory-stores.js';
import { defineWorkflow, type WorkflowType } from '../src/workflows/define-workflow.js';
import { makeApp } from './support/app.js';
import { deferred, expectOneTerminalLast, readLog, tick, waitFor, type ParsedEvent } from './support/runtime-test-kit.js';

type RunFn = (input: unknown, ctx: RunContext) => Promise<unknown> | unknown;

/** A workflow type whose behaviour is a closure owned by the test that builds it. */
function workflowType(type: string, run: RunFn): WorkflowType {
  return defineWorkflow({
    type,
    configSchema: z.object({ type: z.literal(type) }).passthrough(),
    create: (_config, { name }) => ({ name, type, description: `test workflow ${type}`, inputSchema: z.unknown(), run }),
  });
}

/** Rejects with the signal's reason once it aborts (what a well-behaved workflow awaits). */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

const apps: FastifyInstance[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function appWith(types: Record<string, RunFn>, runtime: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = await makeApp({
    runtime,
    workflows: Object.fromEntries(Object.keys(types).map((name) => [name, { type: name }])),
    registry: { workflowTypes: Object.entries(types).map(([name, fn]) => workflowType(name, fn)) },
  });
  apps.push(app);
  return app;
}

let requests = 0;
interface StartOptions {
  userId?: string;
  requestId?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}
function start(app: FastifyInstance, workflow: string, input: unknown = 'x', extra: StartOptions = {}): Promise<RunHandle> {
  const session = app.runtime.session({ userId: extra.userId ?? 'alice', requestId: extra.requestId ?? `req-${++requests}` });
  return session.run(input, {
    workflow,
    ...(extra.timeoutMs !== undefined && { timeoutMs: extra.timeoutMs }),
    ...(extra.signal !== undefined && { signal: extra.signal }),
  });
}

/** The user's view the tests read and cancel through (as the routes do). */
function sessionOf(app: FastifyInstance, userId = 'alice') {
  return app.runtime.session({ userId });
}

function storesOf(app: FastifyInstance): MemoryStores {
  return app.runtime.stores as MemoryStores;
}

async function logOf(app: FastifyInstance, runId: string): Promise<ParsedEvent[]> {
  return readLog(storesOf(app).events, runId);
}

/** The log's invariants, plus agreement between the terminal event and the stored Run. */
async function finishedLog(app: FastifyInstance, run: Run): Promise<{ events: ParsedEvent[]; terminal: ParsedEvent }> {
  const events = await logOf(app, run.id);
  const terminal = expectOneTerminalLast(events, run.id);
  expect(terminal.type).toBe(`run.${run.status}`);
  expect(run.last_event_id).toBe(events.length);
  expect(run.finished_at).not.toBeNull();
  return { events, terminal };
}

async function rejection(p: Promise<unknown>): Promise<RunwayError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RunwayError);
    return err as RunwayError;
  }
  throw new Error('expected a RunwayError');
}

describe('Runner lifecycle', () => {
  it('queued → running → succeeded: each transition a store write and an event, ids 1..n without gaps', async () => {
    const gate = deferred();
    const statusInside = deferred<unknown>();
    const app = await appWith(
      {
        gated: async (_input, ctx) => {
          const run = await storesOf(app).runs.get(ctx.run_id);
          statusInside.resolve({ status: run?.status, started: run?.started_at !== null });
          await Promise.race([gate.promise, untilAborted(ctx.signal)]);
          return 'opened';
        },
      },
      { max_concurrency: 1 },
    );

    const first = await start(app, 'gated');
    const second = await start(app, 'echo', 'hello big world');
    // The first holds the only permit: the second is queued, in the store and in its log.
    const queued = await storesOf(app).runs.get(second.id);
    expect(queued).toMatchObject({ status: 'queued', started_at: null, finished_at: null, output: null, error: null });
    expect((await logOf(app, second.id)).map((e) => e.type)).toEqual(['run.queued']);
    expect(await statusInside.promise).toEqual({ status: 'running', started: true });

    gate.resolve();
    const firstRun = await first.result();
    expect(firstRun.status).toBe('succeeded');
    await finishedLog(app, firstRun);

    const run = await second.result();
    expect(run).toMatchObject({ status: 'succeeded', output: 'hello big world', error: null, user_id: 'alice', workflow: 'echo' });
    expect(run.started_at).not.toBeNull();
    expect(run.created_at <= run.started_at!).toBe(true);
    expect(run.started_at! <= run.finished_at!).toBe(true);
    expect(await storesOf(app).runs.get(run.id)).toMatchObject({ status: 'succeeded' });

    const { events, terminal } = await finishedLog(app, run);
    expect(events.map((e) => (e.type === 'step' ? `step:${e.data.kind}` : e.type))).toEqual([
      'run.queued',
      'run.started',
      'step:WORKFLOW_START',
      'step:FUNCTION_START',
      'token',
      'token',
      'token',
      'step:FUNCTION_END',
      'step:WORKFLOW_END',
      'run.succeeded',
    ]);
    const steps = events.filter((e) => e.type === 'step').map((e) => e.data);
    const root = steps[0]!;
    const fn = steps[1]!;
    expect(root.parent_id).toBeNull();
    expect(fn.parent_id).toBe(root.step_id);
    expect(steps[2]!.step_id).toBe(fn.step_id);
    expect(steps[3]!.step_id).toBe(root.step_id);
    const tokens = events.filter((e) => e.type === 'token');
    for (const t of tokens) expect(t.data.step_id).toBe(fn.step_id);
    expect(tokens.map((t) => t.data.delta).join('')).toBe('hello big world');
    expect(terminal.data).toMatchObject({ output: 'hello big world' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });

  it('a workflow that throws ends failed/internal without leaking the thrown text', async () => {
    const app = await appWith({
      boom: async () => {
        await tick();
        throw new Error('db password is hunter2');
      },
    });
    const run = await (await start(app, 'boom')).result();
    expect(run.status).toBe('failed');
    expect(run.error?.code).toBe('internal');
    expect(run.error?.message).not.toContain('hunter2');
    const { events, terminal } = await finishedLog(app, run);
    expect(terminal.data.error).toEqual(run.error);
    for (const e of events) expect(JSON.stringify(e)).not.toContain('hunter2');
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a workflow that throws synchronously is a failed run too, not a crash', async () => {
    const app = await appWith({
      sync: (() => {
        throw new Error('sync secret');
      }) as RunFn,
    });
    const run = await (await start(app, 'sync')).result();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    expect(run.error?.message).not.toContain('sync secret');
    await finishedLog(app, run);
  });

  it('a workflow whose output cannot be serialized ends failed/internal with one terminal event', async () => {
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const app = await appWith({
      bigint: async () => ({ n: 10n }),
      circular: async () => circular,
    });
    for (const wf of ['bigint', 'circular']) {
      const run = await (await start(app, wf)).result();
      expect(run).toMatchObject({ status: 'failed', output: null, error: { code: 'internal' } });
      const { terminal } = await finishedLog(app, run);
      expect(terminal.type).toBe('run.failed');
    }
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('an output that serializes for its step but not for the terminal event still ends with one terminal event', async () => {
    let calls = 0;
    // Serializes once (the WORKFLOW_END step), then throws (the terminal event).
    const fickle = {
      toJSON() {
        calls++;
        if (calls > 1) throw new Error('changed its mind');
        return 'ok';
      },
    };
    const app = await appWith({ fickle: async () => fickle });
    const run = await (await start(app, 'fickle')).result();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    const { terminal } = await finishedLog(app, run);
    expect(terminal.type).toBe('run.failed');
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a workflow that throws a RunwayError keeps its code and message', async () => {
    const app = await appWith({
      upstream: async () => {
        throw new RunwayError('upstream_error', 'The model answered 502');
      },
    });
    const run = await (await start(app, 'upstream')).result();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'upstream_error', message: 'The model answered 502' } });
    const { terminal } = await finishedLog(app, run);
    expect(terminal.data.error).toEqual({ code: 'upstream_error', message: 'The model answered 502' });
  });
});

describe('Runner: the end of a run', () => {
  it('result() gives every caller the same final Run, the stored one, also once the run has ended; a caller that throws stops no other', async () => {
    const gate = deferred();
    const app = await appWith({
      gated: async () => {
        await gate.promise;
        return 'ok';
      },
    });
    const s = await start(app, 'gated');
    const seen: Run[] = [];
    const waiting = [
      s.result().then((run) => seen.push(run)),
      s.result().then(() => {
        throw new Error('one caller fails');
      }),
      s.result().then((run) => seen.push(run)),
    ];
    await tick();
    expect(seen).toEqual([]);
    expect(app.runtime.runContext(s.id)?.run_id).toBe(s.id);
    gate.resolve();
    const run = await s.result();
    expect(run.status).toBe('succeeded');
    const settled = await Promise.allSettled(waiting);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toEqual(new Error('one caller fails'));
    expect(seen).toHaveLength(2);
    for (const r of seen) expect(r).toEqual(run);
    // Asked after the end, it gives that same Run; the handle's snapshot and the store agree with it.
    expect(await s.result()).toEqual(run);
    // Each caller's Run is its own copy: one caller changing it changes nobody else's.
    (seen[0] as { output: unknown }).output = 'changed by one caller';
    expect((await s.result()).output).toEqual(run.output);
    expect(s.snapshot()).toEqual(run);
    expect(await storesOf(app).runs.get(s.id)).toEqual(run);
    await finishedLog(app, run);
    // A finished run is no longer live in this process.
    expect(app.runtime.activeRuns).toBe(0);
    expect(app.runtime.runContext(s.id)).toBeUndefined();
  });

  it('when not even the final status can be stored: result() still resolves (the run as the store has it), no terminal event, the permit is released', async () => {
    const app = await appWith({ quick: async () => 'done' });
    const runs = storesOf(app).runs;
    const update = runs.update.bind(runs);
    const broken = new Error('store is down');
    const refused: unknown[] = [];
    vi.spyOn(runs, 'update').mockImplementation(async (id, patch, statuses) => {
      if (patch.status !== 'running') {
        refused.push(patch.status);
        throw broken;
      }
      return update(id, patch, statuses);
    });
    const s = await start(app, 'quick');
    const run = await s.result();
    // The run's end was attempted, and refused: the store still has it running, and so does the answer.
    expect(refused.length).toBeGreaterThan(0);
    for (const status of refused) expect(isTerminalStatus(status as Run['status'])).toBe(true);
    expect(run).toEqual(await storesOf(app).runs.get(s.id));
    expect(run).toMatchObject({ status: 'running', finished_at: null });
    // No terminal event without its status: the log ends where the writes stopped.
    const events = await logOf(app, s.id);
    expect(events.some((e) => isTerminalEvent(e.type))).toBe(false);
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(app.runtime.activeRuns).toBe(0);
    expect(app.runtime.runContext(s.id)).toBeUndefined();
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('when the store can take neither the final status nor a read: result() settles without a finished Run, and a run nobody awaits raises no unhandled rejection', async () => {
    const app = await appWith({ quick: async () => 'done' });
    const runs = storesOf(app).runs;
    const update = runs.update.bind(runs);
    const get = runs.get.bind(runs);
    const broken = new Error('store is down');
    let down = false;
    vi.spyOn(runs, 'update').mockImplementation(async (id, patch, statuses) => {
      if (patch.status !== 'running') {
        down = true;
        throw broken;
      }
      return update(id, patch, statuses);
    });
    vi.spyOn(runs, 'get').mockImplementation(async (id) => {
      if (down) throw broken;
      return get(id);
    });
    // Only this test's listener, so that an unhandled rejection is its finding (not the runner's crash).
    const unhandled: unknown[] = [];
    const others = process.listeners('unhandledRejection');
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.removeAllListeners('unhandledRejection');
    process.on('unhandledRejection', onUnhandled);
    try {
      // A background run: nobody ever asks for its result.
      await start(app, 'quick');
      const waited = await start(app, 'quick');
      const outcome = await waited.result().then(
        (run) => ({ run }),
        (err: unknown) => ({ err }),
      );
      // Either way the caller is not told the run finished: a Run that is not terminal, or the store's error.
      if ('run' in outcome) expect(isTerminalStatus(outcome.run.status)).toBe(false);
      else expect(outcome.err).toBe(broken);
      await waitFor(() => app.runtime.activeRuns === 0, 'both runs to leave the runtime');
      await tick();
      expect(unhandled).toEqual([]);
      expect(app.runtime.sessions.stats().inFlight).toBe(0);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      for (const listener of others) process.on('unhandledRejection', listener);
    }
  });
});

describe('Runner: what untyped code may hand it', () => {
  it('writes the run.queued data as JSON for any workflow name, an empty one a custom type made included', async () => {
    // A fresh copy of the modules, so this is the first run they ever write: nothing remembered from
    // an earlier workflow's run.queued may stand in for this one's.
    vi.resetModules();
    const { makeApp } = await import('./support/app.js');
    const { defineWorkflow } = await import('../src/workflows/define-workflow.js');
    const blank = defineWorkflow({
      type: 'blank',
      configSchema: z.object({ type: z.literal('blank') }).passthrough(),
      create: () => ({ name: '', type: 'blank', description: 'a workflow whose type names it ""', inputSchema: z.unknown(), run: () => 'ok' }),
    });
    const app = await makeApp({ workflows: { blank: { type: 'blank' } }, registry: { workflowTypes: [blank] } });
    apps.push(app);
    for (let i = 0; i < 2; i++) {
      const run = await (await start(app, 'blank')).result();
      expect(run.status).toBe('succeeded');
      const events = await logOf(app, run.id);
      expect(events[0]).toMatchObject({ type: 'run.queued', data: { workflow: '' } });
    }
  });

  it('records steps whose parent id or name are not strings as JSON.stringify writes them, and the run succeeds', async () => {
    const app = await appWith({
      odd: (_input, ctx) => {
        ctx.startStep('FUNCTION', 'f', { parent_id: Object.create(null) as never }).end();
        ctx.startStep('FUNCTION', Symbol('s') as never).end();
        return 'ok';
      },
    });
    const run = await (await start(app, 'odd')).result();
    expect(run.status).toBe('succeeded');
    const steps = (await logOf(app, run.id)).filter((e) => e.type === 'step' && e.data.kind.startsWith('FUNCTION'));
    expect(steps.map((e) => [e.data.kind, e.data.parent_id, 'name' in e.data])).toEqual([
      ['FUNCTION_START', {}, true],
      ['FUNCTION_END', {}, true],
      ['FUNCTION_START', 's0', false],
      ['FUNCTION_END', 's0', false],
    ]);
  });
});

describe('Runner: workflows that return their output directly', () => {
  it('a run whose workflow returns a value, not a promise, succeeds with it; once result() resolves it is no longer live', async () => {
    const app = await appWith({
      direct: (input, ctx) => {
        const step = ctx.startStep('FUNCTION', 'upper');
        ctx.token(String(input).toUpperCase(), step.step_id);
        step.end();
        return String(input).toUpperCase();
      },
    });
    const s = await start(app, 'direct', 'hi');
    const run = await s.result();
    expect(run.status).toBe('succeeded');
    expect(run.output).toBe('HI');
    expect(s.snapshot()).toEqual(run);
    const { events } = await finishedLog(app, run);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.started', 'step', 'step', 'token', 'step', 'step', 'run.succeeded']);
    expect(app.runtime.activeRuns).toBe(0);
    expect(app.runtime.runContext(s.id)).toBeUndefined();
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a direct return after the run was cancelled during the workflow ends cancelled, not succeeded', async () => {
    const gate = deferred();
    const client = new AbortController();
    const app = await appWith(
      {
        gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]),
        // The client leaves while the workflow runs, and the workflow returns at once anyway.
        selfCancelling: () => {
          client.abort();
          return 'too late';
        },
      },
      { max_concurrency: 1 },
    );
    // Queued behind a blocker, so the run is surely being followed by its client's signal when it starts.
    const blocker = await start(app, 'gated');
    const s = await start(app, 'selfCancelling', 'x', { signal: client.signal });
    gate.resolve();
    const run = await s.result();
    expect(run.status).toBe('cancelled');
    expect(run.output).toBeNull();
    const { terminal } = await finishedLog(app, run);
    expect(terminal.data).toEqual({ reason: 'client_disconnected' });
    expect((await blocker.result()).status).toBe('succeeded');
  });

  it('a thenable that is not a native promise is awaited like one', async () => {
    const app = await appWith({
      thenable: () => ({ then: (resolve: (v: unknown) => void) => setImmediate(() => resolve('later')) }),
    });
    const s = await start(app, 'thenable');
    // Not taken for a direct value: the run is still live, waiting for it.
    expect(app.runtime.runContext(s.id)?.run_id).toBe(s.id);
    expect(isTerminalStatus(s.snapshot().status)).toBe(false);
    const run = await s.result();
    expect(run.status).toBe('succeeded');
    expect(run.output).toBe('later');
  });
});

describe('Runner token events', () => {
  it('a token that is not a string (untyped code) is recorded as its string, and the sealed log stays valid JSON', async () => {
    const app = await appWith({
      loose: async (_i, ctx) => {
        const step = ctx.startStep('FUNCTION', 'loose');
        ctx.token(123 as never, step.step_id);
        ctx.token('after', step.step_id);
        step.end();
        return 'done';
      },
    });
    const handle = await start(app, 'loose');
    expect((await handle.result()).status).toBe('succeeded');
    const events = await readLog(app.runtime.stores.events, handle.id);
    expect(events.filter((e) => e.type === 'token').map((e) => e.data)).toEqual([
      { delta: '123', step_id: 's1' },
      { delta: 'after', step_id: 's1' },
    ]);
    expect(events.at(-1)?.type).toBe('run.succeeded');
  });
});

describe('Runner cancellation and timeouts', () => {
  it('lets the collector have a finished run at once: its handle and its context are not kept by the runtime', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let context: WeakRef<RunContext> | undefined;
    const app = await appWith({
      quick: async (_i, ctx) => {
        context = new WeakRef(ctx);
        return 'done';
      },
    });
    const refs = await (async () => {
      const s = await start(app, 'quick');
      await s.result();
      return { handle: new WeakRef(s) };
    })();
    // A WeakRef keeps its target for the rest of the job that made it.
    await yieldToLoop();
    gc();
    expect(refs.handle.deref()).toBeUndefined();
    expect(context).toBeDefined();
    expect(context!.deref()).toBeUndefined();
    expect(app.runtime.activeRuns).toBe(0);
  });

  it('forgets finished runs at once for lookups, while still-running ones stay reachable among hundreds of finished ones', async () => {
    const gate = deferred();
    const heldStarted = deferred<RunContext>();
    const app = await appWith({
      quick: async () => 'done',
      gated: async (_i, ctx) => {
        heldStarted.resolve(ctx);
        return Promise.race([gate.promise, untilAborted(ctx.signal)]);
      },
    });
    const held = await start(app, 'gated');
    const finished: RunHandle[] = [];
    for (let i = 0; i < 150; i++) {
      const s = await start(app, 'quick');
      await s.result();
      finished.push(s);
      expect(app.runtime.runContext(s.id)).toBeUndefined();
    }
    const { runtime } = app;
    expect(runtime.activeRuns).toBe(1);
    expect(runtime.runContext(held.id)).toBe(await heldStarted.promise);
    // A client leaving a finished run changes nothing; cancelling it is a conflict.
    const first = finished[0]!;
    const firstRun = await first.result();
    expect(await first.cancel('client_disconnected')).toEqual(firstRun);
    expect((await storesOf(app).runs.get(first.id))?.status).toBe('succeeded');
    expect((await rejection(sessionOf(app).cancel(first.id))).code).toBe('conflict');
    expect(await logOf(app, first.id)).toHaveLength(firstRun.last_event_id);
    // The held run is still found by id and cancels normally.
    const cancelled = await sessionOf(app).cancel(held.id);
    expect(cancelled.status).toBe('cancelled');
    expect(runtime.activeRuns).toBe(0);
    expect(runtime.runContext(held.id)).toBeUndefined();
  });

  it('a client leaving a run that has finished changes nothing: the final Run, no abort cause, its signal not fired', async () => {
    const signals: AbortSignal[] = [];
    const app = await appWith({
      quick: async (_i, ctx) => {
        signals.push(ctx.signal);
        return 'done';
      },
    });
    const s = await start(app, 'quick');
    const run = await s.result();
    expect(run.status).toBe('succeeded');
    expect(await s.cancel('client_disconnected')).toEqual(run);
    expect(await storesOf(app).runs.get(s.id)).toEqual(run);
    expect(await logOf(app, s.id)).toHaveLength(run.last_event_id);
    // What a run's signal and abort cause say is about the run: it ended before anyone left.
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
    expect(s.abortCause).toBeUndefined();
  });

  it('cancel while queued: leaves the queue, never starts, one run.cancelled (reason user)', async () => {
    const gate = deferred();
    let secondStarted = false;
    const app = await appWith(
      {
        gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]),
        marker: async () => {
          secondStarted = true;
          return 'ran';
        },
      },
      { max_concurrency: 1 },
    );
    const blocker = await start(app, 'gated');
    const queued = await start(app, 'marker');
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 1 });

    // Another user cannot see, let alone cancel, it.
    expect((await rejection(sessionOf(app, 'mallory').cancel(queued.id))).code).toBe('not_found');

    const cancelled = await sessionOf(app).cancel(queued.id);
    expect(cancelled).toMatchObject({ status: 'cancelled', started_at: null });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    const { events, terminal } = await finishedLog(app, cancelled);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    expect(terminal.data).toEqual({ reason: 'user' });

    gate.resolve();
    expect((await blocker.result()).status).toBe('succeeded');
    await tick();
    expect(secondStarted).toBe(false);
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('cancel while running: the workflow sees its signal abort, one run.cancelled, the permit is released', async () => {
    let sawAbort = false;
    const running = deferred();
    const app = await appWith(
      {
        block: async (_i, ctx) => {
          running.resolve();
          try {
            return await untilAborted(ctx.signal);
          } finally {
            sawAbort = ctx.signal.aborted;
          }
        },
      },
      { max_concurrency: 1 },
    );
    const s = await start(app, 'block');
    await running.promise;
    const run = await sessionOf(app).cancel(s.id);
    expect(run.status).toBe('cancelled');
    expect(sawAbort).toBe(true);
    const { events, terminal } = await finishedLog(app, run);
    expect(events.map((e) => (e.type === 'step' ? `step:${e.data.kind}` : e.type))).toEqual([
      'run.queued',
      'run.started',
      'step:WORKFLOW_START',
      'step:WORKFLOW_END',
      'run.cancelled',
    ]);
    expect(terminal.data).toEqual({ reason: 'user' });
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
    // The permit is really back: with cap 1 a new run completes.
    expect((await (await start(app, 'echo', 'again')).result()).status).toBe('succeeded');
  });

  it('what a workflow records while handling its abort (a tool step\'s end) comes before the terminal event, on cancel and on timeout', async () => {
    let toolStarted = deferred();
    const app = await appWith({
      tooly: async (_input, ctx) => {
        const step = ctx.startStep('TOOL', 'slow');
        toolStarted.resolve();
        try {
          await untilAborted(ctx.signal);
        } catch (err) {
          step.end({ error: { code: 'aborted', message: 'aborted' } });
          throw err;
        }
      },
    });
    const cancelled = await start(app, 'tooly');
    await toolStarted.promise;
    const kinds = async (run: Run) => (await finishedLog(app, run)).events.map((e) => (e.type === 'step' ? (e.data as { kind: string }).kind : e.type));
    const runA = await sessionOf(app).cancel(cancelled.id);
    expect(runA.status).toBe('cancelled');
    expect(await kinds(runA)).toEqual(['run.queued', 'run.started', 'WORKFLOW_START', 'TOOL_START', 'TOOL_END', 'WORKFLOW_END', 'run.cancelled']);
    toolStarted = deferred();
    const timedOut = await start(app, 'tooly', 'x', { timeoutMs: 20 });
    const runB = await timedOut.result();
    expect(runB.error?.code).toBe('run_timeout');
    expect(await kinds(runB)).toEqual(['run.queued', 'run.started', 'WORKFLOW_START', 'TOOL_START', 'TOOL_END', 'WORKFLOW_END', 'run.failed']);
  });

  it('cancel of a finished run is conflict, and writes nothing', async () => {
    const app = await appWith({
      boom: async () => {
        throw new Error('x');
      },
      block: async (_i, ctx) => untilAborted(ctx.signal),
    });
    const ok = await (await start(app, 'echo', 'hi')).result();
    const failed = await (await start(app, 'boom')).result();
    const b = await start(app, 'block');
    const cancelled = await sessionOf(app).cancel(b.id);
    for (const run of [ok, failed, cancelled]) {
      const before = await logOf(app, run.id);
      const err = await rejection(sessionOf(app).cancel(run.id));
      expect(err.code).toBe('conflict');
      expect(err.status).toBe(409);
      const after = await logOf(app, run.id);
      expect(after).toEqual(before);
      expectOneTerminalLast(after, run.id);
      expect(await storesOf(app).runs.get(run.id)).toEqual(run);
    }
    expect(ok.status).toBe('succeeded');
    expect(failed.status).toBe('failed');
    expect(cancelled.status).toBe('cancelled');
  });

  it('a client disconnect cancels with reason client_disconnected: its handle cancelled so, or the signal it was started with aborting', async () => {
    let running = deferred();
    const app = await appWith({
      block: async (_i, ctx) => {
        running.resolve();
        return untilAborted(ctx.signal);
      },
    });
    const s = await start(app, 'block');
    await running.promise;
    const run = await s.cancel('client_disconnected');
    expect(run.status).toBe('cancelled');
    expect(await s.result()).toEqual(run);
    expect(s.abortCause).toBe('client_disconnected');
    const { terminal } = await finishedLog(app, run);
    expect(terminal.data).toEqual({ reason: 'client_disconnected' });
    expect(app.runtime.sessions.stats().inFlight).toBe(0);

    running = deferred();
    const client = new AbortController();
    const viaSignal = await start(app, 'block', 'x', { signal: client.signal });
    await running.promise;
    client.abort();
    const left = await viaSignal.result();
    expect(left.status).toBe('cancelled');
    expect((await finishedLog(app, left)).terminal.data).toEqual({ reason: 'client_disconnected' });
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a queued run whose client leaves gives up its place in the queue', async () => {
    const gate = deferred();
    const app = await appWith(
      { gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) },
      { max_concurrency: 1 },
    );
    const blocker = await start(app, 'gated');
    const leaving = await start(app, 'echo', 'never');
    const next = await start(app, 'echo', 'next in line');
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 2 });
    const gone = await leaving.cancel('client_disconnected');
    expect(gone).toMatchObject({ status: 'cancelled', started_at: null });
    expect(await leaving.result()).toEqual(gone);
    expect((await finishedLog(app, gone)).terminal.data).toEqual({ reason: 'client_disconnected' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    gate.resolve();
    expect((await next.result()).status).toBe('succeeded');
    await blocker.result();
    await tick();
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('run timeout: a run past timeout_ms ends failed/run_timeout, whether or not the workflow honours its signal', async () => {
    let signalFired = false;
    const app = await appWith({
      block: async (_i, ctx) => {
        ctx.signal.addEventListener('abort', () => (signalFired = true));
        return untilAborted(ctx.signal);
      },
      deaf: () => new Promise(() => {}),
    });
    for (const wf of ['block', 'deaf']) {
      const run = await (await start(app, wf, 'x', { timeoutMs: 30 })).result();
      expect(run).toMatchObject({ status: 'failed', error: { code: 'run_timeout' } });
      const { terminal } = await finishedLog(app, run);
      expect(terminal.data.error.code).toBe('run_timeout');
    }
    expect(signalFired).toBe(true);
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a run_timeout_ms beyond the timer range does not time runs out at once', async () => {
    const app = await appWith(
      { pause: async () => new Promise((resolve) => setTimeout(() => resolve('done'), 20)) },
      { run_timeout_ms: 2 ** 31 + 1000 },
    );
    const run = await (await start(app, 'pause')).result();
    expect(run).toMatchObject({ status: 'succeeded', output: 'done' });
    await finishedLog(app, run);
  });

  it('the run timeout cannot be raised above run_timeout_ms', async () => {
    const app = await appWith({ block: async (_i, ctx) => untilAborted(ctx.signal) }, { run_timeout_ms: 30 });
    const run = await (await start(app, 'block', 'x', { timeoutMs: 600_000 })).result();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'run_timeout' } });
    await finishedLog(app, run);
  });

  it('a workflow that ignores its signal is abandoned at cancel: terminal written, permit released, late events dropped', async () => {
    const gate = deferred();
    const straggled = deferred();
    const running = deferred();
    const app = await appWith(
      {
        deaf: async (_i, ctx) => {
          running.resolve();
          await gate.promise; // ignores ctx.signal entirely
          ctx.token('late ', ctx.root_step_id);
          ctx.startStep('TOOL', 'late-tool').end({ output: 'late' });
          straggled.resolve();
          return 'late success';
        },
      },
      { max_concurrency: 1 },
    );
    const s = await start(app, 'deaf');
    await running.promise;
    const run = await sessionOf(app).cancel(s.id);
    expect(run.status).toBe('cancelled');
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
    const { events } = await finishedLog(app, run);

    // The only permit is free although the workflow is still stuck.
    expect((await (await start(app, 'echo', 'next')).result()).status).toBe('succeeded');

    gate.resolve();
    await straggled.promise;
    await tick();
    expect(await logOf(app, run.id)).toEqual(events);
    expect(await storesOf(app).runs.get(run.id)).toMatchObject({ status: 'cancelled', output: null });
  });

  it('queue timeout: a run that waits too long ends failed/queue_timeout with one terminal event', async () => {
    const gate = deferred();
    const app = await appWith(
      { gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) },
      { max_concurrency: 1, queue_timeout_ms: 30 },
    );
    const blocker = await start(app, 'gated');
    const late = await (await start(app, 'echo', 'too late')).result();
    expect(late).toMatchObject({ status: 'failed', started_at: null, error: { code: 'queue_timeout' } });
    const { events } = await finishedLog(app, late);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.failed']);
    gate.resolve();
    await blocker.result();
    await tick();
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('queue full: session.run refuses before creating anything', async () => {
    const gate = deferred();
    const app = await appWith(
      { gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) },
      { max_concurrency: 1, max_queue: 0 },
    );
    const blocker = await start(app, 'gated', 'x', { userId: 'bob' });
    const err = await rejection(start(app, 'echo', 'x', { userId: 'carol' }));
    expect(err.code).toBe('queue_full');
    expect(err.retryAfterS).toBeGreaterThan(0);
    expect((await sessionOf(app, 'carol').list({ limit: 10 })).data).toEqual([]);
    expect(app.runtime.activeRuns).toBe(1);
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    gate.resolve();
    await blocker.result();
  });
});

describe('Runner retention', () => {
  it('with max_runs smaller than the runs finishing together, every follower still gets its terminal event', async () => {
    const gate = deferred();
    const app = await appWith({ gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) }, { max_runs: 1 });
    const handles = await Promise.all(Array.from({ length: 4 }, () => start(app, 'gated')));
    const { events } = storesOf(app);
    const follow = new AbortController();
    const followers = handles.map(async (s) => {
      const types: string[] = [];
      for await (const ev of events.read(s.id, 0, { signal: follow.signal })) types.push(ev.type);
      return types;
    });
    await waitFor(() => handles.every((s) => events.parked(s.id) === 1), 'followers parked');
    gate.resolve();
    const runs = await Promise.all(handles.map((s) => s.result()));
    for (const run of runs) expect(run.status).toBe('succeeded');
    for (const types of await Promise.all(followers)) {
      expect(types.filter((t) => t === 'run.succeeded')).toHaveLength(1);
      expect(types.at(-1)).toBe('run.succeeded');
    }
    follow.abort();
  });
});

describe('Runner shutdown', () => {
  it('refuses new runs, cancels queued runs at once, gives running runs the grace, then cancels them (reason shutdown)', async () => {
    const gate = deferred();
    const started = { gated: deferred(), block: deferred() };
    const app = await appWith(
      {
        gated: async (_i, ctx) => {
          started.gated.resolve();
          await Promise.race([gate.promise, untilAborted(ctx.signal)]);
          return 'finished in grace';
        },
        block: async (_i, ctx) => {
          started.block.resolve();
          return untilAborted(ctx.signal);
        },
      },
      { max_concurrency: 2 },
    );
    const finishing = await start(app, 'gated');
    const stuck = await start(app, 'block');
    const queued = await start(app, 'echo', 'never runs');
    await Promise.all([started.gated.promise, started.block.promise]);
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 2, waiting: 1 });

    const shutdown = app.runtime.shutdown(1000);
    expect(app.runtime.isDraining).toBe(true);
    const refused = await rejection(start(app, 'echo', 'new'));
    expect(refused.code).toBe('shutting_down');
    expect(refused.retryAfterS).toBeGreaterThan(0);

    const queuedRun = await queued.result();
    expect(queuedRun.status).toBe('cancelled');
    expect((await finishedLog(app, queuedRun)).terminal.data).toEqual({ reason: 'shutdown' });

    // Within the grace, a running run may still finish normally.
    gate.resolve();
    const finished = await finishing.result();
    expect(finished.status).toBe('succeeded');
    await finishedLog(app, finished);
    expect((await storesOf(app).runs.get(stuck.id))?.status).toBe('running');

    await shutdown;
    const stuckRun = await stuck.result();
    expect(stuckRun.status).toBe('cancelled');
    expect(stuck.abortCause).toBe('shutdown');
    expect((await finishedLog(app, stuckRun)).terminal.data).toEqual({ reason: 'shutdown' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(app.runtime.activeRuns).toBe(0);
  });

  it('runs whose creation is in flight when shutdown begins are cancelled too, before shutdown resolves', async () => {
    const app = await appWith({ block: async (_i, ctx) => untilAborted(ctx.signal) }, { max_concurrency: 2 });
    const holder = await start(app, 'block');
    // Neither record is written yet when the drain begins: bob's run takes the last permit at
    // once, carol's has to queue.
    const bob = start(app, 'block', 'x', { userId: 'bob' });
    const carol = start(app, 'block', 'x', { userId: 'carol' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 2, waiting: 1 });
    // What holds the moment shutdown resolves (not later, once the test has awaited more).
    const shutdown = app.runtime.shutdown(0).then(() => ({ activeRuns: app.runtime.activeRuns, stats: app.runtime.sessions.stats() }));
    const refused = await rejection(start(app, 'block', 'x', { userId: 'dave' }));
    expect(refused.code).toBe('shutting_down');
    const handles = [holder, await bob, await carol];
    const atResolve = await shutdown;
    // Resolved means every run has its terminal event: none may still be running.
    expect(atResolve.activeRuns).toBe(0);
    expect(atResolve.stats).toMatchObject({ inFlight: 0, waiting: 0 });
    for (const s of handles) {
      const run = await storesOf(app).runs.get(s.id);
      expect(run?.status).toBe('cancelled');
      expect((await finishedLog(app, run!)).terminal.data).toEqual({ reason: 'shutdown' });
    }
  });

  it('a run whose record the store is still writing when shutdown begins (a create that answers a turn later) is cancelled before shutdown resolves', async () => {
    const app = await appWith({ block: async (_i, ctx) => untilAborted(ctx.signal) }, { max_concurrency: 2 });
    const holder = await start(app, 'block');
    // From here on the store answers a create on a later turn of the event loop, as a networked one does.
    const { runs, table } = storesOf(app);
    const create = runs.create.bind(runs);
    const creating: string[] = [];
    vi.spyOn(runs, 'create').mockImplementation(async (run) => {
      creating.push(run.id);
      await yieldToLoop();
      return create(run);
    });
    const bob = start(app, 'block', 'x', { userId: 'bob' });
    const shutdown = app.runtime.shutdown(0).then(() => ({
      activeRuns: app.runtime.activeRuns,
      stats: app.runtime.sessions.stats(),
      statuses: creating.map((id) => table.get(id)?.status),
    }));
    const atResolve = await shutdown;
    expect(creating).toHaveLength(1);
    // Resolved means every run admitted before the drain has its terminal event, this one included.
    expect(atResolve.statuses).toEqual(['cancelled']);
    expect(atResolve.activeRuns).toBe(0);
    expect(atResolve.stats).toMatchObject({ inFlight: 0, waiting: 0 });
    const handles = [holder, await bob];
    for (const s of handles) {
      const run = await s.result();
      expect(run.status).toBe('cancelled');
      expect((await finishedLog(app, run)).terminal.data).toEqual({ reason: 'shutdown' });
    }
  });

  it('shutdown with grace 0 cancels every running run, including one that ignores its signal', async () => {
    const app = await appWith({ deaf: () => new Promise(() => {}), block: async (_i, ctx) => untilAborted(ctx.signal) });
    const handles = await Promise.all([start(app, 'deaf'), start(app, 'block'), start(app, 'deaf')]);
    await app.runtime.shutdown(0);
    expect(app.runtime.activeRuns).toBe(0);
    for (const s of handles) {
      const run = await s.result();
      expect(run.status).toBe('cancelled');
      expect((await finishedLog(app, run)).terminal.data).toEqual({ reason: 'shutdown' });
    }
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });
});

describe('Run isolation', () => {
  it('hundreds of interleaved runs of 20 users never see another run’s context', async () => {
    const violations: string[] = [];
    const seenBy = new Map<string, { user: string; n: number }>();
    let checks = 0;
    const CHECKS_PER_RUN = 12;

    const pause = async (): Promise<void> => {
      const r = Math.random();
      if (r < 0.35) await yieldToLoop();
      else if (r < 0.7) await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 3)));
      else if (r < 0.85) await new Promise<void>((resolve) => queueMicrotask(resolve));
      else await Promise.resolve();
    };

    const app = await appWith(
      {
        iso: async (input, ctx) => {
          const { user, n } = input as { user: string; n: number };
          const check = (where: string) => {
            checks++;
            const cur = currentRunContext();
            if (cur !== ctx) violations.push(`${user}/${n} ${where}: current context is run ${cur?.run_id}, not ${ctx.run_id}`);
            if (cur?.user_id !== user || ctx.user_id !== user) violations.push(`${user}/${n} ${where}: user ${cur?.user_id}`);
            if (cur?.request_id !== `iso-${n}`) violations.push(`${user}/${n} ${where}: request ${cur?.request_id}`);
          };
          seenBy.set(ctx.run_id, { user, n });
          check('start');
          for (let i = 0; i < 6; i++) {
            await pause();
            check(`pause ${i}`);
            ctx.token(`${user}|${ctx.run_id}|${i};`, ctx.root_step_id);
          }
          // Plain callbacks (no promise chain) must carry the context too.
          await new Promise<void>((resolve) =>
            setTimeout(() => {
              check('timer callback');
              resolve();
            }, Math.floor(Math.random() * 3)),
          );
          await new Promise<void>((resolve) =>
            setImmediate(() => {
              check('immediate callback');
              resolve();
            }),
          );
          // Concurrent branches of one run.
          await Promise.all(
            [0, 1].map(async (k) => {
              await pause();
              check(`branch ${k}`);
            }),
          );
          check('end');
          return `${user}/${n}`;
        },
      },
      { max_concurrency: 16, per_user_max_concurrency: 3, max_queue: 1000, queue_timeout_ms: 60_000 },
    );

    const RUNS = 400;
    const USERS = 20;
    const handles = await Promise.all(
      Array.from({ length: RUNS }, (_, n) =>
        app.runtime.session({ userId: `user-${n % USERS}`, requestId: `iso-${n}` }).run({ user: `user-${n % USERS}`, n }, { workflow: 'iso' }),
      ),
    );
    const runs = await Promise.all(handles.map((s) => s.result()));

    expect(violations).toEqual([]);
    expect(checks).toBe(RUNS * CHECKS_PER_RUN);
    expect(currentRunContext()).toBeUndefined();
    for (const [n, run] of runs.entries()) {
      const user = `user-${n % USERS}`;
      expect(run).toMatchObject({ status: 'succeeded', user_id: user, output: `${user}/${n}` });
      expect(seenBy.get(run.id)).toEqual({ user, n });
      // Each run's event log holds only its own tokens.
      const { events } = await finishedLog(app, run);
      const tokens = events.filter((e) => e.type === 'token').map((e) => e.data.delta as string);
      expect(tokens).toEqual(Array.from({ length: 6 }, (_, i) => `${user}|${run.id}|${i};`));
    }
    const stats = app.runtime.sessions.stats();
    expect(stats).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(stats.highWater).toBeLessThanOrEqual(16);
  });
});

describe('Event log cap', () => {
  it('a workflow emitting more events than max_events_per_run ends failed, with its terminal event written', async () => {
    const app = await appWith(
      {
        flood: async (_i, ctx) => {
          for (let i = 0; i < 50; i++) ctx.token(`t${i} `, ctx.root_step_id);
          return 'flooded';
        },
        trickle: async (_i, ctx) => {
          for (let i = 0; i < 50; i++) {
            ctx.token(`t${i} `, ctx.root_step_id);
            await yieldToLoop();
          }
          return 'trickled';
        },
      },
      { max_events_per_run: 8 },
    );
    for (const wf of ['flood', 'trickle']) {
      const run = await (await start(app, wf)).result();
      expect(run.status).toBe('failed');
      expect(run.error?.code).toBe('internal');
      const { events, terminal } = await finishedLog(app, run);
      expect(events.length).toBeLessThanOrEqual(8);
      expect(terminal.type).toBe('run.failed');
      expect(terminal.data.error).toEqual(run.error);
    }
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
    // The boundary: echo of one word records exactly 8 events (7 + the terminal one) and succeeds;
    // one word more needs a 9th and fails, rather than succeeding with its WORKFLOW_END step missing.
    const fits = await (await start(app, 'echo', 'a')).result();
    expect(fits.status).toBe('succeeded');
    expect((await finishedLog(app, fits)).events).toHaveLength(8);
    const over = await (await start(app, 'echo', 'a b')).result();
    expect(over).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    const { events } = await finishedLog(app, over);
    expect(events).toHaveLength(8);
    expect(events.filter((e) => e.type === 'step').map((e) => e.data.kind)).toEqual(['WORKFLOW_START', 'FUNCTION_START', 'FUNCTION_END']);
  });
});
