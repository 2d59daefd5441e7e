import { RunwayError } from '../core/errors.js';
import type { OnAbort, Permit, QueuePlace } from '../queue/run-queue.js';
import { DeadlineQueue, type Deadline } from './deadline-queue.js';

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
   * abort's reason when the run aborts first.
   */
  start(onAbort: OnAbort): Promise<Permit>;
  /** Gives the place back unused (the run was never created). */
  cancel(): void;
}

/** A place in the wait queue. */
interface Waiter {
  readonly userId: string;
  readonly slot: UserSlot | undefined;
  readonly granted: Promise<Permit>;
  resolve: (permit: Permit) => void;
  reject: (err: unknown) => void;
  deadline: Deadline | undefined;
  /** Granted, timed out, aborted or given back: out of the queue (it may still sit in the array). */
  settled: boolean;
}

const NO_OP = (): void => {};

/**
 * Process-wide admission control: `maxConcurrency` permits, a bounded FIFO wait queue with a
 * timeout, and a per-user cap so one user cannot take every slot.
 *
 * Written out rather than on a semaphore library: the queue needs a bound, a waiter count, a
 * timeout and a way to leave it, which a semaphore has none of; wrapping one in promise races,
 * AbortControllers and a timer per waiter was a quarter of a run's CPU under load (BENCHMARKS.md).
 * Here a waiter is one promise in an array, its timeout a DeadlineQueue entry, leaving it a flag.
 * A permit freed goes at once to the first waiter whose user is under its cap.
 *
 * @example
 *   const place = manager.reserve('alice')          // throws queue_full / shutting_down
 *   const permit = await place.start((fn) => run.onAbort(fn))
 *   try { await work() } finally { permit.release() }
 */
export class SessionManager {
  /** Permits not held; Infinity when there is no cap. */
  private free: number;
  private readonly users = new Map<string, UserSlot>();
  private queue: Waiter[] = [];
  private head = 0;
  private inFlight = 0;
  private waiting = 0;
  private highWater = 0;
  private draining = false;
  /** Queue timeouts, on one timer. */
  private readonly deadlines = new DeadlineQueue();

  constructor(private readonly options: AdmissionOptions) {
    this.free = options.maxConcurrency > 0 ? options.maxConcurrency : Infinity;
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
    const slot = cap > 0 ? this.userSlot(userId) : undefined;
    // A free permit with waiters still queued means every one of them is at its user's cap (a
    // release hands permits to eligible waiters at once): this caller may take it.
    if (this.free > 0 && this.underCap(slot)) {
      const permit = this.grant(userId, slot);
      const granted = Promise.resolve(permit);
      return { start: () => granted, cancel: () => permit.release() };
    }
    if (this.waiting >= this.options.maxQueue) {
      if (slot) this.unref(userId, slot);
      throw new RunwayError('queue_full', `The run queue is full (${this.options.maxQueue} waiting)`, {
        retryAfterS: QUEUE_FULL_RETRY_AFTER_S,
      });
    }
    // The place waits from now on, so its order in the queue is its reservation's (the run is
    // still being created): a later caller cannot take a permit freed meanwhile ahead of it.
    const waiter = this.enqueue(userId, slot);
    let started = false;
    return {
      start: (onAbort) => {
        if (started) return Promise.reject(new Error('This reservation was already used'));
        started = true;
        if (!waiter.settled) {
          const stop = onAbort((reason) => this.leave(waiter, reason));
          waiter.granted.then(stop, stop);
        }
        return waiter.granted;
      },
      cancel: () => {
        this.leave(waiter, new Error('The place was given back'));
        // Granted before the cancel landed: handed on at once.
        waiter.granted.then((permit) => permit.release(), NO_OP);
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

  private underCap(slot: UserSlot | undefined): boolean {
    return slot === undefined || slot.inFlight < this.options.perUserMaxConcurrency;
  }

  private enqueue(userId: string, slot: UserSlot | undefined): Waiter {
    let resolve!: (permit: Permit) => void;
    let reject!: (err: unknown) => void;
    const granted = new Promise<Permit>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody may be awaiting it yet (start() comes once the run's record is written).
    granted.catch(NO_OP);
    const waiter: Waiter = { userId, slot, granted, resolve, reject, deadline: undefined, settled: false };
    waiter.deadline = this.deadlines.add(Math.min(this.options.queueTimeoutMs, MAX_TIMER_MS), () => {
      waiter.deadline = undefined;
      this.leave(
        waiter,
        new RunwayError('queue_timeout', `No run slot became free within ${this.options.queueTimeoutMs} ms`, {
          retryAfterS: QUEUE_TIMEOUT_RETRY_AFTER_S,
        }),
      );
    });
    this.queue.push(waiter);
    this.waiting++;
    return waiter;
  }

  /** Takes a waiter out of the queue without a permit (timeout, abort, given back). */
  private leave(waiter: Waiter, reason: unknown): void {
    if (waiter.settled) return;
    this.settle(waiter);
    if (waiter.slot) this.unref(waiter.userId, waiter.slot);
    waiter.reject(reason);
    this.trim();
  }

  private settle(waiter: Waiter): void {
    waiter.settled = true;
    this.waiting--;
    this.deadlines.cancel(waiter.deadline);
    waiter.deadline = undefined;
  }

  /** Hands free permits to the first waiters whose users are under their caps, in arrival order. */
  private dispatch(): void {
    for (let i = this.head; this.free > 0 && i < this.queue.length; i++) {
      const waiter = this.queue[i]!;
      if (waiter.settled || !this.underCap(waiter.slot)) continue;
      this.settle(waiter);
      waiter.resolve(this.grant(waiter.userId, waiter.slot));
    }
    this.trim();
  }

  /** Drops settled waiters from the front, and the array's dead prefix once it is most of it. */
  private trim(): void {
    const queue = this.queue;
    while (this.head < queue.length && queue[this.head]!.settled) queue[this.head++] = undefined as never;
    if (this.head === queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head);
      this.head = 0;
    }
  }

  private grant(userId: string, slot: UserSlot | undefined): Permit {
    this.free--;
    this.inFlight++;
    if (this.inFlight > this.highWater) this.highWater = this.inFlight;
    if (slot) slot.inFlight++;
    let released = false;
    return {
      userId,
      release: () => {
        if (released) return;
        released = true;
        this.free++;
        this.inFlight--;
        if (slot) {
          slot.inFlight--;
          this.unref(userId, slot);
        }
        this.dispatch();
      },
    };
  }

  private userSlot(userId: string): UserSlot {
    let slot = this.users.get(userId);
    if (!slot) this.users.set(userId, (slot = { refs: 0, inFlight: 0 }));
    slot.refs++;
    return slot;
  }

  private unref(userId: string, slot: UserSlot): void {
    if (--slot.refs === 0 && this.users.get(userId) === slot) this.users.delete(userId);
  }
}
