import { RunwayError, type FieldIssue } from '../core/errors.js';
import type { StoredEvent } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { Run } from '../core/run.js';
import type { Conversation } from '../store/conversation-store.js';
import type { RunListQuery, RunPage } from '../store/run-store.js';
import type { Stores } from '../store/stores.js';
import type { Workflow } from '../workflows/workflow.js';
import { tooDeep } from './json-depth.js';
import { randomId } from './random-id.js';
import { ConversationHandle } from './run-conversation.js';
import { RunHandle } from './run-handle.js';
import type { Runner, RunSpec } from './runner.js';

export interface RunOptions {
  /** The workflow to run; the runtime's default when absent. */
  workflow?: string;
  conversationId?: string;
  metadata?: Record<string, unknown>;
  /** At most the runtime's `run_timeout_ms`. */
  timeoutMs?: number;
  /** Aborting it cancels the run (`client_disconnected`). */
  signal?: AbortSignal;
}

export interface SessionOptions {
  userId: string;
  /** Carried on the run's context and logs; made up when absent. */
  requestId?: string;
  log?: Logger;
}

/** What a Session needs of its runtime. */
export interface SessionParts {
  workflows: ReadonlyMap<string, Workflow>;
  defaultWorkflow: string;
  runner: Runner;
  stores: Stores;
}

/**
 * One user's view of the runtime: every run it starts is that user's, and it reads only that
 * user's runs and conversations (another user's are `not_found`, never forbidden). The seed's
 * `SessionManager.session(user_id)`.
 *
 * @example
 *   const session = runtime.session({ userId: 'alice' })
 *   const run = await session.run('hello', { workflow: 'echo' })
 *   const final = await run.result()
 */
export class Session {
  readonly userId: string;
  private readonly requestId: string | undefined;
  private readonly log: Logger | undefined;

  constructor(
    private readonly parts: SessionParts,
    options: SessionOptions,
  ) {
    this.userId = options.userId;
    this.requestId = options.requestId;
    this.log = options.log;
  }

  /**
   * Validates the input against the workflow and starts the run (queued until admitted). Rejects
   * with `invalid_request` (its `issues` name the field), `queue_full` or `shutting_down`.
   */
  async run(input: unknown, options: RunOptions = {}): Promise<RunHandle> {
    const name = options.workflow ?? this.parts.defaultWorkflow;
    const workflow = this.parts.workflows.get(name);
    if (!workflow) throw invalid(`Workflow "${name}" does not exist`, [{ field: 'workflow', path: [], message: `Unknown workflow "${name}"` }]);
    for (const [field, value] of [['input', input], ['metadata', options.metadata]] as const) {
      const path = tooDeep(value);
      if (path !== undefined) throw invalid(`The ${field} nests too deep`, [{ field, path, message: 'Nested deeper than 64 levels' }]);
    }
    const parsed = workflow.inputSchema.safeParse(input);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((issue) => ({ field: 'input', path: issue.path, message: issue.message }));
      throw invalid(`The input does not fit workflow "${name}"`, issues);
    }
    const { conversations } = this.parts.stores;
    const spec: RunSpec = {
      workflow,
      input: parsed.data,
      userId: this.userId,
      requestId: this.requestId ?? randomId(),
      conversationId: options.conversationId ?? null,
      metadata: options.metadata ?? {},
    };
    if (options.conversationId !== undefined) spec.conversation = new ConversationHandle(conversations, this.userId, options.conversationId);
    if (options.timeoutMs !== undefined) spec.timeoutMs = options.timeoutMs;
    if (this.log !== undefined) spec.log = this.log;
    const live = await this.parts.runner.start(spec);
    const signal = options.signal;
    if (signal !== undefined) {
      const onAbort = () => this.parts.runner.abortLocal(live.id, 'client_disconnected');
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        void live.done.finally(() => signal.removeEventListener('abort', onAbort));
      }
    }
    return new RunHandle(live, this.parts.stores.events);
  }

  /** The user's run; another user's run is `not_found`. */
  async get(runId: string): Promise<Run> {
    const run = await this.parts.stores.runs.get(runId);
    if (!run || run.user_id !== this.userId) throw new RunwayError('not_found', `Run ${runId} does not exist`);
    return run;
  }

  /** The user's runs, newest first. */
  list(query: Omit<RunListQuery, 'userId'>): Promise<RunPage> {
    return this.parts.stores.runs.list({ ...query, userId: this.userId });
  }

  /** Cancels the user's queued or running run; `conflict` when it has finished. */
  async cancel(runId: string): Promise<Run> {
    return this.parts.runner.cancel(await this.get(runId));
  }

  /**
   * The events of the user's run after `afterId`: replayed, then followed to the terminal event.
   * Given the Run this session has just read (`get`), it is not looked up again.
   */
  events(run: string | Pick<Run, 'id' | 'user_id'>, afterId: number, signal?: AbortSignal): AsyncIterable<StoredEvent> {
    const read = (runId: string) => this.parts.stores.events.read(runId, afterId, signal === undefined ? {} : { signal });
    if (typeof run !== 'string') {
      if (run.user_id !== this.userId) throw new RunwayError('not_found', `Run ${run.id} does not exist`);
      // The log's own iterator: every parked follower holds each layer wrapped around it.
      return read(run.id);
    }
    const session = this;
    return (async function* () {
      yield* read((await session.get(run)).id);
    })();
  }

  /** The user's conversation; another user's (or an unknown one) is `not_found`. */
  async conversation(id: string): Promise<Conversation> {
    const conv = await this.parts.stores.conversations.get(this.userId, id);
    if (!conv) throw new RunwayError('not_found', `Conversation ${id} does not exist`);
    return conv;
  }

  /** Forgets the user's conversation; `not_found` when there is none. */
  async deleteConversation(id: string): Promise<void> {
    if (!(await this.parts.stores.conversations.delete(this.userId, id))) throw new RunwayError('not_found', `Conversation ${id} does not exist`);
  }
}

function invalid(message: string, issues: FieldIssue[]): RunwayError {
  return new RunwayError('invalid_request', message, { issues });
}
