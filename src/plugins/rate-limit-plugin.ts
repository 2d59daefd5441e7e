import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { RunwayError } from '../core/errors.js';

export interface RateLimitPluginOptions {
  /** Requests one user may make per window; 0 = no limit (nothing is registered). */
  max: number;
  windowMs: number;
}

/** Users whose counters are kept (least recently seen dropped first). */
const TRACKED_USERS = 10_000;

/** The caller as the identity plugin established it: the key's user, or X-User-Id / anonymous. */
const byUser = (request: FastifyRequest): string => request.userId;

/** Public routes (health, metrics, docs, `/`) are never limited: probes and scrapers must get through. */
function exemptPublic(route: RouteOptions): void {
  if (route.config?.public && route.config.rateLimit === undefined) route.config = { ...route.config, rateLimit: false };
}

/**
 * A request rate limit per user (`@fastify/rate-limit`, in-process store): beyond `max` requests
 * in a window, `429 rate_limited` problem+json with `Retry-After` (seconds until the window
 * ends). Register after the identity plugin: its route-level hook runs after the global identity
 * hook, so the key is the authenticated user. A request turned away with 401 is not counted.
 */
export const rateLimitPlugin = fp<RateLimitPluginOptions>(
  async (app, { max, windowMs }) => {
    if (max <= 0) return;
    // Before @fastify/rate-limit's own onRoute hook, which reads `config.rateLimit`.
    app.addHook('onRoute', exemptPublic);
    await app.register(fastifyRateLimit, {
      global: true,
      max,
      timeWindow: windowMs,
      cache: TRACKED_USERS,
      keyGenerator: byUser,
      errorResponseBuilder: (_request, context) =>
        new RunwayError('rate_limited', `Rate limit exceeded: ${context.max} requests per ${windowMs} ms; retry in ${context.after}`, {
          retryAfterS: Math.max(1, Math.ceil(context.ttl / 1000)),
        }),
    });
  },
  { name: 'runway-rate-limit', fastify: '5.x', dependencies: ['runway-identity'] },
);
