import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RunwayError } from '../src/core/errors.js';
import { EventLogFullError, type StoredEvent } from '../src/store/event-log.js';
import { MemoryStore, type MemoryStoreOptions } from '../src/store/memory-store.js';
import { RunArena } from '../src/store/run-arena.js';
import type { Run, RunStatus } from '../src/core/run.js';
import { makeRun, tick, waitFor } from './support/runtime-test-kit.js';

const stores: MemoryStore[] = [];

afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function makeStore(options: Partial<MemoryStoreOptions> = {}): MemoryStore {
  const store = new MemoryStore({ runTtlS: 3600, maxRuns: 10_000, maxEventsPerRun: 10_000, sweepIntervalMs: 3_600_000, ...options });
  stores.push(store);
  return store;
}

async function created(store: MemoryStore, over: Partial<Run> = {}): Promise<Run> {
  const run = makeRun(over);
  await store.create(run);
  return run;
}

/** Finishes a run the way the Runner does: compare-and-set to a terminal status, then the terminal event. */
async function finish(store: MemoryStore, run: Run, status: 'succeeded' | 'failed' | 'cancelled' = 'succeeded'): Promise<void> {
  expect(await store.update(run.id, { status, finished_at: new Date().toISOString() }, ['queued', 'running'])).toBeDefined();
  await store.append(run.id, `run.${status}`, {});
}

async function collect(iter: AsyncIterable<StoredEvent>): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const ev of iter) out.push(ev);
  return out;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Every page of `list` for a query, following cursors to the end. */
async function allPages(store: MemoryStore, query: Omit<Parameters<MemoryStore['list']>[0], 'cursor'>): Promise<Run[][]> {
  const pages: Run[][] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await store.list({ ...query, ...(cursor !== undefined && { cursor }) });
    pages.push(page.data);
    if (page.nextCursor === null) return pages;
    expect(page.data).toHaveLength(query.limit);
    cursor = page.nextCursor;
  }
}

