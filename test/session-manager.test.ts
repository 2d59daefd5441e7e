import { describe, expect, it } from 'vitest';
import { RunwayError } from '../src/core/errors.js';
import { SessionManager, type AdmissionOptions, type Permit, type Reservation } from '../src/runtime/session-manager.js';
import type { OnAbort } from '../src/queue/run-queue.js';
import { tick, waitFor } from './support/runtime-test-kit.js';

function manager(options: Partial<AdmissionOptions> = {}): SessionManager {
  return new SessionManager({ maxConcurrency: 2, maxQueue: 1000, queueTimeoutMs: 10_000, perUserMaxConcurrency: 0, ...options });
}

const never = (): AbortSignal => new AbortController().signal;

/** A place's abort subscription, from a signal (as a run's scope would give it). */
function watch(signal: AbortSignal): OnAbort {
  return (fn) => {
    const onAbort = () => fn(signal.reason);
    if (signal.aborted) {
      onAbort();
      return () => {};
    }
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  };
}

/** reserve() then start() in one turn: what a caller that creates nothing in between does. */
function admit(mgr: SessionManager, userId: string, signal: AbortSignal = never()): Promise<Permit> {
  return mgr.reserve(userId).start(watch(signal));
}

/**
 * Reserves and expects a permit at once: reserve() itself counts it in flight, synchronously, and
 * takes no place in the queue.
 */
function reserveNow(mgr: SessionManager, userId: string): Reservation {
  const before = mgr.stats();
  const place = mgr.reserve(userId);
  const inFlight = before.inFlight + 1;
  expect(mgr.stats()).toEqual({ inFlight, waiting: before.waiting, highWater: Math.max(before.highWater, inFlight) });
  return place;
}

/** A permit taken at once (see reserveNow). */
function admitNow(mgr: SessionManager, userId: string): Promise<Permit> {
  return reserveNow(mgr, userId).start(watch(never()));
}

/** Reserves and expects a place in the queue: counted as waiting from reserve() on, holding no permit. */
function reserveQueued(mgr: SessionManager, userId: string): Reservation {
  const before = mgr.stats();
  const place = mgr.reserve(userId);
  expect(mgr.stats()).toEqual({ ...before, waiting: before.waiting + 1 });
  return place;
}

/** A place in the queue (see reserveQueued), waiting for its permit until `signal` aborts. */
function admitQueued(mgr: SessionManager, userId: string, signal: AbortSignal = never()): Promise<Permit> {
  return reserveQueued(mgr, userId).start(watch(signal));
}

/** Per-user bookkeeping the manager still holds (white-box: a slot left behind is a memory leak). */
function userSlots(mgr: SessionManager): number {
  return (mgr as unknown as { users: Map<string, unknown> }).users.size;
}

/** Expects `fn` to throw a RunwayError synchronously and returns it. */
function syncError(fn: () => unknown): RunwayError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(RunwayError);
  return thrown as RunwayError;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

/** A few event-loop turns of random kind and length, so holders finish in a shuffled order. */
async function randomHold(): Promise<void> {
  const turns = 1 + Math.floor(Math.random() * 4);
  for (let i = 0; i < turns; i++) {
    const r = Math.random();
    if (r < 0.4) await tick();
    else if (r < 0.7) await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 3)));
    else await Promise.resolve();
  }
}

