import type { Redis } from 'ioredis';
import type { Stores } from '../stores.js';
import { RedisBus } from './redis-bus.js';
import { connect } from './redis-connection.js';
import { RedisConversationStore, type RedisConversationOptions } from './redis-conversation-store.js';
import { RedisEventLog } from './redis-event-log.js';
import { RedisKeys } from './redis-keys.js';
import { RedisRunStore } from './redis-run-store.js';
import { defineScripts } from './redis-scripts.js';
import type { FeedLimits } from './run-feeds.js';
import { SharedSubscriber } from './shared-subscriber.js';
import { whenDown } from './when-down.js';

export interface RedisStoreOptions {
  /** `redis://…`, `rediss://…` (TLS) or `unix:///path/to/redis.sock` (see redis-connection.ts). */
  url: string;
  /** Put before every key and channel, so deployments sharing one Redis do not meet. Default `runway:`. */
  prefix?: string;
  /** How long finished runs and their events are kept (their keys' TTL). */
  runTtlS: number;
  /** The MAXLEN guard of every run's stream; runs record at most `max_events_per_run`. Default 10,000. */
  maxEventsPerRun?: number;
  conversations?: RedisConversationOptions;
  /** How long `runs.ping()` waits before it rejects. Default 2,000 ms. */
  pingTimeoutMs?: number;
  /** What a process's feed of a run keeps for its followers (defaults: 256 events, 1 Mi characters, pages of 100). */
  feed?: Partial<FeedLimits>;
  /** Connection errors (both clients reconnect by themselves). Default: ignored. */
  onError?: (err: Error) => void;
}

/** The Redis store's four stores, plus its two connections (tests and operators look at them). */
export interface RedisStores extends Stores {
  runs: RedisRunStore;
  events: RedisEventLog;
  conversations: RedisConversationStore;
  bus: RedisBus;
  keys: RedisKeys;
  /** The command connection: every command but SUBSCRIBE; never a blocking one. */
  commands: Redis;
  /** The one subscriber connection, shared by all followers and the bus. */
  subscriber: Redis;
}

const DEFAULT_CONVERSATIONS: RedisConversationOptions = { maxMessages: 200, maxChars: 200_000, ttlS: 86_400, maxConversations: 10_000 };
const DEFAULT_FEED: FeedLimits = { windowEvents: 256, windowBytes: 1024 * 1024, page: 100 };
/** How long `close()` lets a connection finish its replies before cutting it. */
const QUIT_MS = 1000;

/**
 * The store on Redis (DESIGN §6): run records, event logs, conversations and the bus shared by
 * every process on one Redis, on two connections per process whatever the load: one for
 * commands, one subscriber. `close()` ends followers and quits both.
 *
 * @example
 *   const stores = createRedisStores({ url: 'redis://localhost:6379', prefix: 'runway:', runTtlS: 3600 })
 *   const runtime = await createRuntime({ stores })
 */
export function createRedisStores(options: RedisStoreOptions): RedisStores {
  const onError = options.onError ?? (() => {});
  const keys = new RedisKeys(options.prefix ?? 'runway:');
  // A command waits out two reconnection attempts at most (ioredis's default is twenty, over a
  // minute): past that a request gets `unavailable` at once (whenDown) instead of hanging.
  const commands = connect(options.url, 'runway-commands', { maxRetriesPerRequest: 2 }, onError);
  const scripted = defineScripts(commands);
  // Resubscribing is the SharedSubscriber's own: it resyncs its listeners once it is done.
  const subscriber = connect(options.url, 'runway-subscriber', { autoResubscribe: false }, onError);
  const shared = new SharedSubscriber(subscriber);
  const ttlMs = options.runTtlS * 1000;
  const events = new RedisEventLog(scripted, keys, shared, {
    ttlMs,
    maxLength: options.maxEventsPerRun ?? 10_000,
    feed: { ...DEFAULT_FEED, ...options.feed },
  });
  return {
    keys,
    commands,
    subscriber,
    runs: whenDown(new RedisRunStore(scripted, keys, { ttlMs, pingTimeoutMs: options.pingTimeoutMs ?? 2000 }), commands, ['create', 'get', 'update', 'list', 'ping']),
    events: whenDown(events, commands, ['append']),
    conversations: whenDown(new RedisConversationStore(scripted, keys, options.conversations ?? DEFAULT_CONVERSATIONS), commands, ['get', 'append', 'delete']),
    bus: new RedisBus(scripted, shared, keys.bus, keys, ttlMs),
    async close() {
      events.close();
      await Promise.all([quit(commands), quit(subscriber)]);
    },
  };
}

/** QUIT (replies in flight are answered first), bounded: a connection that is down is just cut. */
async function quit(client: Redis): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([client.quit(), new Promise((resolve) => (timer = setTimeout(resolve, QUIT_MS)))]);
  } catch {
    // Closed already.
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}