describe('MemoryStore event log', () => {
  it('numbers events per run from 1 without gaps, independently for interleaved runs', async () => {
    const store = makeStore();
    const a = await created(store);
    const b = await created(store);
    const ids: Record<string, number[]> = { [a.id]: [], [b.id]: [] };
    for (let i = 0; i < 50; i++) {
      const run = Math.random() < 0.5 ? a : b;
      ids[run.id]!.push(i % 2 === 0 ? await store.append(run.id, 'token', { delta: `${i}` }) : store.appendNow(run.id, 'token', { delta: `${i}` }));
    }
    for (const run of [a, b]) {
      expect(ids[run.id]).toEqual(ids[run.id]!.map((_, i) => i + 1));
      expect(run.last_event_id).toBe(ids[run.id]!.length);
      const events = await collect(store.read(run.id, 0, { follow: false }));
      expect(events.map((e) => e.id)).toEqual(ids[run.id]);
      for (const e of events) {
        const parsed = JSON.parse(e.json);
        expect(parsed).toMatchObject({ id: e.id, run_id: run.id, type: 'token' });
        expect(typeof parsed.time).toBe('string');
      }
    }
  });

  it('replays a finished log exactly, including text that is not plain ASCII', async () => {
    const store = makeStore();
    const run = await created(store);
    const deltas = ['héllo ', '🙂 ', '"quoted" ', 'back\\slash ', 'new\nline ', '中文'];
    for (const delta of deltas) await store.append(run.id, 'token', { delta });
    const live = await collect(store.read(run.id, 0, { follow: false }));
    await finish(store, run);
    const sealed = await collect(store.read(run.id, 0, { follow: false }));
    expect(sealed.slice(0, deltas.length)).toEqual(live);
    expect(sealed.slice(0, deltas.length).map((e) => JSON.parse(e.json).data.delta)).toEqual(deltas);
    expect(sealed.map((e) => e.type)).toEqual([...deltas.map(() => 'token'), 'run.succeeded']);
    // Replays from the middle of a sealed log too.
    expect((await collect(store.read(run.id, 3))).map((e) => e.id)).toEqual([4, 5, 6, 7]);
  });

  it('keeps raw token deltas and writes each one as JSON.stringify would, live and sealed, among other events and steps', async () => {
    const store = makeStore();
    const run = await created(store);
    const other = await created(store);
    // Interleaved with another run's events, two step ids, text that needs escaping, and events appended as JSON.
    const written: Array<{ type: 'token' | 'step'; data: Record<string, unknown> }> = [];
    const deltas = ['plain ', 'é ', '"q" ', 'b\\s ', 'nl\n', '\ud800', '🙂', ''];
    deltas.forEach((delta, i) => {
      const step_id = i % 3 === 0 ? 's1' : 's"2';
      if (i % 4 === 3) {
        store.appendNow(run.id, 'step', { step_id: 's9', kind: 'CUSTOM_START' });
        written.push({ type: 'step', data: { step_id: 's9', kind: 'CUSTOM_START' } });
      }
      store.appendTokenNow(run.id, delta, step_id);
      written.push({ type: 'token', data: { delta, step_id } });
      store.appendTokenNow(other.id, `other ${i}`, 's1');
    });
    store.appendNow(run.id, 'token', { delta: 'as json', step_id: 's1' });
    written.push({ type: 'token', data: { delta: 'as json', step_id: 's1' } });

    const expected = written.map((w) => JSON.stringify(w.data));
    const dataText = (json: string) => json.slice(json.indexOf(',"data":') + ',"data":'.length, -1);
    const live = await collect(store.read(run.id, 0, { follow: false }));
    expect(live.map((e) => dataText(e.json))).toEqual(expected);
    expect(live.map((e) => e.type)).toEqual(written.map((w) => w.type));
    await finish(store, run);
    const sealed = await collect(store.read(run.id, 0, { follow: false }));
    expect(sealed.slice(0, -1)).toEqual(live);
    expect(run.last_event_id).toBe(written.length + 1);
    expect((await collect(store.read(other.id, 0, { follow: false }))).map((e) => JSON.parse(e.json).data.delta)).toEqual(deltas.map((_, i) => `other ${i}`));
  });

  it('counts raw tokens against the event cap, and refuses them after the terminal event', async () => {
    const store = makeStore({ maxEventsPerRun: 3 });
    const run = await created(store);
    store.appendTokenNow(run.id, 'a', 's1');
    store.appendTokenNow(run.id, 'b', 's1');
    expect(() => store.appendTokenNow(run.id, 'c', 's1')).toThrow(EventLogFullError);
    await finish(store, run);
    expect(() => store.appendTokenNow(run.id, 'd', 's1')).toThrow(/terminal event/);
    expect(() => store.appendTokenNow(randomUUID(), 'e', 's1')).toThrow(/no event log/);
  });

  it('reads a finished run back exactly as it was, whatever its members hold, lists it, and refuses changes to it', async () => {
    const store = makeStore();
    const run = await created(store, {
      conversation_id: 'c"1',
      input: { text: 'é\n"x"', n: [1, 2.5, null], nested: { deep: true } },
      metadata: { tag: 'a\u2028b', n: 3 },
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
    store.appendTokenNow(run.id, 'tok', 's1');
    const patch = { status: 'failed' as const, error: { code: 'internal' as const, message: 'bad "thing"' }, output: { partial: '😀' }, finished_at: new Date().toISOString() };
    expect(await store.update(run.id, patch, ['running'])).toBe(run);
    await store.append(run.id, 'run.failed', { error: patch.error });
    const asTheRunnerHoldsIt = structuredClone(run);
    const back = await store.get(run.id);
    expect(back).toEqual(asTheRunnerHoldsIt);
    expect((await store.list({ userId: 'alice', limit: 10 })).data).toEqual([asTheRunnerHoldsIt]);
    expect((await store.list({ userId: 'alice', limit: 10, status: 'failed', conversationId: 'c"1' })).data).toHaveLength(1);
    expect(() => store.appendNow(run.id, 'token', { delta: 'late' })).toThrow(/terminal event/);
    expect(await store.update(run.id, { status: 'cancelled' }, ['queued', 'running'])).toBeUndefined();
    const events = await collect(store.read(run.id, 0));
    expect(events.map((e) => e.type)).toEqual(['token', 'run.failed']);
    expect(JSON.parse(events[1]!.json).data).toEqual({ error: patch.error });
  });

  it('keeps finished runs outside the heap in buffers that stay flat under churn', async () => {
    const store = makeStore({ maxRuns: 50 });
    const text = 'word '.repeat(200);
    for (let i = 0; i < 2000; i++) {
      const run = await created(store, { input: text });
      store.appendTokenNow(run.id, text, 's1');
      await finish(store, run);
    }
    expect(store.size).toBe(50);
    // 50 runs of ~3 kB each: one or two 1 MiB buffers, not the 2,000 runs' worth (~6 MB).
    expect(store.finishedBytes).toBeLessThanOrEqual(2 << 20);
  });

  it('a reader still holding a finished run reads it intact while later runs reuse the pooled event numbers', async () => {
    const store = makeStore({ maxRuns: 5 });
    const run = await created(store);
    for (const word of ['a', 'b', 'c']) store.appendTokenNow(run.id, word, 's1');
    const reader = store.read(run.id, 0);
    const first = await reader.next();
    await finish(store, run);
    // Many runs come and go (and evict this one), each taking numbers from the pool.
    for (let i = 0; i < 50; i++) {
      const other = await created(store);
      for (let j = 0; j < 10; j++) store.appendNow(other.id, 'step', { n: j });
      await finish(store, other, 'failed');
    }
    const rest: StoredEvent[] = [];
    for (let r = await reader.next(); !r.done; r = await reader.next()) rest.push(r.value);
    const events = [first.value as StoredEvent, ...rest];
    expect(events.map((e) => [e.id, e.type, JSON.parse(e.json).data])).toEqual([
      [1, 'token', { delta: 'a', step_id: 's1' }],
      [2, 'token', { delta: 'b', step_id: 's1' }],
      [3, 'token', { delta: 'c', step_id: 's1' }],
      [4, 'run.succeeded', {}],
    ]);
  });

  it('refuses an event type it does not know, and the log stays intact after it is sealed', async () => {
    const store = makeStore();
    const run = await created(store);
    store.appendNow(run.id, 'step', { a: 1 });
    expect(() => store.appendNow(run.id, 'run.bogus' as 'step', { x: 'bogus' })).toThrow(TypeError);
    expect(() => store.appendNow(run.id, 'constructor' as 'step', { x: 'inherited' })).toThrow(TypeError);
    store.appendNow(run.id, 'step', { b: 2 });
    await finish(store, run);
    const events = await collect(store.read(run.id, 0));
    expect(events.map((e) => [e.id, e.type, JSON.parse(e.json).data])).toEqual([
      [1, 'step', { a: 1 }],
      [2, 'step', { b: 2 }],
      [3, 'run.succeeded', {}],
    ]);
  });

  it('never dates an event before the run\'s first one when the wall clock steps back', async () => {
    const store = makeStore();
    const start = Date.now();
    // Mocked from before the run exists: its first event's time is `start`, not a later real one.
    const clock = vi.spyOn(Date, 'now').mockReturnValue(start);
    try {
      const run = await created(store);
      store.appendNow(run.id, 'run.queued', {});
      clock.mockReturnValue(start - 5_000);
      store.appendTokenNow(run.id, 'a', 's1');
      clock.mockReturnValue(start + 7);
      await finish(store, run);
      clock.mockRestore();
      // Read back from the arena, where times are unsigned offsets from the first event.
      const times = (await collect(store.read(run.id, 0))).map((e) => Date.parse(JSON.parse(e.json).time) - start);
      expect(times).toEqual([0, 0, 7]);
    } finally {
      clock.mockRestore();
    }
  });

  it('replays a finished run with more events than a function call may take arguments', async () => {
    const store = makeStore({ maxEventsPerRun: 100_000 });
    const run = await created(store);
    for (let i = 0; i < 40_000; i++) store.appendTokenNow(run.id, `${i} `, 's1');
    await finish(store, run);
    const events = await collect(store.read(run.id, 0));
    expect(events).toHaveLength(40_001);
    expect(JSON.parse(events[39_999]!.json).data).toEqual({ delta: '39999 ', step_id: 's1' });
  });

  it('filters listings of finished runs without decoding the runs that do not match', async () => {
    const store = makeStore();
    for (let i = 0; i < 30; i++) {
      const run = await created(store);
      // With an event before its terminal one, as every Runner run has: its log is complete, so it is sealed.
      store.appendTokenNow(run.id, 'x', 's1');
      await finish(store, run, i === 7 ? 'failed' : 'succeeded');
    }
    const decode = vi.spyOn(RunArena.prototype, 'run');
    try {
      const page = await store.list({ userId: 'alice', limit: 10, status: 'failed' });
      expect(page.data).toHaveLength(1);
      expect(decode).toHaveBeenCalledTimes(1);
    } finally {
      decode.mockRestore();
    }
  });

  it("answers a finished run's JSON from its own record, also when the arena declines it (full) and it stays on the heap", async () => {
    const store = makeStore();
    const first = await created(store, { input: 'first' });
    store.appendTokenNow(first.id, 'x', 's1');
    await finish(store, first);
    expect(store.finishedJson(first)).toBe(JSON.stringify(await store.get(first.id)));
    const put = vi.spyOn(RunArena.prototype, 'put').mockReturnValue(undefined);
    try {
      const second = await created(store, { input: 'second' });
      store.appendTokenNow(second.id, 'y', 's1');
      await finish(store, second);
      const kept = (await store.get(second.id))!;
      expect(kept.input).toBe('second');
      expect(store.finishedJson(kept)).toBe(JSON.stringify(kept));
      expect((await collect(store.read(second.id, 0))).map((e) => e.type)).toEqual(['token', 'run.succeeded']);
    } finally {
      put.mockRestore();
    }
  });

  it('refuses events after the terminal event and for unknown runs', async () => {
    const store = makeStore();
    const run = await created(store);
    await store.append(run.id, 'run.queued', {});
    await finish(store, run, 'cancelled');
    await rejection(store.append(run.id, 'token', { delta: 'late' }));
    await rejection(store.append(run.id, 'run.succeeded', {}));
    expect(() => store.appendNow(run.id, 'run.failed', {})).toThrow();
    expect((await collect(store.read(run.id, 0))).map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    await rejection(store.append('no-such-run', 'token', {}));
    expect(await collect(store.read('no-such-run', 0))).toEqual([]);
  });

  it('caps non-terminal events at max_events_per_run - 1 and always accepts the terminal event', async () => {
    const store = makeStore({ maxEventsPerRun: 5 });
    const run = await created(store);
    for (let i = 1; i <= 4; i++) expect(await store.append(run.id, 'token', { delta: `${i}` })).toBe(i);
    const err = await rejection(store.append(run.id, 'token', { delta: 'over' }));
    expect(err).toBeInstanceOf(EventLogFullError);
    expect(() => store.appendNow(run.id, 'step', {})).toThrow(EventLogFullError);
    expect(await store.append(run.id, 'run.failed', { error: { code: 'internal' } })).toBe(5);
    const events = await collect(store.read(run.id, 0));
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    expect(events.at(-1)!.type).toBe('run.failed');
  });

  it('read() replays what is there, then follows new events until the terminal one', async () => {
    const store = makeStore();
    const run = await created(store);
    for (let i = 1; i <= 3; i++) await store.append(run.id, 'token', { delta: `${i}` });
    const reading = collect(store.read(run.id, 0));
    const fromTwo = collect(store.read(run.id, 2));
    await waitFor(() => store.subscriberCount(run.id) === 2, 'both readers parked');
    await store.append(run.id, 'token', { delta: '4' });
    await tick();
    await store.append(run.id, 'step', { kind: 'CUSTOM_START' });
    await finish(store, run);
    const events = await reading;
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.type)).toEqual(['token', 'token', 'token', 'token', 'step', 'run.succeeded']);
    expect((await fromTwo).map((e) => e.id)).toEqual([3, 4, 5, 6]);
    expect(store.subscriberCount(run.id)).toBe(0);
    // follow: false replays and ends without waiting.
    const other = await created(store);
    await store.append(other.id, 'run.queued', {});
    expect((await collect(store.read(other.id, 0, { follow: false }))).map((e) => e.id)).toEqual([1]);
    expect(store.subscriberCount(other.id)).toBe(0);
  });

  it('concurrent readers see identical sequences, however the appends interleave with them', async () => {
    const store = makeStore();
    const run = await created(store);
    const readers = [collect(store.read(run.id, 0)), collect(store.read(run.id, 0))];
    let late: Promise<StoredEvent[]> | undefined;
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 0) store.appendNow(run.id, 'token', { delta: `${i} ` });
      else await store.append(run.id, i % 5 === 0 ? 'step' : 'token', { delta: `${i} ` });
      if (i % 7 === 0) await tick();
      if (i === 100) late = collect(store.read(run.id, 0));
    }
    await finish(store, run);
    const [a, b] = (await Promise.all(readers)) as [StoredEvent[], StoredEvent[]];
    expect(a).toHaveLength(201);
    expect(a.map((e) => e.id)).toEqual(a.map((_, i) => i + 1));
    expect(b).toEqual(a);
    expect(await late).toEqual(a);
    expect(store.subscriberCount(run.id)).toBe(0);
  });

  it('a reader whose signal aborts while parked ends and leaves no subscription', async () => {
    const store = makeStore();
    const run = await created(store);
    await store.append(run.id, 'run.queued', {});
    const leaving = new AbortController();
    const gone = collect(store.read(run.id, 0, { signal: leaving.signal }));
    const staying = collect(store.read(run.id, 0));
    await waitFor(() => store.subscriberCount(run.id) === 2, 'both readers parked');

    leaving.abort();
    expect((await gone).map((e) => e.id)).toEqual([1]);
    expect(store.subscriberCount(run.id)).toBe(1);

    // An aborted reader stays gone: later appends do not bring it back.
    await store.append(run.id, 'token', { delta: 'a' });
    await waitFor(() => store.subscriberCount(run.id) === 1, 'the remaining reader parked again');
    await finish(store, run);
    expect((await staying).map((e) => e.id)).toEqual([1, 2, 3]);
    expect(store.subscriberCount(run.id)).toBe(0);

    // Already aborted before reading: replays, never parks.
    const before = new AbortController();
    before.abort();
    const other = await created(store);
    await store.append(other.id, 'run.queued', {});
    expect((await collect(store.read(other.id, 0, { signal: before.signal }))).map((e) => e.id)).toEqual([1]);
    expect(store.subscriberCount(other.id)).toBe(0);
  });

  it('many readers that come and go leave the subscriber count at 0', async () => {
    const store = makeStore();
    const run = await created(store);
    const controllers = Array.from({ length: 50 }, () => new AbortController());
    const readers = controllers.map((c) => collect(store.read(run.id, 0, { signal: c.signal })));
    await waitFor(() => store.subscriberCount(run.id) === 50, 'all parked');
    for (let i = 0; i < 50; i++) {
      if (i % 2 === 0) controllers[i]!.abort();
      await store.append(run.id, 'token', { delta: `${i}` });
    }
    await tick();
    expect(store.subscriberCount(run.id)).toBeLessThanOrEqual(25);
    for (const c of controllers) c.abort();
    await Promise.all(readers);
    expect(store.subscriberCount(run.id)).toBe(0);
  });
});

