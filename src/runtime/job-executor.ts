import type { Logger } from '../core/logger.js';
import { isTerminalStatus } from '../core/run.js';
import type { RunPickUp } from '../queue/bullmq-worker.js';
import { endUnstartedRun } from '../queue/end-unstarted-run.js';
import type { QueuePlace } from '../queue/run-queue.js';
import { FencedEventLog } from '../store/fenced-event-log.js';
import type { Stores } from '../store/stores.js';
import type { Workflow } from '../workflows/workflow.js';
import { DeadlineQueue } from './deadline-queue.js';
import { execute } from './execution.js';
import { IsoClock } from './iso-clock.js';
import { ConversationHandle } from './run-conversation.js';
import type { RunObservers } from './run-observers.js';
import { RunRecorder } from './run-recorder.js';
import { RunScope } from './run-scope.js';
import { MAX_TIMER_MS } from './session-manager.js';

export interface JobExecutorOptions {
  stores: Stores;
  workflows: ReadonlyMap<string, Workflow>;
  observers: RunObservers;
  log: Logger;
  runTimeoutMs: number;
  maxEventsPerRun: number;
  /** A run found at pick-up to have waited longer than this ends `queue_timeout` unstarted. */
  queueTimeoutMs: number;
}

/** The place of a run a worker has picked up: its permit is the job itself (BullMQ's concurrency). */
const PICKED_UP: QueuePlace = {
  start: () => Promise.resolve({ userId: '', release: () => {} }),
  cancel: () => {},
};

/**
 * Executes the runs a worker picks up from the shared queue, on the same path as a run executing
 * where it was admitted: a RunRecorder (whose appends carry the pick-up's fencing token), a RunScope
 * and an Execution. The run is read from the store first: one that has ended (cancelled before
 * pick-up) is skipped; a cancel published before the pick-up is read back once this process is
 * listening for cancels (the bus keeps it), so none is lost in between.
 *
 * @example
 *   const executor = new JobExecutor({ stores, workflows, observers, log, … })
 *   new BullmqRunWorker({ …, execute: (pickUp) => executor.execute(pickUp) })
 */
export class JobExecutor {
  private readonly live = new Map<string, { scope: RunScope; done: Promise<unknown> }>();
  private readonly unsubscribe: () => void;
  private readonly deadlines = new DeadlineQueue();
  private readonly clock = new IsoClock();
  private draining = false;

  constructor(private readonly options: JobExecutorOptions) {
    this.unsubscribe = options.stores.bus.subscribe((message) => {
      if (message.type === 'cancel') this.live.get(message.runId)?.scope.abort(message.reason ?? 'user');
    });
  }

  async execute({ job, attempt }: RunPickUp): Promise<void> {
    const { stores, log } = this.options;
    // Every job taken is logged, skipped or not: operators (and tests) see what each worker took.
    log.info({ run_id: job.runId, attempt }, 'run picked up');
    try {
      const run = await stores.runs.get(job.runId);
      // Ended before the pick-up (cancelled while queued, or gone with its TTL): nothing to do.
      if (run === undefined || isTerminalStatus(run.status)) return;
      if (run.status !== 'queued') {
        // An earlier pick-up started it and its worker is gone (BullMQ found the job stalled and
        // handed it on). The run is not executed twice: it ends, fencing the earlier attempt off.
        log.warn({ run_id: run.id, attempt }, 'run taken over from a lost worker: it fails');
        await endUnstartedRun(stores, run.id, [run.status], { status: 'failed', error: { code: 'worker_lost', message: 'The worker executing the run was lost' } }, attempt);
        return;
      }
      const workflow = this.options.workflows.get(run.workflow);
      if (workflow === undefined) {
        await endUnstartedRun(stores, run.id, ['queued'], { status: 'failed', error: { code: 'internal', message: `This worker has no workflow "${run.workflow}"` } }, attempt);
        return;
      }
      if (Date.now() - Date.parse(run.created_at) > this.options.queueTimeoutMs) {
        const error = { code: 'queue_timeout' as const, message: `No worker took the run within ${this.options.queueTimeoutMs} ms` };
        await endUnstartedRun(stores, run.id, ['queued'], { status: 'failed', error }, attempt);
        return;
      }
      const runLog = log.child({ request_id: job.requestId });
      let scope: RunScope | undefined;
      const recorder = new RunRecorder(run, {
        runs: stores.runs,
        events: new FencedEventLog(stores.events, attempt),
        observers: this.options.observers,
        log: runLog,
        maxEvents: this.options.maxEventsPerRun,
        onFailure: () => scope?.abort('store_failed'),
        clock: this.clock,
      });
      scope = new RunScope({ runId: run.id, userId: run.user_id, requestId: job.requestId, conversationId: run.conversation_id, workflow: run.workflow }, recorder, runLog);
      if (run.conversation_id !== null) scope.conversation = new ConversationHandle(stores.conversations, run.user_id, run.conversation_id);
      let finished!: () => void;
      const live = { scope, done: new Promise<void>((resolve) => (finished = resolve)) };
      // Listening first, then reading what was published before: one of the two has every cancel.
      this.live.set(run.id, live);
      try {
        const reason = await stores.bus.cancelRequested?.(run.id);
        if (reason !== undefined) scope.abort(reason);
        if (this.draining) scope.abort('shutdown');
        const timeoutMs = Math.min(job.timeoutMs, this.options.runTimeoutMs, MAX_TIMER_MS);
        await execute({ scope, recorder, workflow, input: run.input, place: PICKED_UP, timeoutMs, deadlines: this.deadlines });
      } finally {
        this.live.delete(run.id);
        finished();
      }
    } catch (err) {
      // The store could not be read: the job is acknowledged, the run left as it is.
      log.error({ err, run_id: job.runId }, 'run job failed');
    }
  }

  get activeCount(): number {
    return this.live.size;
  }

  /** Cancels every run executing here once `graceMs` has passed (at once for 0); resolves when they have ended. */
  async shutdown(graceMs: number): Promise<void> {
    this.draining = true;
    const all = () => Promise.allSettled([...this.live.values()].map((live) => live.done));
    if (this.live.size > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, Math.min(graceMs, MAX_TIMER_MS))))]);
      clearTimeout(timer);
    }
    for (const live of this.live.values()) live.scope.abort('shutdown');
    await all();
  }

  close(): void {
    this.unsubscribe();
    this.deadlines.close();
  }
}
