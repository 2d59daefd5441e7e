import type { RedisOptions as BullmqRedisOptions } from 'bullmq';
import type { RunwayConfig } from '../config/config-schema.js';
import type { Logger } from '../core/logger.js';
import { BullmqRunQueue } from '../queue/bullmq-queue.js';
import { BullmqRunWorker } from '../queue/bullmq-worker.js';
import { connectionOptions } from '../store/redis/redis-connection.js';
import type { Stores } from '../store/stores.js';
import type { Workflow } from '../workflows/workflow.js';
import { JobExecutor } from './job-executor.js';
import type { RunObservers } from './run-observers.js';

/** The queue every run's job goes on (there is one per `RUNWAY_REDIS_PREFIX`). */
const QUEUE_NAME = 'runs';
/** BullMQ needs a number: `max_concurrency: 0` (unlimited) executes this many at once per worker process. */
const UNLIMITED_CONCURRENCY = 1000;

/** A process's part of the Redis cluster (DESIGN §6): the shared queue, and its worker unless the role is `api`. */
export interface Cluster {
  queue: BullmqRunQueue;
  /** Set for roles `worker` and `all`. */
  executor: JobExecutor | undefined;
  /** Resolves once this process's worker takes jobs (at once for `api`). */
  ready(): Promise<void>;
  /** The worker takes no more jobs; its runs get `graceMs`, then are cancelled. */
  shutdown(graceMs: number): Promise<void>;
  /** Closes BullMQ's connections. */
  close(): Promise<void>;
}

export interface ClusterParts {
  config: RunwayConfig;
  stores: Stores;
  workflows: ReadonlyMap<string, Workflow>;
  observers: RunObservers;
  log: Logger;
}

/**
 * The shared queue and, for roles `worker` and `all`, a BullMQ worker executing its runs here with
 * `max_concurrency` at once. BullMQ makes its own connections from the store URL (its worker needs
 * a blocking one); the store's command client never carries a blocking command.
 *
 * @example
 *   const cluster = createCluster({ config, stores, workflows, observers, log })
 *   new Runner({ queue: cluster.queue, … })
 */
export function createCluster(parts: ClusterParts): Cluster {
  const { config, stores, log } = parts;
  const rt = config.runtime;
  // The store URL's options (host or socket, auth, db, TLS): plain options, of which BullMQ's type is a looser copy.
  const connection = connectionOptions(config.store) as BullmqRedisOptions;
  const prefix = `${config.redis.prefix}bull`;
  const queue = new BullmqRunQueue({ connection, prefix, name: QUEUE_NAME, maxQueue: rt.max_queue, queueTimeoutMs: rt.queue_timeout_ms, stores });
  let executor: JobExecutor | undefined;
  let worker: BullmqRunWorker | undefined;
  if (config.role !== 'api') {
    const jobs = new JobExecutor({
      stores,
      workflows: parts.workflows,
      observers: parts.observers,
      log,
      runTimeoutMs: rt.run_timeout_ms,
      maxEventsPerRun: rt.max_events_per_run,
      queueTimeoutMs: rt.queue_timeout_ms,
    });
    executor = jobs;
    worker = new BullmqRunWorker({
      connection,
      prefix,
      name: QUEUE_NAME,
      concurrency: rt.max_concurrency > 0 ? rt.max_concurrency : UNLIMITED_CONCURRENCY,
      lockDurationMs: config.redis.lock_duration_ms,
      stalledIntervalMs: config.redis.stalled_interval_ms,
      execute: (pickUp) => jobs.execute(pickUp),
      onError: (err) => log.warn({ err }, 'queue worker error'),
    });
  }
  let closing: Promise<void> | undefined;
  return {
    queue,
    executor,
    ready: async () => {
      await worker?.ready();
    },
    shutdown: async (graceMs) => {
      queue.drain();
      // Taking no more jobs from now on; the jobs it has end with their runs.
      closing ??= worker?.close();
      await executor?.shutdown(graceMs);
      await closing;
    },
    close: async () => {
      closing ??= worker?.close();
      await closing;
      executor?.close();
      await queue.close();
    },
  };
}
