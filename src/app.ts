import { randomId } from './runtime/random-id.js';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { conversationRoutes } from '../routes/conversations.js';
import { healthRoutes } from '../routes/health.js';
import { openAiRoutes } from '../routes/openai-compat.js';
import { runRoutes } from '../routes/runs.js';
import { RunJson } from '../routes/schemas.js';
import { workflowRoutes } from '../routes/workflows.js';
import type { RunwayConfig } from './config/config-schema.js';
import { parseConfig } from './config/load-config.js';
import { clientErrorHandler } from './http/client-errors.js';
import { installErrorHandling, sendProblem, toRunwayError } from './http/error-handler.js';
import { installJsonBodyParser } from './http/json-body.js';
import { LingeringClose, type LingerLimits } from './http/lingering-close.js';
import { withRedaction } from './http/log-redaction.js';
import { StreamQuota } from './http/stream-quota.js';
import { corsPlugin } from './plugins/cors-plugin.js';
import { identityPlugin } from './plugins/identity-plugin.js';
import { metricsPlugin } from './plugins/metrics-plugin.js';
import { openapiPlugin } from './plugins/openapi-plugin.js';
import { rateLimitPlugin } from './plugins/rate-limit-plugin.js';
import { runtimePlugin } from './plugins/runtime-plugin.js';
import { tracingPlugin } from './plugins/tracing-plugin.js';
import type { Stores } from './store/stores.js';
import type { BuilderRegistry } from './workflows/builder.js';

export interface BuildAppOptions {
  /** A validated config (`loadConfig()`), or a raw object validated here (tests). Default: built-ins. */
  config?: RunwayConfig | Record<string, unknown>;
  /** Extra workflow and tool types, and ready-made tools. */
  registry?: BuilderRegistry;
  /** The stores runs live in; default: the memory store the config describes. */
  stores?: Stores;
  /** Fastify logger option; default: pino at `server.log_level`. */
  logger?: FastifyServerOptions['logger'];
  /** How long and how much a connection answered before its request was read lingers (LingeringClose). */
  linger?: LingerLimits;
}

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** Echoes a sane client `X-Request-Id`, else makes one. */
function requestId(req: IncomingMessage): string {
  const header = req.headers['x-request-id'];
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomId();
}

/**
 * Builds the Runway app: the same instance the server listens with and the tests inject into.
 *
 * @example
 *   const app = await buildApp({ config: { runtime: { max_concurrency: 2 } } })
 *   const res = await app.inject({ method: 'POST', url: '/runs', payload: { input: 'hi' } })
 */
export async function buildApp(options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const config = parseConfig(options.config ?? {});
  // Connections answered before their request was read (body too large or compressed, headers
  // Node refused) are closed gently, so the client gets the answer rather than a reset.
  const lingering = new LingeringClose(options.linger);
  const app = Fastify({
    // API keys never reach the logs: the Authorization header is redacted wherever it is logged.
    logger: withRedaction(options.logger ?? { level: config.server.log_level }, config.server.log_level),
    bodyLimit: config.server.body_limit_bytes,
    genReqId: requestId,
    requestIdHeader: false,
    // Draining is ours (readyz false, `shutting_down` problems) and happens before close.
    return503OnClosing: false,
    // Errors Fastify raises before routing (bad percent-encoding, over-long params) skip every
    // hook and the error handler: answer them as problem+json with the request id all the same.
    frameworkErrors: (err, request, reply) => {
      reply.header('x-request-id', request.id);
      sendProblem(reply, toRunwayError(err, request));
    },
    // What Node's HTTP parser refuses before any request exists (431 headers too large, a bad
    // Content-Length…): problem+json written on the socket (see client-errors for its limits).
    clientErrorHandler: clientErrorHandler(lingering),
  });
  // One count of open SSE streams per user for the whole app: both route plugins' OpenStreams use it.
  app.decorate('streamQuota', new StreamQuota(config.runtime.max_streams_per_user));
  app.setValidatorCompiler(validatorCompiler);
  // text/plain would reach the body schema as a string; refuse it as a media type instead.
  app.removeContentTypeParser('text/plain');
  // JSON bodies: bounded in size (with a lingering close) and nesting depth, no poisoning keys,
  // no content coding; each refusal a problem that says what was refused (json-body).
  installJsonBodyParser(app, lingering);
  // Their answers are written by then: the server's close does not wait out their lingering.
  app.addHook('preClose', (done) => {
    lingering.destroyAll();
    done();
  });
  installErrorHandling(app);
  app.addSchema(RunJson);

  // Callback-style hooks: an async hook costs a promise on every request.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });

  // CORS first: preflights (no Authorization) are answered before the identity hook checks keys.
  await app.register(corsPlugin, { origins: config.cors.origins });
  await app.register(identityPlugin, { apiKeys: config.auth.api_keys });
  await app.register(rateLimitPlugin, { max: config.rate_limit.max, windowMs: config.rate_limit.window_ms });
  await app.register(runtimePlugin, { config, ...(options.registry && { registry: options.registry }), ...(options.stores && { stores: options.stores }) });
  // Before the routes: the OpenAPI document is made from the routes as they are registered.
  await app.register(openapiPlugin);
  await app.register(metricsPlugin);
  await app.register(tracingPlugin);
  await app.register(healthRoutes);
  await app.register(workflowRoutes);
  await app.register(runRoutes, { sseKeepaliveMs: config.runtime.sse_keepalive_ms });
  await app.register(conversationRoutes);
  await app.register(openAiRoutes, { sseKeepaliveMs: config.runtime.sse_keepalive_ms });
  return app;
}
