import type { Run, RunStatus } from './run.js';

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
 * Where run records live. Asynchronous so a networked store (Redis) fits without a rewrite.
 *
 * @example
 *   const run = await store.update(id, { status: 'cancelled' }, ['queued', 'running'])
 *   if (!run) { // somebody else finished it first }
 */
export interface RunStore {
  create(run: Run): Promise<void>;
  get(id: string): Promise<Run | undefined>;
  /**
   * Compare-and-set on status: applies `patch` only when the run's status is one of `expect`, so a
   * late "succeeded" can never overwrite "cancelled". Resolves to the updated run, or undefined.
   */
  update(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Promise<Run | undefined>;
  list(query: RunListQuery): Promise<RunPage>;
  /**
   * Optional synchronous `create` / `update` for stores that can (the memory store): same
   * contracts, no promise. The Runner uses them on the hot path when present.
   */
  createNow?(run: Run): void;
  updateNow?(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Run | undefined;
  /**
   * Optional: the JSON text (as `JSON.stringify` writes it) of a finished run the store has just
   * serialized to keep it, when it still has it at hand; else undefined. Answering with it spares
   * serializing the same run a second time.
   */
  finishedJson?(run: Run): string | undefined;
  /** Throws when the store cannot be reached (drives `/readyz`). */
  ping(): Promise<void>;
}

/** Cancellation travels through the store so that, with Redis, any replica can cancel any run. */
export interface CancelBus {
  publishCancel(runId: string): Promise<void>;
  /** Returns an unsubscribe function. */
  onCancel(handler: (runId: string) => void): () => void;
}
