import type { Run, RunStatus } from '../core/run.js';

export interface RunListQuery {
  userId: string;
  status?: RunStatus;
  workflow?: string;
  conversationId?: string;
  limit: number;
  /** Opaque cursor from a previous page's `nextCursor`. */
  cursor?: string;
}

export interface RunPage {
  data: Run[];
  nextCursor: string | null;
}

/**
 * Where run records live. Every method takes and returns copies: nothing passed in is kept by
 * reference, nothing returned is the store's own.
 *
 * @example
 *   const moved = await store.update(id, { status: "cancelled" }, ["queued", "running"])
 *   if (!moved) { // somebody else moved it first }
 */
export interface RunStore {
  /** Rejects with `RunExistsError` when the id is taken. */
  create(run: Run): Promise<void>;
  /** The run with `last_event_id` as its event log has it. */
  get(id: string): Promise<Run | undefined>;
  /**
   * Compare-and-set on status: applies `patch` only when the run's status is one of `expect`, so a
   * late "succeeded" can never overwrite "cancelled". Resolves to whether it applied.
   */
  update(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Promise<boolean>;
  /** The user's runs, newest first. Rejects an unknown cursor with `invalid_request`. */
  list(query: RunListQuery): Promise<RunPage>;
  /** Rejects when the store cannot be reached (drives `/readyz`). */
  ping(): Promise<void>;
}
