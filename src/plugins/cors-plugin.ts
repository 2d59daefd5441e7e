import fastifyCors from '@fastify/cors';
import fp from 'fastify-plugin';

export interface CorsPluginOptions {
  /** Allowed origins (`*` = any); none = CORS off (nothing is registered). */
  origins: readonly string[];
}

/** Request headers a browser app may send: auth, JSON bodies, EventSource resumption, identity, tracing of requests. */
export const CORS_ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'Last-Event-ID', 'X-User-Id', 'X-Request-Id'] as const;
/** Response headers a browser app may read. */
export const CORS_EXPOSED_HEADERS = ['Location', 'Retry-After', 'X-Request-Id', 'X-Runway-Run-Id'] as const;

/**
 * CORS (`@fastify/cors`) for the configured origins. Register it before the identity plugin: its
 * onRequest hook answers preflights (which carry no `Authorization`) before auth is checked, and
 * sets the headers on the reply before any route runs, so 401/429 problems and hijacked SSE
 * responses (which copy the reply's headers) carry them too.
 */
export const corsPlugin = fp<CorsPluginOptions>(
  async (app, { origins }) => {
    if (origins.length === 0) return;
    await app.register(fastifyCors, {
      origin: origins.includes('*') ? '*' : [...origins],
      methods: ['GET', 'HEAD', 'POST', 'DELETE'],
      allowedHeaders: [...CORS_ALLOWED_HEADERS],
      exposedHeaders: [...CORS_EXPOSED_HEADERS],
      maxAge: 600,
      // An OPTIONS request without Origin gets the same 204 rather than a text/plain 400.
      strictPreflight: false,
    });
  },
  { name: 'runway-cors', fastify: '5.x' },
);
