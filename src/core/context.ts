import type { Logger } from './logger.js';
import type { Usage } from './run.js';

/** The intermediate-step kinds of the NeMo Agent Toolkit, without their _START/_END suffix. */
export type StepKind = 'WORKFLOW' | 'LLM' | 'TOOL' | 'FUNCTION' | 'SPAN' | 'CUSTOM';

/** Payload of a `step` event (DESIGN §2). A START and its END share `step_id`. */
export interface StepEventData {
  step_id: string;
  parent_id: string | null;
  kind: `${StepKind}_START` | `${StepKind}_END`;
  name: string;
  data?: { input?: unknown; output?: unknown; error?: unknown };
  usage?: Partial<Usage>;
  duration_ms?: number;
  [extra: string]: unknown;
}

export interface StepEnd {
  output?: unknown;
  error?: unknown;
  usage?: Partial<Usage>;
  /** Extra fields kept on the END event (finish_reason, model…). */
  extra?: Record<string, unknown>;
}

/** A started step; `end()` emits its END event once (later calls are ignored). */
export interface StepHandle {
  readonly step_id: string;
  end(result?: StepEnd): void;
}

export interface StartStepOptions {
  /** Defaults to the run's WORKFLOW step. */
  parent_id?: string | null;
  input?: unknown;
  /** Extra fields kept on the START event (model, message count…). */
  extra?: Record<string, unknown>;
}

/** One message of a conversation as kept between runs. */
export interface ConversationMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
  /** The run that added it. */
  run_id: string;
  created_at: string;
}

/** A message a workflow adds to its conversation. */
export interface ConversationTurn {
  role: ConversationMessage['role'];
  content: string;
}

/**
 * The caller's conversation, as a run with a `conversation_id` sees it through `ctx.conversation`.
 * Keyed by the run's own user, so a workflow cannot reach another user's conversation.
 *
 * @example
 *   const prior = ctx.conversation ? await ctx.conversation.history() : []
 *   ctx.conversation?.append({ role: 'user', content: question }, { role: 'assistant', content: answer })
 */
export interface RunConversation {
  readonly id: string;
  /** The messages of earlier runs, oldest first ([] for a new conversation). */
  history(): Promise<readonly ConversationMessage[]>;
  /** Stages messages; they are written only if the run succeeds. */
  append(...turns: ConversationTurn[]): void;
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
