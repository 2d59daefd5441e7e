import fp from 'fastify-plugin';
import { RunwayError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller. Every run, stream and list is scoped to it. */
    userId: string;
  }
  interface FastifyContextConfig {
    /** Routes that need no user (health, docs): identity is not checked there. */
    public?: boolean;
  }
}

const USER_ID = /^[A-Za-z0-9._@:+-]{1,128}$/;

/**
 * Who is calling. Without API keys (development) the user is `X-User-Id` or `anonymous`; the value
 * is checked so it can be logged and used as a key safely.
 */
export const identityPlugin = fp(
  async (app) => {
    app.decorateRequest('userId', 'anonymous');
    app.addHook('onRequest', (request, _reply, done) => {
      const header = request.headers['x-user-id'];
      if (header === undefined || request.routeOptions.config?.public) return done();
      if (typeof header !== 'string' || !USER_ID.test(header)) {
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
