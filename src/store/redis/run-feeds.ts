import { isTerminalEvent, type StoredEvent } from '../../core/events.js';
import type { ChannelListener, SharedSubscriber } from './shared-subscriber.js';
import { eventsOfNotification } from './stream-codec.js';

/** What a feed reads from Redis. */
export interface FeedSource {
  /** The log's last id and whether its terminal event is in; undefined for an unknown run. */
  head(runId: string): Promise<{ last: number; ended: boolean } | undefined>;
  /** Up to `count` events from id `from` on, oldest first. */
  range(runId: string, from: number, count: number): Promise<StoredEvent[]>;
  /** The channel the append script announces the run's events on. */
  channel(runId: string): string;
}

export interface FeedLimits {
  /** Events a feed keeps for its followers; one that falls further behind reads Redis itself. */
  windowEvents: number;
  /** Characters of event data a feed keeps (at least its newest event, whatever its size). */
  windowBytes: number;
  /** Events per XRANGE when a feed refills. */
  page: number;
}

/**
 * One run's events as this process knows them, shared by all of the process's followers of the
 * run: one subscription and one read of Redis per batch per process, however many followers there
 * are. It keeps the newest events (a bounded window) and the log's head; the append script's
 * notifications carry the events themselves, so a follower that keeps up never reads Redis.
 * Notifications are taken only when they continue the head; anything else (a gap, a lost
 * subscription) is refilled from the stream, which is the truth.
 */
export class RunFeed implements ChannelListener {
  /** Followers holding the feed. */
  users = 0;
  /** The id of the last event this process knows is in the log. */
  head = 0;
  ended = false;
  /** Set when the store closed: followers end. */
  closed = false;
  /** The newest events, contiguous, the last one at `head`. */
  private window: StoredEvent[] = [];
  private bytes = 0;
  private waiters = new Set<() => void>();
  private refilling = false;
  private refillAgain = false;
  private off: (() => void) | undefined;
  /** Resolves to false for an unknown run. */
  readonly ready: Promise<boolean>;

  constructor(
    readonly runId: string,
    private readonly source: FeedSource,
    private readonly subscriber: SharedSubscriber,
    private readonly limits: FeedLimits,
  ) {
    this.ready = this.open();
  }

  /**
   * The first event after `afterId` this process holds; null when there is none yet (the follower
   * waits); undefined when the follower is behind the window (it reads Redis for what it lacks).
   */
  next(afterId: number): StoredEvent | null | undefined {
    if (afterId >= this.head) return null;
    const first = this.window[0];
    if (first === undefined || first.id > afterId + 1) return undefined;
    return this.window[afterId + 1 - first.id];
  }

  /** The id of the oldest event the feed holds (head + 1 when it holds none). */
  get oldest(): number {
    return this.window[0]?.id ?? this.head + 1;
  }

  /** Resolves at the next change (an event, the end, the store's close) or when `signal` aborts. */
  changed(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  message(payload: Buffer): void {
    const events = eventsOfNotification(payload);
    if (events === undefined) return this.resync();
    for (const ev of events) {
      if (ev.id <= this.head) continue;
      // A notification missed (or one from before a lost subscription): the stream fills the gap.
      if (ev.id !== this.head + 1) return this.resync();
      this.push(ev);
    }
    this.wake();
  }

  resync(): void {
    if (this.ended || this.closed) return;
    if (this.refilling) {
      this.refillAgain = true;
      return;
    }
    void this.refill();
  }

  /** Stops listening; parked followers wake and end. */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    this.wake();
  }

  private async open(): Promise<boolean> {
    const head = await this.source.head(this.runId);
    if (head === undefined) return false;
    this.head = head.last;
    this.ended = head.ended;
    // A finished log never changes: nothing to listen for.
    if (this.ended || this.closed) return true;
    this.off = await this.subscriber.listen(this.source.channel(this.runId), this);
    if (this.closed) this.unsubscribe();
    // What was appended between reading the head and the subscription's confirmation.
    else this.resync();
    return true;
  }

  private async refill(): Promise<void> {
    this.refilling = true;
    try {
      do {
        this.refillAgain = false;
        let page: StoredEvent[];
        do {
          page = await this.source.range(this.runId, this.head + 1, this.limits.page);
          // The stream is the truth: a jump past the head (events trimmed by MAXLEN) starts the window anew.
          for (const ev of page) if (ev.id > this.head) this.push(ev, ev.id !== this.head + 1);
          this.wake();
        } while (page.length === this.limits.page && !this.ended && !this.closed);
      } while (this.refillAgain && !this.ended && !this.closed);
    } catch {
      // Redis is unreachable: the next notification that does not continue the head, or the
      // next resubscription, refills again. Followers wait meanwhile.
    } finally {
      this.refilling = false;
    }
  }

  private push(ev: StoredEvent, restart = false): void {
    if (restart) {
      this.window = [];
      this.bytes = 0;
    }
    this.window.push(ev);
    this.bytes += ev.data.length;
    this.head = ev.id;
    while (this.window.length > 1 && (this.window.length > this.limits.windowEvents || this.bytes > this.limits.windowBytes)) {
      this.bytes -= this.window.shift()!.data.length;
    }
    if (isTerminalEvent(ev.type)) {
      this.ended = true;
      this.unsubscribe();
    }
  }

  private unsubscribe(): void {
    const off = this.off;
    this.off = undefined;
    off?.();
  }

  private wake(): void {
    if (this.waiters.size === 0) return;
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }
}

/**
 * The process's feeds, one per run that has followers here, dropped with its last follower.
 *
 * @example
 *   const feed = await feeds.acquire(runId)   // undefined: unknown run
 *   try { … feed.next(last) … } finally { feeds.release(feed) }
 */
export class RunFeeds {
  private readonly feeds = new Map<string, RunFeed>();
  private closed = false;

  constructor(
    private readonly source: FeedSource,
    private readonly subscriber: SharedSubscriber,
    private readonly limits: FeedLimits,
  ) {}

  async acquire(runId: string): Promise<RunFeed | undefined> {
    let feed = this.feeds.get(runId);
    if (feed === undefined) {
      feed = new RunFeed(runId, this.source, this.subscriber, this.limits);
      if (this.closed) feed.close();
      this.feeds.set(runId, feed);
    }
    feed.users++;
    let known: boolean;
    try {
      known = await feed.ready;
    } catch (err) {
      this.release(feed);
      throw err;
    }
    if (known) return feed;
    this.release(feed);
    return undefined;
  }

  release(feed: RunFeed): void {
    if (--feed.users > 0) return;
    if (this.feeds.get(feed.runId) === feed) this.feeds.delete(feed.runId);
    feed.close();
  }

  /** Feeds alive now (tests check that followers that left leave none behind). */
  get size(): number {
    return this.feeds.size;
  }

  /** Ends every follower (the store is closing). */
  close(): void {
    this.closed = true;
    for (const feed of this.feeds.values()) feed.close();
  }
}
