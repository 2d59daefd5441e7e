import type { EventLog } from '../src/store/event-log.js';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { RunwayError } from '../src/core/errors.js';
import { currentRunContext, type RunContext } from '../src/runtime/run-context.js';
import type { Session } from '../src/runtime/session.js';
import type { MemoryStore } from '../src/store/memory-store.js';
import type { Run } from '../src/core/run.js';
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
function start(app: FastifyInstance, workflow: string, input: unknown = 'x', extra: { userId?: string; timeoutMs?: number } = {}): Promise<Session> {
  return app.runtime.createRun({
    workflow,
    input,
    userId: extra.userId ?? 'alice',
    requestId: `req-${++requests}`,
    ...(extra.timeoutMs !== undefined && { timeoutMs: extra.timeoutMs }),
  });
}

function storeOf(app: FastifyInstance): MemoryStore {
  return app.runtime.store as MemoryStore;
}

async function logOf(app: FastifyInstance, runId: string): Promise<ParsedEvent[]> {
  return readLog(storeOf(app), runId);
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
    let statusInside: unknown;
    const app = await appWith(
      {
        gated: async (_input, ctx) => {
          const run = await storeOf(app).get(ctx.run_id);
          statusInside = { status: run?.status, started: run?.started_at !== null };
          await Promise.race([gate.promise, untilAborted(ctx.signal)]);
          return 'opened';
        },
      },
      { max_concurrency: 1 },
    );

    const first = await start(app, 'gated');
    const second = await start(app, 'echo', 'hello big world');
    // The first holds the only permit: the second is queued, in the store and in its log.
    const queued = await app.runtime.store.get(second.run_id);
    expect(queued).toMatchObject({ status: 'queued', started_at: null, finished_at: null, output: null, error: null });
    expect((await logOf(app, second.run_id)).map((e) => e.type)).toEqual(['run.queued']);
    await waitFor(() => statusInside !== undefined, 'the gated workflow to start');
    expect(statusInside).toEqual({ status: 'running', started: true });

    gate.resolve();
    const firstRun = await first.done;
    expect(firstRun.status).toBe('succeeded');
    await finishedLog(app, firstRun);

    const run = await second.done;
    expect(run).toMatchObject({ status: 'succeeded', output: 'hello big world', error: null, user_id: 'alice', workflow: 'echo' });
    expect(run.started_at).not.toBeNull();
    expect(run.created_at <= run.started_at!).toBe(true);
    expect(run.started_at! <= run.finished_at!).toBe(true);
    expect(await app.runtime.store.get(run.id)).toMatchObject({ status: 'succeeded' });

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
    const run = await (await start(app, 'boom')).done;
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
    const run = await (await start(app, 'sync')).done;
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
      const run = await (await start(app, wf)).done;
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
    const run = await (await start(app, 'fickle')).done;
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
    const run = await (await start(app, 'upstream')).done;
    expect(run).toMatchObject({ status: 'failed', error: { code: 'upstream_error', message: 'The model answered 502' } });
    const { terminal } = await finishedLog(app, run);
    expect(terminal.data.error).toEqual({ code: 'upstream_error', message: 'The model answered 502' });
  });
});

