import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { Logger } from '../src/core/logger.js';
import type { Run } from '../src/core/run.js';
import { JobExecutor } from '../src/runtime/job-executor.js';
import { RunObservers } from '../src/runtime/run-observers.js';
import { createRedisStores, type RedisStores } from '../src/store/redis/redis-stores.js';
import { StaleWriterError } from '../src/store/store-errors.js';
import type { Workflow } from '../src/workflows/workflow.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { makeRun, readLog } from './support/runtime-test-kit.js';

// The worker's side of a run on the shared queue (DESIGN §6), on a real Redis without BullMQ:
// what a pick-up finds in the store decides what it does.

let server: RedisServer;
let stores: RedisStores;
let executor: JobExecutor;
const log = pino({ level: 'silent' }) as unknown as Logger;
const ran = vi.fn(async (input: unknown) => `done ${String(input)}`);
const workflow: Workflow = { name: 'w', type: 'test', description: 'test', inputSchema: z.unknown(), run: ran };

beforeAll(async () => {
  server = await startRedisServer();
  stores = createRedisStores({ url: server.url, prefix: server.freshPrefix(), runTtlS: 3600 });
  executor = new JobExecutor({ stores, workflows: new Map([['w', workflow]]), observers: new RunObservers(), log, runTimeoutMs: 60_000, maxEventsPerRun: 100, queueTimeoutMs: 60_000 });
});
afterEach(() => ran.mockClear());
afterAll(async () => {
  executor?.close();
  await stores?.close();
  await server?.stop();
});

/** A run as its admitting process leaves it: its record, queued, and `run.queued` written. */
async function admitted(over: Partial<Run> = {}): Promise<Run> {
  const run = makeRun({ workflow: 'w', status: 'queued', input: 'in', ...over });
  await stores.runs.create(run);
  await stores.events.append(run.id, [{ id: 1, type: 'run.queued', time: run.created_at, data: '{"workflow":"w"}' }]);
  return run;
}

const jobOf = (run: Run) => ({ runId: run.id, workflow: run.workflow, input: run.input, userId: run.user_id, timeoutMs: 60_000, requestId: 'r1', conversationId: null });

describe('JobExecutor', () => {
  it('executes a picked-up run continuing the log its admitting process began', async () => {
    const run = await admitted();
    await executor.execute({ job: jobOf(run), attempt: 1 });
    const events = await readLog(stores.events, run.id);
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
    expect(events.map((e) => e.type).slice(0, 2)).toEqual(['run.queued', 'run.started']);
    expect(events.at(-1)).toMatchObject({ type: 'run.succeeded', data: { output: 'done in' } });
    expect(await stores.runs.get(run.id)).toMatchObject({ status: 'succeeded', output: 'done in' });
  });

  it('a cancel published before the pick-up (nobody listening for it yet) is read back: the workflow never starts', async () => {
    const run = await admitted();
    await stores.bus.publish({ type: 'cancel', runId: run.id, reason: 'client_disconnected' });
    await executor.execute({ job: jobOf(run), attempt: 1 });
    expect(ran).not.toHaveBeenCalled();
    const events = await readLog(stores.events, run.id);
    expect(events.map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    expect(events[1]!.data).toEqual({ reason: 'client_disconnected' });
  });

  it('a run that ended before the pick-up is skipped', async () => {
    const run = await admitted();
    expect(await stores.runs.update(run.id, { status: 'cancelled' }, ['queued'])).toBe(true);
    await stores.events.append(run.id, [{ id: 2, type: 'run.cancelled', time: run.created_at, data: '{"reason":"user"}' }]);
    await executor.execute({ job: jobOf(run), attempt: 1 });
    expect(ran).not.toHaveBeenCalled();
    expect((await readLog(stores.events, run.id)).map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
  });

  it('a run an earlier attempt started is not executed again: it fails, and the earlier attempt is fenced off', async () => {
    const run = await admitted();
    expect(await stores.runs.update(run.id, { status: 'running' }, ['queued'])).toBe(true);
    await stores.events.append(run.id, [{ id: 2, type: 'run.started', time: run.created_at, data: '{}' }], { attempt: 1 });
    await executor.execute({ job: jobOf(run), attempt: 2 });
    expect(ran).not.toHaveBeenCalled();
    expect(await stores.runs.get(run.id)).toMatchObject({ status: 'failed', error: { code: 'worker_lost', message: 'The worker executing the run was lost' } });
    await expect(stores.events.append(run.id, [{ id: 4, type: 'token', time: run.created_at, data: '{}' }], { attempt: 1 })).rejects.toBeInstanceOf(StaleWriterError);
    expect((await readLog(stores.events, run.id)).map((e) => e.type)).toEqual(['run.queued', 'run.started', 'run.failed']);
  });

  it('a run that waited past queue_timeout_ms when picked up ends queue_timeout unstarted', async () => {
    const run = await admitted({ created_at: new Date(Date.now() - 120_000).toISOString() });
    await executor.execute({ job: jobOf(run), attempt: 1 });
    expect(ran).not.toHaveBeenCalled();
    expect(await stores.runs.get(run.id)).toMatchObject({ status: 'failed', error: { code: 'queue_timeout' } });
  });
});