describe('SessionManager: the cap', () => {
  it('never exceeds max_concurrency under 200 concurrent admissions, and all of them complete', async () => {
    const cap = 8;
    const mgr = manager({ maxConcurrency: cap });
    let current = 0;
    let max = 0;
    let completed = 0;
    const overCap: number[] = [];

    const job = async (i: number) => {
      const permit = await admit(mgr, `user-${i % 20}`);
      current++;
      max = Math.max(max, current);
      const { inFlight } = mgr.stats();
      if (inFlight > cap || current > cap) overCap.push(inFlight);
      await randomHold();
      current--;
      permit.release();
      completed++;
    };

    const jobs = Array.from({ length: 200 }, (_, i) => job(i));
    // reserve() counts synchronously: the first `cap` took permits, everyone else is waiting.
    expect(mgr.stats()).toMatchObject({ inFlight: cap, waiting: 200 - cap });
    await Promise.all(jobs);

    expect(overCap).toEqual([]);
    expect(completed).toBe(200);
    expect(max).toBe(cap);
    expect(mgr.stats()).toEqual({ inFlight: 0, waiting: 0, highWater: cap });
  });

  it('with per-user caps too, neither the global cap nor any user cap is ever exceeded', async () => {
    const cap = 6;
    const perUser = 2;
    const mgr = manager({ maxConcurrency: cap, perUserMaxConcurrency: perUser });
    let current = 0;
    let max = 0;
    const perUserNow = new Map<string, number>();
    const violations: string[] = [];

    const job = async (i: number) => {
      const user = `user-${i % 7}`;
      const permit = await admit(mgr, user);
      current++;
      max = Math.max(max, current);
      const mine = (perUserNow.get(user) ?? 0) + 1;
      perUserNow.set(user, mine);
      if (current > cap) violations.push(`global ${current}`);
      if (mine > perUser) violations.push(`${user} ${mine}`);
      for (const [u, n] of mgr.perUserInFlight()) if (n > perUser) violations.push(`manager says ${u} ${n}`);
      await randomHold();
      perUserNow.set(user, perUserNow.get(user)! - 1);
      current--;
      permit.release();
    };

    await Promise.all(Array.from({ length: 200 }, (_, i) => job(i)));
    expect(violations).toEqual([]);
    expect(max).toBe(cap);
    expect(mgr.stats()).toEqual({ inFlight: 0, waiting: 0, highWater: cap });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
  });

  it('max_concurrency 0 means unlimited: every reservation holds its permit at once, none ever waits', async () => {
    const mgr = manager({ maxConcurrency: 0, maxQueue: 0 });
    // reserveNow checks each one: counted in flight by reserve() itself, nothing waiting.
    const places = Array.from({ length: 500 }, (_, i) => reserveNow(mgr, `u${i % 5}`));
    expect(mgr.stats()).toEqual({ inFlight: 500, waiting: 0, highWater: 500 });
    const permits = await Promise.all(places.map((place) => place.start(watch(never()))));
    expect(permits.map((p) => p.userId)).toEqual(Array.from({ length: 500 }, (_, i) => `u${i % 5}`));
    expect(mgr.stats()).toEqual({ inFlight: 500, waiting: 0, highWater: 500 });
    for (const p of permits) p.release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('grants waiters in arrival order (FIFO) and every one of them completes', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = await admitNow(mgr, 'holder');
    const order: number[] = [];
    const jobs = Array.from({ length: 50 }, async (_, i) => {
      const permit = await admitQueued(mgr, `u${i}`);
      order.push(i);
      await tick();
      permit.release();
    });
    holder.release();
    await Promise.all(jobs);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });

  it('arrival is reserve(): a place reserved in the queue is not overtaken by a later reservation before its start()', async () => {
    // The runner reserves, writes the run's record (an await), and only then calls start().
    const mgr = manager({ maxConcurrency: 1 });
    const holder = await admitNow(mgr, 'holder');
    const first = reserveQueued(mgr, 'first');
    holder.release();
    // The freed permit is first's: a caller arriving after it must queue behind it.
    const second = reserveQueued(mgr, 'second');
    const order: string[] = [];
    const granted = [first.start(watch(never())), second.start(watch(never()))].map((p, i) =>
      p.then((permit) => {
        order.push(i === 0 ? 'first' : 'second');
        return permit;
      }),
    );
    const firstPermit = await granted[0]!;
    expect(order).toEqual(['first']);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    firstPermit.release();
    (await granted[1]!).release();
    expect(order).toEqual(['first', 'second']);
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });

  it('a permit released twice is released once', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const a = await admitNow(mgr, 'a');
    a.release();
    a.release();
    expect(mgr.stats().inFlight).toBe(0);

    const b = await admitNow(mgr, 'b');
    // Had the second release counted, the semaphore would now have a spare permit for c.
    const c = admitQueued(mgr, 'c');
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    a.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1, highWater: 1 });

    b.release();
    const cPermit = await c;
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    cPermit.release();
    cPermit.release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });
});

