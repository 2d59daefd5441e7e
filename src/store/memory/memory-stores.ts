import type { Run, RunStatus } from '../../core/run.js';
import type { StoredEvent } from '../../core/events.js';
import type { EventLog, ReadOptions } from '../event-log.js';
import type { RunListQuery, RunPage, RunStore } from '../run-store.js';
import type { Stores } from '../stores.js';
import { RunEndedError } from '../store-errors.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { MemoryBus } from './memory-bus.js';
import { MemoryConversationStore, type MemoryConversationStoreOptions } from './memory-conversation-store.js';
import { RunTable, type RetentionOptions } from './run-table.js';

export interface MemoryStoreOptions extends RetentionOptions {
  /** How often expired runs are swept (default: a quarter of the TTL, at most 30 s). */
  sweepIntervalMs?: number;
  conversations?: MemoryConversationStoreOptions;
}

/** `RunStore` over the memory store's run table. */
export class MemoryRunStore implements RunStore {
  constructor(private readonly table: RunTable) {}

  async create(run: Run): Promise<void> {
    this.table.add(run);
  }

  async get(id: string): Promise<Run | undefined> {
    const record = this.table.get(id);
    return record === undefined ? undefined : this.table.run(record);
  }

  async update(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Promise<boolean> {
    return this.table.update(id, patch, expect);
  }

  async list(query: RunListQuery): Promise<RunPage> {
    // Decoded first: a forged cursor is refused whether or not the caller has runs.
    const before = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const data: Run[] = [];
    let lastSeq = 0;
    for (const record of this.table.newestFirst(query.userId, before)) {
      if (query.status !== undefined && record.status !== query.status) continue;
      if (query.workflow !== undefined && record.workflow !== query.workflow) continue;
      if (query.conversationId !== undefined && record.conversationId !== query.conversationId) continue;
      if (data.length === query.limit) return { data, nextCursor: encodeCursor(lastSeq) };
      data.push(this.table.run(record));
      lastSeq = record.seq;
    }
    return { data, nextCursor: null };
  }

  async ping(): Promise<void> {}
}

const NO_EVENTS: AsyncIterable<StoredEvent> = { [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) };

/** `EventLog` over the memory store's run table: a run's log exists from its creation on. */
export class MemoryEventLog implements EventLog {
  constructor(private readonly table: RunTable) {}

  async append(runId: string, events: readonly StoredEvent[]): Promise<void> {
    const record = this.table.get(runId);
    if (record === undefined) throw new RunEndedError(runId);
    record.log.append(events);
    this.table.settle(record);
  }

  read(runId: string, afterId: number, options: ReadOptions = {}): AsyncIterable<StoredEvent> {
    // The log is held for the whole read: a run dropped by retention while a reader is still
    // catching up keeps its events for that reader. (Its own iterator, not one wrapped in another:
    // each layer of async generator is held, with its pending promise, by every parked follower.)
    const log = this.table.get(runId)?.log;
    return log === undefined ? NO_EVENTS : log.read(afterId, options.follow ?? true, options.signal);
  }

  /** Readers parked on a run's log (tests prove a reader that left is no longer subscribed). */
  parked(runId: string): number {
    return this.table.get(runId)?.log.parked ?? 0;
  }
}

/** The memory store's four stores, plus what its tests look at. */
export interface MemoryStores extends Stores {
  runs: MemoryRunStore;
  events: MemoryEventLog;
  conversations: MemoryConversationStore;
  table: RunTable;
}

const DEFAULT_CONVERSATIONS: MemoryConversationStoreOptions = { maxMessages: 200, maxChars: 200_000, ttlS: 86_400, maxConversations: 10_000 };

/**
 * The embedded store: runs, event logs, conversations and the bus in this process's memory, bounded
 * by a TTL and a cap on finished runs, so memory stays flat under load.
 *
 * @example
 *   const stores = createMemoryStores({ runTtlS: 3600, maxRuns: 10_000 })
 */
export function createMemoryStores(options: MemoryStoreOptions): MemoryStores {
  const table = new RunTable(options);
  const every = options.sweepIntervalMs ?? Math.min(30_000, Math.max(1000, (options.runTtlS * 1000) / 4));
  const sweeper = setInterval(() => table.sweep(), every);
  sweeper.unref();
  const conversations = new MemoryConversationStore(options.conversations ?? DEFAULT_CONVERSATIONS);
  return {
    table,
    runs: new MemoryRunStore(table),
    events: new MemoryEventLog(table),
    conversations,
    bus: new MemoryBus(),
    async close() {
      clearInterval(sweeper);
      conversations.close();
    },
  };
}
