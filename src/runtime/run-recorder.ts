import { terminalEventType, type RunEventType, type StoredEvent } from '../core/events.js';
import { canTransition, type Run, type RunError, type RunStatus, type TerminalStatus } from '../core/run.js';
import type { Logger } from '../core/logger.js';
import type { EventLog } from '../store/event-log.js';
import type { RunStore } from '../store/run-store.js';
import type { IsoClock } from './iso-clock.js';
import type { RunObservers } from './run-observers.js';

/** A run reached `max_events_per_run`: it fails, with its terminal event still written. */
export class EventLogFullError extends Error {
  override readonly name = 'EventLogFullError';
  constructor(
    readonly runId: string,
    readonly limit: number,
  ) {
    super(`Run ${runId} reached the event log limit (${limit} events)`);
  }
}

/** How a run ends: its terminal status, what goes on the Run, and its terminal event's data. */
export type Outcome =
  | { status: 'succeeded'; output: unknown }
  | { status: 'failed'; error: RunError }
  | { status: 'cancelled'; reason: string };

export interface RecorderOptions {
  runs: RunStore;
  events: EventLog;
  observers: RunObservers;
  log: Logger;
  /** Events one run may record, its terminal event included. */
  maxEvents: number;
  /** Called once, when the first write fails or the log is full: the run must stop. */
  onFailure: (err: unknown) => void;
  /** Stamps events and the run's times. */
  clock: IsoClock;
}

const TERMINAL_WRITE_TRIES = 3;

/**
 * The one writer of a run while it executes (DESIGN §3). It holds the only mutable copy of the Run,
 * gives events their ids itself (1, 2, 3… with no gaps), and writes them without making the run
 * wait: events recorded while a write is in flight go together in the next one. Only status
 * transitions and the terminal event are awaited, each a compare-and-set on the status it holds.
 * A write that fails stops the run, and it ends `failed` with exactly one terminal event.
 *
 * @example
 *   const recorder = new RunRecorder(run, options)
 *   recorder.emit('run.queued', { workflow: run.workflow })
 *   if (await recorder.transition('running', { started_at })) { … }
 *   await recorder.finish({ status: 'succeeded', output }, usage)
 */
export class RunRecorder {
  private readonly run: Run;
  /** The last id given out. */
  private lastId = 0;
  /** The last id the log has acknowledged. */
  private ackedId = 0;
  private pending: StoredEvent[] = [];
  private writing: Promise<void> | undefined;
  /** The first write that failed (or the full log): nothing more is written but the terminal event. */
  private failure: unknown;
  /** Set once the run's end is being written: later events (a tool that ignored its abort) are dropped. */
  private closed = false;

  constructor(
    run: Run,
    private readonly options: RecorderOptions,
  ) {
    // Handed over, not shared: whoever made the run keeps no reference to it.
    this.run = run;
    // A run picked up by a worker continues the log its admitting process began (`run.queued`).
    this.lastId = this.ackedId = run.last_event_id;
  }

  get status(): RunStatus {
    return this.run.status;
  }

  /** Why the run's writes stopped, if they did. */
  get writeFailure(): unknown {
    return this.failure;
  }

  /** A copy of the run as recorded so far, `last_event_id` counting every event given an id. */
  snapshot(): Run {
    const run = this.run;
    return { ...run, usage: { ...run.usage }, error: run.error && { ...run.error }, last_event_id: this.lastId };
  }

  /** Records an event; its write is pipelined. Dropped once the run is ending or its writes failed. */
  emit(type: RunEventType, data: unknown): void {
    if (this.closed || this.failure !== undefined) return;
    if (this.lastId >= this.options.maxEvents - 1) {
      // The last place is the terminal event's.
      this.fail(new EventLogFullError(this.run.id, this.options.maxEvents));
      return;
    }
    let json: string;
    try {
      json = data === undefined ? '{}' : (JSON.stringify(data) ?? '{}');
    } catch (err) {
      this.fail(err);
      return;
    }
    this.pending.push({ id: ++this.lastId, type, time: this.now(), data: json });
    this.options.observers.notify(this.run.id, type, data);
    this.writing ??= this.writeAll();
  }

  /**
   * Moves the run to `to` (a transition of the core table), with `patch`, once every event recorded
   * so far is written. Resolves false when the store's status was no longer the one held here:
   * somebody else moved the run, and its end is theirs. Rejects when writes failed.
   */
  async transition(to: Exclude<RunStatus, TerminalStatus>, patch: Partial<Run> = {}): Promise<boolean> {
    if (!canTransition(this.run.status, to)) throw new Error(`Run ${this.run.id}: no transition ${this.run.status} → ${to}`);
    if (this.writing !== undefined) await this.flush();
    if (this.failure !== undefined) throw this.failure;
    const moved = await this.options.runs.update(this.run.id, { ...patch, status: to }, [this.run.status]);
    if (moved) Object.assign(this.run, patch, { status: to });
    return moved;
  }

