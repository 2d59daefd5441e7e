import type { CancelBus, RunListQuery, RunPage, RunStore } from './run-store.js';
import { EventLogFullError, TERMINAL_EVENT_TYPES, type EventLog, type ReadOptions, type RunEventType, type StoredEvent } from './event-log.js';
import { isTerminalStatus, type Run, type RunStatus } from './run.js';
import { isoAt } from './iso-clock.js';
import { jsonString } from './json-text.js';
import { RunArena, runJson, type SealedRun } from './run-arena.js';
import { RunwayError } from '../errors.js';

export interface MemoryStoreOptions {
  /** Finished runs (and their events) are dropped this long after they finish. */
  runTtlS: number;
  /** At most this many finished runs are kept; the oldest-finished go first. */
  maxRuns: number;
  /** Non-terminal events one run may record; the terminal event is always accepted. */
  maxEventsPerRun: number;
  /** How often expired runs are swept (default: a quarter of the TTL, at most 30 s). */
  sweepIntervalMs?: number;
  /** Injectable clock for retention tests. */
  now?: () => number;
}

/**
 * One run and its event log, kept compactly (DESIGN §8: finished events as live object graphs are
 * the largest GC cost). Per event it keeps four numbers in one flat array (type code, millisecond
 * offset, token step, end of its text) and one text: the JSON of its `data`, or for a token the
 * delta itself, whose `{"delta":…,"step_id":…}` is written only if the event is ever read. The
 * envelope (`{"id":…,"run_id":…,"type":…,"time":…,"data":…}`) is the same for every event of the
 * run and is put back around `data` when the event is read. Most runs are never replayed, so
 * building text at read time instead of write time saves work and halves the bytes kept. Once the
 * run has its terminal event, its texts go into the arena with its record (or, kept on the heap,
 * are sealed into one flat string).
 */
class Entry {
  /** Four numbers per event: type code, ms since `baseMs`, token step (0: the text is JSON), end offset in the texts. */
  private meta: Uint32Array;
  /** Numbers of `meta` in use (4 per event). */
  private words = 0;
  /** Step ids of this run's raw token events; a token's third number is its index here plus one. */
  private tokenSteps: string[] | undefined;
  private readonly baseMs: number;
  private live: string[] | undefined = [];
  private size = 0;
  private blob = '';
  terminal = false;
  /** Moved to the arena: only readers that already held it still read it. */
  archived = false;
  /** Dropped by retention: no more events will come. */
  evicted = false;
  finishedAtMs = 0;
  /** Readers parked until the next append; created for the first one. */
  waiters: Set<() => void> | undefined;
  /** `read()` calls holding this entry (its numbers go back to the pool only when none does). */
  readers = 0;

  constructor(
    readonly run: Run,
    meta: Uint32Array,
    baseMs = Date.now(),
  ) {
    this.meta = meta;
    this.baseMs = baseMs;
  }

  /** A read-only view of a run taken back from the arena, for its readers. */
  static opened(parts: SealedRun): Entry {
    const entry = new Entry(parts.run, parts.meta, parts.baseMs);
    entry.words = parts.meta.length;
    entry.tokenSteps = parts.tokenSteps;
    entry.blob = parts.blob;
    entry.live = undefined;
    entry.terminal = true;
    return entry;
  }

  /** What the arena keeps of a run with its terminal event. */
  sealed(): SealedRun {
    // Texts not sealed yet go as they are: the arena joins them into its record in one go.
    return { userId: this.run.user_id, run: this.run, baseMs: this.baseMs, tokenSteps: this.tokenSteps, meta: this.meta.subarray(0, this.words), blob: this.blob, texts: this.live };
  }

  /** Hands the numbers back for another run (only once the run is in the arena and nobody reads this entry). */
  releaseMeta(): Uint32Array {
    const meta = this.meta;
    this.meta = NO_WORDS;
    this.words = 0;
    return meta;
  }

  get count(): number {
    return this.words >> 2;
  }

  /** Appends an event of type number `code`, a known one (`eventCode`). */
  push(code: number, text: string, tokenStep = 0): void {
    this.size += text.length;
    const w = this.words;
    if (w + 4 > this.meta.length) this.grow();
    const meta = this.meta;
    meta[w] = code;
    // Never before the run's first event, even if the wall clock steps back (the offset is unsigned).
    meta[w + 1] = Math.max(0, Date.now() - this.baseMs);
    meta[w + 2] = tokenStep;
    meta[w + 3] = this.size;
    this.words = w + 4;
    this.live!.push(text);
  }

