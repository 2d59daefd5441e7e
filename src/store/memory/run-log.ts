import { isTerminalEvent, type RunEventType, type StoredEvent } from '../../core/events.js';
import { EventIdConflictError, RunEndedError } from '../store-errors.js';

/**
 * One run's event log in memory, kept as text (DESIGN §12: events as live object graphs are the
 * largest GC cost). While the run executes, one JSON text per event; once the terminal event is in,
 * the texts are joined into one flat string, one event a line (JSON text holds no raw line break),
 * which the heap holds far more cheaply than many small strings. Every reader of a finished run
 * reads that same string, one event slice at a time: a reader costs the event it holds, never a
 * copy of the log.
 */
export class RunLog {
  private texts: string[] | undefined = [];
  private readonly types: RunEventType[] = [];
  private sealed = '';
  private waiters: Set<() => void> | undefined;
  terminal = false;
  /** Dropped by retention: no event will come any more. */
  evicted = false;

  constructor(readonly runId: string) {}

  get lastId(): number {
    return this.types.length;
  }

  /** Checks the whole batch first: a refused batch leaves the log as it was. */
  append(events: readonly StoredEvent[]): void {
    if (this.terminal || this.evicted) throw new RunEndedError(this.runId);
    let expected = this.lastId + 1;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      if (ev.id !== expected) throw new EventIdConflictError(this.runId, expected, ev.id);
      if (isTerminalEvent(ev.type) && i !== events.length - 1) throw new RunEndedError(this.runId);
      expected++;
    }
    for (const ev of events) {
      this.texts!.push(ev.json);
      this.types.push(ev.type);
    }
    if (events.length === 0) return;
    if (isTerminalEvent(events[events.length - 1]!.type)) {
      this.terminal = true;
      this.sealed = this.texts!.join('\n');
      this.texts = undefined;
    }
    this.wake();
  }

  /** Marks the log dropped; readers parked on it end instead of hanging. */
  evict(): void {
    this.evicted = true;
    this.wake();
  }

  /** Yields the events after `afterId`, then (with `follow`) those appended later, to the terminal one. */
  async *read(afterId: number, follow: boolean, signal: AbortSignal | undefined): AsyncGenerator<StoredEvent> {
    let next = Math.max(0, afterId);
    for (;;) {
      if (this.texts === undefined) {
        yield* this.readSealed(next);
        return;
      }
      while (next < this.lastId) {
        if (this.texts === undefined) break;
        const i = next++;
        yield { id: i + 1, type: this.types[i]!, json: this.texts[i]! };
      }
      if (this.texts === undefined) continue;
      if (this.evicted || !follow || signal?.aborted) return;
      await this.nextAppend(signal);
    }
  }

  /** Readers parked now (tests prove a reader that left is no longer subscribed). */
  get parked(): number {
    return this.waiters?.size ?? 0;
  }

  private *readSealed(from: number): Generator<StoredEvent> {
    const text = this.sealed;
    let at = 0;
    for (let skip = 0; skip < from && at <= text.length; skip++) at = lineEnd(text, at) + 1;
    for (let i = from; i < this.types.length; i++) {
      const end = lineEnd(text, at);
      yield { id: i + 1, type: this.types[i]!, json: text.slice(at, end) };
      at = end + 1;
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    if (waiters === undefined || waiters.size === 0) return;
    this.waiters = undefined;
    for (const wake of waiters) wake();
  }

  private nextAppend(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const waiters = (this.waiters ??= new Set());
      const wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        waiters.delete(wake);
        resolve();
      };
      waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function lineEnd(text: string, from: number): number {
  const end = text.indexOf('\n', from);
  return end < 0 ? text.length : end;
}
