/** What may be said to the process executing a run, from any process. */
export interface BusMessage {
  type: 'cancel';
  runId: string;
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
}