  private grow(): void {
    const bigger = new Uint32Array(Math.max(POOLED_WORDS, this.meta.length * 2));
    bigger.set(this.meta);
    this.meta = bigger;
  }

  /** A token event kept as its raw delta. */
  pushToken(delta: string, stepId: string): void {
    const steps = (this.tokenSteps ??= []);
    // Nearly always the step of the previous token: look there first.
    let at = steps.length - 1;
    if (at < 0 || steps[at] !== stepId) {
      at = steps.indexOf(stepId);
      if (at < 0) at = steps.push(stepId) - 1;
    }
    this.push(TOKEN_CODE, delta, at + 1);
  }

  type(i: number): RunEventType {
    return EVENT_TYPES[this.meta[i * 4]!]!;
  }

  json(i: number): string {
    const m = i * 4;
    const meta = this.meta;
    const text = this.live ? this.live[i]! : this.blob.slice(i === 0 ? 0 : meta[m - 1]!, meta[m + 3]!);
    const tokenStep = meta[m + 2]!;
    const data = tokenStep === 0 ? text : `{"delta":${jsonString(text)},"step_id":${jsonString(this.tokenSteps![tokenStep - 1]!)}}`;
    return `{"id":${i + 1},"run_id":${jsonString(this.run.id)},"type":"${EVENT_TYPES[meta[m]!]}","time":"${isoAt(this.baseMs + meta[m + 1]!)}","data":${data}}`;
  }

  seal(): void {
    this.blob = this.live!.join('');
    this.live = undefined;
  }
}

const EVENT_TYPES: readonly RunEventType[] = [
  'run.queued',
  'run.started',
  'token',
  'step',
  'run.succeeded',
  'run.failed',
  'run.cancelled',
];
const TOKEN_CODE = 2;
/** Codes from here on are the terminal events'. */
const FIRST_TERMINAL_CODE = 4;

/**
 * An event type's number (its index in EVENT_TYPES), or -1 for a type the log does not know (a
 * name like `constructor` included). A switch, not a lookup object: looked up with seven different
 * keys, the object's property load went megamorphic, a dictionary probe on every event.
 */
function eventCode(type: RunEventType): number {
  switch (type) {
    case 'run.queued':
      return 0;
    case 'run.started':
      return 1;
    case 'token':
      return TOKEN_CODE;
    case 'step':
      return 3;
    case 'run.succeeded':
      return FIRST_TERMINAL_CODE;
    case 'run.failed':
      return 5;
    case 'run.cancelled':
      return 6;
    default:
      return -1;
  }
}

// The switch repeats EVENT_TYPES' order, and FIRST_TERMINAL_CODE stands for TERMINAL_EVENT_TYPES:
// checked once at load, so the twins cannot drift apart.
EVENT_TYPES.forEach((type, code) => {
  if (eventCode(type) !== code) throw new Error(`eventCode(${type}) is not its index in EVENT_TYPES (${code})`);
  if (code >= FIRST_TERMINAL_CODE !== TERMINAL_EVENT_TYPES.has(type)) throw new Error(`${type}: FIRST_TERMINAL_CODE disagrees with TERMINAL_EVENT_TYPES`);
});

/** Numbers for 16 events, what an `echo` run of a short input records. */
const POOLED_WORDS = 64;
const NO_WORDS = new Uint32Array(0);

/**
 * Event numbers of running runs come from here and go back once the run is in the arena, so a run
 * allocates none: with a typed array per run, and a plain array grown by push before that, they
 * were ~1.6 kB of garbage per run.
 */
class MetaPool {
  private readonly free: Uint32Array[] = [];

  take(): Uint32Array {
    return this.free.pop() ?? new Uint32Array(POOLED_WORDS);
  }

  give(meta: Uint32Array): void {
    // Grown ones go to the collector; the pool never holds more than a burst of runs needs.
    if (meta.length === POOLED_WORDS && this.free.length < 1024) this.free.push(meta);
  }
}

interface UserIndex {
  readonly userId: string;
  seqs: number[];
  ids: string[];
  live: number;
}

/**
 * A FIFO of finished run ids with the time each finished and its user's index (so eviction need not
 * read the user id back out of the arena); `shift` is O(1) amortised.
 */
