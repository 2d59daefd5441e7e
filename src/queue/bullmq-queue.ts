import { Queue, type ConnectionOptions } from 'bullmq';
import { RunwayError } from '../core/errors.js';
import type { Stores } from '../store/stores.js';
import { endUnstartedRun } from './end-unstarted-run.js';
import type { QueuedEnd, QueuePlace, RunJob, RunQueue } from './run-queue.js';

export interface BullmqQueueOptions {
  /** BullMQ's own connection (it makes its client from these options; never the store's client). */
  connection: ConnectionOptions;
  /** BullMQ's key prefix (`<RUNWAY_REDIS_PREFIX>bull`): its keys are `<prefix>:<name>:…`. */
  prefix: string;
  /** The queue's name. */
  name: string;
  /** Jobs waiting, across every process, beyond which `reserve` refuses with `queue_full`. */
  maxQueue: number;
  /** How long a run may wait for a worker before it ends `queue_timeout`. */
  queueTimeoutMs: number;
  /** The run records and logs (ending runs that never started), the bus (cancels). */
  stores: Pick<Stores, 'runs' | 'events' | 'bus'>;
}

/** The name every run's job has (the queue holds nothing else). */
export const RUN_JOB = 'run';
const QUEUE_FULL_RETRY_AFTER_S = 1;
const SHUTDOWN_RETRY_AFTER_S = 5;

/**
 * The RunQueue on Redis (DESIGN §6): every run is a BullMQ job whose id is the run's id, and the
 * workers of any process (`RUNWAY_ROLE=worker|all`, bullmq-worker.ts) execute it. The admitting
 * process writes the run's record and `run.queued`, then hands the run over (`handOver`); it
 * never executes it.
 *
 * - `max_queue`: `reserve` counts the jobs waiting in Redis (`getWaitingCount`), plus the runs this
 *   process admitted whose jobs are not added yet, and refuses when there are `maxQueue` or more.
 *   An approximation: the count and the add are two steps, so processes admitting at the same
 *   instant may each pass it, and a job added but not yet acknowledged here may count twice for a
 *   reserve in flight meanwhile (by the reserves and adds in flight at once, either way).
 * - Cancel (`withdraw`): published on the store's bus (which also keeps it for a worker that picks
 *   the run up later), the job removed if it is still waiting (an active job is locked by its
 *   worker, which hears the cancel), and the run ended `cancelled` if nobody has started it: a
 *   compare-and-set from `queued`, so a worker starting it at the same moment and this end cannot
 *   both win.
 *
 * @example
 *   const queue = new BullmqRunQueue({ connection: { path: '/run/redis.sock' }, prefix: 'runway:bull', name: 'runs', … })
 */
export class BullmqRunQueue implements RunQueue {
  readonly queue: Queue<RunJob>;
  private draining = false;
  /** Runs this process admitted whose job is not in Redis yet: waiting too, as far as `max_queue` goes. */
  private admitting = 0;
  /** Withdrawals in flight here, by run: a second one for the same run waits for the first. */
  private readonly withdrawing = new Map<string, Promise<void>>();

  constructor(private readonly options: BullmqQueueOptions) {
    this.queue = new Queue<RunJob>(options.name, {
      connection: options.connection,
      prefix: options.prefix,
      // A job is done with once its run has ended: the run's record and events are what is kept.
      defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
    });
    // Connection errors are the store's to report (the same Redis); BullMQ's client reconnects by itself.
    this.queue.on('error', () => {});
  }

  async reserve(_userId: string): Promise<QueuePlace> {
    if (this.draining) throw new RunwayError('shutting_down', 'The server is shutting down', { retryAfterS: SHUTDOWN_RETRY_AFTER_S });
    // Counted from now on, so reserves of this process in flight at once see each other.
    this.admitting++;
    let counted = true;
    const uncount = () => {
      if (counted) this.admitting--;
      counted = false;
    };
    let waiting: number;
    try {
      waiting = await this.queue.getWaitingCount();
    } catch (err) {
      uncount();
      throw err;
    }
    if (waiting + this.admitting - 1 >= this.options.maxQueue) {
      uncount();
      throw new RunwayError('queue_full', `The run queue is full (${this.options.maxQueue} waiting)`, { retryAfterS: QUEUE_FULL_RETRY_AFTER_S });
    }
    return {
      start: () => Promise.reject(new Error('A run on the shared queue executes on a worker')),
      cancel: uncount,
      handOver: async (job) => {
        try {
          await this.queue.add(RUN_JOB, job, { jobId: job.runId });
        } finally {
          uncount();
        }
      },
      queueTimeoutMs: this.options.queueTimeoutMs,
    };
  }

  drain(): void {
    this.draining = true;
  }

  withdraw(runId: string, end: QueuedEnd): Promise<void> {
    const inFlight = this.withdrawing.get(runId);
    if (inFlight !== undefined) return inFlight;
    const withdrawal = this.withdrawOnce(runId, end).finally(() => this.withdrawing.delete(runId));
    this.withdrawing.set(runId, withdrawal);
    return withdrawal;
  }

  private async withdrawOnce(runId: string, end: QueuedEnd): Promise<void> {
    const { stores } = this.options;
    if (end.status === 'cancelled') await stores.bus.publish({ type: 'cancel', runId, reason: end.reason });
    const job = await this.queue.getJob(runId);
    if (job !== undefined) {
      try {
        await job.remove();
      } catch {
        // Locked: a worker has it, and the cancel (or its own start's compare-and-set) decides.
      }
    }
    await endUnstartedRun(stores, runId, ['queued'], end);
  }

  /** Jobs waiting for a worker, across every process. */
  waitingCount(): Promise<number> {
    return this.queue.getWaitingCount();
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
