import type { EventLog, ReadOptions, RunEventType, StoredEvent } from '../store/event-log.js';

/**
 * Sees the events of every run as the runner appends them (metrics, traces). Called synchronously
 * on the run's path: it must be cheap and must not throw. `token` events are not delivered (they
 * are the commonest event by far and no observer needs them).
 */
export interface RunEventObserver {
  /**
   * `data` is the event's payload: `{workflow}` on `run.queued`, a `StepEventData` on `step`, `{output,
   * usage}` / `{error}` / `{reason}` on the terminal events, undefined on `run.started`.
   */
  onRunEvent(runId: string, type: Exclude<RunEventType, 'token'>, data: unknown): void;
  /** Only `step` events of these kinds are delivered (all when absent): most steps interest no one. */
  readonly stepKinds?: ReadonlySet<string>;
}

/**
 * An EventLog that forwards to the real one and tells its observers about each event appended
 * through it. The Runner writes through this; readers read the store directly. With no observer,
 * an append costs one extra call.
 *
 * @example
 *   const events = new ObservedEventLog(store)
 *   events.observe(metrics)
 *   new Runner({ store, events, ... })
 */
export class ObservedEventLog implements EventLog {
  private observers: RunEventObserver[] = [];
  /** Step kinds some observer wants; undefined when one wants them all. */
  private stepKinds: ReadonlySet<string> | undefined = new Set();
  /** Present exactly when the inner log has it, so the Session keeps its synchronous fast path. */
  readonly appendNow?: (runId: string, type: RunEventType, data: unknown, dataJson?: string) => number;
  /** Tokens are not observed: the inner log's own method, when it has one. */
  readonly appendTokenNow?: (runId: string, delta: string, stepId: string) => number;

  constructor(private readonly inner: EventLog) {
    if (inner.appendTokenNow) this.appendTokenNow = inner.appendTokenNow.bind(inner);
    const appendNow = inner.appendNow?.bind(inner);
    if (appendNow) {
      this.appendNow = (runId, type, data, dataJson) => {
        // Only an event that was stored is observed: one the log refused did not happen.
        const id = appendNow(runId, type, data, dataJson);
        if (type !== 'token' && this.observers.length > 0) this.notify(runId, type, data);
        return id;
      };
    }
  }

  /** Adds an observer; returns the function that removes it. */
  observe(observer: RunEventObserver): () => void {
    this.observers = [...this.observers, observer];
    this.collectStepKinds();
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
      this.collectStepKinds();
    };
  }

  private collectStepKinds(): void {
    const kinds = new Set<string>();
    for (const o of this.observers) {
      if (o.stepKinds === undefined) {
        this.stepKinds = undefined;
        return;
      }
      for (const kind of o.stepKinds) kinds.add(kind);
    }
    this.stepKinds = kinds;
  }

  append(runId: string, type: RunEventType, data: unknown, dataJson?: string): Promise<number> {
    const id = this.inner.append(runId, type, data, dataJson);
    // Terminal events come this way: observed when the runner writes them, so an observer's
    // per-run state is always released.
    if (type !== 'token' && this.observers.length > 0) this.notify(runId, type, data);
    return id;
  }

  read(runId: string, afterId: number, options?: ReadOptions): AsyncIterable<StoredEvent> {
    return this.inner.read(runId, afterId, options);
  }

  private notify(runId: string, type: Exclude<RunEventType, 'token'>, data: unknown): void {
    const kind = type === 'step' ? ((data as { kind?: string } | undefined)?.kind ?? '') : undefined;
    // A step no observer wants costs this one check.
    if (kind !== undefined && this.stepKinds !== undefined && !this.stepKinds.has(kind)) return;
    for (const observer of this.observers) {
      if (kind !== undefined && observer.stepKinds !== undefined && !observer.stepKinds.has(kind)) continue;
      try {
        observer.onRunEvent(runId, type, data);
      } catch {
        // An observer's bug must never fail a run; observers catch and report their own errors.
      }
    }
  }
}
