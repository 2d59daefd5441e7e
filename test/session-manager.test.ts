import { describe, expect, it } from 'vitest';
import { RunwayError } from '../src/core/errors.js';
import { SessionManager, type AdmissionOptions, type Permit } from '../src/runtime/session-manager.js';
import { tick, waitFor } from './support/runtime-test-kit.js';

function manager(options: Partial<AdmissionOptions> = {}): SessionManager {
  return new SessionManager({ maxConcurrency: 2, maxQueue: 1000, queueTimeoutMs: 10_000, perUserMaxConcurrency: 0, ...options });
}

const never = (): AbortSignal => new AbortController().signal;

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
      const permit = await mgr.admit(`user-${i % 20}`, never);
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
    // admit() counts synchronously: the first `cap` took permits, everyone else is waiting.
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
      const permit = await mgr.admit(user, never);
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

  it('max_concurrency 0 means unlimited: every admission is immediate, no signal is ever asked for', () => {
    const mgr = manager({ maxConcurrency: 0, maxQueue: 0 });
    let signalsAsked = 0;
    const permits: Permit[] = [];
    for (let i = 0; i < 500; i++) {
      const p = mgr.admit(`u${i % 5}`, () => {
        signalsAsked++;
        return never();
      });
      expect(p).not.toBeInstanceOf(Promise);
      permits.push(p as Permit);
    }
    expect(signalsAsked).toBe(0);
    expect(mgr.stats()).toEqual({ inFlight: 500, waiting: 0, highWater: 500 });
    for (const p of permits) p.release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('grants waiters in arrival order (FIFO) and every one of them completes', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = mgr.admit('holder', never) as Permit;
    const order: number[] = [];
    const jobs = Array.from({ length: 50 }, async (_, i) => {
      const permit = await mgr.admit(`u${i}`, never);
      order.push(i);
      await tick();
      permit.release();
    });
    holder.release();
    await Promise.all(jobs);
    expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });

  it('a permit released twice is released once', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const a = mgr.admit('a', never) as Permit;
    a.release();
    a.release();
    expect(mgr.stats().inFlight).toBe(0);

    const b = mgr.admit('b', never);
    expect(b).not.toBeInstanceOf(Promise);
    // Had the second release counted, the semaphore would now have a spare permit for c.
    const c = mgr.admit('c', never);
    expect(c).toBeInstanceOf(Promise);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1 });
    a.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1, highWater: 1 });

    (b as Permit).release();
    const cPermit = await c;
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    cPermit.release();
    cPermit.release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
  });
});

describe('SessionManager: the queue', () => {
  it('beyond max_queue waiters, admit throws queue_full synchronously with a Retry-After', async () => {
    const mgr = manager({ maxConcurrency: 1, maxQueue: 2, perUserMaxConcurrency: 5 });
    const holder = mgr.admit('a', never) as Permit;
    const w1 = new AbortController();
    const waiter1 = mgr.admit('a', () => w1.signal) as Promise<Permit>;
    const waiter2 = mgr.admit('b', never) as Promise<Permit>;
    expect(waiter1).toBeInstanceOf(Promise);
    expect(mgr.stats().waiting).toBe(2);

    const err = syncError(() => mgr.admit('c', never));
    expect(err.code).toBe('queue_full');
    expect(err.status).toBe(429);
    expect(err.retryAfterS).toBeGreaterThan(0);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 2 });

    // A waiter that leaves makes room again.
    w1.abort(new Error('client left'));
    await rejection(waiter1);
    expect(mgr.stats().waiting).toBe(1);
    const waiter3 = mgr.admit('c', never) as Promise<Permit>;
    expect(waiter3).toBeInstanceOf(Promise);

    holder.release();
    (await waiter2).release();
    (await waiter3).release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
    const fresh = mgr.admit('a', never);
    expect(fresh).not.toBeInstanceOf(Promise);
    (fresh as Permit).release();
  });

  it('max_queue 0 refuses every caller that cannot be admitted at once', () => {
    const mgr = manager({ maxConcurrency: 1, maxQueue: 0 });
    const holder = mgr.admit('a', never) as Permit;
    expect(syncError(() => mgr.admit('b', never)).code).toBe('queue_full');
    holder.release();
    const next = mgr.admit('b', never);
    expect(next).not.toBeInstanceOf(Promise);
    (next as Permit).release();
  });

  it('a waiter past queue_timeout_ms is refused with queue_timeout and a Retry-After, and takes no permit', async () => {
    const mgr = manager({ maxConcurrency: 1, queueTimeoutMs: 30 });
    const holder = mgr.admit('a', never) as Permit;
    const err = await rejection(mgr.admit('b', never) as Promise<Permit>);
    expect(err).toBeInstanceOf(RunwayError);
    expect((err as RunwayError).code).toBe('queue_timeout');
    expect((err as RunwayError).status).toBe(503);
    expect((err as RunwayError).retryAfterS).toBeGreaterThan(0);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });

    holder.release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0, highWater: 1 });
    const fresh = mgr.admit('c', never);
    expect(fresh).not.toBeInstanceOf(Promise);
    (fresh as Permit).release();
  });

  it('a queue_timeout_ms beyond the timer range does not time waiters out at once', async () => {
    // 2^31 ms does not fit setTimeout: unclamped, it fires after 1 ms.
    const mgr = manager({ maxConcurrency: 1, queueTimeoutMs: 2 ** 31 + 1000 });
    const holder = mgr.admit('a', never) as Permit;
    let settled = false;
    const waiter = (mgr.admit('b', never) as Promise<Permit>).finally(() => (settled = true));
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
    const holder = mgr.admit('h', never) as Permit;
    const leaving = new AbortController();
    const w1 = mgr.admit('u1', () => leaving.signal) as Promise<Permit>;
    let w2Granted = false;
    const w2 = (mgr.admit('u2', never) as Promise<Permit>).then((p) => {
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
    const fresh = mgr.admit('u3', never);
    expect(fresh).not.toBeInstanceOf(Promise);
    expect(mgr.admit('u4', never)).toBeInstanceOf(Promise);
  });

  it('a signal that is already aborted is refused without ever holding a permit', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = mgr.admit('h', never) as Permit;
    const gone = new AbortController();
    gone.abort(new Error('gone'));
    await rejection(mgr.admit('u', () => gone.signal) as Promise<Permit>);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 0 });
    holder.release();
    await tick();
    expect(mgr.stats().inFlight).toBe(0);
    expect(mgr.admit('v', never)).not.toBeInstanceOf(Promise);
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
        permit = await mgr.admit(`u${i % 9}`, () => ac.signal);
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
    const fresh = Array.from({ length: cap }, (_, i) => mgr.admit(`fresh${i}`, never));
    for (const p of fresh) expect(p).not.toBeInstanceOf(Promise);
    expect(mgr.admit('one-too-many', never)).toBeInstanceOf(Promise);
  });
});

