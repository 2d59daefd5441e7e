// The module's binding, not the global: on Node 20 `globalThis.performance` is an accessor, looked up on every call.
import { performance } from 'node:perf_hooks';
import { levelEnabled, type Logger } from './logger.js';
import { jsonString } from '../store/json-text.js';
import { stepJson, stepText, type StepText } from './event-json.js';
import type { EventLog, RunEventType } from '../store/event-log.js';
import { zeroUsage, type CancelReason, type Run, type Usage } from '../store/run.js';
import type { RunContext, StartStepOptions } from './run-context.js';
import type { RunConversation } from './run-conversation.js';
import type { StepEnd, StepEventData, StepHandle, StepKind } from './step.js';

/** Why a run's signal fired. */
export type AbortCause = CancelReason | 'timeout' | 'event_log_full';

/** The reason object a Session's signal aborts with: an AbortError that says why. */
export class RunAbortedError extends Error {
  override readonly name = 'AbortError';
  constructor(override readonly cause: AbortCause) {
    super(`Run aborted (${cause})`);
  }
}

/**
 * One run's isolated state: who it belongs to, its cancellation, and the RunContext its workflow
 * sees. The AbortController is created only when something asks for the signal (DESIGN §8: one per
 * run is a measurable cost when most runs never need it); a cancel before then is remembered.
 */
export class Session implements RunContext {
  readonly root_step_id = 's0';
  readonly usage: Usage = zeroUsage();
  /** Set by the first abort; later aborts do not change it. */
  abortCause: AbortCause | undefined;
  /** The first event that could not be appended; the run fails with it. */
  appendError: unknown;
  finished = false;
  /** Set once the Runner has released the run's permit and forgotten it (internal). */
  retired = false;
  /** Set for runs with a `conversation_id` before the workflow starts (see Runtime.createRun). */
  conversation: RunConversation | undefined = undefined;

  private controller: AbortController | undefined;
  private settled = false;
  private result: Run | undefined;
  private failure: unknown;
  private donePromise: Promise<Run> | undefined;
  private doneCallbacks: Array<(run: Run | undefined, err: unknown) => void> | undefined;
  private abortListeners: Array<(cause: AbortCause) => void> | undefined;
  private stepCounter = 0;
  private logger: Logger | undefined;

  constructor(
    readonly run: Run,
    readonly request_id: string,
    private readonly events: EventLog,
    private readonly baseLog: Logger,
  ) {}

  get user_id(): string {
    return this.run.user_id;
  }
  get run_id(): string {
    return this.run.id;
  }
  get conversation_id(): string | null {
    return this.run.conversation_id;
  }
  get workflow(): string {
    return this.run.workflow;
  }

  /** The run's logger: the starting request's logger (which carries `reqId`) plus `run_id`. */
  get log(): Logger {
    return (this.logger ??= this.baseLog.child({ run_id: this.run.id }));
  }

  /** Whether a line at `level` would be written (so callers can skip building the child logger). */
  logs(level: 'debug' | 'info' | 'warn'): boolean {
    return levelEnabled(this.baseLog, level);
  }

  /**
   * Settles with the final Run once the terminal event is written (rejects only if even a failed
   * status could not be stored). Made when first asked for: most runs are answered through
   * `whenDone`, without a promise.
   */
  get done(): Promise<Run> {
    return (this.donePromise ??= new Promise<Run>((resolve, reject) => {
      this.whenDone((run, err) => (run === undefined ? reject(err) : resolve(run)));
    }));
  }

  /**
   * Calls `fn` once the run has ended, with its final Run, or with `undefined` and the error that
   * kept it from getting one. Called at once if the run has already ended.
   *
   * @example
   *   session.whenDone((run, err) => (run ? reply.send(run) : reply.send(err)))
   */
  whenDone(fn: (run: Run | undefined, err: unknown) => void): void {
    if (this.settled) fn(this.result, this.failure);
    else (this.doneCallbacks ??= []).push(fn);
  }

  /** Whether the run has ended (its `whenDone` callbacks have been called). */
  get ended(): boolean {
    return this.settled;
  }

