import { Semaphore } from 'async-mutex';
import { RunwayError } from '../core/errors.js';
import type { Permit, QueuePlace } from '../queue/run-queue.js';

export interface AdmissionOptions {
  /** Permits: runs executing at once. 0 = unlimited. */
  maxConcurrency: number;
  /** Callers allowed to wait for a permit; one more gets `queue_full`. */
  maxQueue: number;
  /** How long a caller may wait; then `queue_timeout`. */
  queueTimeoutMs: number;
  /** Permits one user may hold at once. 0 = no cap. */
  perUserMaxConcurrency: number;
}

export type { Permit };

export interface AdmissionStats {
  inFlight: number;
  waiting: number;
  /** The most permits ever held at once since start. */
  highWater: number;
}

interface UserSlot {
  sem: Semaphore;
  /** Holders plus waiters: the slot is dropped when nobody refers to it. */
  refs: number;
  inFlight: number;
}

const QUEUE_FULL_RETRY_AFTER_S = 1;
export const QUEUE_TIMEOUT_RETRY_AFTER_S = 2;
export const SHUTDOWN_RETRY_AFTER_S = 5;
/** The refusal of a run while the server drains. */
export function shuttingDown(): RunwayError {
  return new RunwayError('shutting_down', 'The server is shutting down', { retryAfterS: SHUTDOWN_RETRY_AFTER_S });
}

/** setTimeout's largest delay; a longer one overflows and fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * A place a run holds while it waits to execute: a permit at once when one was free, else a place
 * in the bounded wait queue.
 */
export interface Reservation extends QueuePlace {
  /**
   * Resolves to the permit once the run may execute. Rejects with `queue_timeout`, or with the
   * signal's reason when it aborts first (a permit granted after that is handed on at once).
   */
  start(signal: () => AbortSignal): Promise<Permit>;
  /** Gives the place back unused (the run was never created). */
  cancel(): void;
}

/**
 * Process-wide admission control: a semaphore of `maxConcurrency` permits, a bounded wait queue with
 * a timeout, and a per-user cap so one user cannot take every slot.
 *
 * async-mutex's Semaphore has no queue bound, no waiter count and no AbortSignal, so this class
 * counts waiters itself (only callers that could not take a permit at once) and, when an abort or
 * timeout wins the race, hands the permit back the moment it is granted.
 *
 * @example
 *   const place = manager.reserve('alice')          // throws queue_full / shutting_down
 *   const permit = await place.start(() => run.signal)
 *   try { await work() } finally { permit.release() }
 */
export class SessionManager {
  private readonly global: Semaphore | undefined;
  private readonly users = new Map<string, UserSlot>();
  private inFlight = 0;
  private waiting = 0;
  private highWater = 0;
  private draining = false;

  constructor(private readonly options: AdmissionOptions) {
    this.global = options.maxConcurrency > 0 ? new Semaphore(options.maxConcurrency) : undefined;
  }