class IdQueue {
  private items: string[] = [];
  private times: number[] = [];
  private indexes: UserIndex[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(id: string, finishedAtMs: number, index: UserIndex): void {
    this.items.push(id);
    this.times.push(finishedAtMs);
    this.indexes.push(index);
  }
  peek(): string | undefined {
    return this.items[this.head];
  }
  peekTime(): number {
    return this.times[this.head]!;
  }
  /** The user index of the run at the front. */
  peekIndex(): UserIndex {
    return this.indexes[this.head]!;
  }
  shift(): void {
    if (this.head === this.items.length) return;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.times = this.times.slice(this.head);
      this.indexes = this.indexes.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * The embedded store: run records, event logs and cancellation in this process's memory, bounded
 * by a TTL, a cap on finished runs and a cap on events per run, so memory stays flat under load.
 *
 * @example
 *   const store = new MemoryStore({ runTtlS: 3600, maxRuns: 10_000, maxEventsPerRun: 10_000 })
 */
export class MemoryStore implements RunStore, EventLog, CancelBus {
  /** Runs by id: the Entry of a live run, or the arena handle of a finished one. */
  private readonly entries = new Map<string, Entry | number>();
  private readonly arena = new RunArena();
  private readonly metaPool = new MetaPool();
  private readonly users = new Map<string, UserIndex>();
  private readonly finished = new IdQueue();
  private readonly cancelHandlers = new Set<(runId: string) => void>();
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly now: () => number;
  private seq = 0;
  private lastEntry: Entry | undefined;
  /** The last run moved to the arena and its JSON, for `finishedJson`. */
  private lastSealedRun: Run | undefined;
  private lastSealedJson = '';

  constructor(private readonly options: MemoryStoreOptions) {
    this.now = options.now ?? Date.now;
    const every = options.sweepIntervalMs ?? Math.min(30_000, Math.max(1000, (options.runTtlS * 1000) / 4));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  // ---- RunStore ----

  async create(run: Run): Promise<void> {
    this.createNow(run);
  }

  createNow(run: Run): void {
    if (this.entries.has(run.id)) throw new Error(`Run ${run.id} already exists`);
    const entry = new Entry(run, this.metaPool.take());
    this.entries.set(run.id, entry);
    let index = this.users.get(run.user_id);
    if (!index) this.users.set(run.user_id, (index = { userId: run.user_id, seqs: [], ids: [], live: 0 }));
    index.seqs.push(++this.seq);
    index.ids.push(run.id);
    index.live++;
    this.maybeFinished(entry);
  }

  async get(id: string): Promise<Run | undefined> {
    return this.runOf(this.entries.get(id));
  }

  /** The Run of a live entry, or a fresh copy of a finished one. */
  private runOf(value: Entry | number | undefined): Run | undefined {
    return typeof value === 'number' ? this.arena.run(value) : value?.run;
  }

  async update(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Promise<Run | undefined> {
    return this.updateNow(id, patch, expect);
  }

  updateNow(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Run | undefined {
    const entry = this.entry(id);
    if (!entry || !expect.includes(entry.run.status)) return undefined;
    Object.assign(entry.run, patch);
    this.maybeFinished(entry);
    return entry.run;
  }

  async list(query: RunListQuery): Promise<RunPage> {
    // Decoded first: a forged cursor is refused whether or not the caller has runs.
    const cursorSeq = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const index = this.users.get(query.userId);
    const data: Run[] = [];
    if (!index) return { data, nextCursor: null };
    let i = index.seqs.length - 1;
    if (cursorSeq !== undefined) i = lowerBound(index.seqs, cursorSeq) - 1;
    let lastSeq = 0;
    for (; i >= 0; i--) {
      const value = this.entries.get(index.ids[i]!);
      if (value === undefined) continue;
      // A finished run is decoded only if it passes the filters.
      const fields = typeof value === 'number' ? this.arena.summary(value) : value.run;
      if (query.status !== undefined && fields.status !== query.status) continue;
      if (query.workflow !== undefined && fields.workflow !== query.workflow) continue;
      if (query.conversationId !== undefined && fields.conversation_id !== query.conversationId) continue;
      if (data.length === query.limit) return { data, nextCursor: encodeCursor(lastSeq) };
      data.push(typeof value === 'number' ? this.arena.run(value) : value.run);
      lastSeq = index.seqs[i]!;
    }
    return { data, nextCursor: null };
  }

  finishedJson(run: Run): string | undefined {
    return run === this.lastSealedRun ? this.lastSealedJson : undefined;
  }

  async ping(): Promise<void> {}

  // ---- EventLog ----

  append(runId: string, type: RunEventType, data: unknown, dataJson?: string): Promise<number> {
    try {
      return Promise.resolve(this.appendNow(runId, type, data, dataJson));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  appendNow(runId: string, type: RunEventType, data: unknown, dataJson?: string): number {
    const code = eventCode(type);
    const terminal = code >= FIRST_TERMINAL_CODE;
    const entry = this.appendable(runId, terminal);
    const text = dataJson ?? (data === undefined ? '{}' : JSON.stringify(data));
    // Checked before anything changes: a refused event must leave the log as it was.
    if (code < 0) throw new TypeError(`Unknown event type ${String(type)}`);
    entry.push(code, text);
    return this.appended(entry, terminal);
  }

  /** The entry an event may be appended to (a terminal one even to a full log), or the reason it may not. */
  private appendable(runId: string, terminal: boolean): Entry {
    const entry = this.entry(runId);
    if (!entry) {
      if (typeof this.entries.get(runId) === 'number') throw new Error(`Run ${runId} already has its terminal event`);
      throw new Error(`Run ${runId} has no event log`);
    }
    if (entry.terminal) throw new Error(`Run ${runId} already has its terminal event`);
    if (!terminal && entry.count >= this.options.maxEventsPerRun - 1) {
      throw new EventLogFullError(runId, this.options.maxEventsPerRun);
    }
    return entry;
  }

  /** Bookkeeping after an event was pushed: its id, the run's last_event_id, sealing, waking readers. */
  private appended(entry: Entry, terminal: boolean): number {
    const id = entry.count;
    entry.run.last_event_id = id;
    if (terminal) entry.terminal = true;
    if (entry.waiters !== undefined && entry.waiters.size > 0) {
      for (const wake of entry.waiters) wake();
      entry.waiters.clear();
    }
    if (terminal) {
      this.maybeFinished(entry);
      // Not moved to the arena (its status is not final yet, or the arena declined): its texts are
      // joined into one string, which the heap holds more cheaply than one string per event.
      if (!entry.archived) entry.seal();
    }
    return id;
  }

  /**
   * The run's entry. A run's events are appended in bursts, so the last entry looked up is checked
   * before the map (a lookup in a map of 10,000 runs showed in profiles).
   */
  private entry(runId: string): Entry | undefined {
    const last = this.lastEntry;
    if (last !== undefined && last.run.id === runId) return last;
    const entry = this.entries.get(runId);
    if (entry === undefined || typeof entry === 'number') return undefined;
    this.lastEntry = entry;
    return entry;
  }

  appendTokenNow(runId: string, delta: string, stepId: string): number {
    const entry = this.appendable(runId, false);
    entry.pushToken(delta, stepId);
    return this.appended(entry, false);
  }

  async *read(runId: string, afterId: number, options: ReadOptions = {}): AsyncGenerator<StoredEvent> {
    const { signal, follow = true } = options;
    let next = Math.max(0, afterId);
    // Held for the whole read: a run evicted while a reader is still catching up keeps its events
    // for that reader, so a follower never loses the terminal event it was woken for.
    const value = this.entries.get(runId);
    if (value === undefined) return;
    const entry = typeof value === 'number' ? Entry.opened(this.arena.open(value)) : value;
    entry.readers++;
    try {
      for (;;) {
        while (next < entry.count) {
          const i = next++;
          yield { id: i + 1, type: entry.type(i), json: entry.json(i) };
        }
        if (entry.terminal || entry.evicted || !follow || signal?.aborted) return;
        await nextAppend(entry, signal);
      }
    } finally {
      entry.readers--;
    }
  }

  /** Readers currently parked on a run (tests use it to prove a gone reader left no subscription). */
  subscriberCount(runId: string): number {
    const value = this.entries.get(runId);
    return typeof value === 'number' ? 0 : (value?.waiters?.size ?? 0);
  }

  // ---- CancelBus ----

  async publishCancel(runId: string): Promise<void> {
    for (const handler of this.cancelHandlers) handler(runId);
  }

  onCancel(handler: (runId: string) => void): () => void {
    this.cancelHandlers.add(handler);
    return () => this.cancelHandlers.delete(handler);
  }

  // ---- retention ----

  /** Bytes of buffers holding finished runs (tests use it to prove memory stays flat). */
  get finishedBytes(): number {
    return this.arena.bytes;
  }

  /** Number of runs held (running and finished). */
  get size(): number {
    return this.entries.size;
  }

  /** Drops finished runs older than the TTL. Runs on a timer; public so tests can drive it. */
  sweep(): void {
    const cutoff = this.now() - this.options.runTtlS * 1000;
    for (let id = this.finished.peek(); id !== undefined; id = this.finished.peek()) {
      if (this.finished.peekTime() > cutoff) break;
      this.evictFirst(id);
    }
  }

  close(): void {
    clearInterval(this.sweepTimer);
  }

  /**
   * A run becomes retention's to evict once its status is final AND its log is complete (its
   * terminal event written, or no log at all). The Runner writes the status first and the terminal
   * event a moment later; evicting in between would cut that event off from readers following it.
   */
  private maybeFinished(entry: Entry): void {
    if (entry.finishedAtMs !== 0 || !isTerminalStatus(entry.run.status)) return;
    if (entry.terminal || entry.count === 0) this.markFinished(entry);
  }

  private markFinished(entry: Entry): void {
    const finishedAtMs = (entry.finishedAtMs = this.now());
    const id = entry.run.id;
    // A complete log moves to the arena and the live Entry is let go (readers still following it
    // keep it). A run without events (created outside the Runner) stays as it is.
    if (entry.terminal) {
      let handle: number | undefined;
      try {
        const sealed = entry.sealed();
        sealed.runJson = runJson(entry.run);
        handle = this.arena.put(sealed);
        // The Run object is final from here on (its status is, and its log is complete). The
        // arena's copy of its JSON is flat; a run the arena declined has only the one built here.
        this.lastSealedRun = entry.run;
        this.lastSealedJson = handle === undefined ? sealed.runJson : this.arena.lastRunJson;
      } catch {
        // JSON.stringify refused a member (only a toJSON that changed its mind since the Runner
        // serialized it): the run stays on the heap.
      }
      if (handle !== undefined) {
        entry.archived = true;
        this.entries.set(id, handle);
        if (this.lastEntry === entry) this.lastEntry = undefined;
        // No one can reach the entry now but a reader already holding it (a reader that drops
        // its iterator without finishing keeps the count up: its numbers are then never reused).
        if (entry.readers === 0) this.metaPool.give(entry.releaseMeta());
      }
    }
    this.finished.push(id, finishedAtMs, this.users.get(entry.run.user_id)!);
    while (this.finished.size > this.options.maxRuns) this.evictFirst(this.finished.peek()!);
  }

  /** Evicts the run at the front of the finished queue (`id`). */
  private evictFirst(id: string): void {
    const index = this.finished.peekIndex();
    this.finished.shift();
    const value = this.entries.get(id);
    if (value === undefined) return;
    this.entries.delete(id);
    if (typeof value === 'number') {
      this.arena.free(value);
    } else {
      value.evicted = true;
      if (this.lastEntry === value) this.lastEntry = undefined;
      // Readers parked on it (possible only for a log without its terminal event) end instead of hanging.
      if (value.waiters !== undefined && value.waiters.size > 0) {
        for (const wake of value.waiters) wake();
        value.waiters.clear();
      }
    }
    index.live--;
    if (index.live === 0) {
      // The map may hold a newer index of this user by now only if this one was dropped, and it
      // is dropped only here, when its last run goes.
      if (this.users.get(index.userId) === index) this.users.delete(index.userId);
    } else if (index.ids.length > 64 && index.live * 2 < index.ids.length) {
      this.compact(index);
    }
  }

  /**
   * Drops the ids of evicted runs from a user's index, in place. A method of its own with a plain
   * loop: written with map/filter and closures inside evictFirst, it ran so rarely that V8 kept
   * optimizing evictFirst with it inlined and deoptimizing it on its next run ("out of bounds"),
   * a compile-deopt cycle every few thousand runs that lasted as long as the server (BENCHMARKS.md).
   */
  private compact(index: UserIndex): void {
    const { ids, seqs } = index;
    let kept = 0;
    for (let i = 0; i < ids.length; i++) {
      const runId = ids[i]!;
      if (!this.entries.has(runId)) continue;
      ids[kept] = runId;
      seqs[kept] = seqs[i]!;
      kept++;
    }
    ids.length = kept;
    seqs.length = kept;
  }
}

function nextAppend(entry: Entry, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const wake = () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      entry.waiters?.delete(wake);
      resolve();
    };
    (entry.waiters ??= new Set()).add(wake);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Index of the first element >= value in an ascending array. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function encodeCursor(seq: number): string {
  return Buffer.from(`s:${seq}`).toString('base64url');
}

function decodeCursor(cursor: string): number {
  const match = /^s:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) {
    throw new RunwayError('invalid_request', 'cursor is not one this server issued', {
      errors: [{ in: 'querystring', pointer: '/cursor', message: 'Invalid cursor' }],
    });
  }
  return Number(match[1]);
}
