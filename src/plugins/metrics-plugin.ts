import fp from 'fastify-plugin';
import { RunwayError } from '../core/errors.js';
import { RunMetrics } from '../observability/run-metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Prometheus metrics of this app (`GET /metrics`). */
    metrics: RunMetrics;
  }
}

/**
 * `GET /metrics` (public): Runway's metrics, all named `runway_*`, in Prometheus text format, plus
 * Node's process metrics. Runs are observed through the run events the runner appends; the only
 * request hook is an `onError` hook (it runs on failed requests only) counting runs refused before
 * they were created (`queue_full`, `shutting_down`). Nothing is added to a successful request.
 */
export const metricsPlugin = fp(
  async (app) => {
    const metrics = new RunMetrics(app.runtime.sessions, app.runtime.workflows.keys());
    const unobserve = app.runtime.observe(metrics);
    app.decorate('metrics', metrics);

    app.addHook('onError', (_request, _reply, error, done) => {
      // A refusal with a run id is a run that was created and then ended (counted from its events).
      if (error instanceof RunwayError && error.runId === undefined && (error.code === 'queue_full' || error.code === 'shutting_down')) {
        metrics.rejected(error.code);
      }
      done();
    });

    app.get(
      '/metrics',
      {
        config: { public: true },
        schema: {
          summary: 'Prometheus metrics',
          description: 'Every Runway metric is named `runway_*`; Node process metrics are included.',
          tags: ['operations'],
          response: {
            200: {
              description: 'Prometheus text exposition format 0.0.4',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
      },
      async (_request, reply) => reply.type(metrics.contentType).send(await metrics.render()),
    );

    app.addHook('onClose', (_instance, done) => {
      unobserve();
      done();
    });
  },
  { name: 'runway-metrics', fastify: '5.x', dependencies: ['runway-runtime'] },
);
