import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { buildApp, type BuildAppOptions } from '../../src/app.js';
import { defineWorkflow } from '../../src/workflows/define-workflow.js';
import { blockerType, testWorkflowConfig as anyConfig } from './test-workflows.js';

/** Two users' API keys (long enough for the key rules; nothing else about them is special). */
export const KEYS = {
  alice: 'alice-key-3f9a1c0d8b7e6a5f4c3b2a19',
  bob: 'bob-key-0e1d2c3b4a5968778695a4b3',
} as const;

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

export interface AccessAppOptions {
  /** `auth.api_keys`; default: none (auth off). */
  apiKeys?: string | Array<{ key: string; user: string }>;
  rateLimit?: { max?: number; window_ms?: number };
  corsOrigins?: string | string[];
  workflows?: Record<string, Record<string, unknown>>;
  logger?: BuildAppOptions['logger'];
  registry?: BuildAppOptions['registry'];
}

export { blockerType };

/** Writes its input into the run's conversation (no model needed), so conversations have owners. */
export const noteType = defineWorkflow({
  type: 'note',
  configSchema: anyConfig('note'),
  create: (cfg, { name }) => ({
    name,
    type: 'note',
    description: cfg.description,
    inputSchema: z.string(),
    async run(input, ctx) {
      ctx.conversation?.append({ role: 'user', content: String(input) }, { role: 'assistant', content: 'noted' });
      return 'noted';
    },
  }),
});

/**
 * The real app with the access settings under test (API keys, rate limit, CORS), quiet logs and
 * an undelayed echo, plus the `blocker` and `note` workflows.
 */
export async function makeAccessApp(options: AccessAppOptions = {}): Promise<FastifyInstance> {
  const config: Record<string, unknown> = {
    server: { log_level: 'silent' },
    runtime: { shutdown_grace_ms: 0 },
    workflows: { echo: { type: 'echo', token_delay_ms: 0 }, blocker: { type: 'blocker' }, note: { type: 'note' }, ...options.workflows },
  };
  if (options.apiKeys !== undefined) config.auth = { api_keys: options.apiKeys };
  if (options.rateLimit !== undefined) config.rate_limit = options.rateLimit;
  if (options.corsOrigins !== undefined) config.cors = { origins: options.corsOrigins };
  const app = await buildApp({
    config,
    registry: { ...options.registry, workflowTypes: [blockerType, noteType, ...(options.registry?.workflowTypes ?? [])] },
    ...(options.logger !== undefined && { logger: options.logger }),
  });
  await app.ready();
  return app;
}

export interface RouteEntry {
  method: string;
  /** The route's path as registered, e.g. `/runs/:id/stream`. */
  path: string;
}

/**
 * Every route the app has, from `printRoutes({ commonPrefix: false })` (Fastify has no route list
 * API): new routes join the tests that iterate over it without anyone editing them.
 */
export function routesOf(app: FastifyInstance): RouteEntry[] {
  const out: RouteEntry[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│├└─\s]*)(\S.*?)(?: \(([^)]*)\))?$/.exec(line);
    if (!m || line.trim() === '') continue;
    // Each level of the tree is four characters wide ("│   ", then "├── ").
    const depth = Math.max(0, m[1]!.length / 4 - 1);
    stack.length = depth;
    stack.push(m[2]!);
    if (m[3] === undefined) continue;
    const path = stack.join('') || '/';
    for (const method of m[3].split(',').map((s) => s.trim())) out.push({ method, path: path.startsWith('/') ? path : `/${path}` });
  }
  return out;
}

/** A concrete URL for a route: parameters become `x`, wildcards `file.js`. */
export function concreteUrl(path: string): string {
  return path.replace(/:[A-Za-z_]+/g, 'x').replace(/\*/g, 'file.js');
}
