import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../src/core/events.js';
import { createMemoryStores, type MemoryStoreOptions } from '../src/store/memory/memory-stores.js';
import { event, newRun } from './support/store-contract.js';

// What the memory store does beyond the store contract (test/support/store-contract.ts): retention
// of finished runs, and its text-kept logs.

function makeStores(options: Partial<MemoryStoreOptions> = {}) {
  return createMemoryStores({ runTtlS: 3600, maxRuns: 10_000, sweepIntervalMs: 3_600_000, ...options });
}

async function finish(stores: ReturnType<typeof makeStores>, runId: string, events = 1): Promise<void> {
  const evs = Array.from({ length: events }, (_, i) => event(runId, i + 1, i === 0 ? 'run.queued' : 'token'));
  await stores.events.append(runId, evs);
  await stores.runs.update(runId, { status: 'succeeded' }, ['queued', 'running']);
  await stores.events.append(runId, [event(runId, events + 1, 'run.succeeded')]);
}

async function replay(stores: ReturnType<typeof makeStores>, runId: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const ev of stores.events.read(runId, 0, { follow: false })) out.push(ev);
  return out;
}

describe('memory store retention', () => {
  it('max_runs drops the oldest finished runs, never running ones', async () => {
    const stores = makeStores({ maxRuns: 2 });
    const running = newRun();
    await stores.runs.create(running);
    const done = [newRun(), newRun(), newRun()];
    for (const run of done) {
      await stores.runs.create(run);
      await finish(stores, run.id);
    }
    expect(await stores.runs.get(done[0]!.id)).toBeUndefined();
    expect(await replay(stores, done[0]!.id)).toEqual([]);
    expect((await stores.runs.get(done[2]!.id))?.status).toBe('succeeded');
    expect((await stores.runs.get(running.id))?.status).toBe('queued');
    expect(stores.table.size).toBe(3);
  });

  it('a run whose final status is written but not yet its terminal event is not dropped under its followers', async () => {
    const stores = makeStores({ maxRuns: 1 });
    const a = newRun();
    const b = newRun();
    for (const run of [a, b]) {
      await stores.runs.create(run);
      await stores.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    }
    const seen: string[] = [];
    const following = (async () => {
      for await (const ev of stores.events.read(a.id, 0)) seen.push(ev.type);
    })();
    // Both statuses final before either terminal event, as two runs ending together write them.
    await stores.runs.update(a.id, { status: 'succeeded' }, ['queued']);
    await stores.runs.update(b.id, { status: 'succeeded' }, ['queued']);
    await stores.events.append(a.id, [event(a.id, 2, 'run.succeeded')]);
    await following;
    expect(seen).toEqual(['run.queued', 'run.succeeded']);
  });

  it("a run whose final status is written but not yet its terminal event reads with its writer's last_event_id (the terminal event's)", async () => {
    const stores = makeStores();
    const run = newRun();
    await stores.runs.create(run);
    await stores.events.append(run.id, [event(run.id, 1, 'run.queued'), event(run.id, 2, 'token')]);
    await stores.runs.update(run.id, { status: 'succeeded', last_event_id: 3 }, ['queued']);
    // A client resuming from event 2 must be told there is more (not 204), and then get event 3.
    expect((await stores.runs.get(run.id))!.last_event_id).toBe(3);
    await stores.events.append(run.id, [event(run.id, 3, 'run.succeeded')]);
    expect((await stores.runs.get(run.id))!.last_event_id).toBe(3);
  });

  it('the TTL sweep drops runs finished longer than run_ttl_s ago, and only those', async () => {
    let now = 1_000_000;
    const stores = makeStores({ runTtlS: 10, now: () => now });
    const old = newRun();
    await stores.runs.create(old);
    await finish(stores, old.id);
    now += 5_000;
    const recent = newRun();
    await stores.runs.create(recent);
    await finish(stores, recent.id);
    const live = newRun();
    await stores.runs.create(live);
    now += 6_000;
    stores.table.sweep();
    expect(await stores.runs.get(old.id)).toBeUndefined();
    expect(await stores.runs.get(recent.id)).toBeDefined();
    expect(await stores.runs.get(live.id)).toBeDefined();
    now += 60_000;
    stores.table.sweep();
    expect(await stores.runs.get(recent.id)).toBeUndefined();
    expect(await stores.runs.get(live.id)).toBeDefined();
  });

  it('a reader already holding a run reads it intact after retention dropped it', async () => {
    const stores = makeStores({ maxRuns: 1 });
    const run = newRun();
    await stores.runs.create(run);
    await finish(stores, run.id, 5);
    const reader = stores.events.read(run.id, 0)[Symbol.asyncIterator]();
    const first = await reader.next();
    const other = newRun();
    await stores.runs.create(other);
    await finish(stores, other.id);
    expect(await stores.runs.get(run.id)).toBeUndefined();
    const rest: number[] = [(first.value as StoredEvent).id];
    for (let next = await reader.next(); !next.done; next = await reader.next()) rest.push(next.value.id);
    expect(rest).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('many readers that come and go leave nobody parked', async () => {
    const stores = makeStores();
    const run = newRun();
    await stores.runs.create(run);
    await stores.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    const stops = Array.from({ length: 50 }, () => new AbortController());
    const readers = stops.map(async (stop) => {
      for await (const ev of stores.events.read(run.id, 0, { signal: stop.signal })) void ev;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(stores.events.parked(run.id)).toBe(50);
    for (const stop of stops) stop.abort();
    await Promise.all(readers);
    expect(stores.events.parked(run.id)).toBe(0);
  });

  it('a finished log is kept as one flat text and replays byte for byte, surrogate pairs and 100,000 events included', async () => {
    const stores = makeStores();
    const run = newRun();
    await stores.runs.create(run);
    const evs: StoredEvent[] = [event(run.id, 1, 'run.queued', { s: 'ünï 👋 \u2028 "\\' })];
    for (let id = 2; id < 100_000; id++) evs.push(event(run.id, id, 'token', { delta: id % 7 ? 'w ' : '🚀' }));
    evs.push(event(run.id, 100_000, 'run.succeeded'));
    for (let i = 0; i < evs.length; i += 10_000) await stores.events.append(run.id, evs.slice(i, i + 10_000));
    const replayed = await replay(stores, run.id);
    expect(replayed.length).toBe(100_000);
    expect(replayed.every((ev, i) => ev.data === evs[i]!.data && ev.time === evs[i]!.time && ev.type === evs[i]!.type && ev.id === i + 1)).toBe(true);
  });

  it('keeps paginating correctly after evictions compact the user index', async () => {
    const stores = makeStores({ maxRuns: 100 });
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      const run = newRun();
      await stores.runs.create(run);
      ids.push(run.id);
      await finish(stores, run.id);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await stores.runs.list({ userId: 'alice', limit: 7, ...(cursor !== undefined && { cursor }) });
      seen.push(...page.data.map((r) => r.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    expect(seen).toEqual(ids.slice(200).reverse());
  });
});
