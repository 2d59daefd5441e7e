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
    session.emit('run.queued', { workflow: run.workflow }, `{"workflow":${jsonString(run.workflow)}}`);
    const timeoutMs = Math.min(spec.timeoutMs ?? this.options.runTimeoutMs, this.options.runTimeoutMs);
    session.done = this.execute(session, spec.workflow, admission, timeoutMs);
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
  }

  private async execute(s: Session, workflow: Workflow, admission: Permit | Promise<Permit>, timeoutMs: number): Promise<Run> {
    let permit: Permit | undefined;
    let timer: NodeJS.Timeout | undefined;
    let rootStep: ReturnType<Session['startWorkflowStep']> | undefined;
    try {
      permit = admission instanceof Promise ? await admission : admission;
      if (s.aborted) throw new RunAbortedError(s.abortCause!);
      const starting = this.update(s.run_id, { status: 'running', started_at: isoNow() }, ['queued']);
      const started = starting instanceof Promise ? await starting : starting;
      if (!started) return await this.current(s);
      s.emit('run.started', undefined);
      timer = setTimeout(() => s.abort('timeout'), Math.min(timeoutMs, MAX_TIMER_MS));
      rootStep = s.startWorkflowStep(s.run.input);
      const returned = await raceAbort(
        s,
        withRunContext(s, () => workflow.run(s.run.input, s)),
      );
      // A workflow that returns nothing succeeded with no output: `null`, as the Run schema has it
      // (undefined would vanish from the JSON and break every answer that carries the run).
      const output = returned === undefined ? null : returned;
      rootStep.end({ output });
      // Checked after the WORKFLOW_END step, which carries the output: an output that cannot be
      // stored (a full log, or not serializable) fails the run here, before its status is final.
      if (s.appendError !== undefined) throw s.appendError;
      return await this.finish(s, 'succeeded', { output, usage: s.usage }, 'run.succeeded', { output, usage: s.usage }, succeededJson);
    } catch (err) {
      const error = this.classify(s, err);
      rootStep?.end(error ? { error } : {});
      if (error === null) {
        const reason = cancelReason(s);
        if (s.logs('info')) s.log.info({ reason }, 'run cancelled');
        return await this.finish(s, 'cancelled', { usage: s.usage }, 'run.cancelled', { reason });
      }
      return await this.finish(s, 'failed', { error, usage: s.usage }, 'run.failed', { error });
    } finally {
      clearTimeout(timer);
      permit?.release();
      this.retire(s);
    }
  }

  private live(runId: string): Session | undefined {
    return this.active.get(runId);
  }

  private lives(): Session[] {
    return [...this.active.values()].filter((s) => s !== undefined);
  }

  private retire(s: Session): void {
    if (s.retired) return;
    s.retired = true;
    this.liveCount--;
    this.retired.delete(s.run_id);
  }

  /** Maps what ended a run to its error; null means it was cancelled. */
  private classify(s: Session, err: unknown): RunError | null {
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

  private async finish(
    s: Session,
    status: 'succeeded' | 'failed' | 'cancelled',
    patch: Partial<Run>,
    type: 'run.succeeded' | 'run.failed' | 'run.cancelled',
    data: unknown,
    toJson: (data: never) => string | undefined = JSON.stringify,
  ): Promise<Run> {
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
    const updated = updating instanceof Promise ? await updating : updating;
    // Lost the compare-and-set: whoever changed the status owns the terminal event.
    if (!updated) return this.current(s);
    const appended = s.emitTerminal(type, data, dataJson);
    if (appended instanceof Promise) await appended;
    if (status !== 'cancelled' && s.logs('info')) s.log.info({ status, workflow: s.workflow }, 'run finished');
    return updated;
  }

  /** The store's compare-and-set, synchronous when the store can (no promise on the hot path). */
  private update(id: string, patch: Partial<Run>, expect: readonly Run['status'][]): Run | undefined | Promise<Run | undefined> {
    const { store } = this.options;
    return store.updateNow ? store.updateNow(id, patch, expect) : store.update(id, patch, expect);
  }

  private async current(s: Session): Promise<Run> {
    s.finished = true;
    return (await this.options.store.get(s.run_id)) ?? s.run;
  }
}

/** A run whose record could not be written: leave the queue now (not at queue timeout) and hand back any permit. */
function abandon(session: Session, admission: Permit | Promise<Permit>): void {
  session.abort('user');
  void Promise.resolve(admission).then((permit) => permit.release(), () => {});
}

function cancelReason(s: Session): CancelReason {
  const cause = s.abortCause;
  return cause === 'client_disconnected' || cause === 'shutdown' ? cause : 'user';
}

/**
 * Settles with `work`, or rejects as soon as the run aborts, so a workflow or tool that ignores its
 * signal is abandoned at cancel time instead of holding the run (and its permit) open.
 */
function raceAbort<T>(s: Session, work: Promise<T>): Promise<T> {
  if (s.aborted) {
    work.catch(() => {});
    return Promise.reject(new RunAbortedError(s.abortCause!));
  }
  return new Promise<T>((resolve, reject) => {
    s.onAbort((cause) => reject(new RunAbortedError(cause)));
    work.then(resolve, reject);
  });
}