describe('Runner: the end of a run', () => {
  it('tells every whenDone caller the final Run, at once when it has already ended; a caller that throws stops no other', async () => {
    const gate = deferred();
    const app = await appWith({
      gated: async () => {
        await gate.promise;
        return 'ok';
      },
    });
    const s = await start(app, 'gated');
    const seen: Array<Run | undefined> = [];
    const rethrown: unknown[] = [];
    const queue = globalThis.queueMicrotask;
    const spy = vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((fn) =>
      queue(() => {
        try {
          fn();
        } catch (err) {
          rethrown.push(err);
        }
      }),
    );
    try {
      s.whenDone((run) => seen.push(run));
      s.whenDone(() => {
        throw new Error('one caller fails');
      });
      s.whenDone((run) => seen.push(run));
      expect(seen).toEqual([]);
      gate.resolve();
      const run = await s.done;
      expect(run.status).toBe('succeeded');
      expect(seen).toEqual([run, run]);
      expect(rethrown).toEqual([new Error('one caller fails')]);
      let late: Run | undefined;
      s.whenDone((r) => (late = r));
      expect(late).toBe(run);
    } finally {
      spy.mockRestore();
    }
    expect(app.runtime.runner.activeCount).toBe(0);
  });

  it('when not even a failed status can be stored: whenDone gets the error, done rejects with it, the permit is released', async () => {
    const app = await appWith({ quick: async () => 'done' });
    const store = storeOf(app);
    const update = store.updateNow.bind(store);
    const broken = new Error('store is down');
    vi.spyOn(store, 'updateNow').mockImplementation((id, patch, expect) => {
      if (patch.status !== 'running') throw broken;
      return update(id, patch, expect);
    });
    const s = await start(app, 'quick');
    const outcome = await new Promise<[Run | undefined, unknown]>((resolve) => s.whenDone((run, err) => resolve([run, err])));
    expect(outcome).toEqual([undefined, broken]);
    await expect(s.done).rejects.toBe(broken);
    expect(app.runtime.runner.activeCount).toBe(0);
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });
});

