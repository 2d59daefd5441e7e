import { TERMINAL_STATUSES, type TerminalStatus } from './run.js';

/** Event types of DESIGN §2, in the order a run can emit them. */
export const EVENT_TYPES = [
  'run.queued',
  'run.started',
  'token',
  'step',
  'input.requested',
  'input.received',
  'run.succeeded',
  'run.failed',
  'run.cancelled',
] as const;

export type RunEventType = (typeof EVENT_TYPES)[number];

/** The event that ends a run in `status`. */
export type TerminalEventType = `run.${TerminalStatus}`;

export function terminalEventType(status: TerminalStatus): TerminalEventType {
  return `run.${status}`;
}

/** `run.succeeded`, `run.failed`, `run.cancelled`: one per terminal status. */
export const TERMINAL_EVENT_TYPES: ReadonlySet<string> = new Set([...TERMINAL_STATUSES].map((s) => terminalEventType(s as TerminalStatus)));

export function isTerminalEvent(type: string): type is TerminalEventType {
  return TERMINAL_EVENT_TYPES.has(type);
}

/**
 * One event as stored: its id, its type, its time, and its data as JSON text, serialized once by
 * the run's recorder (DESIGN §12: finished events kept as live object graphs are the largest GC
 * cost). The envelope every event shares (`run_id` and the field names) is not stored with each
 * one: `eventJson` writes it when the event is read.
 */
export interface StoredEvent {
  id: number;
  type: RunEventType;
  /** ISO 8601, UTC. */
  time: string;
  /** The event's data as JSON.stringify writes it (so with no raw line break or tab). */
  data: string;
}

/**
 * An event's wire JSON, what SSE sends as `data:` and `RunEvent` is the parsed form of.
 *
 * @example
 *   eventJson(runId, ev)   // '{"id":7,"run_id":"…","type":"token","time":"…","data":{"delta":"Hel","step_id":"s1"}}'
 */
export function eventJson(runId: string, ev: StoredEvent): string {
  return eventJsonParts(runId, ev).join('');
}

/**
 * `eventJson` in three parts, the data in the middle as it is: a writer can send a large event's
 * data in pieces without first copying it into one string with its envelope.
 */
export function eventJsonParts(runId: string, ev: StoredEvent): [string, string, string] {
  return [`{"id":${ev.id},"run_id":${JSON.stringify(runId)},"type":"${ev.type}","time":"${ev.time}","data":`, ev.data, '}'];
}

/** One event as an embedder reads it (`run.stream()`): the parsed form of `eventJson`. */
export interface RunEvent {
  id: number;
  run_id: string;
  type: RunEventType;
  time: string;
  data: unknown;
}
