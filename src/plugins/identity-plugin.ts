import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { USER_ID_PATTERN, type ApiKeyEntry } from '../config/access-schema.js';
import { RunwayError } from '../core/errors.js';
import { ApiKeyTable, bearerToken } from './api-key-table.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller. Every run, stream and list is scoped to it. */
    userId: string;
  }
  interface FastifyContextConfig {
    /** Routes that need no user (health, metrics, docs, `/`): identity is not checked there. */
    public?: boolean;
  }
}

export interface IdentityPluginOptions {
  /** `auth.api_keys`. None (the default): auth is off, the user is `X-User-Id` or `anonymous`. */
  apiKeys?: readonly ApiKeyEntry[];
}

/** The routes DESIGN §2 leaves open even with API keys, whoever registers them. */
const PUBLIC_PATHS = new Set(['/', '/healthz', '/readyz', '/metrics', '/openapi.json', '/docs']);

/** True for a public path: the list above and everything Swagger UI serves under `/docs/`. */
export function isPublicPath(url: string): boolean {
  return PUBLIC_PATHS.has(url) || url.startsWith('/docs/');
}

const pathOf = (url: string): string => {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
};

/** Marks the public paths' routes `config.public` as they are registered (no per-request work). */
function markPublic(route: RouteOptions): void {
  if (route.config?.public || !isPublicPath(route.url)) return;
  route.config = { ...route.config, public: true };
}

const CHALLENGE = 'Bearer realm="runway"';
const CHALLENGE_INVALID = 'Bearer realm="runway", error="invalid_token"';

/**
 * Who is calling.
 *
 * - With API keys (`auth.api_keys`), every route that is not public needs `Authorization: Bearer
 *   <key>` (`401 unauthorized` with `WWW-Authenticate: Bearer` otherwise); the user is the key's
 *   user and `X-User-Id` is ignored. Keys are compared in constant time (ApiKeyTable).
 * - Without (development), the user is `X-User-Id` or `anonymous`; the value is checked so it can
 *   be logged and used as a key safely.
 *
 * Public routes (`config.public`, and the paths of `isPublicPath` whoever registers them) skip it.
 */
export const identityPlugin = fp<IdentityPluginOptions>(
  async (app, { apiKeys = [] }) => {
    app.decorateRequest('userId', 'anonymous');
    app.addHook('onRoute', markPublic);

    if (apiKeys.length > 0) {
      const keys = new ApiKeyTable(apiKeys);
      // Callback-style: an async hook costs a promise on every request.
      app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
        const header = request.headers.authorization;
        const user = keys.userFor(header);
        if (user !== undefined) {
          request.userId = user;
          return done();
        }
        // Only now look at the route: a request with a good key never pays for `routeOptions`.
        if (request.routeOptions.config?.public) return done();
        // A missing file under a public path (a docs asset) is a plain 404, as it is with a key.
        if (request.is404 && isPublicPath(pathOf(request.url))) return done();
        const presented = bearerToken(header) !== undefined;
        reply.header('www-authenticate', presented ? CHALLENGE_INVALID : CHALLENGE);
        done(new RunwayError('unauthorized', presented ? 'The API key is not valid' : 'Send an API key: Authorization: Bearer <key>'));
      });
      return;
    }

    app.addHook('onRequest', (request, _reply, done) => {
      const header = request.headers['x-user-id'];
      if (header === undefined || request.routeOptions.config?.public) return done();
      if (typeof header !== 'string' || !USER_ID_PATTERN.test(header)) {
        return done(
          new RunwayError('invalid_request', 'X-User-Id must be 1-128 letters, digits or . _ @ : + -', {
            errors: [{ in: 'headers', pointer: '/x-user-id', message: 'Invalid user id' }],
          }),
        );
      }
      request.userId = header;
      done();
    });
  },
  { name: 'runway-identity', fastify: '5.x' },
);
