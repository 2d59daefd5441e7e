import { DeadlineQueue, type Deadline } from './deadline-queue.js';
import { DeferredDeletes } from './deferred-deletes.js';
import { randomId } from './random-id.js';
import type { Logger } from './logger.js';
import { RunwayError, isAbortError, type ErrorCode } from '../errors.js';
import type { EventLog } from '../store/event-log.js';
import { EventLogFullError } from '../store/event-log.js';
import { isoNow } from '../store/iso-clock.js';
import type { CancelBus, RunStore } from '../store/run-store.js';
import { jsonString } from '../store/json-text.js';
import { succeededJson } from './event-json.js';
import { TERMINAL_STATUSES, zeroUsage, type CancelReason, type Run, type RunError } from '../store/run.js';
import type { Workflow } from '../workflows/workflow.js';
import { withRunContext } from './run-context.js';
import { RunAbortedError, Session } from './session.js';
import type { StepHandle } from './step.js';
import { MAX_TIMER_MS, SHUTDOWN_RETRY_AFTER_S, type Permit, type SessionManager } from './session-manager.js';

export interface RunnerOptions {
  store: RunStore;
  events: EventLog;
  cancels: CancelBus;
  sessions: SessionManager;
  log: Logger;
  /** Default and upper bound of a run's timeout. */
  runTimeoutMs: number;
}

export interface StartRunSpec {
  workflow: Workflow;
  input: unknown;
  userId: string;
  requestId: string;
  conversationId?: string | null;
  metadata?: Record<string, unknown>;
  timeoutMs?: number;
  /** Logger carrying the request's id; the run's lines add its run id. */
  log?: Logger;
}

/** Shared by every run created without metadata; never mutated. */
const NO_METADATA: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

const ACTIVE: readonly Run['status'][] = ['queued', 'running'];
const QUEUED: readonly Run['status'][] = ['queued'];

let lastWorkflow: string | undefined;
let lastQueuedJson = '';
/** The `run.queued` data, `{"workflow":…}`, written once for runs of the same workflow in a row. */
function queuedJson(workflow: string): string {
  if (workflow !== lastWorkflow) {
    lastQueuedJson = `{"workflow":${jsonString(workflow)}}`;
    lastWorkflow = workflow;
  }
  return lastQueuedJson;
}

/**
 * Drives runs through their lifecycle, queued → running → succeeded | failed | cancelled, writing
 * each transition to the store and as an event, and guaranteeing exactly one terminal event on
 * every path: success, thrown error, cancel, timeout, client disconnect and shutdown.
 *
 * @example
 *   const session = await runner.start({ workflow, input: 'hi', userId: 'alice', requestId })
 *   const run = await session.done   // the finished Run
 */
export class Runner {
  /** Runs executing here, by id; a finished one maps to undefined until its batch of deletes. */
  private readonly active = new Map<string, Session | undefined>();
  private readonly retired = new DeferredDeletes(this.active);
  private liveCount = 0;
  /** Store writes of runs being created: not in `active` yet, but shutdown must wait for them. */
  private readonly creating = new Set<Promise<void>>();
  private readonly unsubscribeCancel: () => void;
  private draining = false;
  /** Run time limits, on one timer (see DeadlineQueue). */
  readonly deadlines = new DeadlineQueue();

  constructor(private readonly options: RunnerOptions) {
    this.unsubscribeCancel = options.cancels.onCancel((runId) => this.live(runId)?.abort('user'));
  }

  /**
   * Creates the run and starts it: the Session at once when the store writes synchronously (no
   * promise on the hot path), else a promise of it. Throws `queue_full` / `shutting_down` before
   * anything is created; every later failure ends the run with a terminal event instead.
   */
  start(spec: StartRunSpec): Session | Promise<Session> {
    const { store, sessions } = this.options;
    if (this.draining) {
      throw new RunwayError('shutting_down', 'The server is shutting down', { retryAfterS: SHUTDOWN_RETRY_AFTER_S });
    }
    const run: Run = {
      id: randomId(),
      workflow: spec.workflow.name,
      user_id: spec.userId,
      conversation_id: spec.conversationId ?? null,
      status: 'queued',
      input: spec.input,
      output: null,
      error: null,
      usage: zeroUsage(),
      metadata: spec.metadata ?? NO_METADATA,
      created_at: isoNow(),
      started_at: null,
      finished_at: null,
      last_event_id: 0,
    };
    const session = new Session(run, spec.requestId, this.options.events, spec.log ?? this.options.log);
    const admission = sessions.admit(run.user_id, () => session.signal);
    // A rejection that lands while the store write below is in flight is handled by execute().
    if (admission instanceof Promise) admission.catch(() => {});
    if (!store.createNow) return this.createThenLaunch(session, spec, admission);
    try {
      store.createNow(run);
    } catch (err) {
      abandon(session, admission);
      throw err;
    }
    return this.launch(session, spec, admission);
  }

