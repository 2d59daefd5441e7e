import { context, propagation, trace, type TracerProvider } from '@opentelemetry/api';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import { RunTracer } from '../observability/run-tracer.js';
import { parseTraceparent } from '../observability/traceparent.js';
import { RUNWAY_VERSION } from '../version.js';

export const TRACER_NAME = 'runway';

/**
 * Whether an OpenTelemetry SDK has registered a tracer provider. The API's global provider is a
 * proxy that answers with no-op tracers until an SDK sets its delegate.
 */
export function tracingRegistered(provider: TracerProvider = trace.getTracerProvider()): boolean {
  const proxy = provider as TracerProvider & { getDelegateTracer?: (name: string) => unknown };
  // Not the API's proxy (another registration path): assume a real provider.
  if (typeof proxy.getDelegateTracer !== 'function') return true;
  return proxy.getDelegateTracer(TRACER_NAME) !== undefined;
}

/**
 * Makes the request's remote trace the active OpenTelemetry context for its handler, so a run it
 * creates gets the caller's trace as its parent. An active span (an instrumented HTTP server)
 * wins; else the globally configured propagator (`OTEL_PROPAGATORS`) reads the headers; else
 * a W3C `traceparent` is read here, so it works whatever the SDK's propagators are.
 */
function remoteParent(request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const active = context.active();
  if (trace.getSpan(active) !== undefined) return done();
  let ctx = propagation.extract(active, request.headers);
  if (trace.getSpanContext(ctx) === undefined) {
    const header = request.headers.traceparent;
    const spanContext = typeof header === 'string' ? parseTraceparent(header, headerValue(request.headers.tracestate)) : undefined;
    if (spanContext === undefined) return done();
    ctx = trace.setSpanContext(active, spanContext);
  }
  // Fastify calls the handler from `done`, so the handler and what it starts run in `ctx`.
  context.with(ctx, done);
}

/** How long closing the app waits for the SDK to export the last spans. */
const FLUSH_TIMEOUT_MS = 5000;

/**
 * Asks the registered SDK to export what it holds (a batch processor keeps spans for seconds):
 * the server exits right after closing the app, and the last runs' spans must not be lost.
 */
async function flushSpans(): Promise<void> {
  const proxy = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider };
  const provider = (proxy.getDelegate?.() ?? proxy) as TracerProvider & { forceFlush?: () => Promise<void> };
  if (typeof provider.forceFlush !== 'function') return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    provider.forceFlush().catch(() => {}),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, FLUSH_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

/**
 * OpenTelemetry tracing through `@opentelemetry/api` only: a span per run and child spans per step
 * (see RunTracer). The exporter is the SDK's business: with `@opentelemetry/sdk-node` registered
 * before the app is built (e.g. `node --import ./examples/otel-preload.mjs`), spans go where the
 * standard `OTEL_*` variables say. With no SDK registered when the app is built, this plugin adds
 * nothing at all: no hook, no observer.
 */
export const tracingPlugin = fp(
  async (app) => {
    if (!tracingRegistered()) return;
    const { runtime } = app;
    const tracer = new RunTracer(trace.getTracer(TRACER_NAME, RUNWAY_VERSION), (runId) => runtime.runContext(runId));
    const unobserve = runtime.observe(tracer);
    app.addHook('preHandler', remoteParent);
    app.addHook('onClose', async () => {
      unobserve();
      tracer.endAll();
      await flushSpans();
    });
  },
  { name: 'runway-tracing', fastify: '5.x', dependencies: ['runway-runtime'] },
);