  /** @internal The Runner's: the run has ended. Only the first call counts. */
  settle(run: Run | undefined, err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.result = run;
    this.failure = err;
    const callbacks = this.doneCallbacks;
    this.doneCallbacks = undefined;
    if (callbacks === undefined) return;
    for (const fn of callbacks) {
      try {
        fn(run, err);
      } catch (thrown) {
        // One caller's fault must not stop the others or the Runner; it surfaces as uncaught.
        queueMicrotask(() => {
          throw thrown;
        });
      }
    }
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortCause) this.controller.abort(new RunAbortedError(this.abortCause));
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.abortCause !== undefined;
  }

  /** Aborts the run once; the first cause wins. */
  abort(cause: AbortCause): void {
    if (this.abortCause || this.finished) return;
    this.abortCause = cause;
    this.controller?.abort(new RunAbortedError(cause));
    const listeners = this.abortListeners;
    this.abortListeners = undefined;
    if (listeners) for (const fn of listeners) fn(cause);
  }

  /** Calls `fn` when the run aborts, without creating an AbortController. */
  onAbort(fn: (cause: AbortCause) => void): void {
    if (this.abortCause) fn(this.abortCause);
    else (this.abortListeners ??= []).push(fn);
  }

  /**
   * Appends an event; ids are assigned in call order, so callers need not await. Events a workflow
   * emits after the run finished (a tool that ignored its abort) are dropped.
   */
  emit(type: RunEventType, data: unknown, dataJson?: string): void {
    if (this.finished) return;
    let appended: number | Promise<number>;
    try {
      appended = this.append(type, data, dataJson);
    } catch (err) {
      this.onAppendError(err);
      return;
    }
    if (appended instanceof Promise) appended.then(undefined, (err: unknown) => this.onAppendError(err));
  }

  /** Appends the one terminal event; nothing is recorded after it. */
  emitTerminal(type: 'run.succeeded' | 'run.failed' | 'run.cancelled', data: unknown, dataJson?: string): number | Promise<number> {
    this.finished = true;
    return this.append(type, data, dataJson);
  }

  /** The embedded store appends synchronously (no promise per event); others asynchronously. */
  private append(type: RunEventType, data: unknown, dataJson: string | undefined): number | Promise<number> {
    return this.events.appendNow
      ? this.events.appendNow(this.run.id, type, data, dataJson)
      : this.events.append(this.run.id, type, data, dataJson);
  }

  private onAppendError(err: unknown): void {
    if (this.appendError !== undefined) return;
    this.appendError = err;
    this.abort('event_log_full');
  }

  // ---- RunContext ----

  token(delta: string, stepId: string): void {
    if (this.abortCause || this.finished) return;
    // The commonest event by far: stores that can keep the delta as it is and write its JSON only
    // if it is read; for the others its data JSON is written directly, without an object.
    if (this.events.appendTokenNow === undefined) {
      this.emit('token', undefined, `{"delta":${jsonString(delta)},"step_id":${jsonString(stepId)}}`);
      return;
    }
    try {
      // The store keeps the text as it is: a non-string from untyped code becomes its string.
      this.events.appendTokenNow(this.run.id, typeof delta === 'string' ? delta : String(delta), stepId);
    } catch (err) {
      this.onAppendError(err);
    }
  }

  startStep(kind: StepKind, name: string, options: StartStepOptions = {}): StepHandle {
    const step_id = `s${++this.stepCounter}`;
    return this.openStep(step_id, options.parent_id === undefined ? this.root_step_id : options.parent_id, kind, name, options);
  }

  /** The WORKFLOW step that parents every other step of the run. */
  startWorkflowStep(input: unknown): StepHandle {
    return this.openStep(this.root_step_id, null, 'WORKFLOW', this.run.workflow, { input });
  }

  addUsage(usage: Partial<Usage>): void {
    this.usage.prompt_tokens += usage.prompt_tokens ?? 0;
    this.usage.completion_tokens += usage.completion_tokens ?? 0;
    this.usage.total_tokens += usage.total_tokens ?? (usage.prompt_tokens ?? 0) + (usage.completion_tokens ?? 0);
  }

  private openStep(step_id: string, parent_id: string | null, kind: StepKind, name: string, options: StartStepOptions): StepHandle {
    const startedAt = performance.now();
    const extra = options.extra;
    const kinds = kindNames(kind);
    // Spread only when there is something to spread (most steps have no extra fields).
    const start: StepEventData = extra === undefined ? { step_id, parent_id, kind: kinds.start, name } : { step_id, parent_id, kind: kinds.start, name, ...extra };
    if (options.input !== undefined) start.data = { input: options.input };
    // Steps without extra fields (most) are written directly; the rest go through JSON.stringify.
    // Their START and END share the JSON of the ids and the name.
    let shared: StepText | undefined;
    if (extra === undefined) this.emit('step', start, stepJson(start, (shared = stepText(step_id, parent_id, name))));
    else this.emit('step', start, undefined);
    let ended = false;
    return {
      step_id,
      end: (result: StepEnd = {}) => {
        if (ended) return;
        ended = true;
        const duration_ms = Math.round((performance.now() - startedAt) * 1000) / 1000;
        const end: StepEventData =
          result.extra === undefined
            ? { step_id, parent_id, kind: kinds.end, name, duration_ms }
            : { step_id, parent_id, kind: kinds.end, name, duration_ms, ...result.extra };
        if (result.output !== undefined || result.error !== undefined) {
          end.data = result.error !== undefined ? { error: result.error } : { output: result.output };
        }
        if (result.usage) end.usage = result.usage;
        this.emit('step', end, result.extra === undefined ? stepJson(end, (shared ??= stepText(step_id, parent_id, name))) : undefined);
      },
    };
  }
}

type KindNames = { start: StepEventData['kind']; end: StepEventData['kind'] };

/** `FUNCTION_START` / `FUNCTION_END` for each kind, made once (a step would otherwise build both strings). */
const KIND_NAMES = new Map<string, KindNames>();

function kindNames(kind: StepKind): KindNames {
  let names = KIND_NAMES.get(kind);
  if (names === undefined) {
    names = { start: `${kind}_START`, end: `${kind}_END` };
    // Kinds come from code (a workflow may pass any string): the cache stays small unless a
    // workflow makes kinds up per step, and then it stops growing.
    if (KIND_NAMES.size < 64) KIND_NAMES.set(kind, names);
  }
  return names;
}