  private async createThenLaunch(session: Session, spec: StartRunSpec, admission: Permit | Promise<Permit>): Promise<Session> {
    const created = this.options.store.create(session.run);
    this.creating.add(created);
    try {
      await created;
    } catch (err) {
      abandon(session, admission);
      throw err;
    } finally {
      this.creating.delete(created);
    }
    return this.launch(session, spec, admission);
  }

  /** The run exists: make it findable, record it queued, and execute it. */
  private launch(session: Session, spec: StartRunSpec, admission: Permit | Promise<Permit>): Session {
    const run = session.run;
    this.active.set(run.id, session);
    this.liveCount++;
    // Shutdown began while the record was being written: cancel it like a queued run.
    if (this.draining) session.abort('shutdown');
    session.emit('run.queued', { workflow: run.workflow }, queuedJson(run.workflow));
    const timeoutMs = Math.min(spec.timeoutMs ?? this.options.runTimeoutMs, this.options.runTimeoutMs);
    new Execution(this, session, spec.workflow, timeoutMs).begin(admission);
    return session;
  }

  /** The session of a run executing in this process, if any. */
  local(runId: string): Session | undefined {
    return this.live(runId);
  }

  /**
   * Cancels a queued or running run. Resolves to the run once its terminal event is written (when
   * it runs here), or as it stands (when another process runs it). `conflict` if already finished.
   */
  async cancel(run: Run): Promise<Run> {
    if (TERMINAL_STATUSES.has(run.status)) {
      throw new RunwayError('conflict', `Run ${run.id} already ${run.status}`, { runId: run.id });
    }
    await this.options.cancels.publishCancel(run.id);
    const session = this.live(run.id);
    if (session) return session.done;
    return (await this.options.store.get(run.id)) ?? run;
  }

  /** Aborts a run of this process for a reason other than a user's cancel (a client that left). */
  abortLocal(runId: string, reason: CancelReason): void {
    this.live(runId)?.abort(reason);
  }

