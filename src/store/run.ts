import type { ErrorCode } from '../errors.js';

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export const TERMINAL_STATUSES: ReadonlySet<RunStatus> = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * Whether `status` is one of TERMINAL_STATUSES, by comparison rather than a Set lookup: the
 * memory store asks on every status write and terminal event.
 */
export function isTerminalStatus(status: RunStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
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

export function zeroUsage(): Usage {
  return { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
}

/** `JSON.stringify(usage)`, written directly when its three counts are finite numbers (the usual case). */
export function usageJson(u: Usage): string {
  return Number.isFinite(u.prompt_tokens) && Number.isFinite(u.completion_tokens) && Number.isFinite(u.total_tokens)
    ? `{"prompt_tokens":${u.prompt_tokens},"completion_tokens":${u.completion_tokens},"total_tokens":${u.total_tokens}}`
    : JSON.stringify(u);
}
