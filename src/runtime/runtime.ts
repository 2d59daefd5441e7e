import type { Logger } from './logger.js';
import { RunwayError, type FieldError } from '../errors.js';
import type { Conversation, ConversationStore } from '../store/conversation-store.js';
import type { EventLog, StoredEvent } from '../store/event-log.js';
import type { RunListQuery, RunPage, RunStore } from '../store/run-store.js';
import type { Run } from '../store/run.js';
import type { Workflow } from '../workflows/workflow.js';
import type { Runner, StartRunSpec } from './runner.js';
import { ConversationHandle } from './run-conversation.js';
import { Session } from './session.js';
import type { SessionManager } from './session-manager.js';

export interface CreateRunRequest {
  workflow?: string;
  input: unknown;
  userId: string;
  requestId: string;
  conversationId?: string;
  metadata?: Record<string, unknown>;
  timeoutMs?: number;
  log?: Logger;
}

export interface RuntimeParts {
  workflows: ReadonlyMap<string, Workflow>;
  defaultWorkflow: string;
  runner: Runner;
  sessions: SessionManager;
  store: RunStore;
  events: EventLog;
  /** Conversations of `conversation_id` runs; without it such runs get no history. */
  conversations?: ConversationStore;
}

/**
 * What the HTTP layer may ask of the runtime: create, read, follow, cancel and list runs, scoped to
 * the calling user. Routes never reach a store or a model except through here.
 *
 * @example
 *   const session = await runtime.createRun({ input: 'hi', userId, requestId })
 *   const run = await session.done
 */
export class Runtime {
  constructor(private readonly parts: RuntimeParts) {}

  get workflows(): ReadonlyMap<string, Workflow> {
    return this.parts.workflows;
  }
  get defaultWorkflow(): string {
    return this.parts.defaultWorkflow;
  }
  get sessions(): SessionManager {
    return this.parts.sessions;
  }
  get runner(): Runner {
    return this.parts.runner;
  }
  get store(): RunStore {
    return this.parts.store;
  }

  workflow(name: string): Workflow {
    const wf = this.parts.workflows.get(name);
    if (!wf) throw new RunwayError('not_found', `Workflow "${name}" does not exist`);
    return wf;
  }

  /** Validates the input against the workflow and starts the run (queued until admitted). */
  async createRun(req: CreateRunRequest): Promise<Session> {
    return this.startRun(req);
  }

  /**
   * `createRun` for the hot path: the Session itself when the store writes synchronously, and
   * errors (`invalid_request`, `queue_full`, `shutting_down`) thrown rather than rejected.
   */
  startRun(req: CreateRunRequest): Session | Promise<Session> {
    const name = req.workflow ?? this.parts.defaultWorkflow;
    const workflow = this.parts.workflows.get(name);
    if (!workflow) {
      throw new RunwayError('invalid_request', `Workflow "${name}" does not exist`, {
        errors: [{ in: 'body', pointer: '/workflow', message: `Unknown workflow "${name}"` }],
      });
    }
    const parsed = workflow.inputSchema.safeParse(req.input);
    if (!parsed.success) {
      const errors: FieldError[] = parsed.error.issues.map((issue) => ({
        in: 'body',
        pointer: ['/input', ...issue.path.map((p) => String(p))].join('/'),
        message: issue.message,
      }));
      throw new RunwayError('invalid_request', `The input does not fit workflow "${name}"`, { errors });
    }
    const conversations = this.parts.conversations;
    const spec: StartRunSpec = {
      workflow:
        req.conversationId !== undefined && conversations !== undefined
          ? withConversation(workflow, new ConversationHandle(conversations, req.userId, req.conversationId))
          : workflow,
      input: parsed.data,
      userId: req.userId,
      requestId: req.requestId,
      conversationId: req.conversationId ?? null,
    };
    // Optional members assigned, not spread in: spreading small objects is a slow path in V8 (Node 20).
    if (req.metadata !== undefined) spec.metadata = req.metadata;
    if (req.timeoutMs !== undefined) spec.timeoutMs = req.timeoutMs;
    if (req.log !== undefined) spec.log = req.log;
    return this.parts.runner.start(spec);
  }

  /** The caller's run; another user's run is `not_found`, never forbidden. */
  /**
   * The JSON text of a run that has just finished, when the store still has it from keeping the
   * run (see `RunStore.finishedJson`); undefined otherwise, and the caller serializes the Run.
   */
  finishedJson(run: Run): string | undefined {
    return this.parts.store.finishedJson?.(run);
  }

  async getRun(id: string, userId: string): Promise<Run> {
    const run = await this.parts.store.get(id);
    if (!run || run.user_id !== userId) throw new RunwayError('not_found', `Run ${id} does not exist`);
    return run;
  }

  listRuns(query: RunListQuery): Promise<RunPage> {
    return this.parts.store.list(query);
  }

  async cancelRun(id: string, userId: string): Promise<Run> {
    return this.parts.runner.cancel(await this.getRun(id, userId));
  }

  /** The caller's conversation; another user's (or an unknown one) is `not_found`. */
  async getConversation(id: string, userId: string): Promise<Conversation> {
    const conv = await this.parts.conversations?.get(userId, id);
    if (!conv) throw new RunwayError('not_found', `Conversation ${id} does not exist`);
    return conv;
  }

  /** Forgets the caller's conversation; `not_found` when there is none. */
  async deleteConversation(id: string, userId: string): Promise<void> {
    const deleted = (await this.parts.conversations?.delete(userId, id)) ?? false;
    if (!deleted) throw new RunwayError('not_found', `Conversation ${id} does not exist`);
  }

  /** Replays events after `afterId`, then follows until the terminal event or the signal. */
  events(run: Run, afterId: number, signal: AbortSignal): AsyncIterable<StoredEvent> {
    return this.parts.events.read(run.id, afterId, { signal });
  }

  /** Stops admitting runs, lets running ones finish within `graceMs`, cancels the rest. */
  shutdown(graceMs: number): Promise<void> {
    return this.parts.runner.shutdown(graceMs);
  }

  get isDraining(): boolean {
    return this.parts.runner.isDraining;
  }
}

/**
 * The workflow as a conversation run executes it: the handle is on the context before the workflow
 * starts, and what the workflow staged is written only once it returned (a failed or cancelled
 * run adds nothing). Runs without a conversation never pay for this wrapper.
 */
function withConversation(workflow: Workflow, handle: ConversationHandle): Workflow {
  return {
    name: workflow.name,
    type: workflow.type,
    description: workflow.description,
    inputSchema: workflow.inputSchema,
    async run(input, ctx) {
      if (ctx instanceof Session) ctx.conversation = handle;
      const output = await workflow.run(input, ctx);
      // A workflow that ignored its abort and returned after the run ended must not write.
      const ended = ctx instanceof Session ? ctx.aborted || ctx.finished : ctx.signal.aborted;
      if (!ended) await handle.commit(ctx.run_id);
      return output;
    },
  };
}
