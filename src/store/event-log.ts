/** Event types of DESIGN §2, in the order a run can emit them. */
export type RunEventType =
  | 'run.queued'
  | 'run.started'
  | 'token'
  | 'step'
  | 'run.succeeded'
  | 'run.failed'
  | 'run.cancelled';

export const TERMINAL_EVENT_TYPES: ReadonlySet<string> = new Set(['run.succeeded', 'run.failed', 'run.cancelled']);

/**
 * One event as stored: its id, its type, and its JSON text, serialized once at append time
 * (DESIGN §8: keeping finished events as live object graphs is the largest GC cost).
 */
export interface StoredEvent {
  id: number;
  type: RunEventType;
  /** `{"id":7,"run_id":"…","type":"token","time":"…","data":{…}}` */
  json: string;
}

export interface ReadOptions {
  /** Stops following (and ends the iteration) when aborted. */
  signal?: AbortSignal;
  /** Replay only: do not wait for events that have not been written yet. */
  follow?: boolean;
}

/**
 * An ordered, replayable, per-run event log.
 *
 * @example
 *   for await (const ev of log.read(runId, 0, { signal })) write(ev)   // replays, then follows to the end
 */
export interface EventLog {
  /**
   * Appends one event; resolves to its id (1, 2, 3… per run, no gaps), assigned in call order.
   * `dataJson`, when given, is `data` already serialized (a hot-path shortcut) and is used verbatim.
   */
  append(runId: string, type: RunEventType, data: unknown, dataJson?: string): Promise<number>;
  /**
   * Optional synchronous `append` for stores that can (the memory store): same contract, returns
   * the id or throws. Saves a promise per event on the hot path.
   */
  appendNow?(runId: string, type: RunEventType, data: unknown, dataJson?: string): number;
  /**
   * Optional synchronous append of a `token` event with data `{"delta": delta, "step_id": stepId}`,
   * for stores that keep the delta as it is and write the JSON only when the event is read (the
   * commonest event by far, and most are never read). Same contract as `appendNow`.
   */
  appendTokenNow?(runId: string, delta: string, stepId: string): number;
  /**
   * Yields every event with id > afterId, then (unless `follow: false`) waits for new ones until the
   * terminal event has been yielded or the signal aborts. Ends at once for an unknown run.
   */
  read(runId: string, afterId: number, options?: ReadOptions): AsyncIterable<StoredEvent>;
}

export class EventLogFullError extends Error {
  constructor(readonly runId: string, readonly limit: number) {
    super(`Run ${runId} reached the event log limit (${limit} events)`);
    this.name = 'EventLogFullError';
  }
}