describe('MemoryStore run records', () => {
  it('update is a compare-and-set on status: a late succeeded never overwrites cancelled', async () => {
    const store = makeStore();
    const run = await created(store, { status: 'running' });
    const cancelled = await store.update(run.id, { status: 'cancelled', finished_at: 'now' }, ['queued', 'running']);
    expect(cancelled?.status).toBe('cancelled');
    const late = await store.update(run.id, { status: 'succeeded', output: 'late' }, ['queued', 'running']);
    expect(late).toBeUndefined();
    expect(await store.get(run.id)).toMatchObject({ status: 'cancelled', output: null });
    // queued → running only from queued.
    const q = await created(store, { status: 'queued' });
    expect(await store.update(q.id, { status: 'running' }, ['queued'])).toBeDefined();
    expect(await store.update(q.id, { status: 'running', started_at: 'again' }, ['queued'])).toBeUndefined();
    expect((await store.get(q.id))?.started_at).toBeNull();
    expect(await store.update('no-such-run', { status: 'failed' }, ['running'])).toBeUndefined();
  });

  it('max_runs evicts the oldest finished runs, never running ones', async () => {
    const store = makeStore({ maxRuns: 3 });
    const running = await created(store);
    await store.append(running.id, 'run.queued', {});
    const finished: Run[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await created(store);
      await store.append(r.id, 'run.queued', {});
      await finish(store, r);
      finished.push(r);
    }
    // 5 finished with room for 3: the first two finished are gone, the old running one is kept.
    expect(await store.get(running.id)).toBeDefined();
    expect(await store.get(finished[0]!.id)).toBeUndefined();
    expect(await store.get(finished[1]!.id)).toBeUndefined();
    for (const r of finished.slice(2)) expect(await store.get(r.id)).toBeDefined();
    expect(store.size).toBe(4);
    expect(await collect(store.read(finished[0]!.id, 0))).toEqual([]);

    // The old run finishes last, so it is the newest finished: the oldest remaining one goes.
    await finish(store, running);
    expect(await store.get(running.id)).toBeDefined();
    expect(await store.get(finished[2]!.id)).toBeUndefined();
    expect(store.size).toBe(3);

    // Running runs never count against the cap, however many there are.
    const busy = await Promise.all(Array.from({ length: 10 }, () => created(store)));
    for (const r of busy) expect(await store.get(r.id)).toBeDefined();
    expect(store.size).toBe(13);
    const page = await store.list({ userId: 'alice', limit: 100 });
    expect(page.data.map((r) => r.id).sort()).toEqual([...busy.map((r) => r.id), finished[3]!.id, finished[4]!.id, running.id].sort());
  });

  it('a run whose final status is written but not yet its terminal event is not evicted under its followers', async () => {
    const store = makeStore({ maxRuns: 1 });
    const x = await created(store);
    await store.append(x.id, 'run.queued', {});
    const follower = collect(store.read(x.id, 0));
    await waitFor(() => store.subscriberCount(x.id) === 1, 'the follower parked');
    // The Runner's order: compare-and-set the status, then append the terminal event. Another run
    // finishing in between must not push x out of a store that keeps a single finished run.
    await store.update(x.id, { status: 'cancelled' }, ['queued', 'running']);
    const y = await created(store);
    await store.append(y.id, 'run.queued', {});
    await finish(store, y);
    expect(await store.get(x.id)).toBeDefined();
    expect(await store.append(x.id, 'run.cancelled', { reason: 'user' })).toBe(2);
    expect((await follower).map((e) => e.type)).toEqual(['run.queued', 'run.cancelled']);
    // Now x is complete and the newest finished run: y is the one that goes.
    expect(await store.get(y.id)).toBeUndefined();
    expect(await store.get(x.id)).toBeDefined();
    expect(store.size).toBe(1);
  });

  it('the TTL sweep drops runs finished longer than run_ttl_s ago, and only those', async () => {
    let now = 1_000_000;
    const store = makeStore({ runTtlS: 10, now: () => now });
    const old = await created(store);
    await finish(store, old);
    now += 6_000;
    const newer = await created(store);
    await finish(store, newer);
    const stillRunning = await created(store);
    now += 3_000;
    store.sweep();
    expect(store.size).toBe(3);

    now += 2_000; // old finished 11 s ago, newer 5 s ago
    store.sweep();
    expect(await store.get(old.id)).toBeUndefined();
    expect(await collect(store.read(old.id, 0))).toEqual([]);
    expect(await store.get(newer.id)).toBeDefined();
    expect(store.size).toBe(2);

    now += 1_000_000; // the running one is never swept, however old
    store.sweep();
    expect(await store.get(newer.id)).toBeUndefined();
    expect(await store.get(stillRunning.id)).toBeDefined();
    expect((await store.list({ userId: 'alice', limit: 10 })).data.map((r) => r.id)).toEqual([stillRunning.id]);
  });
});

