import { describe, expect, it } from 'vitest';
import type { Run, RunStatus } from '../src/core/run.js';
import { createRuntime } from '../src/runtime/create-runtime.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { createMemoryStores } from '../src/store/memory/memory-stores.js';
import type { Stores } from '../src/store/stores.js';
import { deferred, expectOneTerminalLast, readLog, type Deferred } from './support/runtime-test-kit.js';
import { testWorkflowType } from './support/test-workflows.js';

// The windows between a run's store writes: what arrives while a write is being acknowledged.

let invoked = 0;
const countedType = testWorkflowType('counted', async (input) => {
  invoked++;
  return input;
});
const conversingType = testWorkflowType('conversing', async (input, ctx) => {
  ctx.conversation?.append({ role: 'user', content: String(input) }, { role: 'assistant', content: 'reply' });
  for (let i = 0; i < 6; i++) ctx.token(`t${i} `, ctx.root_step_id);
  return 'reply';
});
const mutatingType = testWorkflowType('mutating', async () => ({ answer: [1, 2] }));

async function runtimeWith(stores: Stores, runtime: Record<string, unknown> = {}): Promise<Runtime> {
  return createRuntime({
    stores,
    registry: { workflowTypes: [countedType, conversingType, mutatingType] },
    config: {
      server: { log_level: 'silent' },
      runtime: { shutdown_grace_ms: 0, ...runtime },
      workflows: { counted: { type: 'counted' }, conversing: { type: 'conversing' }, mutating: { type: 'mutating' } },
    },
  });
}

/** Holds the store's write of `status` until `release` resolves; `writing` resolves when it starts. */
function holdStatusWrite(stores: Stores, status: RunStatus): { writing: Deferred<void>; release: Deferred<void> } {
  const writing = deferred<void>();
  const release = deferred<void>();
  const update = stores.runs.update.bind(stores.runs);
  stores.runs.update = async (id, patch, expect) => {
    if (patch.status === status) {
      writing.resolve();
      await release.promise;
    }
    return update(id, patch, expect);
  };
  return { writing, release };
}

describe('run core: the windows between store writes', () => {
  it('a cancel that finds the run in the store while its creation is still being acknowledged cancels it', async () => {
    const stores = createMemoryStores({ runTtlS: 3600, maxRuns: 100 });
    const created = deferred<void>();
    const acknowledge = deferred<void>();
    const create = stores.runs.create.bind(stores.runs);
    // A networked store: the record is visible to others before the writer has its answer.
    stores.runs.create = async (run: Run) => {
      await create(run);
      created.resolve();
      await acknowledge.promise;
    };
    const runtime = await runtimeWith(stores);
    try {
      const session = runtime.session({ userId: 'alice' });
      invoked = 0;
      const starting = session.run('x', { workflow: 'counted' });
      await created.promise;
      const [listed] = (await session.list({ limit: 1 })).data;
      const cancelling = session.cancel(listed!.id);
      acknowledge.resolve();
      const run = await starting;
      expect(await run.result()).toMatchObject({ status: 'cancelled' });
      expect(await cancelling).toMatchObject({ status: 'cancelled' });
      expect(invoked).toBe(0);
      expectOneTerminalLast(await readLog(stores.events, run.id), run.id);
    } finally {
      await runtime.close();
    }
  });

  it('a run cancelled while its running status is being written never starts its workflow', async () => {
    const stores = createMemoryStores({ runTtlS: 3600, maxRuns: 100 });
    const { writing, release } = holdStatusWrite(stores, 'running');
    const runtime = await runtimeWith(stores);
    try {
      invoked = 0;
      const run = await runtime.session({ userId: 'alice' }).run('x', { workflow: 'counted' });
      await writing.promise;
      const cancelled = run.cancel();
      release.resolve();
      expect(await cancelled).toMatchObject({ status: 'cancelled' });
      expect(invoked).toBe(0);
      const log = await readLog(stores.events, run.id);
      expect(log.map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    } finally {
      await runtime.close();
    }
  });

  it('a cancel that arrives while the run is writing its success is a conflict, and the run stays succeeded', async () => {
    const stores = createMemoryStores({ runTtlS: 3600, maxRuns: 100 });
    const { writing: finishing, release } = holdStatusWrite(stores, 'succeeded');
    const runtime = await runtimeWith(stores);
    try {
      const session = runtime.session({ userId: 'alice' });
      const run = await session.run('x', { workflow: 'counted' });
      await finishing.promise;
      const cancelling = session.cancel(run.id);
      release.resolve();
      await expect(cancelling).rejects.toMatchObject({ code: 'conflict' });
      expect(await run.result()).toMatchObject({ status: 'succeeded', output: 'x' });
    } finally {
      await runtime.close();
    }
  });

  it('a run that fails at its last event (the log is full) adds nothing to its conversation', async () => {
    const stores = createMemoryStores({ runTtlS: 3600, maxRuns: 100 });
    // queued, started, WORKFLOW_START, 6 tokens: WORKFLOW_END is the 10th event, the terminal one's place.
    const runtime = await runtimeWith(stores, { max_events_per_run: 10 });
    try {
      const session = runtime.session({ userId: 'alice' });
      const run = await session.run('hi', { workflow: 'conversing', conversationId: 'c1' });
      expect(await run.result()).toMatchObject({ status: 'failed', error: { code: 'internal' } });
      await expect(session.conversation('c1')).rejects.toMatchObject({ code: 'not_found' });
      // With room for every event, the same run adds its turns.
      const roomy = await runtimeWith(createMemoryStores({ runTtlS: 3600, maxRuns: 100 }), { max_events_per_run: 100 });
      try {
        const s2 = roomy.session({ userId: 'alice' });
        expect(await (await s2.run('hi', { workflow: 'conversing', conversationId: 'c1' })).result()).toMatchObject({ status: 'succeeded' });
        expect((await s2.conversation('c1')).messages.map((m) => m.content)).toEqual(['hi', 'reply']);
      } finally {
        await roomy.close();
      }
    } finally {
      await runtime.close();
    }
  });

  it('neither the caller nor the workflow can change what a run records: input, metadata and output are its own', async () => {
    const stores = createMemoryStores({ runTtlS: 3600, maxRuns: 100 });
    const runtime = await createRuntime({
      stores,
      registry: { workflowTypes: [mutatingType] },
      config: { server: { log_level: 'silent' }, workflows: { mutating: { type: 'mutating' } }, default_workflow: 'mutating' },
    });
    try {
      const session = runtime.session({ userId: 'alice' });
      const metadata = { tag: 'a' };
      const run = await session.run('x', { workflow: 'mutating', metadata });
      metadata.tag = 'changed by the caller';
      const final = await run.result();
      expect(final.metadata).toEqual({ tag: 'a' });
      (final.output as { answer: number[] }).answer.push(3);
      expect((await run.result()).output).toEqual({ answer: [1, 2] });
      expect((await session.get(run.id)).output).toEqual({ answer: [1, 2] });
    } finally {
      await runtime.close();
    }
  });
});