describe('Runner: what untyped code may hand it', () => {
  it('writes the run.queued data as JSON for any workflow name, an empty one a custom type made included', async () => {
    // A fresh copy of the modules: the Runner remembers the last workflow's data, and this must be
    // the first run it ever writes.
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
      const run = await (await start(app, 'blank')).done;
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
    const run = await (await start(app, 'odd')).done;
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
  it('a run whose workflow returns a value, not a promise, has ended by the time createRun resolves', async () => {
    const app = await appWith({
      direct: (input, ctx) => {
        const step = ctx.startStep('FUNCTION', 'upper');
        ctx.token(String(input).toUpperCase(), step.step_id);
        step.end();
        return String(input).toUpperCase();
      },
    });
    const s = await start(app, 'direct', 'hi');
    expect(s.ended).toBe(true);
    const run = await s.done;
    expect(run.status).toBe('succeeded');
    expect(run.output).toBe('HI');
    const { events } = await finishedLog(app, run);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.started', 'step', 'step', 'token', 'step', 'step', 'run.succeeded']);
    expect(app.runtime.runner.activeCount).toBe(0);
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
  });

  it('a direct return after the run was cancelled during the workflow ends cancelled, not succeeded', async () => {
    const app = await appWith({
      selfCancelling: (_input, ctx) => {
        app.runtime.runner.abortLocal(ctx.run_id, 'client_disconnected');
        return 'too late';
      },
    });
    const run = await (await start(app, 'selfCancelling')).done;
    expect(run.status).toBe('cancelled');
    const { terminal } = await finishedLog(app, run);
    expect(terminal.data).toEqual({ reason: 'client_disconnected' });
  });

  it('a thenable that is not a native promise is awaited like one', async () => {
    const app = await appWith({
      thenable: () => ({ then: (resolve: (v: unknown) => void) => setImmediate(() => resolve('later')) }),
    });
    const s = await start(app, 'thenable');
    expect(s.ended).toBe(false);
    const run = await s.done;
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
    const session = await start(app, 'loose');
    expect((await session.done).status).toBe('succeeded');
    const events = await readLog(app.runtime.store as unknown as EventLog, session.run_id);
    expect(events.filter((e) => e.type === 'token').map((e) => e.data)).toEqual([
      { delta: '123', step_id: 's1' },
      { delta: 'after', step_id: 's1' },
    ]);
    expect(events.at(-1)?.type).toBe('run.succeeded');
  });
});

describe('Runner cancellation and timeouts', () => {
  it('lets the collector have a finished run\'s Session at once, before its batch of map deletes', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const app = await appWith({ quick: async () => 'done' });
    // One run: far fewer than a batch, so the run's key is still in the Runner's map.
    const refs = await (async () => {
      const s = await start(app, 'quick');
      await s.done;
      return { session: new WeakRef(s) };
    })();
    // A WeakRef keeps its target for the rest of the job that made it.
    await yieldToLoop();
    gc();
    expect(refs.session.deref()).toBeUndefined();
    expect(app.runtime.runner.activeCount).toBe(0);
  });

  it('forgets finished runs at once for lookups, while still-running ones stay reachable among hundreds of finished ones', async () => {
    const gate = deferred();
    const app = await appWith({ quick: async () => 'done', gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) });
    const held = await start(app, 'gated');
    const finished: Session[] = [];
    // More than one batch of retired runs, so their deferred removal from the map happens too.
    for (let i = 0; i < 150; i++) {
      const s = await start(app, 'quick');
      await s.done;
      finished.push(s);
      expect(app.runtime.runner.local(s.run_id)).toBeUndefined();
    }
    const { runner } = app.runtime;
    expect(runner.activeCount).toBe(1);
    expect(runner.local(held.run_id)).toBe(held);
    // A client leaving a finished run changes nothing; cancelling it is a conflict.
    runner.abortLocal(finished[0]!.run_id, 'client_disconnected');
    expect((await app.runtime.store.get(finished[0]!.run_id))?.status).toBe('succeeded');
    expect((await rejection(app.runtime.cancelRun(finished[0]!.run_id, 'alice'))).code).toBe('conflict');
    // The held run is still found by id and cancels normally.
    const cancelled = await app.runtime.cancelRun(held.run_id, 'alice');
    expect(cancelled.status).toBe('cancelled');
    expect(runner.activeCount).toBe(0);
    expect(runner.local(held.run_id)).toBeUndefined();
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
    expect((await rejection(app.runtime.cancelRun(queued.run_id, 'mallory'))).code).toBe('not_found');

    const cancelled = await app.runtime.cancelRun(queued.run_id, 'alice');
    expect(cancelled).toMatchObject({ status: 'cancelled', started_at: null });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    const { events, terminal } = await finishedLog(app, cancelled);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    expect(terminal.data).toEqual({ reason: 'user' });

    gate.resolve();
    expect((await blocker.done).status).toBe('succeeded');
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
    const run = await app.runtime.cancelRun(s.run_id, 'alice');
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
    expect((await (await start(app, 'echo', 'again')).done).status).toBe('succeeded');
  });

  it('what a workflow records while handling its abort (a tool step\'s end) comes before the terminal event, on cancel and on timeout', async () => {
    const app = await appWith({
      tooly: async (_input, ctx) => {
        const step = ctx.startStep('TOOL', 'slow');
        try {
          await untilAborted(ctx.signal);
        } catch (err) {
          step.end({ error: { code: 'aborted', message: 'aborted' } });
          throw err;
        }
      },
    });
    const cancelled = await start(app, 'tooly');
    await waitFor(() => cancelled.run.status === 'running');
    await tick();
    const kinds = async (run: Run) => (await finishedLog(app, run)).events.map((e) => (e.type === 'step' ? (e.data as { kind: string }).kind : e.type));
    const runA = await app.runtime.cancelRun(cancelled.run_id, 'alice');
    expect(await kinds(runA)).toEqual(['run.queued', 'run.started', 'WORKFLOW_START', 'TOOL_START', 'TOOL_END', 'WORKFLOW_END', 'run.cancelled']);
    const timedOut = await start(app, 'tooly', 'x', { timeoutMs: 20 });
    const runB = await timedOut.done;
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
    const ok = await (await start(app, 'echo', 'hi')).done;
    const failed = await (await start(app, 'boom')).done;
    const b = await start(app, 'block');
    const cancelled = await app.runtime.cancelRun(b.run_id, 'alice');
    for (const run of [ok, failed, cancelled]) {
      const before = await logOf(app, run.id);
      const err = await rejection(app.runtime.cancelRun(run.id, 'alice'));
      expect(err.code).toBe('conflict');
      expect(err.status).toBe(409);
      const after = await logOf(app, run.id);
      expect(after).toEqual(before);
      expectOneTerminalLast(after, run.id);
    }
    expect(ok.status).toBe('succeeded');
    expect(failed.status).toBe('failed');
  });

  it('a client disconnect cancels with reason client_disconnected', async () => {
    const running = deferred();
    const app = await appWith({
      block: async (_i, ctx) => {
        running.resolve();
        return untilAborted(ctx.signal);
      },
    });
    const s = await start(app, 'block');
    await running.promise;
    app.runtime.runner.abortLocal(s.run_id, 'client_disconnected');
    const run = await s.done;
    expect(run.status).toBe('cancelled');
    const { terminal } = await finishedLog(app, run);
    expect(terminal.data).toEqual({ reason: 'client_disconnected' });
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
    app.runtime.runner.abortLocal(leaving.run_id, 'client_disconnected');
    const gone = await leaving.done;
    expect(gone).toMatchObject({ status: 'cancelled', started_at: null });
    expect((await finishedLog(app, gone)).terminal.data).toEqual({ reason: 'client_disconnected' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    gate.resolve();
    expect((await next.done).status).toBe('succeeded');
    await blocker.done;
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
      const run = await (await start(app, wf, 'x', { timeoutMs: 30 })).done;
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
    const run = await (await start(app, 'pause')).done;
    expect(run).toMatchObject({ status: 'succeeded', output: 'done' });
    await finishedLog(app, run);
  });

  it('the run timeout cannot be raised above run_timeout_ms', async () => {
    const app = await appWith({ block: async (_i, ctx) => untilAborted(ctx.signal) }, { run_timeout_ms: 30 });
    const run = await (await start(app, 'block', 'x', { timeoutMs: 600_000 })).done;
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
    const run = await app.runtime.cancelRun(s.run_id, 'alice');
    expect(run.status).toBe('cancelled');
    expect(app.runtime.sessions.stats().inFlight).toBe(0);
    const { events } = await finishedLog(app, run);

    // The only permit is free although the workflow is still stuck.
    expect((await (await start(app, 'echo', 'next')).done).status).toBe('succeeded');

    gate.resolve();
    await straggled.promise;
    await tick();
    expect(await logOf(app, run.id)).toEqual(events);
    expect(await app.runtime.store.get(run.id)).toMatchObject({ status: 'cancelled', output: null });
  });

  it('queue timeout: a run that waits too long ends failed/queue_timeout with one terminal event', async () => {
    const gate = deferred();
    const app = await appWith(
      { gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) },
      { max_concurrency: 1, queue_timeout_ms: 30 },
    );
    const blocker = await start(app, 'gated');
    const late = await (await start(app, 'echo', 'too late')).done;
    expect(late).toMatchObject({ status: 'failed', started_at: null, error: { code: 'queue_timeout' } });
    const { events } = await finishedLog(app, late);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.failed']);
    gate.resolve();
    await blocker.done;
    await tick();
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('queue full: createRun refuses before creating anything', async () => {
    const gate = deferred();
    const app = await appWith(
      { gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) },
      { max_concurrency: 1, max_queue: 0 },
    );
    const blocker = await start(app, 'gated', 'x', { userId: 'bob' });
    const err = await rejection(start(app, 'echo', 'x', { userId: 'carol' }));
    expect(err.code).toBe('queue_full');
    expect(err.retryAfterS).toBeGreaterThan(0);
    expect((await app.runtime.listRuns({ userId: 'carol', limit: 10 })).data).toEqual([]);
    gate.resolve();
    await blocker.done;
  });
});

describe('Runner retention', () => {
  it('with max_runs smaller than the runs finishing together, every follower still gets its terminal event', async () => {
    const gate = deferred();
    const app = await appWith({ gated: async (_i, ctx) => Promise.race([gate.promise, untilAborted(ctx.signal)]) }, { max_runs: 1 });
    const sessions = await Promise.all(Array.from({ length: 4 }, () => start(app, 'gated')));
    const follow = new AbortController();
    const followers = sessions.map(async (s) => {
      const types: string[] = [];
      for await (const ev of storeOf(app).read(s.run_id, 0, { signal: follow.signal })) types.push(ev.type);
      return types;
    });
    await waitFor(() => sessions.every((s) => storeOf(app).subscriberCount(s.run_id) === 1), 'followers parked');
    gate.resolve();
    const runs = await Promise.all(sessions.map((s) => s.done));
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
    const started = { gated: false, block: false };
    const app = await appWith(
      {
        gated: async (_i, ctx) => {
          started.gated = true;
          await Promise.race([gate.promise, untilAborted(ctx.signal)]);
          return 'finished in grace';
        },
        block: async (_i, ctx) => {
          started.block = true;
          return untilAborted(ctx.signal);
        },
      },
      { max_concurrency: 2 },
    );
    const finishing = await start(app, 'gated');
    const stuck = await start(app, 'block');
    const queued = await start(app, 'echo', 'never runs');
    await waitFor(() => started.gated && started.block, 'both running');
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 2, waiting: 1 });

    const shutdown = app.runtime.shutdown(1000);
    expect(app.runtime.isDraining).toBe(true);
    const refused = await rejection(start(app, 'echo', 'new'));
    expect(refused.code).toBe('shutting_down');
    expect(refused.retryAfterS).toBeGreaterThan(0);

    const queuedRun = await queued.done;
    expect(queuedRun.status).toBe('cancelled');
    expect((await finishedLog(app, queuedRun)).terminal.data).toEqual({ reason: 'shutdown' });

    // Within the grace, a running run may still finish normally.
    gate.resolve();
    const finished = await finishing.done;
    expect(finished.status).toBe('succeeded');
    await finishedLog(app, finished);
    expect((await app.runtime.store.get(stuck.run_id))?.status).toBe('running');

    await shutdown;
    const stuckRun = await stuck.done;
    expect(stuckRun.status).toBe('cancelled');
    expect((await finishedLog(app, stuckRun)).terminal.data).toEqual({ reason: 'shutdown' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(app.runtime.runner.activeCount).toBe(0);
  });

  it('runs whose creation is in flight when shutdown begins are cancelled too, before shutdown resolves', async () => {
    const app = await appWith({ block: async (_i, ctx) => untilAborted(ctx.signal) }, { max_concurrency: 2 });
    const holder = await start(app, 'block');
    // Neither record is written yet when the drain begins: bob's run takes the last permit at
    // once, carol's has to queue.
    const bob = start(app, 'block', 'x', { userId: 'bob' });
    const carol = start(app, 'block', 'x', { userId: 'carol' });
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 2, waiting: 1 });
    const shutdown = app.runtime.shutdown(0);
    const refused = await rejection(start(app, 'block', 'x', { userId: 'dave' }));
    expect(refused.code).toBe('shutting_down');
    const sessions = [holder, await bob, await carol];
    await shutdown;
    // Resolved means every run has its terminal event: none may still be running.
    expect(app.runtime.runner.activeCount).toBe(0);
    for (const s of sessions) {
      const run = await app.runtime.store.get(s.run_id);
      expect(run?.status).toBe('cancelled');
      expect((await finishedLog(app, run!)).terminal.data).toEqual({ reason: 'shutdown' });
    }
    expect(app.runtime.sessions.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('shutdown with grace 0 cancels every running run, including one that ignores its signal', async () => {
    const app = await appWith({ deaf: () => new Promise(() => {}), block: async (_i, ctx) => untilAborted(ctx.signal) });
    const sessions = await Promise.all([start(app, 'deaf'), start(app, 'block'), start(app, 'deaf')]);
    await app.runtime.shutdown(0);
    for (const s of sessions) {
      const run = await s.done;
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
    const sessions = await Promise.all(
      Array.from({ length: RUNS }, (_, n) =>
        app.runtime.createRun({ workflow: 'iso', input: { user: `user-${n % USERS}`, n }, userId: `user-${n % USERS}`, requestId: `iso-${n}` }),
      ),
    );
    const runs = await Promise.all(sessions.map((s) => s.done));

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
      const run = await (await start(app, wf)).done;
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
    const fits = await (await start(app, 'echo', 'a')).done;
    expect(fits.status).toBe('succeeded');
    expect((await finishedLog(app, fits)).events).toHaveLength(8);
    const over = await (await start(app, 'echo', 'a b')).done;
    expect(over).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    const { events } = await finishedLog(app, over);
    expect(events).toHaveLength(8);
    expect(events.filter((e) => e.type === 'step').map((e) => e.data.kind)).toEqual(['WORKFLOW_START', 'FUNCTION_START', 'FUNCTION_END']);
  });
});
