import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { eventJson, TERMINAL_EVENT_TYPES } from '../../src/core/events.js';
import type { EventLog } from '../../src/store/event-log.js';
import { zeroUsage, type Run } from '../../src/core/run.js';

/** A promise with its resolve/reject exposed, for gating workflows and jobs from a test. */
export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** One turn of the event loop: lets pending microtasks and I/O callbacks run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Polls `cond` until it holds. The deadline is generous and only guards against a hang; it is not a
 * timing assertion.
 */
export async function waitFor(cond: () => boolean, what = 'condition', deadlineMs = 10_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`waitFor: ${what} did not happen within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export interface ParsedEvent {
  id: number;
  run_id: string;
  type: string;
  time: string;
  data: any;
}

/** The run's whole event log as stored (replay only, no follow). */
export async function readLog(log: EventLog, runId: string): Promise<ParsedEvent[]> {
  const out: ParsedEvent[] = [];
  for await (const ev of log.read(runId, 0, { follow: false })) {
    const parsed = JSON.parse(eventJson(runId, ev)) as ParsedEvent;
    expect(parsed.id).toBe(ev.id);
    expect(parsed.type).toBe(ev.type);
    out.push(parsed);
  }
  return out;
}

/**
 * The invariants every finished run's log must hold: ids 1..n without gaps, every event of this run,
 * `run.queued` first, exactly one terminal event and it is the last. Returns the terminal event.
 */
export function expectOneTerminalLast(events: readonly ParsedEvent[], runId: string): ParsedEvent {
  expect(events.length).toBeGreaterThan(0);
  expect(events.map((e) => e.id)).toEqual(events.map((_, i) => i + 1));
  for (const e of events) expect(e.run_id).toBe(runId);
  expect(events[0]!.type).toBe('run.queued');
  const terminals = events.filter((e) => TERMINAL_EVENT_TYPES.has(e.type));
  expect(terminals.map((e) => e.type)).toHaveLength(1);
  const last = events[events.length - 1]!;
  expect(TERMINAL_EVENT_TYPES.has(last.type)).toBe(true);
  return last;
}

/** A Run record as the Runner would create it (status `running`, a fresh id), with overrides. */
export function makeRun(over: Partial<Run> = {}): Run {
  return {
    id: randomUUID(),
    workflow: 'echo',
    user_id: 'alice',
    conversation_id: null,
    status: 'running',
    input: 'x',
    output: null,
    error: null,
    usage: zeroUsage(),
    metadata: {},
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
    last_event_id: 0,
    ...over,
  };
}
