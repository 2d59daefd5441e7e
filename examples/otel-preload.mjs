// Exports Runway's traces with the OpenTelemetry Node SDK, configured by the standard OTEL_*
// environment variables. Runway itself depends on @opentelemetry/api only; install the SDK next
// to it (Node 20: the 0.2xx line; 0.300 and later want Node 22):
//
//   npm install @opentelemetry/sdk-node@^0.223.0
//
// and preload this file, so the SDK is registered before Runway builds its app:
//
//   OTEL_SERVICE_NAME=runway \
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
//   node --import ./examples/otel-preload.mjs dist/src/server.js
//
//   OTEL_TRACES_EXPORTER=console node --import ./examples/otel-preload.mjs dist/src/server.js   # spans on stdout
//
// Everything else is OTEL_* too: OTEL_TRACES_EXPORTER (otlp, console, zipkin, none),
// OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, grpc), OTEL_TRACES_SAMPLER(_ARG),
// OTEL_PROPAGATORS (tracecontext,baggage by default), OTEL_RESOURCE_ATTRIBUTES.
import { NodeSDK } from '@opentelemetry/sdk-node';

// No instrumentations: Runway makes the spans (one per run, one per step). Add
// @opentelemetry/auto-instrumentations-node here to get HTTP server spans too; runs then nest
// under the request's span.
const sdk = new NodeSDK({ instrumentations: [] });
sdk.start();
// On SIGTERM Runway drains its runs, then flushes the SDK's spans as it closes, before it exits.
