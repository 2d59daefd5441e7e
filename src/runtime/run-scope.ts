import { performance } from 'node:perf_hooks';
import type { RunContext, RunConversation, StartStepOptions, StepEnd, StepEventData, StepHandle, StepKind } from '../core/context.js';
import type { Logger } from '../core/logger.js';
import { isTerminalStatus, zeroUsage, type CancelReason, type Usage } from '../core/run.js';
import type { RunRecorder } from './run-recorder.js';

/** Why a run's signal fired. */
export type AbortCause = CancelReason | 'timeout' | 'store_failed';

/** The reason a run's signal aborts with: an AbortError that says why. */
export class RunAbortedError extends Error {
  override readonly name = 'AbortError';
  constructor(override readonly cause: AbortCause) {
    super(`Run aborted (${cause})`);
  }
}

export interface RunIdentity {
  runId: string;
  userId: string;
  requestId: string;
  conversationId: string | null;
  workflow: string;
}

/**
 * One run's isolated state as its workflow sees it (the RunContext): who it belongs to, its
 * cancellation, its steps and usage. What it records goes through the run's recorder.
 */
export class RunScope implements RunContext {
  readonly root_step_id = 's0';
  readonly usage: Usage = zeroUsage();
  readonly user_id: string;
  readonly run_id: string;
  readonly request_id: string;
  readonly conversation_id: string | null;
  readonly workflow: string;
  /** Set for runs with a `conversation_id` before the workflow starts. */
  conversation: (RunConversation & { commit(runId: string): Promise<void> }) | undefined;
  /** Made when something asks for the signal: most runs never need one (BENCHMARKS.md). */
  private controller: AbortController | undefined;
  private abortListeners: (() => void)[] | undefined;
  private cause: AbortCause | undefined;
  private stepCounter = 0;
  private logger: Logger | undefined;

  constructor(
    identity: RunIdentity,
    private readonly recorder: RunRecorder,
    private readonly baseLog: Logger,
  ) {
    this.user_id = identity.userId;
    this.run_id = identity.runId;
    this.request_id = identity.requestId;
    this.conversation_id = identity.conversationId;
    this.workflow = identity.workflow;
  }

  /** The run's logger: the starting request's logger (which carries `reqId`) plus `run_id`. */
  get log(): Logger {
    return (this.logger ??= this.baseLog.child({ run_id: this.run_id }));
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.cause !== undefined) this.controller.abort(new RunAbortedError(this.cause));
    }
    return this.controller.signal;
  }

  /** Calls `fn` once when the run aborts (at once if it has), without making a signal; returns the function that stops listening. */
  onAbort(fn: () => void): () => void {
    if (this.cause !== undefined) {
      fn();
      return () => {};
    }
    (this.abortListeners ??= []).push(fn);
    return () => {
      const listeners = this.abortListeners;
      if (listeners !== undefined) listeners.splice(listeners.indexOf(fn) >>> 0, 1);
    };
  }

  /** The first abort's cause; later aborts do not change it. */
  get abortCause(): AbortCause | undefined {
    return this.cause;
  }

  /** Aborts the run once; the first cause wins. */
  abort(cause: AbortCause): void {
    // A run that has ended is not aborted after the fact (a client closing after its answer).
    if (this.cause !== undefined || isTerminalStatus(this.recorder.status)) return;
    this.cause = cause;
    this.controller?.abort(new RunAbortedError(cause));
    const listeners = this.abortListeners;
    this.abortListeners = undefined;
    if (listeners !== undefined) for (const fn of listeners) fn();
  }

  // ---- RunContext ----

  token(delta: string, stepId: string): void {
    if (this.cause !== undefined) return;
    // A non-string from untyped code becomes its string, as it would in a template.
    this.recorder.emit('token', { delta: typeof delta === 'string' ? delta : String(delta), step_id: stepId });
  }

  startStep(kind: StepKind, name: string, options: StartStepOptions = {}): StepHandle {
    const parent = options.parent_id === undefined ? this.root_step_id : options.parent_id;
    return this.openStep(`s${++this.stepCounter}`, parent, kind, name, options);
  }

  /** The WORKFLOW step that parents every other step of the run. */
  startWorkflowStep(input: unknown): StepHandle {
    return this.openStep(this.root_step_id, null, 'WORKFLOW', this.workflow, { input });
  }

  addUsage(usage: Partial<Usage>): void {
    this.usage.prompt_tokens += usage.prompt_tokens ?? 0;
    this.usage.completion_tokens += usage.completion_tokens ?? 0;
    this.usage.total_tokens += usage.total_tokens ?? (usage.prompt_tokens ?? 0) + (usage.completion_tokens ?? 0);
  }

  private openStep(step_id: string, parent_id: string | null, kind: StepKind, name: string, options: StartStepOptions): StepHandle {
    const startedAt = performance.now();
    const start: StepEventData = { step_id, parent_id, kind: `${kind}_START`, name, ...options.extra };
    if (options.input !== undefined) start.data = { input: options.input };
    this.recorder.emit('step', start);
    let ended = false;
    return {
      step_id,
      end: (result: StepEnd = {}) => {
        if (ended) return;
        ended = true;
        const duration_ms = Math.round((performance.now() - startedAt) * 1000) / 1000;
        const end: StepEventData = { step_id, parent_id, kind: `${kind}_END`, name, duration_ms, ...result.extra };
        if (result.error !== undefined) end.data = { error: result.error };
        else if (result.output !== undefined) end.data = { output: result.output };
        if (result.usage) end.usage = result.usage;
        this.recorder.emit('step', end);
      },
    };
  }
}
