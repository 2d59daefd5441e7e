import pino from 'pino';
import type { RunwayConfig } from '../config/config-schema.js';
import { parseConfig } from '../config/load-config.js';
import type { Logger } from '../core/logger.js';
import { UnavailableChatModel } from '../llm/unavailable-chat-model.js';
import { InProcessQueue } from '../queue/in-process-queue.js';
import { createMemoryStores } from '../store/memory/memory-stores.js';
import { createRedisStores } from '../store/redis/redis-stores.js';
import type { Stores } from '../store/stores.js';
import { buildWorkflows, type BuilderRegistry } from '../workflows/builder.js';
import { createCluster, type Cluster } from './cluster.js';
import { RunObservers } from './run-observers.js';
import { Runner } from './runner.js';
import { Runtime } from './runtime.js';
import { SessionManager } from './session-manager.js';

export interface CreateRuntimeOptions {
  /** A validated config (`loadConfig()`), or a raw object validated here. Default: built-ins. */
  config?: RunwayConfig | Record<string, unknown>;
  /** Extra workflow and tool types, and ready-made tools. */
  registry?: BuilderRegistry;
  /** Default: pino at `server.log_level`. */
  log?: Logger;
  /** Default: the store the config describes (memory, or Redis when `store` names it). */
  stores?: Stores;
}

/**
 * Builds a runtime from a config: the models, tools and workflows, the stores, admission and the
 * runner. `close()` it when done.
 *
 * @example
 *   const runtime = await createRuntime({ config: { workflows: { echo: { type: 'echo', token_delay_ms: 0 } } } })
 */
export async function createRuntime(options: CreateRuntimeOptions = {}): Promise<Runtime> {
  const config = parseConfig(options.config ?? {});
  const log = options.log ?? (pino({ level: config.server.log_level }) as unknown as Logger);
  const { workflows, defaultWorkflow, llms } = buildWorkflows(config, options.registry);
  for (const model of llms.values()) {
    if (model instanceof UnavailableChatModel) log.warn({ llm: model.name }, model.reason);
  }
  const rt = config.runtime;
  const conv = config.conversations;
  const conversations = { maxMessages: conv.max_messages, maxChars: conv.max_chars, ttlS: conv.ttl_s, maxConversations: conv.max_conversations };
  const stores =
    options.stores ??
    (config.store === 'memory'
      ? createMemoryStores({ runTtlS: rt.run_ttl_s, maxRuns: rt.max_runs, conversations })
      : createRedisStores({
          url: config.store,
          prefix: config.redis.prefix,
          runTtlS: rt.run_ttl_s,
          maxEventsPerRun: rt.max_events_per_run,
          conversations,
          onError: (err) => log.warn({ err }, 'redis connection error'),
        }));
  const sessions = new SessionManager({
    maxConcurrency: rt.max_concurrency,
    maxQueue: rt.max_queue,
    queueTimeoutMs: rt.queue_timeout_ms,
    perUserMaxConcurrency: rt.per_user_max_concurrency,
  });
  const observers = new RunObservers();
  // On Redis (named by the config, not stores handed in) every run is a BullMQ job (DESIGN §6).
  const cluster: Cluster | undefined =
    config.store !== 'memory' && options.stores === undefined ? createCluster({ config, stores, workflows, observers, log }) : undefined;
  const runner = new Runner({
    stores,
    queue: cluster?.queue ?? new InProcessQueue(sessions),
    observers,
    log,
    runTimeoutMs: rt.run_timeout_ms,
    maxEventsPerRun: rt.max_events_per_run,
  });
  return new Runtime({ workflows, defaultWorkflow, runner, sessions, stores, observers, llms, shutdownGraceMs: rt.shutdown_grace_ms, ...(cluster && { cluster }) });
}