describe('SessionManager: per-user cap', () => {
  it('caps one user while other users still get permits', async () => {
    const mgr = manager({ maxConcurrency: 10, perUserMaxConcurrency: 2 });
    const a1 = mgr.admit('alice', never);
    const a2 = mgr.admit('alice', never);
    expect(a1).not.toBeInstanceOf(Promise);
    expect(a2).not.toBeInstanceOf(Promise);
    let a3Granted = false;
    const a3 = (mgr.admit('alice', never) as Promise<Permit>).then((p) => {
      a3Granted = true;
      return p;
    });
    expect(mgr.stats()).toMatchObject({ inFlight: 2, waiting: 1 });

    const bobs = [mgr.admit('bob', never), mgr.admit('bob', never)];
    for (const b of bobs) expect(b).not.toBeInstanceOf(Promise);
    expect(mgr.perUserInFlight()).toEqual(
      new Map([
        ['alice', 2],
        ['bob', 2],
      ]),
    );
    await tick();
    expect(a3Granted).toBe(false);

    (a1 as Permit).release();
    const a3Permit = await a3;
    expect(mgr.perUserInFlight().get('alice')).toBe(2);
    for (const p of [a2 as Permit, a3Permit, ...(bobs as Permit[])]) p.release();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(mgr.perUserInFlight().size).toBe(0);
    expect(userSlots(mgr)).toBe(0);
  });

  it('a waiter that holds its user slot and leaves while waiting for a global permit gives the user slot back', async () => {
    const mgr = manager({ maxConcurrency: 1, perUserMaxConcurrency: 1, queueTimeoutMs: 5_000 });
    const holder = mgr.admit('alice', never) as Permit;
    const leaving = new AbortController();
    // Bob's user slot is free, so this waiter takes it and then waits for the global permit.
    const bob1 = mgr.admit('bob', () => leaving.signal) as Promise<Permit>;
    expect(bob1).toBeInstanceOf(Promise);
    await tick();
    leaving.abort(new Error('left'));
    await rejection(bob1);
    expect(mgr.stats().waiting).toBe(0);

    // Had bob's user slot leaked, this would wait on it forever (queue_timeout), not on the global.
    const bob2 = mgr.admit('bob', never) as Promise<Permit>;
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
    const a = mgr.admit('alice', never) as Permit;
    const err = await rejection(mgr.admit('alice', never) as Promise<Permit>);
    expect((err as RunwayError).code).toBe('queue_timeout');
    const b = mgr.admit('bob', never);
    expect(b).not.toBeInstanceOf(Promise);
    a.release();
    (b as Permit).release();
    await tick();
    expect(mgr.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    const again = mgr.admit('alice', never);
    expect(again).not.toBeInstanceOf(Promise);
    (again as Permit).release();
  });
});

describe('SessionManager: draining', () => {
  it('refuses new callers with shutting_down synchronously; callers already waiting still get their permit', async () => {
    const mgr = manager({ maxConcurrency: 1 });
    const holder = mgr.admit('a', never) as Permit;
    const waiter = mgr.admit('b', never) as Promise<Permit>;
    mgr.beginDrain();
    expect(mgr.isDraining).toBe(true);

    const err = syncError(() => mgr.admit('c', never));
    expect(err.code).toBe('shutting_down');
    expect(err.status).toBe(503);
    expect(err.retryAfterS).toBeGreaterThan(0);
    expect(mgr.stats()).toMatchObject({ inFlight: 1, waiting: 1 });

    holder.release();
    const p = await waiter;
    p.release();
    await waitFor(() => mgr.stats().inFlight === 0, 'in-flight back to 0');
    expect(syncError(() => mgr.admit('d', never)).code).toBe('shutting_down');
  });
});
