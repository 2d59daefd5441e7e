import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from './logger.js';
import type { Usage } from '../store/run.js';
import type { StepHandle, StepKind } from './step.js';
import type { RunConversation } from './run-conversation.js';

export interface StartStepOptions {
  /** Defaults to the run's WORKFLOW step. */
  parent_id?: string | null;
  input?: unknown;
  /** Extra fields kept on the START event (model, message count…). */
  extra?: Record<string, unknown>;
}

/**
 * Everything a run may know about itself. Workflows and tools receive it as an argument, and the
 * same object is the AsyncLocalStorage store, so code deep in a call stack can find it with
 * `currentRunContext()`. Nothing user-specific lives in module state.
 *
 * @example
 *   const step = ctx.startStep('FUNCTION', 'lookup', { input: q })
 *   const answer = await lookup(q, { signal: ctx.signal })
 *   step.end({ output: answer })
 */
export interface RunContext {
  readonly user_id: string;
  readonly run_id: string;
  readonly request_id: string;
  readonly conversation_id: string | null;
  readonly workflow: string;
  /** Aborts on cancel, run timeout, client disconnect (blocking runs) and shutdown. */
  readonly signal: AbortSignal;
  /** `step_id` of the run's WORKFLOW step: the default parent of every other step. */
  readonly root_step_id: string;
  readonly log: Logger;
  /** Emits a `token` event. */
  token(delta: string, stepId: string): void;
  /** Emits a `*_START` step event and returns the handle that emits its `*_END`. */
  startStep(kind: StepKind, name: string, options?: StartStepOptions): StepHandle;
  /** Adds to the run's usage totals (sums every LLM call). */
  addUsage(usage: Partial<Usage>): void;
  /** The caller's conversation when the run has a `conversation_id` (and the store keeps them). */
  readonly conversation?: RunConversation | undefined;
}

const storage = new AsyncLocalStorage<RunContext>();

/** Runs `fn` with `ctx` as the current run context. */
export function withRunContext<T>(ctx: RunContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The context of the run executing this code, or undefined outside any run. */
export function currentRunContext(): RunContext | undefined {
  return storage.getStore();
}
