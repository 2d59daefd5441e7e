import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime } from '../src/runtime/create-runtime.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { connectionOptions } from '../src/store/redis/redis-connection.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { readLog } from './support/runtime-test-kit.js';

// The BullMQ queue in one process (createRuntime with the config naming Redis): role `all`
// executes through the queue, role `api` alone leaves runs waiting for a worker.

let server: RedisServer;
const runtimes: Runtime[] = [];

beforeAll(async () => {
  server = await startRedisServer();
});
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await server?.stop();
});

async function runtimeOf(role: 'all' | 'api', prefix: string, runtime: Record<string, unknown> = {}): Promise<Runtime> {
  const rt = await createRuntime({
    config: { store: server.url, role, redis: { prefix }, runtime: { shutdown_grace_ms: 0, ...runtime }, server: { log_level: 'silent' }, workflows: { echo: { type: 'echo', token_delay_ms: 0 } } },
  });
  runtimes.push(rt);
  await rt.workerReady();
  return rt;
}

/** BullMQ's view of the queue the runtimes at `prefix` share. */
async function jobCounts(prefix: string): Promise<Record<string, number>> {
  const queue = new Queue('runs', { connection: connectionOptions(server.url) as never, prefix: `${prefix}bull` });
  try {
    return await queue.getJobCounts('waiting', 'active', 'completed', 'failed');
  } finally {
    await queue.close();
  }
}

describe('BullmqRunQueue', () => {
  it('role all: a run is a job whose id is the run id, executed by the process worker, and the job is gone once done', async () => {
    const prefix = server.freshPrefix();
    const rt = await runtimeOf('all', prefix);
    const handle = await rt.session({ userId: 'alice' }).run('through the queue', { workflow: 'echo' });
    const run = await handle.result();
    expect(run).toMatchObject({ status: 'succeeded', output: 'through the queue' });
    const events = await readLog(rt.stores.events, run.id);
    expect(events.filter((e) => e.type === 'run.started')).toHaveLength(1);
    expect(await jobCounts(prefix)).toEqual({ waiting: 0, active: 0, completed: 0, failed: 0 });
  });

  it('role api with no worker: a run nobody takes ends queue_timeout after queue_timeout_ms, its job out of the queue', async () => {
    const prefix = server.freshPrefix();
    const rt = await runtimeOf('api', prefix, { queue_timeout_ms: 300 });
    const handle = await rt.session({ userId: 'alice' }).run('nobody takes me', { workflow: 'echo' });
    expect((await jobCounts(prefix)).waiting).toBe(1);
    const run = await handle.result();
    expect(run).toMatchObject({ status: 'failed', error: { code: 'queue_timeout' } });
    expect((await readLog(rt.stores.events, run.id)).map((e) => e.type)).toEqual(['run.queued', 'run.failed']);
    expect((await jobCounts(prefix)).waiting).toBe(0);
  });

  it('role api: max_queue counts the jobs waiting in Redis', async () => {
    const prefix = server.freshPrefix();
    const rt = await runtimeOf('api', prefix, { max_queue: 2 });
    const session = rt.session({ userId: 'alice' });
    const handles = [await session.run('a', { workflow: 'echo' }), await session.run('b', { workflow: 'echo' })];
    await expect(session.run('c', { workflow: 'echo' })).rejects.toMatchObject({ code: 'queue_full' });
    // A cancelled run leaves the queue: there is room again.
    expect(await handles[0]!.cancel()).toMatchObject({ status: 'cancelled' });
    const third = await session.run('c', { workflow: 'echo' });
    expect((await jobCounts(prefix)).waiting).toBe(2);
    for (const h of [handles[1]!, third]) expect(await h.cancel()).toMatchObject({ status: 'cancelled' });
    expect((await jobCounts(prefix)).waiting).toBe(0);
  });
});
