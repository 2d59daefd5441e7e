import { Worker, type ConnectionOptions } from 'bullmq';
import type { RunJob } from './run-queue.js';

/** One pick-up of a run's job by a worker. */
export interface RunPickUp {
  job: RunJob;
  /**
   * This pick-up's fencing token: BullMQ's `attemptsStarted`, which its move-to-active script
   * increments each time the job becomes active (a stalled job taken over by another worker gets
   * a higher one). The run's appends carry it, so a worker that lost the job is refused.
   */
  attempt: number;
}

export interface BullmqWorkerOptions {
  /** BullMQ makes its own clients from these (a blocking one among them): never the store's client. */
  connection: ConnectionOptions;
  prefix: string;
  name: string;
  /** Jobs this process executes at once (`max_concurrency`). */
  concurrency: number;
  /** BullMQ's job lock and stalled-job check (DESIGN §6 "Faults"). */
  lockDurationMs: number;
  stalledIntervalMs: number;
  /** Executes one pick-up; resolves once the run has ended (or was found ended). Should not reject. */
  execute: (pickUp: RunPickUp) => Promise<void>;
  onError: (err: Error) => void;
}

/**
 * The BullMQ Worker of a process that executes runs (`RUNWAY_ROLE=worker|all`): takes run jobs from
 * the shared queue, `concurrency` at once, and hands each to `execute` (the runtime's JobExecutor).
 * A job is acknowledged once its run has ended, however it ended: a run's failure is its own
 * terminal event, never a BullMQ retry.
 *
 * @example
 *   const worker = new BullmqRunWorker({ connection, prefix, name: 'runs', concurrency: 8, execute, … })
 *   await worker.ready()
 *   await worker.close()   // takes no more jobs; resolves once the active ones are done
 */
export class BullmqRunWorker {
  private readonly worker: Worker<RunJob>;

  constructor(options: BullmqWorkerOptions) {
    this.worker = new Worker<RunJob>(
      options.name,
      async (job) => {
        await options.execute({ job: job.data, attempt: Math.max(1, job.attemptsStarted) });
      },
      {
        // BullMQ's workers need commands that wait forever (a blocking connection among them).
        connection: options.connection,
        prefix: options.prefix,
        concurrency: options.concurrency,
        lockDuration: options.lockDurationMs,
        stalledInterval: options.stalledIntervalMs,
      },
    );
    this.worker.on('error', options.onError);
  }

  /** Resolves once the worker's connections are up (it takes jobs from then on). */
  ready(): Promise<void> {
    return this.worker.waitUntilReady();
  }

  /** Stops taking jobs at once; resolves once the jobs it has are done. */
  close(): Promise<void> {
    return this.worker.close();
  }
}
