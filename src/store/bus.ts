import type { CancelReason } from '../core/run.js';

/** What may be said to the process executing a run, from any process. */
export interface BusMessage {
  type: 'cancel';
  runId: string;
  /** Why (the run's `run.cancelled` carries it); `user` when absent. */
  reason?: CancelReason;
}

/**
 * Messages to the executor of a run, wherever it executes: with Redis, any replica can cancel any
 * run. Delivery is at most once per subscriber; a late subscriber does not see earlier messages.
 *
 * @example
 *   const off = bus.subscribe((m) => m.type === 'cancel' && abort(m.runId))
 *   await bus.publish({ type: 'cancel', runId })
 */
export interface Bus {
  publish(message: BusMessage): Promise<void>;
  /** Returns the function that unsubscribes. */
  subscribe(handler: (message: BusMessage) => void): () => void;
  /**
   * A shared bus also remembers each cancel (for the run's retention time): the reason of the
   * first cancel published for the run, if any. A worker asks when it picks a run up, after it
   * has started listening, so a cancel published before either is not lost.
   */
  cancelRequested?(runId: string): Promise<CancelReason | undefined>;
}
