import type { StoredEvent } from '../core/events.js';
import type { AppendOptions, EventLog, ReadOptions } from './event-log.js';

/**
 * An event log whose every append carries one attempt's fencing token (`AppendOptions.attempt`):
 * what a worker hands the recorder of a run it executes, so a worker that lost the run (presumed
 * dead, its job taken over) is refused (`StaleWriterError`) rather than writing over its successor.
 *
 * @example
 *   const events = new FencedEventLog(stores.events, job.attemptsStarted)
 */
export class FencedEventLog implements EventLog {
  constructor(
    private readonly inner: EventLog,
    readonly attempt: number,
  ) {}

  append(runId: string, events: readonly StoredEvent[], options: AppendOptions = {}): Promise<void> {
    return this.inner.append(runId, events, { ...options, attempt: this.attempt });
  }

  read(runId: string, afterId: number, options?: ReadOptions): AsyncIterable<StoredEvent> {
    return this.inner.read(runId, afterId, options);
  }
}