  /**
   * Takes a place for a run of `userId`: a permit when one is free, else a place in the queue.
   * Throws `queue_full` or `shutting_down`, so a caller can refuse a request before creating anything.
   */
  reserve(userId: string): Reservation {
    if (this.draining) {
      throw shuttingDown();
    }
    const cap = this.options.perUserMaxConcurrency;
    const slot = cap > 0 ? this.userSlot(userId, cap) : undefined;
    const userFree = !slot || slot.sem.getValue() > 0;
    const globalFree = !this.global || this.global.getValue() > 0;
    if (userFree && globalFree) {
      // A permit is free and nobody waits (a release hands permits to waiters at once, and a
      // queued place waits from its reservation on), so taking one is lowering the count: what
      // acquire() would do, without waiting for it.
      if (slot) takeFree(slot.sem);
      if (this.global) takeFree(this.global);
      const permit = this.grant(userId, slot);
      return { start: async () => permit, cancel: () => permit.release() };
    }
    if (this.waiting >= this.options.maxQueue) {
      if (slot) this.unref(userId, slot);
      throw new RunwayError('queue_full', `The run queue is full (${this.options.maxQueue} waiting)`, {
        retryAfterS: QUEUE_FULL_RETRY_AFTER_S,
      });
    }
    // The place waits from now on, so its order in the queue is its reservation's (the run is
    // still being created): a later caller cannot take a permit freed meanwhile ahead of it.
    const place = new AbortController();
    const waited = this.wait(userId, slot, place.signal);
    waited.catch(() => {});
    let started = false;
    return {
      start: (signal) => {
        if (started) return Promise.reject(new Error('This reservation was already used'));
        started = true;
        const run = signal();
        if (run.aborted) place.abort(run.reason);
        else {
          const onAbort = () => place.abort(run.reason);
          run.addEventListener('abort', onAbort, { once: true });
          void waited.then(() => run.removeEventListener('abort', onAbort), () => run.removeEventListener('abort', onAbort));
        }
        return waited;
      },
      cancel: () => {
        place.abort(new Error('The place was given back'));
        // Granted before the cancel landed: handed on at once.
        void waited.then((permit) => permit.release(), () => {});
      },
    };
  }

  stats(): AdmissionStats {
    return { inFlight: this.inFlight, waiting: this.waiting, highWater: this.highWater };
  }

  /** Permits each user holds now (users holding none are left out). */
  perUserInFlight(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [user, slot] of this.users) if (slot.inFlight > 0) out.set(user, slot.inFlight);
    return out;
  }

  /** From now on every `reserve` throws `shutting_down`. Callers already waiting keep waiting. */
  beginDrain(): void {
    this.draining = true;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  private async wait(userId: string, slot: UserSlot | undefined, signal: AbortSignal): Promise<Permit> {
    this.waiting++;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const giveUp = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RunwayError('queue_timeout', `No run slot became free within ${this.options.queueTimeoutMs} ms`, {
              retryAfterS: QUEUE_TIMEOUT_RETRY_AFTER_S,
            }),
          ),
        Math.min(this.options.queueTimeoutMs, MAX_TIMER_MS),
      );
      onAbort = () => reject(signal.reason);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    let heldUser = false;
    try {
      if (slot) {
        await raceAcquire(slot.sem, giveUp);
        heldUser = true;
      }
      if (this.global) await raceAcquire(this.global, giveUp);
      return this.grant(userId, slot);
    } catch (err) {
      if (heldUser) slot!.sem.release();
      if (slot) this.unref(userId, slot);
      throw err;
    } finally {
      this.waiting--;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort!);
    }
  }

  private grant(userId: string, slot: UserSlot | undefined): Permit {
    this.inFlight++;
    if (this.inFlight > this.highWater) this.highWater = this.inFlight;
    if (slot) slot.inFlight++;
    let released = false;
    return {
      userId,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
        this.global?.release();
        if (slot) {
          slot.inFlight--;
          slot.sem.release();
          this.unref(userId, slot);
        }
      },
    };
  }

  private userSlot(userId: string, cap: number): UserSlot {
    let slot = this.users.get(userId);
    if (!slot) this.users.set(userId, (slot = { sem: new Semaphore(cap), refs: 0, inFlight: 0 }));
    slot.refs++;
    return slot;
  }

  private unref(userId: string, slot: UserSlot): void {
    if (--slot.refs === 0 && this.users.get(userId) === slot) this.users.delete(userId);
  }
}

/** Takes one permit of a semaphore that has one free (checked by the caller). */
function takeFree(sem: Semaphore): void {
  sem.setValue(sem.getValue() - 1);
}

/**
 * Waits for a permit unless `giveUp` rejects first. A permit granted after we gave up is released
 * at once, so it passes to the next waiter instead of leaking.
 */
async function raceAcquire(sem: Semaphore, giveUp: Promise<never>): Promise<void> {
  const acquired = sem.acquire();
  try {
    await Promise.race([acquired, giveUp]);
  } catch (err) {
    void acquired.then(([, release]) => release());
    throw err;
  }
}