  get activeCount(): number {
    return this.liveCount;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Graceful shutdown: refuses new runs, cancels queued ones, gives running ones `graceMs` to
   * finish, then cancels the rest; resolves when every terminal event is written.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.draining = true;
    this.options.sessions.beginDrain();
    for (const session of this.lives()) if (session.run.status === 'queued') session.abort('shutdown');
    const all = () => Promise.allSettled(this.lives().map((s) => s.done));
    if (this.liveCount > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, Math.min(graceMs, MAX_TIMER_MS))))]);
      clearTimeout(timer);
    }
    // Runs whose creation was in flight when the drain began are in `active` (aborted) once written.
    await Promise.allSettled([...this.creating]);
    for (const session of this.lives()) session.abort('shutdown');
    await all();
    this.unsubscribeCancel();
    this.deadlines.close();
  }

  private live(runId: string): Session | undefined {
    return this.active.get(runId);
  }

  private lives(): Session[] {
    return [...this.active.values()].filter((s) => s !== undefined);
  }

  /** @internal Execution's: the run's permit is released and it is no longer this Runner's. */
  retire(s: Session): void {
    if (s.retired) return;
    s.retired = true;
    this.liveCount--;
    this.retired.delete(s.run_id);
  }

  /** @internal Maps what ended a run to its error; null means it was cancelled. */
  classify(s: Session, err: unknown): RunError | null {
    const cause = s.abortCause;
    if (s.appendError !== undefined) {
      if (s.appendError instanceof EventLogFullError) {
        s.log.warn({ limit: s.appendError.limit }, 'run stopped: event log limit reached');
        return { code: 'internal', message: s.appendError.message };
      }
      s.log.error({ err: s.appendError }, 'run stopped: its events could not be stored');
      return { code: 'internal', message: 'The run failed with an internal error' };
    }
    if (cause === 'timeout') return { code: 'run_timeout', message: 'The run exceeded its time limit' };
    if (cause !== undefined && (isAbortError(err) || err instanceof RunAbortedError || s.aborted)) return null;
    if (err instanceof RunwayError) {
      if (err.status >= 500) s.log.warn({ err }, 'run failed');
      else if (s.logs('info')) s.log.info({ code: err.code, message: err.message }, 'run failed');
      return { code: err.code, message: err.message };
    }
    s.log.error({ err }, 'run failed with an unexpected error');
    return { code: 'internal' satisfies ErrorCode, message: 'The run failed with an internal error' };
  }

  /**
   * @internal Writes the final status, then the terminal event. Synchronous when the store is (no
   * promise on the hot path), else a promise.
   */
  finish(
    s: Session,
    status: 'succeeded' | 'failed' | 'cancelled',
    patch: Partial<Run>,
    type: 'run.succeeded' | 'run.failed' | 'run.cancelled',
    data: unknown,
    toJson: (data: never) => string | undefined = JSON.stringify,
  ): Run | Promise<Run> {
    // Serialized before the status is written: once it is final, the terminal event must follow,
    // so nothing that can throw may stand between the two.
    let dataJson: string;
    try {
      dataJson = toJson(data as never) ?? '{}';
    } catch (err) {
      if (status === 'failed') throw err;
      s.log.error({ err }, 'run result could not be serialized');
      const error: RunError = { code: 'internal', message: 'The run failed with an internal error' };
      return this.finish(s, 'failed', { error, usage: s.usage }, 'run.failed', { error });
    }
    // Members assigned, not spread: `{...patch, status}` redefines keys the spread made, which V8
    // (Node 20) does in its runtime every time, for a visible share of a run's cost.
    patch.status = status;
    patch.finished_at = isoNow();
    const updating = this.update(s.run_id, patch, ACTIVE);
    return updating instanceof Promise
      ? updating.then((updated) => this.writeTerminal(s, status, type, data, dataJson, updated))
      : this.writeTerminal(s, status, type, data, dataJson, updating);
  }

  private writeTerminal(
    s: Session,
    status: 'succeeded' | 'failed' | 'cancelled',
    type: 'run.succeeded' | 'run.failed' | 'run.cancelled',
    data: unknown,
    dataJson: string,
    updated: Run | undefined,
  ): Run | Promise<Run> {
    // Lost the compare-and-set: whoever changed the status owns the terminal event.
    if (!updated) return this.current(s);
    const appended = s.emitTerminal(type, data, dataJson);
    const logged = () => {
      if (status !== 'cancelled' && s.logs('info')) s.log.info({ status, workflow: s.workflow }, 'run finished');
      return updated;
    };
    return appended instanceof Promise ? appended.then(logged) : logged();
  }

  /** @internal The store's compare-and-set, synchronous when the store can (no promise on the hot path). */
  update(id: string, patch: Partial<Run>, expect: readonly Run['status'][]): Run | undefined | Promise<Run | undefined> {
    const { store } = this.options;
    return store.updateNow ? store.updateNow(id, patch, expect) : store.update(id, patch, expect);
  }

  /** @internal The run as the store has it, for a run whose status someone else set. */
  async current(s: Session): Promise<Run> {
    s.finished = true;
    return (await this.options.store.get(s.run_id)) ?? s.run;
  }
}

