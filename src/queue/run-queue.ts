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
}

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
}
