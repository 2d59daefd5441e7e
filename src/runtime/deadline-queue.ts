// The module's binding, not the global: on Node 20 `globalThis.performance` is an accessor, looked up on every call.
import { performance } from 'node:perf_hooks';

/** A pending deadline; `DeadlineQueue.cancel` it when its work ends first. */
export interface Deadline {
  readonly due: number;
}

interface Entry extends Deadline {
  /** Cleared by cancel or when fired. */
  fire: (() => void) | undefined;
  readonly lane: Lane;
}

/** Deadlines of one duration, in the order they were set, which is also the order they fall due. */
class Lane {
  items: Entry[] = [];
  head = 0;
  /** Cancelled deadlines still in `items` (behind a pending one). */
  cancelled = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  /** Drops cancelled and fired deadlines from the front; compacts when dead ones are most of it. */
  trim(): void {
    const items = this.items;
    while (this.head < items.length && items[this.head]!.fire === undefined) {
      this.head++;
      this.cancelled--;
    }
    if (this.head === items.length) {
      this.items = [];
      this.head = 0;
      this.cancelled = 0;
    } else if (this.head > 1024 && this.head * 2 > items.length) {
      this.items = items.slice(this.head);
      this.head = 0;
    } else if (this.cancelled > 1024 && this.cancelled * 2 > this.size) {
      // A long run at the front holds every later one that already ended: keep only the pending.
      this.items = items.slice(this.head).filter((d) => d.fire !== undefined);
      this.head = 0;
      this.cancelled = 0;
    }
  }
}

/**
 * Run time limits on one timer instead of one `setTimeout` per run.
 *
 * Why (BENCHMARKS.md): a Node timer per run is an object, an async-resource init (a call into the
 * AsyncLocalStorage hook), a list insert and a list removal; with most runs ending long before
 * their limit, Node's timer code was 1–2% of a request's perf samples. Deadlines of the same duration fall due in the
 * order they are set, so each duration gets a FIFO lane: setting one is an array push, cancelling
 * one clears a field, and one timer is armed for the earliest pending deadline.
 *
 * @example
 *   const deadline = deadlines.add(30_000, () => session.abort('timeout'))
 *   ...
 *   deadlines.cancel(deadline)
 */
export class DeadlineQueue {
  private readonly lanes = new Map<number, Lane>();
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer falls due; Infinity when none is armed. */
  private armedFor = Infinity;
  /** Deadlines neither fired nor cancelled: the timer keeps the process alive only while there are some. */
  private live = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Calls `fire` once `ms` have passed, unless cancelled first. `ms` must be a setTimeout delay (≤ 2^31 − 1). */
  add(ms: number, fire: () => void): Deadline {
    let lane = this.lanes.get(ms);
    if (lane === undefined) this.lanes.set(ms, (lane = new Lane()));
    const deadline: Entry = { due: this.now() + ms, fire, lane };
    lane.items.push(deadline);
    if (this.live++ === 0) this.timer?.ref();
    if (deadline.due < this.armedFor) this.arm(deadline.due);
    return deadline;
  }

  cancel(deadline: Deadline | undefined): void {
    const entry = deadline as Entry | undefined;
    if (entry === undefined || entry.fire === undefined) return;
    entry.fire = undefined;
    this.ended();
    entry.lane.cancelled++;
    entry.lane.trim();
  }

  /** Deadlines pending (for tests and diagnostics). */
  get pending(): number {
    return this.live;
  }

  /** Entries held, pending or not yet trimmed (tests use it to show memory stays bounded). */
  get held(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.size;
    return n;
  }

  /** Stops the timer; pending deadlines never fire. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    this.lanes.clear();
    this.live = 0;
  }

  /** A deadline fired or was cancelled. */
  private ended(): void {
    if (--this.live === 0) this.timer?.unref();
  }

  private arm(due: number): void {
    clearTimeout(this.timer);
    this.armedFor = due;
    this.timer = setTimeout(() => this.expire(), Math.max(0, Math.ceil(due - this.now())));
    // Often armed for a deadline already cancelled (it is not disarmed per run): it keeps the
    // process alive only while some deadline is pending, as one timer per run did.
    if (this.live === 0) this.timer.unref();
  }

  private expire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.now();
    let next = Infinity;
    for (const [ms, lane] of this.lanes) {
      // `lane.items` is read afresh each time: a fired callback may cancel others, which compacts.
      while (lane.head < lane.items.length) {
        const deadline = lane.items[lane.head]!;
        if (deadline.fire !== undefined && deadline.due > now) break;
        lane.head++;
        const fire = deadline.fire;
        if (fire === undefined) {
          lane.cancelled--;
          continue;
        }
        deadline.fire = undefined;
        this.ended();
        try {
          fire();
        } catch (err) {
          // Thrown where a timer callback's error would go, after the other deadlines are served.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
      lane.trim();
      if (lane.size === 0) this.lanes.delete(ms);
      else next = Math.min(next, lane.items[lane.head]!.due);
    }
    if (next !== Infinity && next < this.armedFor) this.arm(next);
  }
}
