import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { RunwayError } from '../../src/core/errors.js';
import { eventJson, type RunEventType, type StoredEvent } from '../../src/core/events.js';
import type { Run } from '../../src/core/run.js';
import { EventIdConflictError, RunEndedError, RunExistsError } from '../../src/store/store-errors.js';
import type { Stores } from '../../src/store/stores.js';
import { makeRun } from './runtime-test-kit.js';

/** A Run as a runner creates it (queued, with nested input and metadata to copy), with overrides. */
export function newRun(over: Partial<Run> = {}): Run {
  return makeRun({ status: 'queued', input: { text: 'hi', nested: { list: [1, 'two', null] } }, metadata: { tag: 'a' }, ...over });
}

/** A stored event as a recorder writes it. */
export function event(runId: string, id: number, type: RunEventType = 'step', data: unknown = { n: id }): StoredEvent {
  return { id, type, time: new Date().toISOString(), data: JSON.stringify(data) };
}

async function readAll(stores: Stores, runId: string, after = 0): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const ev of stores.events.read(runId, after, { follow: false })) out.push(ev);
  return out;
}

/**
 * The store contract (DESIGN §3): every store passes it, the memory store, a deliberately slow
 * one, and the Redis store to come. `make` builds fresh stores for each test.
 */
export function describeStoreContract(name: string, make: () => Stores | Promise<Stores>): void {
  describe(`store contract: ${name}`, () => {
    let stores: Stores | undefined;
    const open = async () => (stores = await make());
    afterEach(async () => {
      await stores?.close();
      stores = undefined;
    });

    describe('RunStore', () => {
      it('create then get gives an equal copy; neither the original nor a returned copy is shared', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        (run.input as { text: string }).text = 'changed after create';
        run.metadata.tag = 'changed';
        const got = (await s.runs.get(run.id))!;
        expect(got).toEqual({ ...newRun({ id: run.id, created_at: run.created_at }) });
        (got.input as { nested: { list: unknown[] } }).nested.list.push('mutated');
        got.usage.total_tokens = 99;
        const again = (await s.runs.get(run.id))!;
        expect(again.input).toEqual({ text: 'hi', nested: { list: [1, 'two', null] } });
        expect(again.usage.total_tokens).toBe(0);
      });

      it('refuses a second create with the same id, and an unknown id reads as undefined', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        await expect(s.runs.create(newRun({ id: run.id, user_id: 'bob' }))).rejects.toBeInstanceOf(RunExistsError);
        expect((await s.runs.get(run.id))?.user_id).toBe('alice');
        expect(await s.runs.get(randomUUID())).toBeUndefined();
      });

      it('update is a compare-and-set on status: a late succeeded never overwrites cancelled', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        const patch = { status: 'running' as const, started_at: new Date().toISOString() };
        expect(await s.runs.update(run.id, patch, ['queued'])).toBe(true);
        expect(patch).toEqual({ status: 'running', started_at: patch.started_at });
        expect(await s.runs.update(run.id, { status: 'cancelled' }, ['queued', 'running'])).toBe(true);
        expect(await s.runs.update(run.id, { status: 'succeeded', output: 'late' }, ['running'])).toBe(false);
        expect(await s.runs.get(run.id)).toMatchObject({ status: 'cancelled', output: null, started_at: patch.started_at });
        expect(await s.runs.update(randomUUID(), { status: 'failed' }, ['queued'])).toBe(false);
      });

      it('an update keeps no reference to its patch', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        const output = { answer: [1, 2] };
        await s.runs.update(run.id, { status: 'running', output }, ['queued']);
        output.answer.push(3);
        expect((await s.runs.get(run.id))!.output).toEqual({ answer: [1, 2] });
      });

      it('last_event_id is the id of the last event appended', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        expect((await s.runs.get(run.id))!.last_event_id).toBe(0);
        await s.events.append(run.id, [event(run.id, 1, 'run.queued'), event(run.id, 2, 'run.started')]);
        expect((await s.runs.get(run.id))!.last_event_id).toBe(2);
      });

      it("lists only the caller's runs, newest first, with filters and cursors without gaps or duplicates", async () => {
        const s = await open();
        const mine: Run[] = [];
        for (let i = 0; i < 7; i++) {
          const run = newRun({ workflow: i % 2 ? 'odd' : 'even', conversation_id: i < 3 ? 'c1' : null });
          await s.runs.create(run);
          mine.push(run);
          await s.runs.create(newRun({ user_id: 'bob' }));
        }
        await s.runs.update(mine[6]!.id, { status: 'running' }, ['queued']);
        const ids = (page: { data: Run[] }) => page.data.map((r) => r.id);
        const newestFirst = mine.map((r) => r.id).reverse();
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await s.runs.list({ userId: 'alice', limit: 3, ...(cursor !== undefined && { cursor }) });
          expect(page.data.every((r) => r.user_id === 'alice')).toBe(true);
          seen.push(...ids(page));
          cursor = page.nextCursor ?? undefined;
        } while (cursor !== undefined);
        expect(seen).toEqual(newestFirst);
        expect(ids(await s.runs.list({ userId: 'alice', limit: 100, workflow: 'odd' }))).toEqual(newestFirst.filter((_, i) => (6 - i) % 2 === 1));
        expect(ids(await s.runs.list({ userId: 'alice', limit: 100, status: 'running' }))).toEqual([mine[6]!.id]);
        expect(ids(await s.runs.list({ userId: 'alice', limit: 100, conversationId: 'c1', workflow: 'even' }))).toEqual([mine[2]!.id, mine[0]!.id]);
        expect((await s.runs.list({ userId: 'carol', limit: 10 })).data).toEqual([]);
      });

      it('refuses a cursor it did not issue with invalid_request', async () => {
        const s = await open();
        await expect(s.runs.list({ userId: 'alice', limit: 10, cursor: 'forged' })).rejects.toSatisfy(
          (err: unknown) => err instanceof RunwayError && err.code === 'invalid_request',
        );
      });

      it('ping resolves while the store is reachable', async () => {
        const s = await open();
        await expect(s.runs.ping()).resolves.toBeUndefined();
      });
    });

    describe('EventLog', () => {
      it('appends in order and replays exactly, text that is not plain ASCII included', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        const evs = [event(run.id, 1, 'run.queued'), event(run.id, 2, 'token', { delta: 'héllo 👋 "q" \u2028', step_id: 's1' }), event(run.id, 3, 'run.succeeded')];
        await s.events.append(run.id, evs.slice(0, 2));
        await s.events.append(run.id, evs.slice(2));
        expect(await readAll(s, run.id)).toEqual(evs);
        expect(await readAll(s, run.id, 1)).toEqual(evs.slice(1));
        expect(await readAll(s, run.id, 3)).toEqual([]);
      });

      it('refuses ids that do not continue the log, and a refused batch appends nothing', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        await s.events.append(run.id, [event(run.id, 1, 'run.queued')]);
        await expect(s.events.append(run.id, [event(run.id, 3)])).rejects.toBeInstanceOf(EventIdConflictError);
        await expect(s.events.append(run.id, [event(run.id, 1)])).rejects.toBeInstanceOf(EventIdConflictError);
        await expect(s.events.append(run.id, [event(run.id, 2), event(run.id, 4)])).rejects.toBeInstanceOf(EventIdConflictError);
        expect((await readAll(s, run.id)).map((e) => e.id)).toEqual([1]);
      });

      it('accepts nothing after the terminal event, nor a terminal event followed by more, nor events of an unknown run', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        await expect(s.events.append(run.id, [event(run.id, 1, 'run.cancelled'), event(run.id, 2)])).rejects.toBeInstanceOf(RunEndedError);
        await s.events.append(run.id, [event(run.id, 1, 'run.queued'), event(run.id, 2, 'run.failed')]);
        await expect(s.events.append(run.id, [event(run.id, 3, 'run.succeeded')])).rejects.toBeInstanceOf(RunEndedError);
        await expect(s.events.append(randomUUID(), [event('x', 1, 'run.queued')])).rejects.toBeInstanceOf(RunEndedError);
        expect((await readAll(s, run.id)).map((e) => e.type)).toEqual(['run.queued', 'run.failed']);
      });

      it('a follower gets what is there, then what comes, and ends after the terminal event', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        await s.events.append(run.id, [event(run.id, 1, 'run.queued')]);
        const got: number[] = [];
        const following = (async () => {
          for await (const ev of s.events.read(run.id, 0)) got.push(ev.id);
        })();
        for (let id = 2; id <= 5; id++) await s.events.append(run.id, [event(run.id, id, 'token')]);
        await s.events.append(run.id, [event(run.id, 6, 'run.succeeded')]);
        await following;
        expect(got).toEqual([1, 2, 3, 4, 5, 6]);
      });

      it('concurrent followers see identical sequences however the appends interleave with them', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        const follow = async (after: number) => {
          const seen: string[] = [];
          for await (const ev of s.events.read(run.id, after)) seen.push(eventJson(run.id, ev));
          return seen;
        };
        const readers = [follow(0), follow(0), follow(0)];
        for (let id = 1; id <= 20; id += 2) await s.events.append(run.id, [event(run.id, id, 'token'), event(run.id, id + 1, 'step')]);
        const late = follow(0);
        await s.events.append(run.id, [event(run.id, 21, 'run.cancelled')]);
        const all = await Promise.all([...readers, late]);
        expect(all[0]).toHaveLength(21);
        for (const seen of all) expect(seen).toEqual(all[0]);
      });

      it('a read from an id far past the end ends at once, on a live log as on a finished one', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        await s.events.append(run.id, [event(run.id, 1, 'run.queued')]);
        const far = 999_999_999_999_999;
        const got: number[] = [];
        const following = (async () => {
          for await (const ev of s.events.read(run.id, far)) got.push(ev.id);
        })();
        await s.events.append(run.id, [event(run.id, 2, 'token'), event(run.id, 3, 'run.succeeded')]);
        await following;
        expect(got).toEqual([]);
        expect(await readAll(s, run.id, far)).toEqual([]);
      });

      it('a follower whose signal aborts while waiting ends; an unknown run ends at once', async () => {
        const s = await open();
        const run = newRun();
        await s.runs.create(run);
        await s.events.append(run.id, [event(run.id, 1, 'run.queued')]);
        const stop = new AbortController();
        const got: number[] = [];
        const following = (async () => {
          for await (const ev of s.events.read(run.id, 0, { signal: stop.signal })) {
            got.push(ev.id);
            stop.abort();
          }
        })();
        await following;
        expect(got).toEqual([1]);
        expect(await readAll(s, randomUUID())).toEqual([]);
        const none: StoredEvent[] = [];
        for await (const ev of s.events.read(randomUUID(), 0)) none.push(ev);
        expect(none).toEqual([]);
      });
    });

    describe('ConversationStore', () => {
      it('keeps conversations per (user, id), as copies, and deletes them', async () => {
        const s = await open();
        const at = new Date().toISOString();
        const msg = { role: 'user' as const, content: 'hi', run_id: 'r1', created_at: at };
        const written = await s.conversations.append('alice', 'c1', [msg]);
        msg.content = 'changed';
        written.messages.push({ ...msg, content: 'pushed' });
        expect((await s.conversations.get('alice', 'c1'))?.messages.map((m) => m.content)).toEqual(['hi']);
        expect(await s.conversations.get('bob', 'c1')).toBeUndefined();
        expect(await s.conversations.delete('bob', 'c1')).toBe(false);
        expect(await s.conversations.delete('alice', 'c1')).toBe(true);
        expect(await s.conversations.get('alice', 'c1')).toBeUndefined();
      });
    });

    describe('Bus', () => {
      it('delivers a published cancel to every subscriber, and not after unsubscribing', async () => {
        const s = await open();
        const a: string[] = [];
        const b: string[] = [];
        const offA = s.bus.subscribe((m) => a.push(`${m.type}:${m.runId}`));
        s.bus.subscribe((m) => b.push(m.runId));
        await s.bus.publish({ type: 'cancel', runId: 'r1' });
        offA();
        await s.bus.publish({ type: 'cancel', runId: 'r2' });
        expect(a).toEqual(['cancel:r1']);
        expect(b).toEqual(['r1', 'r2']);
      });
    });
  });
}