describe('MemoryStore list', () => {
  async function seed(store: MemoryStore): Promise<Run[]> {
    const statuses: RunStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
    const runs: Run[] = [];
    for (let i = 0; i < 37; i++) {
      runs.push(
        await created(store, {
          status: statuses[i % 5]!,
          workflow: i % 3 === 0 ? 'slow' : 'echo',
          conversation_id: i % 4 === 0 ? 'conv-1' : null,
          input: i,
        }),
      );
      // Someone else's runs in between.
      if (i % 6 === 0) await created(store, { user_id: 'bob', status: statuses[i % 5]!, workflow: 'echo', conversation_id: 'conv-1' });
    }
    return runs;
  }

  it('lists only the caller’s runs, newest first', async () => {
    const store = makeStore();
    const runs = await seed(store);
    const page = await store.list({ userId: 'alice', limit: 100 });
    expect(page.nextCursor).toBeNull();
    expect(page.data.map((r) => r.input)).toEqual([...runs].reverse().map((r) => r.input));
    for (const r of page.data) expect(r.user_id).toBe('alice');
    expect((await store.list({ userId: 'nobody', limit: 10 })).data).toEqual([]);
  });

  it('filters by status, workflow and conversation_id, alone and together', async () => {
    const store = makeStore();
    const runs = [...(await seed(store))].reverse();
    const cases: Array<[Partial<Parameters<MemoryStore['list']>[0]>, (r: Run) => boolean]> = [
      [{ status: 'failed' }, (r) => r.status === 'failed'],
      [{ workflow: 'slow' }, (r) => r.workflow === 'slow'],
      [{ conversationId: 'conv-1' }, (r) => r.conversation_id === 'conv-1'],
      [{ status: 'queued', workflow: 'slow' }, (r) => r.status === 'queued' && r.workflow === 'slow'],
      [{ status: 'succeeded', conversationId: 'conv-1', workflow: 'echo' }, (r) => r.status === 'succeeded' && r.conversation_id === 'conv-1' && r.workflow === 'echo'],
    ];
    for (const [filter, keep] of cases) {
      const expected = runs.filter(keep).map((r) => r.id);
      expect(expected.length).toBeGreaterThan(0);
      const page = await store.list({ userId: 'alice', limit: 100, ...filter });
      expect(page.data.map((r) => r.id)).toEqual(expected);
      // And paginated, two at a time.
      expect((await allPages(store, { userId: 'alice', limit: 2, ...filter })).flat().map((r) => r.id)).toEqual(expected);
    }
    expect((await store.list({ userId: 'alice', limit: 100, workflow: 'nope' })).data).toEqual([]);
  });

  it('paginates with cursors without duplicates or gaps, also while runs are added and evicted between pages', async () => {
    const store = makeStore();
    const runs = [...(await seed(store))].reverse();
    for (const limit of [1, 5, 7, 37, 100]) {
      const pages = await allPages(store, { userId: 'alice', limit });
      expect(pages.flat().map((r) => r.id)).toEqual(runs.map((r) => r.id));
      expect(pages.length).toBe(Math.max(1, Math.ceil(runs.length / limit)));
    }

    // Runs created between pages are newer than the cursor: they never show up on later pages.
    const first = await store.list({ userId: 'alice', limit: 10 });
    for (let i = 0; i < 5; i++) await created(store, { input: `new-${i}` });
    const seen = [...first.data];
    let cursor = first.nextCursor;
    while (cursor !== null) {
      const page = await store.list({ userId: 'alice', limit: 10, cursor });
      seen.push(...page.data);
      cursor = page.nextCursor;
    }
    expect(seen.map((r) => r.id)).toEqual(runs.map((r) => r.id));
  });

  it('keeps paginating correctly after evictions compact the user index', async () => {
    const store = makeStore({ maxRuns: 50 });
    const kept: Run[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await created(store, { input: i });
      if (i % 4 === 0) kept.push(r);
      else await finish(store, r);
    }
    // 150 finished runs with room for 50: the first 100 finished are gone, every running one stays.
    const all = (await allPages(store, { userId: 'alice', limit: 9 })).flat();
    expect(new Set(all.map((r) => r.id)).size).toBe(all.length);
    expect(all.length).toBe(50 + kept.length);
    for (const r of kept) expect(all.map((x) => x.id)).toContain(r.id);
    const inputs = all.map((r) => r.input as number);
    expect(inputs).toEqual([...inputs].sort((a, b) => b - a));
  });

  it('rejects a cursor it did not issue with invalid_request', async () => {
    const store = makeStore();
    await seed(store);
    const forged = ['garbage!!', '', Buffer.from('s:abc').toString('base64url'), Buffer.from('x:12').toString('base64url'), Buffer.from('s:1;drop').toString('base64url')];
    for (const cursor of forged) {
      const err = await rejection(store.list({ userId: 'alice', limit: 5, cursor }));
      expect(err).toBeInstanceOf(RunwayError);
      expect((err as RunwayError).code).toBe('invalid_request');
      expect((err as RunwayError).status).toBe(400);
    }
    // Also for a caller with no runs at all.
    const err = await rejection(store.list({ userId: 'nobody', limit: 5, cursor: 'garbage!!' }));
    expect((err as RunwayError).code).toBe('invalid_request');
  });
});
