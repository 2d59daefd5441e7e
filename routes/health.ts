import type { FastifyInstance } from 'fastify';
import { problem } from '../src/http/problem.js';

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { runtime } = app;
  const config = { public: true };

  /** Liveness: the process answers. */
  app.get('/healthz', { config }, async () => ({ status: 'ok' }));

  /** Readiness: false while draining or when the store cannot be reached. */
  app.get('/readyz', { config }, async (request, reply) => {
    if (runtime.isDraining) {
      return reply.code(503).type('application/problem+json').header('retry-after', '5').send(problem('shutting_down', 'The server is draining'));
    }
    try {
      await runtime.ping();
    } catch (err) {
      request.log.warn({ err }, 'store unreachable');
      return reply.code(503).type('application/problem+json').header('retry-after', '5').send(problem('unavailable', 'The store is unreachable'));
    }
    return { status: 'ready' };
  });
}