describe('SessionManager: giving a place back unused (cancel)', () => {
  it('a permit taken at once and given back with cancel() is free again, and its user slot is dropped', async () => {
    const mgr = manager({ maxConcurrency: 1, perUserMaxConcurrency: 1 });
    const place = reserveNow(mgr, 'alice');
    expect(mgr.perUserInFlight()).toEqual(new Map([['alice', 1]]));
    place.cancel();
    expect(mgr.stats()).toEqual({ inFlight: 0, waiting: 0, highWater: 1 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
    // The one permit (and alice's one user slot) is free: the next reservation takes it at once.
    (await admitNow(mgr, 'alice')).release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('a place in the queue given back with cancel() frees its place, takes no permit, and its user slot is dropped', async () => {
    const mgr = manager({ maxConcurrency: 1, maxQueue: 1, perUserMaxConcurrency: 1 });
    const holder = await admitNow(mgr, 'alice');
    const place = reserveQueued(mgr, 'bob');
    // A reserved place counts against max_queue before start() is called.
    expect(syncError(() => mgr.reserve('carol')).code).toBe('queue_full');

    place.cancel();
    place.cancel();
    // The place waits from its reservation on; giving it back settles that wait a turn later.
    await tick();
    expect(mgr.stats()).toEqual({ inFlight: 1, waiting: 0, highWater: 1 });
    expect(userSlots(mgr)).toBe(1);
    const carol = admitQueued(mgr, 'carol');
    holder.release();
    // The freed permit goes to carol, who waits, not to the place given back.
    (await carol).release();
    expect(mgr.stats()).toEqual({ inFlight: 0, waiting: 0, highWater: 1 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
  });

  it('a place in the queue is started once: a second start() rejects and takes nothing', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = await admitNow(mgr, 'h');
    const place = reserveQueued(mgr, 'u');
    const permit = place.start(watch(never()));
    await rejection(place.start(watch(never())));
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    holder.release();
    (await permit).release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });
});

describe('SessionManager: the queue', () => {
  it('beyond max_queue waiters, reserve throws queue_full synchronously with a Retry-After', async () => {
    const mgr = manager({ maxConcurrency: 1, maxQueue: 2, perUserMaxConcurrency: 5 });
    const holder = await admitNow(mgr, 'a');
    const w1 = new AbortController();
    const waiter1 = admitQueued(mgr, 'a', w1.signal);
    const waiter2 = admitQueued(mgr, 'b');
    expect(mgr.stats().waiting).toBe(2);

    const err = syncError(() => mgr.reserve('c'));
    expect(err.code).toBe('queue_full');
    expect(err.status).toBe(429);
    expect(err.retryAfterS).toBeGreaterThan(0);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 2 });

    // A waiter that leaves makes room again.
    w1.abort(new Error('client left'));
    await rejection(waiter1);
    expect(mgr.stats().waiting).toBe(1);
    const waiter3 = admitQueued(mgr, 'c');

    holder.release();
    (await waiter2).release();
    (await waiter3).release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
    (await admitNow(mgr, 'a')).release();
  });

  it('max_queue 0 refuses every caller that cannot be admitted at once', async () => {
    const mgr = manager({ maxConcurrency: 1, maxQueue: 0 });
    const holder = await admitNow(mgr, 'a');
    expect(syncError(() => mgr.reserve('b')).code).toBe('queue_full');
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    holder.release();
    (await admitNow(mgr, 'b')).release();
  });

  it('a waiter past queue_timeout_ms is refused with queue_timeout and a Retry-After, and takes no permit', async () => {
    const mgr = manager({ maxConcurrency: 1, queueTimeoutMs: 30 });
    const holder = await admitNow(mgr, 'a');
    const err = await rejection(admitQueued(mgr, 'b'));
    expect(err).toBeInstanceOf(RunwayError);
    expect((err as RunwayError).code).toBe('queue_timeout');
    expect((err as RunwayError).status).toBe(503);
    expect((err as RunwayError).retryAfterS).toBeGreaterThan(0);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });

    holder.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
    (await admitNow(mgr, 'c')).release();
  });

  it('a queue_timeout_ms beyond the timer range does not time waiters out at once', async () => {
    // 2^31 ms does not fit setTimeout: unclamped, it fires after 1 ms.
    const mgr = manager({ maxConcurrency: 1, queueTimeoutMs: 2 ** 31 + 1000 });
    const holder = await admitNow(mgr, 'a');
    let settled = false;
    const waiter = admitQueued(mgr, 'b').finally(() => (settled = true));
    // Nothing to await for "did not happen": give an overflowed timer ample time to fire.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toBe(false);
    expect(mgr.stats().waiting).toBe(1);
    holder.release();
    (await waiter).release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('a waiter whose signal aborts leaves the queue, the next waiter gets the permit, no permit leaks', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = await admitNow(mgr, 'h');
    const leaving = new AbortController();
    const w1 = admitQueued(mgr, 'u1', leaving.signal);
    let w2Granted = false;
    const w2 = admitQueued(mgr, 'u2').then((p) => {
      w2Granted = true;
      return p;
    });
    expect(mgr.stats().waiting).toBe(2);

    const reason = new Error('client went away');
    leaving.abort(reason);
    expect(await rejection(w1)).toBe(reason);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    expect(w2Granted).toBe(false);

    holder.release();
    const p2 = await w2;
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    p2.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });

    // Both permits are back: two immediate admissions with cap 1 would be wrong, one is right.
    reserveNow(mgr, 'u3');
    reserveQueued(mgr, 'u4');
  });

  it('a signal that is already aborted is refused without ever holding a permit', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = await admitNow(mgr, 'h');
    const gone = new AbortController();
    const reason = new Error('gone');
    gone.abort(reason);
    expect(await rejection(admitQueued(mgr, 'u', gone.signal))).toBe(reason);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    holder.release();
    await tick();
    expect(mgr.stats().inFlight).toBe(0);
    reserveNow(mgr, 'v');
  });

  it('many waiters aborting at random while others wait: everyone still admitted completes, nothing leaks', async () => {
    const cap = 3;
    const mgr = manager({ maxConcurrency: cap, perUserMaxConcurrency: 2 });
    let current = 0;
    let max = 0;
    let granted = 0;
    let aborted = 0;
    const jobs = Array.from({ length: 200 }, async (_, i) => {
      const ac = new AbortController();
      if (i % 3 === 0) setTimeout(() => ac.abort(new Error('left')), Math.floor(Math.random() * 5));
      let permit: Permit;
      try {
        permit = await admit(mgr, `u${i % 9}`, ac.signal);
      } catch {
        aborted++;
        return;
      }
      granted++;
      current++;
      max = Math.max(max, current);
      await randomHold();
      current--;
      permit.release();
    });
    await Promise.all(jobs);
    await tick();
    expect(granted + aborted).toBe(200);
    expect(max).toBeLessThanOrEqual(cap);
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(mgr.stats().highWater).toBeLessThanOrEqual(cap);
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
    // All `cap` permits are free again.
    for (let i = 0; i < cap; i++) reserveNow(mgr, `fresh${i}`);
    reserveQueued(mgr, 'one-too-many');
  });
});

