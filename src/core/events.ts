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

/** Whether `type` is one of EVENT_TYPES (own names only: `constructor` is not an event). */
export function isEventType(type: unknown): type is RunEventType {
  return (EVENT_TYPES as readonly unknown[]).includes(type);
}

/**
 * One event as stored and sent: its id, its type, and its JSON text, written once by the run's
 * recorder (DESIGN §12: finished events kept as live object graphs are the largest GC cost).
 */
export interface StoredEvent {
  id: number;
  type: RunEventType;
  /** `{"id":7,"run_id":"…","type":"token","time":"…","data":{…}}`, as JSON.stringify writes it (no raw line break). */
  json: string;
}

/** One event as an embedder reads it (`run.stream()`): the parsed form of `StoredEvent.json`. */
export interface RunEvent {
  id: number;
  run_id: string;
  type: RunEventType;
  time: string;
  data: unknown;
}
