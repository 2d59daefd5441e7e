import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../src/core/events.js';
import { zeroUsage } from '../src/core/run.js';
import { RunObservers } from '../src/runtime/run-observers.js';
import { IsoClock } from '../src/runtime/iso-clock.js';
import { RunRecorder, type RecorderOptions } from '../src/runtime/run-recorder.js';
import { createMemoryStores, type MemoryStores } from '../src/store/memory/memory-stores.js';
import { deferred, expectOneTerminalLast, readLog } from './support/runtime-test-kit.js';
import { newRun } from './support/store-contract.js';

const silent = { level: 'silent', fatal() {}, error() {}, warn() {}, info() {}, debug() {}, trace() {}, child() { return silent; } } as unknown as RecorderOptions['log'];

async function setup(over: Partial<RecorderOptions> = {}) {
  const stores: MemoryStores = createMemoryStores({ runTtlS: 3600, maxRuns: 100 });
  const run = newRun();
  await stores.runs.create(run);
  const failures: unknown[] = [];
  const appends: number[][] = [];
  const append = stores.events.append.bind(stores.events);
  const events = {
    read: stores.events.read.bind(stores.events),
    append: async (runId: string, batch: readonly StoredEvent[]) => {
      appends.push(batch.map((e) => e.id));
      return append(runId, batch);
    },
  };
  const recorder = new RunRecorder(run, {
    runs: stores.runs,
    events,
    observers: new RunObservers(),
    log: silent,
    maxEvents: 10_000,
    onFailure: (err) => failures.push(err),
    clock: new IsoClock(),
    ...over,
  });
  return { stores, run, recorder, failures, appends, events };
}

describe('RunRecorder', () => {
  it('gives ids 1, 2, 3… itself and writes a synchronous burst in one pipelined append, without the caller awaiting', async () => {
    const { stores, run, recorder, appends } = await setup();
    recorder.emit('run.queued', { workflow: 'echo' });
    for (let i = 0; i < 5; i++) recorder.emit('token', { delta: `t${i}`, step_id: 's0' });
    // Nothing is written yet: emit only records.
    expect(appends).toEqual([]);
    expect(recorder.snapshot().last_event_id).toBe(6);
    await recorder.transition('running', { started_at: new Date().toISOString() });
    expect(appends).toEqual([[1, 2, 3, 4, 5, 6]]);
    await recorder.finish({ status: 'succeeded', output: 'x' }, zeroUsage());
    const events = await readLog(stores.events, run.id);
    expectOneTerminalLast(events, run.id);
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect((await stores.runs.get(run.id))!).toMatchObject({ status: 'succeeded', output: 'x', last_event_id: 7 });
  });

  it('events recorded while a transition write is slow come out in order with no gaps', async () => {
    const { stores, run, recorder } = await setup();
    const slowUpdate = deferred<void>();
    const update = stores.runs.update.bind(stores.runs);
    stores.runs.update = async (...args) => {
      await slowUpdate.promise;
      return update(...args);
    };
    recorder.emit('run.queued', { workflow: 'echo' });
    const moving = recorder.transition('running');
    // The transition waits on the store; the run goes on recording meanwhile.
    for (let i = 0; i < 10; i++) recorder.emit('step', { n: i });
    await new Promise((resolve) => setImmediate(resolve));
    const midway = (await readLog(stores.events, run.id)).map((e) => e.id);
    expect(midway).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    slowUpdate.resolve();
    expect(await moving).toBe(true);
    recorder.emit('step', { n: 10 });
    await recorder.finish({ status: 'succeeded', output: null }, zeroUsage());
    const events = await readLog(stores.events, run.id);
    expect(events.map((e) => e.id)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    expect(events.slice(1, 12).map((e) => e.data.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('a failed write stops the run: it ends failed with exactly one terminal event, right after the last event written', async () => {
    const { stores, run, recorder, failures, events } = await setup();
    recorder.emit('run.queued', { workflow: 'echo' });
    await recorder.transition('running');
    const append = events.append;
    let refused = 0;
    events.append = async (runId, batch) => {
      if (batch.some((e) => e.type === 'token') && refused++ === 0) throw new Error('disk on fire');
      return append(runId, batch);
    };
    recorder.emit('token', { delta: 'a', step_id: 's0' });
    recorder.emit('token', { delta: 'b', step_id: 's0' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(failures).toHaveLength(1);
    // Later events are dropped, not written with a gap before them.
    recorder.emit('step', { after: 'failure' });
    const final = await recorder.finish({ status: 'succeeded', output: 'never' }, zeroUsage());
    expect(final).toMatchObject({ status: 'failed', error: { code: 'internal' }, last_event_id: 2 });
    const log = await readLog(stores.events, run.id);
    expect(log.map((e) => e.type)).toEqual(['run.queued', 'run.failed']);
    expectOneTerminalLast(log, run.id);
  });

  it('finish is a compare-and-set: when somebody else moved the run, it writes no terminal event', async () => {
    const { stores, run, recorder } = await setup();
    recorder.emit('run.queued', { workflow: 'echo' });
    await recorder.transition('running');
    expect(await stores.runs.update(run.id, { status: 'cancelled' }, ['running'])).toBe(true);
    expect(await recorder.finish({ status: 'succeeded', output: 'late' }, zeroUsage())).toBeUndefined();
    expect((await readLog(stores.events, run.id)).map((e) => e.type)).toEqual(['run.queued']);
    expect((await stores.runs.get(run.id))!.status).toBe('cancelled');
  });

  it('refuses a transition the core table does not have', async () => {
    const { recorder } = await setup();
    await expect(recorder.transition('waiting')).rejects.toThrow(/no transition queued → waiting/);
  });

  it('stops at max_events - 1 events, keeping the last place for the terminal event', async () => {
    const { stores, run, recorder, failures } = await setup({ maxEvents: 4 });
    for (let i = 0; i < 6; i++) recorder.emit('step', { n: i });
    expect(failures).toHaveLength(1);
    const final = await recorder.finish({ status: 'succeeded', output: 1 }, zeroUsage());
    expect(final).toMatchObject({ status: 'failed', error: { code: 'internal', message: expect.stringMatching(/event log limit \(4 events\)/) } });
    expect((await readLog(stores.events, run.id)).map((e) => e.id)).toEqual([1, 2, 3, 4]);
  });

  it('an output that cannot be serialized fails the run, still with one terminal event', async () => {
    const { stores, run, recorder } = await setup();
    recorder.emit('run.queued', { workflow: 'echo' });
    await recorder.transition('running');
    const final = await recorder.finish({ status: 'succeeded', output: { n: 1n } }, zeroUsage());
    expect(final).toMatchObject({ status: 'failed', error: { code: 'internal' }, output: null });
    expectOneTerminalLast(await readLog(stores.events, run.id), run.id);
  });
});