/** A run whose record could not be written: leave the queue now (not at queue timeout) and hand back any permit. */
function abandon(session: Session, admission: Permit | Promise<Permit>): void {
  session.abort('user');
  void Promise.resolve(admission).then((permit) => permit.release(), () => {});
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

function cancelReason(s: Session): CancelReason {
  const cause = s.abortCause;
  return cause === 'client_disconnected' || cause === 'shutdown' ? cause : 'user';
}

/**
 * One run's way from admission to its terminal event: the `try { … } catch { … } finally { … }` of
 * a run, written as callbacks. As an async function with a race against the abort it made ~7
 * promises per run, and on Node 20 each promise is also a call into the AsyncLocalStorage hook;
 * now a run on the embedded store makes one (its handler on the workflow's promise), and the
 * Session's `done` promise exists only if someone asks for it.
 *
 * The order of a run: take the permit → write `running` (compare-and-set from `queued`) → `run.started`
 * → arm the time limit → WORKFLOW_START → the workflow, raced against the run's abort → WORKFLOW_END →
 * final status and terminal event → (always) disarm the time limit, release the permit, retire.
 */
class Execution {
  private permit: Permit | undefined;
  private deadline: Deadline | undefined;
  private rootStep: StepHandle | undefined;
  /** The try part is over (the workflow returned, threw or was aborted): later outcomes are ignored. */
  private decided = false;

  constructor(
    private readonly runner: Runner,
    private readonly s: Session,
    private readonly workflow: Workflow,
    private readonly timeoutMs: number,
  ) {}

  begin(admission: Permit | Promise<Permit>): void {
    if (admission instanceof Promise) admission.then((permit) => this.admitted(permit), (err: unknown) => this.caught(err));
    else this.admitted(admission);
  }

  private admitted(permit: Permit): void {
    this.permit = permit;
    const s = this.s;
    try {
      if (s.aborted) throw new RunAbortedError(s.abortCause!);
      const starting = this.runner.update(s.run_id, { status: 'running', started_at: isoNow() }, QUEUED);
      if (starting instanceof Promise) starting.then((run) => this.started(run), (err: unknown) => this.caught(err));
      else this.started(starting);
    } catch (err) {
      this.caught(err);
    }
  }

  private started(run: Run | undefined): void {
    const s = this.s;
    try {
      if (!run) {
        // Someone else set the status (a cancel while queued): theirs is the terminal event.
        this.decided = true;
        this.attempt(() => this.runner.current(s), (err) => this.end(undefined, err));
        return;
      }
      s.emit('run.started', undefined);
      this.deadline = this.runner.deadlines.add(Math.min(this.timeoutMs, MAX_TIMER_MS), () => s.abort('timeout'));
      this.rootStep = s.startWorkflowStep(s.run.input);
      const returned = withRunContext(s, () => this.workflow.run(s.run.input, s));
      if (!(returned instanceof Promise) && !isThenable(returned)) {
        // Returned its output directly (nothing to wait for): the run ends now, no promise made.
        if (s.aborted) this.caught(new RunAbortedError(s.abortCause!));
        else this.returned(returned);
        return;
      }
      // A workflow or tool that ignores its signal is abandoned at abort time instead of holding
      // the run (and its permit) open; what it returns later is ignored.
      // One microtask later: the abort has already rejected what the workflow awaits, and its own
      // handling (a tool's TOOL_END with `aborted`, say) runs first and is recorded before the
      // terminal event; run synchronously, the run would end first and drop those events.
      s.onAbort((cause) => queueMicrotask(() => this.caught(new RunAbortedError(cause))));
      const work = returned instanceof Promise ? returned : Promise.resolve(returned);
      work.then((output) => this.returned(output), (err: unknown) => this.caught(err));
    } catch (err) {
      this.caught(err);
    }
  }

  private returned(returned: unknown): void {
    if (this.decided) return;
    this.decided = true;
    const s = this.s;
    this.attempt(
      () => {
        // A workflow that returns nothing succeeded with no output: `null`, as the Run schema has it
        // (undefined would vanish from the JSON and break every answer that carries the run).
        const output = returned === undefined ? null : returned;
        this.rootStep!.end({ output });
        // Checked after the WORKFLOW_END step, which carries the output: an output that cannot be
        // stored (a full log, or not serializable) fails the run here, before its status is final.
        if (s.appendError !== undefined) throw s.appendError;
        return this.runner.finish(s, 'succeeded', { output, usage: s.usage }, 'run.succeeded', { output, usage: s.usage }, succeededJson);
      },
      (err) => this.failed(err),
    );
  }

  /** The `catch` of the try part. */
  private caught(err: unknown): void {
    if (this.decided) return;
    this.decided = true;
    this.failed(err);
  }

  private failed(err: unknown): void {
    const s = this.s;
    this.attempt(
      () => {
        const error = this.runner.classify(s, err);
        this.rootStep?.end(error ? { error } : {});
        if (error === null) {
          const reason = cancelReason(s);
          if (s.logs('info')) s.log.info({ reason }, 'run cancelled');
          return this.runner.finish(s, 'cancelled', { usage: s.usage }, 'run.cancelled', { reason });
        }
        return this.runner.finish(s, 'failed', { error, usage: s.usage }, 'run.failed', { error });
      },
      (thrown) => this.end(undefined, thrown),
    );
  }

  /** Runs `step`; the Run it gives (now, or when its promise settles) ends the run, a throw goes to `onThrow`. */
  private attempt(step: () => Run | Promise<Run>, onThrow: (err: unknown) => void): void {
    let result: Run | Promise<Run>;
    try {
      result = step();
    } catch (err) {
      onThrow(err);
      return;
    }
    if (result instanceof Promise) result.then((run) => this.end(run, undefined), onThrow);
    else this.end(result, undefined);
  }

  /** The `finally`, then the Session settles: with the final Run, or with the error nothing could turn into one. */
  private end(run: Run | undefined, err: unknown): void {
    this.runner.deadlines.cancel(this.deadline);
    this.permit?.release();
    this.runner.retire(this.s);
    this.s.settle(run, err);
  }
}