  /**
   * Ends the run: its final status (compare-and-set), then its terminal event. An outcome whose
   * events could not all be written becomes `failed`. Resolves to the final Run, or undefined when
   * somebody else had moved the run first.
   */
  async finish(outcome: Outcome, usage: Run['usage']): Promise<Run | undefined> {
    this.closed = true;
    if (this.writing !== undefined) await this.flush();
    let end = this.failure === undefined ? outcome : this.failedByWrites();
    let data: unknown = endData(end, usage);
    let dataJson: string;
    try {
      dataJson = JSON.stringify(data) ?? '{}';
    } catch (err) {
      // Serialized before the status is written: once it is final, the terminal event must follow.
      this.options.log.error({ err, run_id: this.run.id }, 'run result could not be serialized');
      end = { status: 'failed', error: INTERNAL };
      data = endData(end, usage);
      dataJson = JSON.stringify(data);
    }
    // Every event given an id is written by now, or was given back with a failed write.
    const id = this.ackedId + 1;
    const final: Partial<Run> = {
      status: end.status,
      output: end.status === 'succeeded' ? (end.output ?? null) : null,
      error: end.status === 'failed' ? end.error : null,
      usage,
      finished_at: this.now(),
      last_event_id: id,
    };
    if (!(await this.options.runs.update(this.run.id, final, [this.run.status]))) return undefined;
    Object.assign(this.run, final);
    const type = terminalEventType(end.status);
    const terminal: StoredEvent = { id, type, time: this.now(), data: dataJson };
    try {
      try {
        await this.options.events.append(this.run.id, [terminal]);
      } catch (err) {
        await this.retryTerminal(terminal, err);
      }
    } finally {
      // The run has ended either way (its status is final): observers release what they hold for it.
      this.options.observers.notify(this.run.id, type, data);
    }
    this.lastId = this.ackedId = id;
    return this.snapshot();
  }

  /** Resolves once every event recorded so far has been written (or writing has failed). */
  async flushed(): Promise<void> {
    if (this.writing !== undefined) await this.flush();
  }

  private async flush(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  /** Writes what is pending, batch after batch, until nothing is. Never rejects. */
  private async writeAll(): Promise<void> {
    try {
      // A turn first: the events a workflow records in one synchronous burst go in one write (and
      // `writing` is set before this function can finish).
      await undefined;
      // A full log still gets what was recorded before it filled; a failed write ends all writing.
      while (this.pending.length > 0 && (this.failure === undefined || this.failure instanceof EventLogFullError)) {
        const batch = this.pending;
        this.pending = [];
        try {
          await this.options.events.append(this.run.id, batch);
          this.ackedId = batch[batch.length - 1]!.id;
        } catch (err) {
          this.fail(err);
        }
      }
    } finally {
      this.writing = undefined;
    }
  }

  /** The terminal event's write failed once: tried again, after a short wait each time. */
  private async retryTerminal(event: StoredEvent, first: unknown): Promise<void> {
    let err = first;
    for (let attempt = 1; attempt < TERMINAL_WRITE_TRIES; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 10 * 4 ** attempt));
      try {
        await this.options.events.append(this.run.id, [event]);
        return;
      } catch (again) {
        err = again;
      }
    }
    this.options.log.error({ err, run_id: this.run.id }, 'the terminal event could not be written');
    throw err;
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    if (err instanceof EventLogFullError) {
      this.options.log.warn({ run_id: this.run.id, limit: err.limit }, 'run stopped: event log limit reached');
    } else {
      // Events not written are dropped, and their ids given back: the log stays without gaps.
      this.pending = [];
      this.lastId = this.ackedId;
      this.options.log.error({ err, run_id: this.run.id }, 'run stopped: its events could not be stored');
    }
    this.options.onFailure(err);
  }

  private failedByWrites(): Outcome {
    const err = this.failure;
    return { status: 'failed', error: err instanceof EventLogFullError ? { code: 'internal', message: err.message } : INTERNAL };
  }

  /** The time as events and Run fields carry it. */
  now(): string {
    return this.options.clock.now();
  }
}

/** What a run that failed for a reason its user need not see ends with (details stay in the logs). */
export const INTERNAL: RunError = { code: 'internal', message: 'The run failed with an internal error' };

function endData(end: Outcome, usage: Run['usage']): unknown {
  switch (end.status) {
    case 'succeeded':
      return { output: end.output ?? null, usage };
    case 'failed':
      return { error: end.error };
    case 'cancelled':
      return { reason: end.reason };
  }
}
