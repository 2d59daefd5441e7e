import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../src/core/events.js';
import { EventIdConflictError, RunEndedError, StaleWriterError } from '../src/store/store-errors.js';
import { connectionOptions } from '../src/store/redis/redis-connection.js';
import { createRedisStores, type RedisStoreOptions, type RedisStores } from '../src/store/redis/redis-stores.js';
import { startCuttingProxy } from './support/cutting-proxy.js';
import { redisFixture } from './support/redis-fixture.js';
import { startRedisServer } from './support/redis-server.js';
import { event, newRun } from './support/store-contract.js';

// What the Redis store does beyond the store contract (redis-store-contract.test.ts): the append
// script's guarantees under concurrent writers, retention by TTL, the MAXLEN guard, fencing,
// commands resent after a lost reply, prefixes, conversation bounds, and a bounded ping.

const redis = redisFixture();
const open = redis.open;

/** A second process on the same Redis and prefix. */
function peer(of: RedisStores, options: Partial<RedisStoreOptions> = {}): RedisStores {
  return open({ prefix: of.keys.prefix, ...options });
}

async function replay(stores: RedisStores, runId: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const ev of stores.events.read(runId, 0, { follow: false })) out.push(ev);
  return out;
}

describe('redis store: the append script', () => {
  it('two writers appending the same ids at once: exactly one wins, the other is a conflict, the log is the winner’s', async () => {
    const a = open();
    const b = peer(a);
    const run = newRun();
    await a.runs.create(run);
    await a.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    for (let round = 0; round < 20; round++) {
      const next = 2 + round * 2;
      const batch = (who: string) => [event(run.id, next, 'token', { who }), event(run.id, next + 1, 'token', { who })];
      const results = await Promise.allSettled([a.events.append(run.id, batch('a')), b.events.append(run.id, batch('b'))]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toBeInstanceOf(EventIdConflictError);
    }
    const log = await replay(a, run.id);
    expect(log.map((e) => e.id)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
    // Each round's two events come from one writer: no batch was split or interleaved.
    for (let i = 1; i < 41; i += 2) expect(log[i]!.data).toBe(log[i + 1]!.data);
  });

  it('the first terminal event wins (a worker, a reaper and a cancel may race); nothing is appended after it', async () => {
    const a = open();
    const b = peer(a);
    const run = newRun();
    await a.runs.create(run);
    await a.events.append(run.id, [event(run.id, 1, 'run.queued')]);
    const results = await Promise.allSettled([
      a.events.append(run.id, [event(run.id, 2, 'run.succeeded')]),
      b.events.append(run.id, [event(run.id, 2, 'run.cancelled')]),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    await expect(a.events.append(run.id, [event(run.id, 3, 'token')])).rejects.toBeInstanceOf(RunEndedError);
    await expect(b.events.append(run.id, [event(run.id, 2, 'run.failed')])).rejects.toBeInstanceOf(RunEndedError);
    const log = await replay(b, run.id);
    expect(log).toHaveLength(2);
    expect(['run.succeeded', 'run.cancelled']).toContain(log[1]!.type);
  });

  it('a repeat of exactly the batch the log holds (a resend after a lost reply) is acknowledged and writes nothing', async () => {
    const s = open();
    const run = newRun();
    await s.runs.create(run);
    const batch = [event(run.id, 1, 'run.queued'), event(run.id, 2, 'token', { delta: 'é' })];
    await s.events.append(run.id, batch);
    await s.events.append(run.id, batch);
    const terminal = [event(run.id, 3, 'run.succeeded')];
    await s.events.append(run.id, terminal);
    await s.events.append(run.id, terminal);
    expect(await replay(s, run.id)).toEqual([...batch, ...terminal]);
    // The same ids with other content are no repeat.
    await expect(s.events.append(run.id, [{ ...batch[1]!, data: '{"delta":"e"}' }])).rejects.toBeInstanceOf(RunEndedError);
    expect(await redis.admin.xlen(s.keys.events(run.id))).toBe(3);
  });

  it('fences a stale writer: once an attempt has appended, a lower one is refused', async () => {
    const s = open();
    const run = newRun();
    await s.runs.create(run);
    await s.events.append(run.id, [event(run.id, 1, 'run.queued')], { attempt: 1 });
    await s.events.append(run.id, [event(run.id, 2, 'run.started')], { attempt: 2 });
    const stale = s.events.append(run.id, [event(run.id, 3, 'token')], { attempt: 1 });
    await expect(stale).rejects.toBeInstanceOf(StaleWriterError);
    await expect(stale).rejects.toMatchObject({ attempt: 1, current: 2 });
    await s.events.append(run.id, [event(run.id, 3, 'run.succeeded')], { attempt: 2 });
    expect((await replay(s, run.id)).map((e) => e.id)).toEqual([1, 2, 3]);
  });

  it('the MAXLEN guard bounds a stream; the terminal event still lands', async () => {
    const s = open({ maxEventsPerRun: 5 });
    const run = newRun();
    await s.runs.create(run);
    await s.events.append(run.id, Array.from({ length: 6 }, (_, i) => event(run.id, i + 1, 'token')));
    await s.events.append(run.id, [event(run.id, 7, 'token'), event(run.id, 8, 'run.succeeded')]);
    expect(await redis.admin.xlen(s.keys.events(run.id))).toBe(5);
    expect((await replay(s, run.id)).map((e) => e.id)).toEqual([4, 5, 6, 7, 8]);
    expect((await s.runs.get(run.id))!.last_event_id).toBe(8);
  });
});

describe('redis store: retention', () => {
  it('a finished run’s keys get the TTL when its terminal event lands; a live run’s keys have none', async () => {
    const s = open({ runTtlS: 120 });
    const run = newRun();
    await s.runs.create(run);
    await s.events.append(run.id, [event(run.id, 1, 'run.queued'), event(run.id, 2, 'token')]);
    await s.runs.update(run.id, { status: 'succeeded', last_event_id: 3 }, ['queued']);
    // Final status, terminal event not yet in: followers may still be waiting for it.
    expect(await redis.admin.pttl(s.keys.run(run.id))).toBe(-1);
    expect(await redis.admin.pttl(s.keys.events(run.id))).toBe(-1);
    await s.events.append(run.id, [event(run.id, 3, 'run.succeeded')]);
    for (const key of [s.keys.run(run.id), s.keys.events(run.id)]) {
      const ttl = await redis.admin.pttl(key);
      expect(ttl).toBeGreaterThan(110_000);
      expect(ttl).toBeLessThanOrEqual(120_000);
    }
    // Retention ends it: once the keys have expired the run is gone, its log too.
    await redis.admin.pexpire(s.keys.run(run.id), 1);
    await redis.admin.pexpire(s.keys.events(run.id), 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await s.runs.get(run.id)).toBeUndefined();
    expect(await replay(s, run.id)).toEqual([]);
  });

  it('a run that ends without any event gets the TTL with its final status; a finished run takes no more updates', async () => {
    const s = open({ runTtlS: 60 });
    const run = newRun();
    await s.runs.create(run);
    expect(await s.runs.update(run.id, { status: 'cancelled' }, ['queued'])).toBe(true);
    expect(await redis.admin.pttl(s.keys.run(run.id))).toBeGreaterThan(50_000);
    expect(await s.runs.update(run.id, { status: 'failed' }, ['cancelled'])).toBe(false);
    expect((await s.runs.get(run.id))!.status).toBe('cancelled');
  });

  it('list drops index entries of runs that expired, and pages on without them', async () => {
    const s = open();
    const runs = Array.from({ length: 6 }, () => newRun());
    for (const run of runs) await s.runs.create(run);
    for (const gone of [runs[1]!, runs[4]!]) await redis.admin.del(s.keys.run(gone.id));
    const first = await s.runs.list({ userId: 'alice', limit: 2 });
    const second = await s.runs.list({ userId: 'alice', limit: 2, cursor: first.nextCursor! });
    expect([...first.data, ...second.data].map((r) => r.id)).toEqual([runs[5]!, runs[3]!, runs[2]!, runs[0]!].map((r) => r.id));
    expect(second.nextCursor).toBeNull();
    await expect.poll(() => redis.admin.zcard(s.keys.userRuns('alice'))).toBe(4);
  });
});

describe('redis store: commands resent after a lost reply', () => {
  it('create, update and append whose replies were lost are resent by the client and still succeed once', async () => {
    const proxy = await startCuttingProxy(redis.server.socket);
    try {
      const s = open({ url: proxy.url });
      const run = newRun();
      proxy.loseNextReply();
      await s.runs.create(run);
      proxy.loseNextReply();
      await s.events.append(run.id, [event(run.id, 1, 'run.queued')]);
      proxy.loseNextReply();
      expect(await s.runs.update(run.id, { status: 'running' }, ['queued'])).toBe(true);
      proxy.loseNextReply();
      expect(await s.runs.update(run.id, { status: 'succeeded', output: 'ok', last_event_id: 2 }, ['running'])).toBe(true);
      proxy.loseNextReply();
      await s.events.append(run.id, [event(run.id, 2, 'run.succeeded')]);
      expect(proxy.lost).toBe(5);
      expect(await s.runs.get(run.id)).toMatchObject({ status: 'succeeded', output: 'ok', last_event_id: 2 });
      expect((await replay(s, run.id)).map((e) => e.type)).toEqual(['run.queued', 'run.succeeded']);
    } finally {
      await redis.closeOpened();
      await proxy.close();
    }
  });
});

describe('redis store: prefixes and connections', () => {
  it('two prefixes on one Redis do not meet: runs, lists, conversations and the bus', async () => {
    const a = open();
    const b = open();
    const run = newRun();
    await a.runs.create(run);
    await a.conversations.append('alice', 'c1', [{ role: 'user', content: 'hi', run_id: run.id, created_at: new Date().toISOString() }]);
    const heard: string[] = [];
    b.bus.subscribe((m) => heard.push(m.runId));
    await expect.poll(() => redis.admin.call('PUBSUB', 'NUMSUB', b.keys.bus).then((r) => (r as [string, number])[1])).toBe(1);
    await a.bus.publish({ type: 'cancel', runId: run.id });
    expect(await b.runs.get(run.id)).toBeUndefined();
    expect((await b.runs.list({ userId: 'alice', limit: 10 })).data).toEqual([]);
    expect(await b.conversations.get('alice', 'c1')).toBeUndefined();
    await b.bus.publish({ type: 'cancel', runId: 'own' });
    expect(heard).toEqual(['own']);
  });

  it('a cancel published in one process reaches the subscribers of another, once each', async () => {
    const a = open();
    const b = peer(a);
    const inA: string[] = [];
    const inB: string[] = [];
    a.bus.subscribe((m) => inA.push(m.runId));
    b.bus.subscribe((m) => inB.push(m.runId));
    await expect.poll(() => redis.admin.call('PUBSUB', 'NUMSUB', a.keys.bus).then((r) => (r as [string, number])[1])).toBe(2);
    await a.bus.publish({ type: 'cancel', runId: 'r1' });
    await expect.poll(() => inB).toEqual(['r1']);
    await b.bus.publish({ type: 'cancel', runId: 'r2' });
    await expect.poll(() => inA).toEqual(['r1', 'r2']);
    expect(inB).toEqual(['r1', 'r2']);
  });

  it('ping rejects within its bound once Redis is gone (drives /readyz 503)', async () => {
    const own = await startRedisServer();
    const s = createRedisStores({ url: own.url, prefix: 'p:', runTtlS: 60, pingTimeoutMs: 300 });
    try {
      await s.runs.ping();
      await own.stop();
      const started = Date.now();
      await expect(s.runs.ping()).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      await s.close();
      await own.stop();
    }
  });

  it('reads store URLs: redis://, rediss:// (TLS) and unix sockets', () => {
    expect(connectionOptions('redis://u:p%40ss@db.example:6380/2')).toMatchObject({ host: 'db.example', port: 6380, db: 2, username: 'u', password: 'p@ss' });
    expect(connectionOptions('redis://localhost')).toMatchObject({ host: 'localhost', port: 6379, db: 0 });
    expect(connectionOptions('rediss://:secret@cache.example')).toMatchObject({ host: 'cache.example', password: 'secret', tls: { servername: 'cache.example' } });
    expect(connectionOptions('unix:///run/redis/redis.sock?db=3')).toEqual({ path: '/run/redis/redis.sock', db: 3 });
    expect(connectionOptions('unix://u:pw@localhost/run/redis.sock')).toEqual({ path: '/run/redis.sock', db: 0, username: 'u', password: 'pw' });
    expect(() => connectionOptions('unix://host/run/redis.sock')).toThrow(/no host/);
    expect(() => connectionOptions('redis://localhost/x')).toThrow(/database/);
    expect(() => connectionOptions('http://localhost')).toThrow(/redis:\/\//);
  });
});

describe('redis store: conversations', () => {
  const msg = (content: string, i = 0) => ({ role: 'user' as const, content, run_id: `r${i}`, created_at: new Date(1_700_000_000_000 + i).toISOString() });

  it('keeps the newest messages within the message and character bounds (characters as UTF-16 units)', async () => {
    const s = open({ conversations: { maxMessages: 3, maxChars: 10, ttlS: 60, maxConversations: 100 } });
    await s.conversations.append('alice', 'c', [msg('a', 1), msg('b', 2), msg('c', 3), msg('d', 4)]);
    expect((await s.conversations.get('alice', 'c'))!.messages.map((m) => m.content)).toEqual(['b', 'c', 'd']);
    // 👋 is two UTF-16 units: 'b' 'c' 'd' + '👋👋👋👋' = 3 + 8 = 11 > 10, so 'b' goes.
    const conv = await s.conversations.append('alice', 'c', [msg('👋👋👋👋', 5)]);
    expect(conv.messages.map((m) => m.content)).toEqual(['c', 'd', '👋👋👋👋']);
    // The newest always stays, however long.
    const long = await s.conversations.append('alice', 'c', [msg('x'.repeat(50), 6)]);
    expect(long.messages.map((m) => m.content.length)).toEqual([50]);
    // Created at the time of the first write's newest message, as the memory store has it.
    expect(long.created_at).toBe(msg('', 4).created_at);
    expect(long.updated_at).toBe(msg('', 6).created_at);
    expect(await s.conversations.get('alice', 'c')).toEqual(long);
    const ttl = await redis.admin.pttl(s.keys.conversation(s.keys.conversationMember('alice', 'c')));
    expect(ttl).toBeGreaterThan(50_000);
  });

  it('the cap evicts the least recently written conversations, across users; ids with odd characters stay apart', async () => {
    const s = open({ conversations: { maxMessages: 10, maxChars: 1000, ttlS: 60, maxConversations: 2 } });
    await s.conversations.append('alice', 'one', [msg('1')]);
    await s.conversations.append('bob', 'two', [msg('2')]);
    await s.conversations.append('alice', 'one', [msg('1b')]);
    await s.conversations.append('carol', 'three', [msg('3')]);
    expect(await s.conversations.get('bob', 'two')).toBeUndefined();
    expect((await s.conversations.get('alice', 'one'))!.messages).toHaveLength(2);
    expect(await redis.admin.zcard(s.keys.conversationIndex)).toBe(2);
    // A user id holding the separator and braces is not another user's key.
    const t = open();
    await t.conversations.append('a:b', 'c', [msg('x')]);
    expect(await t.conversations.get('a', 'b:c')).toBeUndefined();
    await t.conversations.append('{x}', '}', [msg('y')]);
    expect((await t.conversations.get('{x}', '}'))!.messages[0]!.content).toBe('y');
  });
});
