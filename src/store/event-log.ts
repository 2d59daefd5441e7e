import type { StoredEvent } from '../core/events.js';

export interface ReadOptions {
  /** Stops following (and ends the iteration) when aborted. */
  signal?: AbortSignal;
  /** Replay only: do not wait for events that have not been written yet. */
  follow?: boolean;
}

/**
 * An ordered, replayable, per-run event log. Its one writer (the run's RunRecorder) assigns the
 * ids; the log only checks that they continue it.
 *
 * @example
 *   await log.append(runId, [{ id: 1, type: 'run.queued', json }])
 *   for await (const ev of log.read(runId, 0, { signal })) write(ev)   // replays, then follows to the end
 */
export interface EventLog {
  /**
   * Appends events in order. The first id must be the log's last id + 1 and the rest follow without
   * gaps (`EventIdConflictError` otherwise); nothing is accepted after a terminal event
   * (`RunEndedError`). A rejected call appends nothing.
   */
  append(runId: string, events: readonly StoredEvent[]): Promise<void>;
  /**
   * Yields every event with id > afterId, then (unless `follow: false`) waits for new ones until the
   * terminal event has been yielded or the signal aborts. Ends at once for an unknown run.
   */
  read(runId: string, afterId: number, options?: ReadOptions): AsyncIterable<StoredEvent>;
}
