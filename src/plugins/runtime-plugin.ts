import fp from 'fastify-plugin';
import type { RunwayConfig } from '../config/config-schema.js';
import { ConfigError } from '../config/load-config.js';
import { Runner } from '../runtime/runner.js';
import { Runtime } from '../runtime/runtime.js';
import { SessionManager } from '../runtime/session-manager.js';
import { UnavailableChatModel } from '../llm/unavailable-chat-model.js';
import { ObservedEventLog } from '../observability/observed-event-log.js';
import { MemoryConversationStore } from '../store/memory-conversation-store.js';
import { MemoryStore } from '../store/memory-store.js';
import { buildWorkflows, type BuilderRegistry } from '../workflows/builder.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The run runtime: admission, runner, workflows and the store behind them. */
    runtime: Runtime;
    /** The run events as the runner appends them, for observers (metrics, traces). */
    runEvents: ObservedEventLog;
  }
}

export interface RuntimePluginOptions {
  config: RunwayConfig;
  registry?: BuilderRegistry;
}

/**
 * Builds the stores (runs, conversations), the SessionManager, the Runner, and the models, tools
 * and workflows from the config. Closing the
 * app drains it first: new runs are refused, running ones get `shutdown_grace_ms`, then are cancelled.
 */
export const runtimePlugin = fp<RuntimePluginOptions>(
  async (app, { config, registry }) => {
    const rt = config.runtime;
    if (config.store !== 'memory') {
      throw new ConfigError(`Invalid configuration:\n  store: "${config.store}" is not available in this version yet; use "memory"`);
    }
    const { workflows, defaultWorkflow, llms } = buildWorkflows(config, registry);
    for (const model of llms.values()) {
      if (model instanceof UnavailableChatModel) app.log.warn({ llm: model.name }, model.reason);
    }
    const conversations = new MemoryConversationStore({
      maxMessages: config.conversations.max_messages,
      maxChars: config.conversations.max_chars,
      ttlS: config.conversations.ttl_s,
      maxConversations: config.conversations.max_conversations,
    });
    const store = new MemoryStore({ runTtlS: rt.run_ttl_s, maxRuns: rt.max_runs, maxEventsPerRun: rt.max_events_per_run });
    const sessions = new SessionManager({
      maxConcurrency: rt.max_concurrency,
      maxQueue: rt.max_queue,
      queueTimeoutMs: rt.queue_timeout_ms,
      perUserMaxConcurrency: rt.per_user_max_concurrency,
    });
    const runEvents = new ObservedEventLog(store);
    const runner = new Runner({ store, events: runEvents, cancels: store, sessions, log: app.log, runTimeoutMs: rt.run_timeout_ms });
    const runtime = new Runtime({ workflows, defaultWorkflow, runner, sessions, store, events: store, conversations });
    app.decorate('runtime', runtime);
    app.decorate('runEvents', runEvents);

    app.addHook('preClose', async () => {
      await runtime.shutdown(rt.shutdown_grace_ms);
    });
    app.addHook('onClose', async () => {
      store.close();
      conversations.close();
      // After the drain: no run is using a model any more.
      await Promise.allSettled([...llms.values()].map((model) => model.close()));
    });
  },
  { name: 'runway-runtime', fastify: '5.x' },
);
