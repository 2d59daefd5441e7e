import { RunwayError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { copyJson, copyRun, isTerminalStatus, zeroUsage, type CancelReason, type Run } from '../core/run.js';
import type { RunJob, RunQueue } from '../queue/run-queue.js';
import type { Stores } from '../store/stores.js';
import type { Workflow } from '../workflows/workflow.js';
import { DeadlineQueue } from './deadline-queue.js';
import { execute } from './execution.js';
import { executeRemotely } from './remote-execution.js';
import { IsoClock } from './iso-clock.js';
import { randomId } from './random-id.js';
import type { ConversationHandle } from './run-conversation.js';
import type { RunObservers } from './run-observers.js';
import { RunRecorder } from './run-recorder.js';
import { RunScope, type AbortCause } from './run-scope.js';
import { MAX_TIMER_MS, shuttingDown } from './session-manager.js';

export interface RunnerOptions {
  stores: Stores;
  queue: RunQueue;
  observers: RunObservers;
  log: Logger;
  /** Default and upper bound of a run's timeout. */
  runTimeoutMs: number;
  /** Events one run may record, its terminal event included. */
  maxEventsPerRun: number;
}

export interface RunSpec {
  workflow: Workflow;
  input: unknown;
  userId: string;
  requestId: string;
  conversationId: string | null;
  metadata: Record<string, unknown>;
  timeoutMs?: number;
  /** Logger carrying the request's id; the run's lines add its run id. */
  log?: Logger;
  conversation?: ConversationHandle;
}

/** A run executing in this process. */
export interface LiveRun {
  readonly id: string;
  readonly scope: RunScope;
  readonly recorder: RunRecorder;
  /** The final Run, once its terminal event is written (or as the store has it, if another ended it). */
  done: Promise<Run>;
}

/**
 * Creates runs and executes them in this process: each gets a RunRecorder (its one writer), a
 * RunScope (its context) and an Execution; cancels reach it through the store's bus from any
 * process. Shutdown decides from each recorder's status which runs were still queued.
 *
 * @example
 *   const live = await runner.start({ workflow, input: 'hi', userId: 'alice', … })
 *   const run = await live.done   // the finished Run
 */
export class Runner {
  private readonly live = new Map<string, LiveRun>();
  /** Runs whose record is being written: not live yet, but shutdown must wait for them. */
  private readonly creating = new Set<Promise<unknown>>();
  private readonly unsubscribe: () => void;
  private draining = false;
  /** Run time limits, on one timer (see DeadlineQueue). */
  readonly deadlines = new DeadlineQueue();
  private readonly clock = new IsoClock();

  constructor(private readonly options: RunnerOptions) {
    this.unsubscribe = options.stores.bus.subscribe((message) => {
      if (message.type === 'cancel') this.live.get(message.runId)?.scope.abort(message.reason ?? 'user');
    });
  }

  /**
   * Creates the run and hands it to the queue. Rejects with `queue_full` / `shutting_down` before
   * anything is created; every later failure ends the run with a terminal event instead.
   */
  async start(spec: RunSpec): Promise<LiveRun> {
    if (this.draining) throw shuttingDown();
    // Tracked from its first step: shutdown waits for every run being created, whatever step it is at.
    const starting = this.create(spec);
    this.creating.add(starting);
    try {
      return await starting;
    } finally {
      this.creating.delete(starting);
    }
  }

  private async create(spec: RunSpec): Promise<LiveRun> {
    const { stores, queue } = this.options;
    const place = await queue.reserve(spec.userId);
    const run: Run = {
      id: randomId(),
      workflow: spec.workflow.name,
      user_id: spec.userId,
      conversation_id: spec.conversationId,
      status: 'queued',
      // The run's own copies: neither the caller nor the workflow can change what it records.
      input: copyJson(spec.input),
      output: null,
      error: null,
      usage: zeroUsage(),
      metadata: copyJson(spec.metadata),
      created_at: this.clock.now(),
      started_at: null,
      finished_at: null,
      last_event_id: 0,
    };
    const log = spec.log ?? this.options.log;
    let scope: RunScope | undefined;
    // The store makes its own copy: from here on the recorder holds the only mutable one.
    const recorder = new RunRecorder(run, {
      runs: stores.runs,
      events: stores.events,
      observers: this.options.observers,
      log,
      maxEvents: this.options.maxEventsPerRun,
      onFailure: () => scope?.abort('store_failed'),
      clock: this.clock,
    });
    scope = new RunScope(
      { runId: run.id, userId: run.user_id, requestId: spec.requestId, conversationId: run.conversation_id, workflow: run.workflow },
      recorder,
      log,
    );
    scope.conversation = spec.conversation;
    const live: LiveRun = { id: run.id, scope, recorder, done: undefined as unknown as Promise<Run> };
    // Live before the record exists anywhere: a cancel that finds the run in the store (another
    // replica listing it, say) while its creation is still being acknowledged reaches it.
    this.live.set(run.id, live);
    try {
      await stores.runs.create(run);
    } catch (err) {
      this.live.delete(run.id);
      place.cancel();
      throw err;
    }
    recorder.emit('run.queued', { workflow: run.workflow });
    // Shutdown began while the record was being written: cancel it like a queued run.
    if (this.draining) scope.abort('shutdown');
    const timeoutMs = Math.min(spec.timeoutMs ?? this.options.runTimeoutMs, this.options.runTimeoutMs, MAX_TIMER_MS);
    if (place.handOver !== undefined) {
      // A shared queue's run executes on a worker; the caller hears of it once it is on the queue.
      const remote = executeRemotely({ scope, recorder, place, queue, stores, deadlines: this.deadlines, job: jobOf(run, spec, timeoutMs) });
      live.done = this.settle(live, remote.done);
      await remote.handedOver;
      return live;
    }
    live.done = this.settle(live, execute({ scope, recorder, workflow: spec.workflow, input: spec.input, place, timeoutMs, deadlines: this.deadlines }));
    return live;
  }

  /**
   * The final Run once the execution is over: the recorder's, or the store's when somebody else
   * ended the run. Never rejects: nobody may be waiting (a background run), and a store that cannot
   * even be read must not crash the process.
   */
  private async settle(live: LiveRun, execution: Promise<Run | undefined>): Promise<Run> {
    try {
      return (await execution) ?? (await this.options.stores.runs.get(live.id)) ?? live.recorder.snapshot();
    } catch {
      return live.recorder.snapshot();
    } finally {
      this.live.delete(live.id);
    }
  }

  /** A run executing in this process, if any. */
  local(runId: string): LiveRun | undefined {
    return this.live.get(runId);
  }

  /**
   * Cancels a queued or running run wherever it executes. Resolves to the run once its terminal
   * event is written (when it runs here), or as it stands (when another process runs it).
   * `conflict` if it has finished already.
   */
  async cancel(run: Run): Promise<Run> {
    if (isTerminalStatus(run.status)) {
      throw alreadyEnded(run);
    }
    // A shared queue also ends the run if it is still queued (whoever admitted it may be gone).
    const { queue } = this.options;
    if (queue.withdraw !== undefined) await queue.withdraw(run.id, { status: 'cancelled', reason: 'user' });
    else await this.options.stores.bus.publish({ type: 'cancel', runId: run.id });
    const live = this.live.get(run.id);
    if (live) {
      const final = await live.done;
      // It ended another way while the cancel was on its way: as for any finished run, a conflict.
      if (final.status !== 'cancelled') throw alreadyEnded(final);
      return copyRun(final);
    }
    return (await this.options.stores.runs.get(run.id)) ?? run;
  }

  /** Aborts a run of this process (a client that left, shutdown); no-op when it is not here. */
  abortLocal(runId: string, cause: CancelReason): void {
    this.live.get(runId)?.scope.abort(cause);
  }

  get activeCount(): number {
    return this.live.size;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Graceful shutdown: refuses new runs, cancels queued ones, gives running ones `graceMs` to
   * finish, then cancels the rest; resolves when every terminal event is written.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.draining = true;
    this.options.queue.drain();
    this.abortAll('shutdown', (live) => live.recorder.status === 'queued');
    if (this.live.size > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.allDone(), new Promise((resolve) => (timer = setTimeout(resolve, Math.min(graceMs, MAX_TIMER_MS))))]);
      clearTimeout(timer);
    }
    // Runs whose creation was in flight when the drain began are live (and aborted) once written.
    await Promise.allSettled([...this.creating]);
    this.abortAll('shutdown');
    await this.allDone();
    this.unsubscribe();
    this.deadlines.close();
  }

  private abortAll(cause: AbortCause, which: (live: LiveRun) => boolean = () => true): void {
    for (const live of this.live.values()) if (which(live)) live.scope.abort(cause);
  }

  private allDone(): Promise<unknown> {
    return Promise.allSettled([...this.live.values()].map((live) => live.done));
  }
}

/** What a worker of a shared queue needs of a run it did not admit. */
function jobOf(run: Run, spec: RunSpec, timeoutMs: number): RunJob {
  return { runId: run.id, workflow: run.workflow, input: run.input, userId: run.user_id, timeoutMs, requestId: spec.requestId, conversationId: run.conversation_id };
}

/** A cancel of a run that has ended: a conflict. */
function alreadyEnded(run: Run): RunwayError {
  return new RunwayError('conflict', `Run ${run.id} already ${run.status}`, { runId: run.id });
}
