import { RunwayError } from '../core/errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Open SSE streams per user, shared by every route plugin that streams (`runtime.max_streams_per_user`). */
    streamQuota: StreamQuota;
  }
}

/** When a refused client may try again: streams end with their runs, which take seconds. */
const RETRY_AFTER_S = 5;

/**
 * How many SSE streams each user has open, against `runtime.max_streams_per_user` (0 = no cap).
 * One per app, decorated on it (`app.streamQuota`): the runs routes and the `/v1` routes each have
 * their own OpenStreams, and a user's streams count across both. Users with no stream open have no
 * entry.
 *
 * @example
 *   if (!quota.acquire(userId)) throw quota.refusal()
 *   try { … stream … } finally { quota.release(userId) }
 */
export class StreamQuota {
  private readonly open = new Map<string, number>();

  constructor(readonly maxPerUser: number) {}

  /** Counts a new stream of `userId`; false (and nothing counted) when the user is at the cap. */
  acquire(userId: string): boolean {
    const count = this.open.get(userId) ?? 0;
    if (this.maxPerUser > 0 && count >= this.maxPerUser) return false;
    this.open.set(userId, count + 1);
    return true;
  }

  /** Uncounts a stream `acquire` counted. */
  release(userId: string): void {
    const count = this.open.get(userId) ?? 0;
    if (count <= 1) this.open.delete(userId);
    else this.open.set(userId, count - 1);
  }

  /** The streams `userId` has open. */
  count(userId: string): number {
    return this.open.get(userId) ?? 0;
  }

  /** The 429 a user at the cap is answered with. */
  refusal(): RunwayError {
    return new RunwayError(
      'rate_limited',
      `Too many open event streams: a user may hold ${this.maxPerUser} at once (max_streams_per_user); close one, or retry later`,
      { retryAfterS: RETRY_AFTER_S },
    );
  }
}
