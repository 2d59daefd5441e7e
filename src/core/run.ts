import type { ErrorCode } from './errors.js';

/**
 * Every status a run can have, in lifecycle order. The transition table below is the one place
 * that says how a run moves between them; every other status set is derived from it.
 */
export const RUN_STATUSES = ['queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'] as const;

export type RunStatus = (typeof RUN_STATUSES)[number];

/**
 * The lifecycle (DESIGN §3): `queued → running → (waiting ⇄ running) → succeeded | failed |
 * cancelled`. A queued or waiting run may also end without running again (cancelled, timed out).
 */
export const TRANSITIONS: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  queued: ['running', 'failed', 'cancelled'],
  running: ['waiting', 'succeeded', 'failed', 'cancelled'],
  waiting: ['running', 'failed', 'cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

/** A status no transition leaves. */
export type TerminalStatus = 'succeeded' | 'failed' | 'cancelled';

/** The statuses with no way out of them. */
export const TERMINAL_STATUSES: ReadonlySet<RunStatus> = new Set(RUN_STATUSES.filter((s) => TRANSITIONS[s].length === 0));

export function isTerminalStatus(status: RunStatus): status is TerminalStatus {
  return TERMINAL_STATUSES.has(status);
}

/** Whether the table allows `from → to`. */
export function canTransition(from: RunStatus, to: RunStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function zeroUsage(): Usage {
  return { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
}

export interface RunError {
  code: ErrorCode;
  message: string;
}

/** Why a run was cancelled; carried on `run.cancelled` and used to pick the blocking answer. */
export type CancelReason = 'user' | 'client_disconnected' | 'shutdown';

/** The Run resource of DESIGN §2, exactly as the API returns it. */
export interface Run {
  id: string;
  workflow: string;
  user_id: string;
  conversation_id: string | null;
  status: RunStatus;
  input: unknown;
  output: unknown;
  error: RunError | null;
  usage: Usage;
  metadata: Record<string, unknown>;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  last_event_id: number;
}

/** A copy of a JSON value: strings, numbers, booleans and null are immutable; anything else is copied. */
export function copyJson<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  // The commonest object by far: metadata nobody sent.
  if (Object.getPrototypeOf(value) === Object.prototype && Object.keys(value).length === 0) return {} as T;
  return JSON.parse(JSON.stringify(value)) as T;
}

/** A copy of a Run that shares nothing mutable with it. */
export function copyRun(run: Run): Run {
  return {
    ...run,
    input: copyJson(run.input),
    output: copyJson(run.output),
    metadata: copyJson(run.metadata),
    usage: { ...run.usage },
    error: run.error === null ? null : { ...run.error },
  };
}
