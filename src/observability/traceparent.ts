import { createTraceState, isSpanContextValid, type SpanContext } from '@opentelemetry/api';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The remote parent a W3C Trace Context `traceparent` header names (and its `tracestate`), or
 * undefined when the header is malformed: version `ff`, all-zero ids, or extra fields on version 00
 * (https://www.w3.org/TR/trace-context/#traceparent-header). Later versions are read as version 00.
 *
 * @example
 *   parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
 *   // { traceId: '4bf9…4736', spanId: '00f0…02b7', traceFlags: 1, isRemote: true }
 */
export function parseTraceparent(traceparent: string, tracestate?: string): SpanContext | undefined {
  const match = TRACEPARENT.exec(traceparent.trim());
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  const context: SpanContext = { traceId: traceId!, spanId: spanId!, traceFlags: parseInt(flags!, 16), isRemote: true };
  if (!isSpanContextValid(context)) return undefined;
  if (tracestate !== undefined && tracestate !== '') context.traceState = createTraceState(tracestate);
  return context;
}
