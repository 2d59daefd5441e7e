import type { CancelReason, RunError } from '../core/run.js';

/** A held slot. `release()` may be called any number of times; only the first has an effect. */
export interface Permit {
  readonly userId: string;
  release(): void;
}

/**
 * How a waiting place hears that its run was cancelled: calls `fn` once, with the abort's reason,
 * when the run aborts (at once if it has), and returns the function that stops listening. A
 * callback rather than an AbortSignal: most runs never abort, and a signal per run is not free.
 */
export type OnAbort = (fn: (reason: unknown) => void) => () => void;

/** A run's place in the queue, taken before the run is created. */
export interface QueuePlace {
  /**
   * Resolves once an executor may start the run, to the permit it holds while it executes. Rejects
   * with `queue_timeout`, or with the abort's reason when the run is cancelled while it waits.
   * Called once.
   */
  start(onAbort: OnAbort): Promise<Permit>;
  /** Gives the place back unused (the run's record could not be written). */
  cancel(): void;
  /**
   * Set on a shared queue's place (BullMQ on Redis): the run executes on one of the queue's
   * workers, not here, and `start` is never called. Hands the created run (its record and its
   * `run.queued` event written) to the queue.
   */
  handOver?(job: RunJob): Promise<void>;
  /** With `handOver`: how long the run may wait for a worker before it ends `queue_timeout`. */
  readonly queueTimeoutMs?: number;
}

/** What a worker needs to execute a run (a BullMQ job's data): the rest is in the run's record. */
export interface RunJob {
  runId: string;
  workflow: string;
  input: unknown;
  userId: string;
  /** The run's time limit, as the admitting process computed it. */
  timeoutMs: number;
  requestId: string;
  conversationId: string | null;
}

/** How a run that has not started ends without executing: cancelled, or failed (queue_timeout). */
export type QueuedEnd = { status: 'cancelled'; reason: CancelReason } | { status: 'failed'; error: RunError };

/**
 * Where a run waits for an executor (DESIGN §1): in this process (the SessionManager's permits), or
 * with Redis a BullMQ queue whose workers execute runs. The bound, the timeout and the per-user cap
 * are the queue's business, so they hold wherever the runs execute.
 *
 * @example
 *   const place = await queue.reserve('alice')    // queue_full / shutting_down: nothing created yet
 *   await runs.create(run)
 *   const permit = await place.start((fn) => run.onAbort(fn))
 */
export interface RunQueue {
  /** Takes a place for a run of `userId`; rejects with `queue_full` or `shutting_down`. */
  reserve(userId: string): Promise<QueuePlace>;
  /** From now on `reserve` rejects with `shutting_down`; places already taken keep theirs. */
  drain(): void;
  /**
   * A shared queue's way out for a run that may be queued anywhere: a cancel is told to the run's
   * executor (wherever it is, even one that has not picked it up yet), the job leaves the queue
   * if it is still waiting, and a run not started yet ends with `end` and its terminal event.
   * Absent on the in-process queue, whose waiting runs leave through their abort.
   */
  withdraw?(runId: string, end: QueuedEnd): Promise<void>;
}
