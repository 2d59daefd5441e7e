import type { RunEvent, StoredEvent } from '../core/events.js';
import { copyRun, type CancelReason, type Run } from '../core/run.js';
import type { EventLog } from '../store/event-log.js';
import type { LiveRun } from './runner.js';
import type { AbortCause } from './run-scope.js';

/**
 * A run started by `session.run()`: the seed's runner (`runner.result()`,
 * `runner.result_stream()`). Its events can be read by any number of readers, at any time.
 *
 * @example
 *   const run = await session.run('hello')
 *   for await (const event of run.stream()) console.log(event.type, event.data)
 *   const final = await run.result()
 */
export class RunHandle {
  /** The run as it was when created: `queued`, or further along already on a fast workflow. */
  readonly created: Run;

  constructor(
    private readonly live: LiveRun,
    private readonly log: EventLog,
  ) {
    this.created = live.recorder.snapshot();
  }

  get id(): string {
    return this.live.id;
  }

  /** The run as it stands now (`last_event_id` counting every event recorded so far). */
  snapshot(): Run {
    return this.live.recorder.snapshot();
  }

  /** The finished Run (a copy of its own for each caller), once its terminal event is written. */
  async result(): Promise<Run> {
    return copyRun(await this.live.done);
  }

  /** Why the run's signal fired, when it did (a shutdown, a client that left, its time limit…). */
  get abortCause(): AbortCause | undefined {
    return this.live.scope.abortCause;
  }

  /** Cancels the run (queued or running) and resolves to it once its terminal event is written. */
  cancel(reason: CancelReason = 'user'): Promise<Run> {
    this.live.scope.abort(reason);
    return this.result();
  }

  /** The events after `afterId` as stored (their JSON text), replayed then followed to the end. */
  events(afterId = 0, signal?: AbortSignal): AsyncIterable<StoredEvent> {
    return this.log.read(this.live.id, afterId, signal === undefined ? {} : { signal });
  }

  /** The events recorded so far, as stored: a replay that does not wait for more. */
  replay(afterId = 0): AsyncIterable<StoredEvent> {
    return this.log.read(this.live.id, afterId, { follow: false });
  }

  /** The events after `afterId`, parsed, replayed then followed to the terminal event. */
  async *stream(options: { after?: number; signal?: AbortSignal } = {}): AsyncGenerator<RunEvent> {
    for await (const ev of this.events(options.after ?? 0, options.signal)) yield { id: ev.id, run_id: this.id, type: ev.type, time: ev.time, data: JSON.parse(ev.data) as unknown };
  }
}
