import { isTerminalEvent, type StoredEvent } from '../../core/events.js';
import type { AppendOptions, EventLog, ReadOptions } from '../event-log.js';
import { EventIdConflictError, RunEndedError, StaleWriterError } from '../store-errors.js';
import type { RedisKeys } from './redis-keys.js';
import type { RunwayRedis } from './redis-scripts.js';
import { RunFeeds, type FeedLimits } from './run-feeds.js';
import type { SharedSubscriber } from './shared-subscriber.js';
import { eventsOfEntries, type StreamEntry } from './stream-codec.js';

export interface RedisEventLogOptions {
  /** How long a finished run's keys live after its terminal event (ms). */
  ttlMs: number;
  /** The MAXLEN guard: entries a stream keeps at most (the oldest go beyond it). */
  maxLength: number;
  /** Events per XRANGE of a replay, and what a process's feed of a run keeps for its followers. */
  feed: FeedLimits;
}

/**
 * `EventLog` over Redis Streams, one stream per run with entry ids `<event id>-0`, so an SSE id is
 * a stream id. The append script (redis-scripts.ts) is the only writer: it checks the batch
 * continues the log, refuses anything after the terminal event, trims to MAXLEN, starts the TTL
 * when the terminal event lands, and announces the batch on the run's channel.
 *
 * A follower replays with paged XRANGE, then takes what its process's feed of the run holds
 * (run-feeds.ts: one subscription per run per process, on the one shared subscriber connection),
 * and reads Redis itself again whenever it falls behind the feed's window. It yields each id once,
 * in order: whatever it is handed at or below the last id it yielded is dropped.
 *
 * Fencing (`AppendOptions.attempt`): the script keeps the highest attempt that appended and refuses
 * a lower one. Nothing passes an attempt yet; BullMQ workers will (each pick-up of a run takes the
 * next attempt number), so a worker presumed dead cannot append over the one that took its run.
 *
 * @example
 *   await log.append(runId, [{ id: 1, type: 'run.queued', time, data: '{}' }])
 *   for await (const ev of log.read(runId, 0, { signal })) send(ev)
 */
export class RedisEventLog implements EventLog {
  /** This process's feeds of the runs it has followers of. */
  readonly feeds: RunFeeds;

  constructor(
    private readonly redis: RunwayRedis,
    private readonly keys: RedisKeys,
    subscriber: SharedSubscriber,
    private readonly options: RedisEventLogOptions,
  ) {
    const source = { head: (runId: string) => this.head(runId), range: (runId: string, from: number, count: number) => this.range(runId, from, count), channel: (runId: string) => keys.appended(runId) };
    this.feeds = new RunFeeds(source, subscriber, options.feed);
  }

  async append(runId: string, events: readonly StoredEvent[], options: AppendOptions = {}): Promise<void> {
    const attempt = options.attempt;
    const args: (string | number)[] = [this.options.ttlMs, this.options.maxLength, attempt === undefined ? '' : String(attempt), this.keys.appended(runId), events.length];
    for (const ev of events) {
      args.push(Number.isSafeInteger(ev.id) && ev.id > 0 ? String(ev.id) : '0', isTerminalEvent(ev.type) ? '1' : '0', ev.type, ev.time, ev.data);
    }
    const reply = await this.redis.runwayAppend(this.keys.run(runId), this.keys.events(runId), ...args);
    switch (reply[0]) {
      case 'OK':
        return;
      case 'ENDED':
        throw new RunEndedError(runId);
      case 'CONFLICT':
        throw new EventIdConflictError(runId, Number(reply[1]), events[Number(reply[2])]!.id);
      case 'STALE':
        throw new StaleWriterError(runId, attempt!, Number(reply[1]));
      default:
        throw new Error(`Run ${runId}: unexpected reply from the append script: ${String(reply[0])}`);
    }
  }

  read(runId: string, afterId: number, options: ReadOptions = {}): AsyncIterable<StoredEvent> {
    // An id that is no whole number reads from the start, as no id does.
    const from = Number.isFinite(afterId) ? Math.max(0, Math.floor(afterId)) : 0;
    return options.follow === false ? this.replay(runId, from) : this.follow(runId, from, options.signal);
  }

  /** The log as it is now: pages of XRANGE until it runs out (or reaches the terminal event). */
  private async *replay(runId: string, afterId: number): AsyncGenerator<StoredEvent> {
    let last = afterId;
    for (;;) {
      const page = await this.range(runId, last + 1, this.options.feed.page);
      for (const ev of page) {
        yield ev;
        last = ev.id;
        if (isTerminalEvent(ev.type)) return;
      }
      if (page.length < this.options.feed.page) return;
    }
  }

  private async *follow(runId: string, afterId: number, signal: AbortSignal | undefined): AsyncGenerator<StoredEvent> {
    const feed = await this.feeds.acquire(runId);
    if (feed === undefined) return;
    try {
      let last = afterId;
      for (;;) {
        const held = feed.next(last);
        if (held) {
          // The feed's events are shared by every follower here: each gets its own copy.
          yield { ...held };
          last = held.id;
          if (isTerminalEvent(held.type)) return;
          continue;
        }
        if (feed.closed || signal?.aborted) return;
        if (held === null) {
          if (feed.ended) return;
          await feed.changed(signal);
          continue;
        }
        // Behind what the feed holds: the stream has it.
        const page = await this.range(runId, last + 1, this.options.feed.page);
        if (page.length === 0) {
          // Gone from the stream (expired) though the feed knew of it: go on from what it holds.
          last = Math.max(last, feed.oldest - 1);
          continue;
        }
        for (const ev of page) {
          if (ev.id <= last) continue;
          yield ev;
          last = ev.id;
          if (isTerminalEvent(ev.type)) return;
        }
      }
    } finally {
      this.feeds.release(feed);
    }
  }

  /** Up to `count` events from id `from` on. */
  async range(runId: string, from: number, count: number): Promise<StoredEvent[]> {
    // Past the largest id a log can have (JavaScript's safe integers) there is nothing to read.
    if (from > Number.MAX_SAFE_INTEGER) return [];
    const entries = (await this.redis.xrange(this.keys.events(runId), `${from}-0`, '+', 'COUNT', count)) as StreamEntry[];
    return eventsOfEntries(entries);
  }

  /** Ends every follower of this process (the store is closing). */
  close(): void {
    this.feeds.close();
  }

  /** The log's last id and whether it has ended; undefined for an unknown run. */
  async head(runId: string): Promise<{ last: number; ended: boolean } | undefined> {
    const [last, ended] = await this.redis.hmget(this.keys.run(runId), '~last', '~ended');
    return last === null ? undefined : { last: Number(last), ended: ended === '1' };
  }
}
