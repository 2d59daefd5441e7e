import { isTerminalEvent, type RunEventType, type StoredEvent } from '../../core/events.js';
import { EventIdConflictError, RunEndedError } from '../store-errors.js';

/**
 * One run's event log in memory, kept as text (DESIGN §12: events as live object graphs are the
 * largest GC cost). While the run executes, the events as they came; once the terminal event is
 * in, the log is sealed into one UTF-8 buffer, one `type<TAB>time<TAB>data` line per event (data is
 * JSON text, which holds no raw tab or line break), and the envelope every event shares is not kept
 * per event. A buffer's bytes are outside the JavaScript heap: the thousands of finished runs
 * retention keeps are neither copied by young-generation collections while they age nor grow the
 * old generation between major ones (BENCHMARKS.md). Every reader of a finished run reads that
 * same buffer, one event at a time: a reader costs the event it holds, never a copy of the log.
 */
export class RunLog {
  private live: StoredEvent[] | undefined = [];
  private count = 0;
  private sealed: Buffer | undefined;
  private waiters: Set<() => void> | undefined;
  terminal = false;
  /** Dropped by retention: no event will come any more. */
  evicted = false;

  constructor(readonly runId: string) {}

  get lastId(): number {
    return this.count;
  }

  /** Checks the whole batch first: a refused batch leaves the log as it was. */
  append(events: readonly StoredEvent[]): void {
    if (this.terminal || this.evicted) throw new RunEndedError(this.runId);
    let expected = this.count + 1;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      if (ev.id !== expected) throw new EventIdConflictError(this.runId, expected, ev.id);
      if (isTerminalEvent(ev.type) && i !== events.length - 1) throw new RunEndedError(this.runId);
      expected++;
    }
    if (events.length === 0) return;
    // Copies: nothing the writer holds is kept.
    for (const ev of events) this.live!.push({ id: ev.id, type: ev.type, time: ev.time, data: ev.data });
    this.count += events.length;
    if (isTerminalEvent(events[events.length - 1]!.type)) {
      this.terminal = true;
      this.sealed = Buffer.from(this.live!.map((ev) => `${ev.type}\t${ev.time}\t${ev.data}`).join('\n'));
      this.live = undefined;
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
      while (this.live !== undefined && next < this.count) yield { ...this.live[next++]! };
      if (this.live === undefined) {
        yield* this.readSealed(next);
        return;
      }
      if (this.evicted || !follow || signal?.aborted) return;
      await this.nextAppend(signal);
    }
  }

  /** Readers parked now (tests prove a reader that left is no longer subscribed). */
  get parked(): number {
    return this.waiters?.size ?? 0;
  }

  private *readSealed(from: number): Generator<StoredEvent> {
    // A reader may ask from any id (a client's Last-Event-ID): past the end there is nothing to skip to.
    if (from >= this.count) return;
    const buf = this.sealed!;
    let at = 0;
    for (let skip = 0; skip < from; skip++) at = lineEnd(buf, at) + 1;
    for (let id = from + 1; id <= this.count; id++) {
      const end = lineEnd(buf, at);
      const tab1 = buf.indexOf(TAB, at);
      const tab2 = buf.indexOf(TAB, tab1 + 1);
      // Type and time are ASCII; data is UTF-8 (a multi-byte character never holds a tab or LF byte).
      yield { id, type: buf.toString('latin1', at, tab1) as RunEventType, time: buf.toString('latin1', tab1 + 1, tab2), data: buf.toString('utf8', tab2 + 1, end) };
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

const TAB = 0x09;
const LF = 0x0a;

function lineEnd(buf: Buffer, from: number): number {
  const end = buf.indexOf(LF, from);
  return end < 0 ? buf.length : end;
}
