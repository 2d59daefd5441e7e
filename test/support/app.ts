import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp, type BuildAppOptions } from '../../src/app.js';

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

export interface TestAppOptions {
  runtime?: Record<string, unknown>;
  server?: Record<string, unknown>;
  workflows?: Record<string, Record<string, unknown>>;
  default_workflow?: string;
  registry?: BuildAppOptions['registry'];
  /** The stores runs live in (a slow store, say); default: the memory store. */
  stores?: BuildAppOptions['stores'];
}

/**
 * The real app with test-sized settings: logs silenced, echo without delay unless a test asks.
 * Extra workflows (e.g. a slow echo) come through `workflows`.
 */
export async function makeApp(options: TestAppOptions = {}): Promise<FastifyInstance> {
  const config: Record<string, unknown> = {
    server: { log_level: 'silent', ...options.server },
    runtime: { shutdown_grace_ms: 0, ...options.runtime },
    workflows: {
      echo: { type: 'echo', token_delay_ms: 0 },
      slow: { type: 'echo', token_delay_ms: 50 },
      ...options.workflows,
    },
  };
  if (options.default_workflow) config.default_workflow = options.default_workflow;
  const app = await buildApp({ config, ...(options.registry && { registry: options.registry }), ...(options.stores && { stores: options.stores }) });
  await app.ready();
  return app;
}

/** Listens on a random loopback port and returns the base URL. */
export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

export type { DeepPartial };
