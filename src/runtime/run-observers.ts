import type { RunEventType } from '../core/events.js';

/**
 * Sees the events of every run as its recorder records them (metrics, traces). Called synchronously
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
 * The observers of a runtime's runs. Terminal events are delivered once they are stored, so an
 * observer's per-run state is always released.
 *
 * @example
 *   const off = observers.observe(metrics)
 */
export class RunObservers {
  private observers: RunEventObserver[] = [];

  /** Adds an observer; returns the function that removes it. */
  observe(observer: RunEventObserver): () => void {
    this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  notify(runId: string, type: RunEventType, data: unknown): void {
    if (type === 'token' || this.observers.length === 0) return;
    const kind = type === 'step' ? ((data as { kind?: string } | undefined)?.kind ?? '') : undefined;
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
