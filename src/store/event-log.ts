import type { StoredEvent } from '../core/events.js';

export interface ReadOptions {
  /** Stops following (and ends the iteration) when aborted. */
  signal?: AbortSignal;
  /** Replay only: do not wait for events that have not been written yet. */
  follow?: boolean;
}

export interface AppendOptions {
  /**
   * The writer's attempt at executing the run: a fencing token that grows with every attempt (a
   * worker that takes a run over from a lost one holds a higher one). A store shared by processes
   * refuses an append whose attempt is lower than one it has accepted for the run already
   * (`StaleWriterError`), so a writer that lost the run cannot write over its successor. Unset:
   * not fenced. The memory store, where a run is only ever executed by the process holding it,
   * ignores it.
   */
  attempt?: number;
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
  append(runId: string, events: readonly StoredEvent[], options?: AppendOptions): Promise<void>;
  /**
   * Yields every event with id > afterId, then (unless `follow: false`) waits for new ones until the
   * terminal event has been yielded or the signal aborts. Ends at once for an unknown run.
   */
  read(runId: string, afterId: number, options?: ReadOptions): AsyncIterable<StoredEvent>;
}
