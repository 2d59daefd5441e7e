import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import type { RunContext } from '../runtime/run-context.js';
import type { StepEventData } from '../core/context.js';
import type { RunEventType } from '../core/events.js';
import type { RunEventObserver } from '../runtime/run-observers.js';

/** One traced run: its span and the spans of its open steps, by step id. */
interface TracedRun {
  span: Span;
  steps: Map<string, Span>;
}

interface StepFailure {
  code?: unknown;
  message?: unknown;
}

/**
 * Turns run events into OpenTelemetry spans: one span per run (from queued to its terminal event),
 * child spans per step (WORKFLOW, LLM, TOOL, FUNCTION…) nested as the steps' `parent_id`s nest.
 * The run span's parent is the OpenTelemetry context active where the run was created: the HTTP
 * server span of an instrumented server, or the request's `traceparent` (see tracing-plugin).
 *
 * Spans carry names, ids, models, token usage and errors; never a run's input or output.
 * A run whose span is not recording (no SDK registered, or sampled out) costs one `startSpan`.
 */
export class RunTracer implements RunEventObserver {
  private readonly runs = new Map<string, TracedRun>();

  /** `lookup` finds a live run's context (the runner's `local`). */
  constructor(
    private readonly tracer: Tracer,
    private readonly lookup: (runId: string) => RunContext | undefined,
  ) {}

  /** Runs being traced now. */
  get size(): number {
    return this.runs.size;
  }

  onRunEvent(runId: string, type: Exclude<RunEventType, 'token'>, data: unknown): void {
    if (type === 'run.queued') {
      this.startRun(runId, (data as { workflow: string }).workflow);
      return;
    }
    const run = this.runs.get(runId);
    if (run === undefined) return;
    switch (type) {
      case 'step':
        this.onStep(run, data as StepEventData);
        return;
      case 'run.started':
        run.span.addEvent('run.started');
        return;
      case 'run.succeeded':
      case 'run.failed':
      case 'run.cancelled':
        this.runs.delete(runId);
        endRun(run, type, data);
        return;
    }
  }

  /** Ends every open span (the app is closing). */
  endAll(): void {
    for (const run of this.runs.values()) endRun(run, 'run.cancelled', { reason: 'shutdown' });
    this.runs.clear();
  }

  private startRun(runId: string, workflow: string): void {
    // The parent is the active context: where the run was created.
    const span = this.tracer.startSpan(`run ${workflow}`, { kind: SpanKind.INTERNAL });
    if (!span.isRecording()) return;
    const ctx = this.lookup(runId);
    const attributes: Attributes = { 'runway.run.id': runId, 'runway.workflow': workflow };
    if (ctx !== undefined) {
      attributes['runway.user.id'] = ctx.user_id;
      attributes['runway.request.id'] = ctx.request_id;
      if (ctx.conversation_id !== null) attributes['runway.conversation.id'] = ctx.conversation_id;
    }
    span.setAttributes(attributes);
    this.runs.set(runId, { span, steps: new Map() });
  }

  private onStep(run: TracedRun, step: StepEventData): void {
    if (step.kind.endsWith('_START')) {
      const kind = step.kind.slice(0, -'_START'.length);
      const parent = (step.parent_id !== null && run.steps.get(step.parent_id)) || run.span;
      const span = this.tracer.startSpan(
        stepSpanName(kind, step),
        { kind: SpanKind.INTERNAL, attributes: startAttributes(kind, step) },
        trace.setSpan(ROOT_CONTEXT, parent),
      );
      run.steps.set(step.step_id, span);
      return;
    }
    const span = run.steps.get(step.step_id);
    if (span === undefined) return;
    run.steps.delete(step.step_id);
    span.setAttributes(endAttributes(step));
    const error = step.data?.error as StepFailure | undefined;
    if (error !== undefined) fail(span, error);
    span.end();
  }
}

function stepSpanName(kind: string, step: StepEventData): string {
  if (kind === 'LLM') return `chat ${typeof step.model === 'string' ? step.model : step.name}`;
  if (kind === 'TOOL') return `execute_tool ${step.name}`;
  return `${kind.toLowerCase()} ${step.name}`;
}

/** OpenTelemetry's GenAI conventions where they fit, `runway.*` for the rest. */
function startAttributes(kind: string, step: StepEventData): Attributes {
  const attributes: Attributes = { 'runway.step.id': step.step_id, 'runway.step.kind': kind, 'runway.step.name': step.name };
  if (kind === 'LLM') {
    attributes['gen_ai.operation.name'] = 'chat';
    if (typeof step.model === 'string') attributes['gen_ai.request.model'] = step.model;
  } else if (kind === 'TOOL') {
    attributes['gen_ai.operation.name'] = 'execute_tool';
    attributes['gen_ai.tool.name'] = step.name;
    if (typeof step.tool_call_id === 'string') attributes['gen_ai.tool.call.id'] = step.tool_call_id;
  }
  return attributes;
}

function endAttributes(step: StepEventData): Attributes {
  const attributes: Attributes = {};
  if (step.usage?.prompt_tokens !== undefined) attributes['gen_ai.usage.input_tokens'] = step.usage.prompt_tokens;
  if (step.usage?.completion_tokens !== undefined) attributes['gen_ai.usage.output_tokens'] = step.usage.completion_tokens;
  if (typeof step.model === 'string') attributes['gen_ai.response.model'] = step.model;
  if (typeof step.finish_reason === 'string') attributes['gen_ai.response.finish_reasons'] = [step.finish_reason];
  if (typeof step.time_to_first_token_ms === 'number') attributes['runway.llm.time_to_first_token_ms'] = step.time_to_first_token_ms;
  return attributes;
}

function fail(span: Span, error: StepFailure): void {
  const code = typeof error.code === 'string' ? error.code : 'error';
  span.setAttribute('error.type', code);
  span.setStatus({ code: SpanStatusCode.ERROR, ...(typeof error.message === 'string' && { message: error.message }) });
}

function endRun(run: TracedRun, type: 'run.succeeded' | 'run.failed' | 'run.cancelled', data: unknown): void {
  // Steps a workflow left open end with the run: a span must never outlive its trace's root.
  for (const span of run.steps.values()) span.end();
  run.steps.clear();
  const span = run.span;
  span.setAttribute('runway.run.status', type.slice('run.'.length));
  const payload = data as { usage?: { prompt_tokens?: number; completion_tokens?: number }; error?: StepFailure; reason?: unknown } | undefined;
  if (payload?.usage?.prompt_tokens !== undefined) span.setAttribute('gen_ai.usage.input_tokens', payload.usage.prompt_tokens);
  if (payload?.usage?.completion_tokens !== undefined) span.setAttribute('gen_ai.usage.output_tokens', payload.usage.completion_tokens);
  if (type === 'run.failed' && payload?.error !== undefined) fail(span, payload.error);
  if (type === 'run.cancelled' && typeof payload?.reason === 'string') span.setAttribute('runway.run.cancel_reason', payload.reason);
  span.end();
}