describe('SessionManager: per-user cap', () => {
  it('caps one user while other users still get permits', async () => {
    const mgr = manager({ maxConcurrency: 10, perUserMaxConcurrency: 2 });
    const a1 = await admitNow(mgr, 'alice');
    const a2 = await admitNow(mgr, 'alice');
    let a3Granted = false;
    const a3 = admitQueued(mgr, 'alice').then((p) => {
      a3Granted = true;
      return p;
    });
    expect(mgr.stats()).toMatchObject({ inFlight: 2, waiting: 1 });

    const bobs = [await admitNow(mgr, 'bob'), await admitNow(mgr, 'bob')];
    expect(mgr.perUserInFlight()).toEqual(
      new Map([
        ['alice', 2],
        ['bob', 2],
      ]),
    );
    await tick();
    expect(a3Granted).toBe(false);

    a1.release();
    const a3Permit = await a3;
    expect(mgr.perUserInFlight().get('alice')).toBe(2);
    for (const p of [a2, a3Permit, ...bobs]) p.release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
  });

  it('a waiter that holds its user slot and leaves while waiting for a global permit gives the user slot back', async () => {
    const mgr = manager({ maxConcurrency: 1, perUserMaxConcurrency: 1, queueTimeoutMs: 5_000 });
    const holder = await admitNow(mgr, 'alice');
    const leaving = new AbortController();
    // Bob's user slot is free, so this waiter takes it and then waits for the global permit.
    const bob1 = admitQueued(mgr, 'bob', leaving.signal);
    await tick();
    leaving.abort(new Error('left'));
    await rejection(bob1);
    expect(mgr.stats().waiting).toBe(0);

    // Had bob's user slot leaked, this would wait on it forever (queue_timeout), not on the global.
    const bob2 = admitQueued(mgr, 'bob');
    holder.release();
    const p = await bob2;
    expect(mgr.perUserInFlight()).toEqual(new Map([['bob', 1]]));
    p.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
  });

  it('a per-user waiter times out with queue_timeout while other users proceed', async () => {
    const mgr = manager({ maxConcurrency: 5, perUserMaxConcurrency: 1, queueTimeoutMs: 30 });
    const a = await admitNow(mgr, 'alice');
    const err = await rejection(admitQueued(mgr, 'alice'));
    expect((err as RunwayError).code).toBe('queue_timeout');
    const b = await admitNow(mgr, 'bob');
    a.release();
    b.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    (await admitNow(mgr, 'alice')).release();
  });
});

describe('SessionManager: draining', () => {
  it('refuses new callers with shutting_down synchronously; callers already waiting still get their permit', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = await admitNow(mgr, 'a');
    const waiter = admitQueued(mgr, 'b');
    // Reserved before the drain, started after it (its run's record was being written meanwhile).
    const reserved = reserveQueued(mgr, 'c');
    mgr.beginDrain();
    expect(mgr.isDraining).toBe(true);
    const late = reserved.start(watch(never()));

    const err = syncError(() => mgr.reserve('d'));
    expect(err.code).toBe('shutting_down');
    expect(err.status).toBe(503);
    expect(err.retryAfterS).toBeGreaterThan(0);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 2 });

    holder.release();
    (await waiter).release();
    (await late).release();
    await waitFor(() => mgr.stats().inFlight === 0, 'in-flight back to 0');
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(syncError(() => mgr.reserve('e')).code).toBe('shutting_down');
  });
});
