import { randomUUID } from 'node:crypto';
import type { CancelReason } from '../../core/run.js';
import type { Bus, BusMessage } from '../bus.js';
import type { RedisKeys } from './redis-keys.js';
import type { RunwayRedis } from './redis-scripts.js';
import type { SharedSubscriber } from './shared-subscriber.js';

/**
 * The Bus across processes: a pub/sub channel on the process's one shared subscriber connection.
 * This process's own subscribers hear a message at once, in `publish`, as on the memory bus (a
 * cancel reaches a run executing here even while the subscription is being re-established); the
 * copy that comes back from Redis carries this bus's id and is skipped, so nobody hears it twice.
 * Delivery to other processes is at most once, as the contract says (pub/sub keeps nothing), so
 * a cancel is also kept in a key of the run's (SET NX, with the runs' TTL) before it is published:
 * a worker that picks the run up later reads it (`cancelRequested`).
 *
 * @example
 *   const off = bus.subscribe((m) => m.type === 'cancel' && abort(m.runId))
 *   await bus.publish({ type: 'cancel', runId })   // heard here and in every other process
 */
export class RedisBus implements Bus {
  private readonly handlers = new Set<(message: BusMessage) => void>();
  private readonly from = randomUUID();
  /** The subscription, while there are handlers. */
  private listening: Promise<() => void> | undefined;

  constructor(
    private readonly redis: RunwayRedis,
    private readonly subscriber: SharedSubscriber,
    private readonly channel: string,
    private readonly keys: RedisKeys,
    private readonly ttlMs: number,
  ) {}

  async publish(message: BusMessage): Promise<void> {
    this.deliver(message);
    const reason = message.reason ?? 'user';
    // Kept first, published second: a worker listens first and reads the key second, so one of the two reaches it.
    await this.redis
      .multi()
      .set(this.keys.cancel(message.runId), reason, 'PX', this.ttlMs, 'NX')
      .publish(this.channel, JSON.stringify({ type: message.type, runId: message.runId, reason, from: this.from }))
      .exec();
  }

  async cancelRequested(runId: string): Promise<CancelReason | undefined> {
    const reason = await this.redis.get(this.keys.cancel(runId));
    return isCancelReason(reason) ? reason : undefined;
  }

  subscribe(handler: (message: BusMessage) => void): () => void {
    this.handlers.add(handler);
    if (this.listening === undefined) {
      const listening = this.subscriber.listen(this.channel, { message: (payload) => this.received(payload), resync: () => {} });
      // A subscription that failed (Redis down at start) is tried again by the next subscribe.
      listening.catch(() => {
        if (this.listening === listening) this.listening = undefined;
      });
      this.listening = listening;
    }
    return () => {
      if (!this.handlers.delete(handler) || this.handlers.size > 0) return;
      const listening = this.listening;
      this.listening = undefined;
      void listening?.then((off) => off(), () => {});
    };
  }

  private received(payload: Buffer): void {
    let message: unknown;
    try {
      message = JSON.parse(payload.toString());
    } catch {
      return;
    }
    const m = message as { type?: unknown; runId?: unknown; reason?: unknown; from?: unknown };
    if (m.from === this.from || m.type !== 'cancel' || typeof m.runId !== 'string') return;
    this.deliver({ type: 'cancel', runId: m.runId, ...(isCancelReason(m.reason) && { reason: m.reason }) });
  }

  private deliver(message: BusMessage): void {
    for (const handler of [...this.handlers]) {
      try {
        handler({ ...message });
      } catch {
        // A subscriber's fault must not keep the message from the others.
      }
    }
  }
}

function isCancelReason(value: unknown): value is CancelReason {
  return value === 'user' || value === 'client_disconnected' || value === 'shutdown';
}
