import fp from 'fastify-plugin';
import type { RunwayConfig } from '../config/config-schema.js';
import type { Logger } from '../core/logger.js';
import { createRuntime } from '../runtime/create-runtime.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Stores } from '../store/stores.js';
import type { BuilderRegistry } from '../workflows/builder.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The run runtime: workflows, admission, runs and the stores behind them. */
    runtime: Runtime;
  }
}

export interface RuntimePluginOptions {
  config: RunwayConfig;
  registry?: BuilderRegistry;
  stores?: Stores;
}

/**
 * The runtime the routes are built on (`createRuntime`, the same one an embedder gets). Closing the
 * app drains it first: new runs are refused, running ones get `shutdown_grace_ms`, then are
 * cancelled; then its stores and models close.
 */
export const runtimePlugin = fp<RuntimePluginOptions>(
  async (app, { config, registry, stores }) => {
    const runtime = await createRuntime({ config, log: app.log as unknown as Logger, ...(registry && { registry }), ...(stores && { stores }) });
    app.decorate('runtime', runtime);
    app.addHook('preClose', async () => {
      await runtime.shutdown(config.runtime.shutdown_grace_ms);
    });
    app.addHook('onClose', async () => {
      await runtime.close();
    });
  },
  { name: 'runway-runtime', fastify: '5.x' },
);
