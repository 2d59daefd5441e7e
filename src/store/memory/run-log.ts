import { isTerminalEvent, type RunEventType, type StoredEvent } from '../../core/events.js';
import { EventIdConflictError, RunEndedError } from '../store-errors.js';

/**
 * One run's event log in memory, kept as text (DESIGN §12: events as live object graphs are the
 * largest GC cost). While the run executes, one JSON text per event; once the terminal event is in,
 * the texts are joined into one flat string with their end offsets, which the heap holds more
 * cheaply than many small strings. Every reader of a finished run reads that same string, one
 * event slice at a time: a reader costs the event it holds, never a copy of the log.
 */
export class RunLog {
  private texts: string[] | undefined = [];
  private readonly types: RunEventType[] = [];
  private sealed = '';
  private ends: Uint32Array | undefined;
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
    events.forEach((ev, i) => {
      if (ev.id !== expected) throw new EventIdConflictError(this.runId, expected, ev.id);
      if (isTerminalEvent(ev.type) && i !== events.length - 1) throw new RunEndedError(this.runId);
      expected++;
    });
    for (const ev of events) {
      this.texts!.push(ev.json);
      this.types.push(ev.type);
    }
    if (events.length > 0 && isTerminalEvent(events[events.length - 1]!.type)) {
      this.terminal = true;
      this.seal();
    }
    if (events.length > 0) this.wake();
  }

  /** Marks the log dropped; readers parked on it end instead of hanging. */
  evict(): void {
    this.evicted = true;
    this.wake();
  }

  event(i: number): StoredEvent {
    const json = this.texts !== undefined ? this.texts[i]! : this.sealed.slice(i === 0 ? 0 : this.ends![i - 1]!, this.ends![i]!);
    return { id: i + 1, type: this.types[i]!, json };
  }

  /** Yields the events after `afterId`, then (with `follow`) those appended later, to the terminal one. */
  async *read(afterId: number, follow: boolean, signal: AbortSignal | undefined): AsyncGenerator<StoredEvent> {
    let next = Math.max(0, afterId);
    for (;;) {
      while (next < this.lastId) yield this.event(next++);
      if (this.terminal || this.evicted || !follow || signal?.aborted) return;
      await this.nextAppend(signal);
    }
  }

  /** Readers parked now (tests prove a reader that left is no longer subscribed). */
  get parked(): number {
    return this.waiters?.size ?? 0;
  }

  private seal(): void {
    const texts = this.texts!;
    const ends = new Uint32Array(texts.length);
    let at = 0;
    texts.forEach((t, i) => (ends[i] = at += t.length));
    this.sealed = texts.join('');
    this.ends = ends;
    this.texts = undefined;
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
