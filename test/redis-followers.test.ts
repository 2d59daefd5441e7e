import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../src/core/events.js';
import type { RedisStores } from '../src/store/redis/redis-stores.js';
import { redisFixture } from './support/redis-fixture.js';
import { waitFor } from './support/sse-sockets.js';
import { event, newRun } from './support/store-contract.js';

// Followers on Redis: one subscriber connection per process shared by all of them, a lost
// subscription survived with no gap and no duplicate, followers that fall behind the process's
// window of a run, and followers that leave leaving nothing behind.

const redis = redisFixture();
const open = redis.open;

async function follow(stores: RedisStores, runId: string, options: { signal?: AbortSignal; afterId?: number; onEvent?: (ev: StoredEvent) => Promise<void> | void } = {}): Promise<number[]> {
  const ids: number[] = [];
  for await (const ev of stores.events.read(runId, options.afterId ?? 0, options.signal ? { signal: options.signal } : {})) {
    ids.push(ev.id);
    await options.onEvent?.(ev);
  }
  return ids;
}

/** Clients connected to the server now, by name (CLIENT LIST). */
async function clients(): Promise<Map<string, number>> {
  const list = (await redis.admin.client('LIST')) as string;
  const byName = new Map<string, number>();
  for (const line of list.trim().split('\n')) {
    const name = /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '';
    byName.set(name, (byName.get(name) ?? 0) + 1);
  }
  return byName;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('redis followers', () => {
  it('a follower across CLIENT KILL TYPE pubsub mid-stream gets every event exactly once, in order', async () => {
    const writer = open();
    const reader = open({ prefix: writer.keys.prefix });
    const run = newRun();
    await writer.runs.create(run);
    await writer.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    let seen = 0;
    const following = follow(reader, run.id, { onEvent: (ev) => void (seen = ev.id) });
    await waitFor(() => seen === 1, 'the follower has the first event');
    let id = 2;
    for (let kill = 0; kill < 3; kill++) {
      for (let i = 0; i < 10; i++, id += 2) await writer.events.append(run.id, [event(run.id, id, 'token'), event(run.id, id + 1, 'token')]);
      await waitFor(() => seen === id - 1, 'the follower is live');
      // The subscription dies; the events appended while it is down reach nobody by pub/sub.
      expect(await redis.admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBeGreaterThanOrEqual(1);
      for (let i = 0; i < 5; i++, id++) await writer.events.append(run.id, [event(run.id, id, 'token')]);
    }
    // The last one too: without a refill after resubscribing, the follower would wait forever.
    await redis.admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await writer.events.append(run.id, [event(run.id, id, 'run.succeeded')]);
    expect(await following).toEqual(range(1, id));
  });

  it('many followers share the one subscriber connection: connections to Redis stay the same', async () => {
    const writer = open();
    const reader = open({ prefix: writer.keys.prefix });
    const runs = Array.from({ length: 10 }, () => newRun());
    for (const run of runs) {
      await writer.runs.create(run);
      await writer.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    }
    await waitFor(async () => (await clients()).get('runway-subscriber') === 2, 'both subscribers connected');
    const before = await clients();
    const followers = runs.flatMap((run) => Array.from({ length: 50 }, () => follow(reader, run.id)));
    // One subscription per run (one subscribed client) for this process's 50 followers of it, one feed each.
    const subscribed = async () => ((await redis.admin.call('PUBSUB', 'NUMSUB', ...runs.map((r) => writer.keys.appended(r.id)))) as (string | number)[]).filter((_, i) => i % 2 === 1);
    await waitFor(async () => (await subscribed()).every((n) => n === 1), 'every run subscribed');
    expect(reader.events.feeds.size).toBe(runs.length);
    expect(await clients()).toEqual(before);
    for (const run of runs) await writer.events.append(run.id, [event(run.id, 2, 'token'), event(run.id, 3, 'run.cancelled')]);
    for (const ids of await Promise.all(followers)) expect(ids).toEqual([1, 2, 3]);
    expect(await clients()).toEqual(before);
    expect(reader.events.feeds.size).toBe(0);
  });

  it('followers that leave leave no feed and no subscription behind', async () => {
    const s = open();
    const run = newRun();
    await s.runs.create(run);
    await s.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    const stops = Array.from({ length: 20 }, () => new AbortController());
    const followers = stops.map((stop) => follow(s, run.id, { signal: stop.signal }));
    await waitFor(async () => ((await redis.admin.call('PUBSUB', 'NUMSUB', s.keys.appended(run.id))) as [string, number])[1] === 1, 'subscribed');
    for (const stop of stops) stop.abort();
    for (const ids of await Promise.all(followers)) expect(ids).toEqual([1]);
    expect(s.events.feeds.size).toBe(0);
    await waitFor(async () => ((await redis.admin.call('PUBSUB', 'NUMSUB', s.keys.appended(run.id))) as [string, number])[1] === 0, 'unsubscribed');
  });

  it('a follower that falls far behind the feed’s window reads the stream and still gets every event once, in order', async () => {
    const writer = open();
    const reader = open({ prefix: writer.keys.prefix, feed: { windowEvents: 4, windowBytes: 1 << 20, page: 3 } });
    const run = newRun();
    await writer.runs.create(run);
    await writer.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = follow(reader, run.id, { onEvent: (ev) => (ev.id === 2 ? gate : undefined) });
    const fast = follow(reader, run.id);
    for (let id = 2; id <= 60; id++) await writer.events.append(run.id, [event(run.id, id, 'token')]);
    await writer.events.append(run.id, [event(run.id, 61, 'run.succeeded')]);
    expect(await fast).toEqual(range(1, 61));
    release();
    expect(await slow).toEqual(range(1, 61));
  });

  it('a follower from an id in the middle of a live log gets the rest; follow: false ends at the current end', async () => {
    const s = open();
    const run = newRun();
    await s.runs.create(run);
    await s.events.append(run.id, range(1, 250).map((id) => event(run.id, id, id === 1 ? 'run.queued' : 'token')));
    const rest = follow(s, run.id, { afterId: 120 });
    const now: number[] = [];
    for await (const ev of s.events.read(run.id, 0, { follow: false })) now.push(ev.id);
    expect(now).toEqual(range(1, 250));
    await s.events.append(run.id, [event(run.id, 251, 'run.failed')]);
    expect(await rest).toEqual(range(121, 251));
  });

  it('a follower on another process of a finished run replays it whole and ends', async () => {
    const writer = open();
    const run = newRun();
    await writer.runs.create(run);
    await writer.events.append(run.id, [event(run.id, 1, 'run.queued'), event(run.id, 2, 'token'), event(run.id, 3, 'run.succeeded')]);
    await writer.close();
    const replica = open({ prefix: writer.keys.prefix });
    expect(await follow(replica, run.id)).toEqual([1, 2, 3]);
    expect(await follow(replica, run.id, { afterId: 2 })).toEqual([3]);
  });
});
