import { copyJson, copyRun, isTerminalStatus, type Run, type RunStatus } from '../../core/run.js';
import { RunExistsError } from '../store-errors.js';
import { RunLog } from './run-log.js';

export interface RetentionOptions {
  /** Finished runs (and their events) are dropped this long after they finish. */
  runTtlS: number;
  /** At most this many finished runs are kept; the oldest-finished go first. */
  maxRuns: number;
  /** Injectable clock for retention tests. */
  now?: () => number;
}

/**
 * One run as the memory store keeps it: its own copy of the Run while it is live, the Run's JSON
 * text once it has finished (in a buffer: nothing can change it any more, and its bytes stay out of
 * the heap), the fields lists filter on, and its event log.
 */
export interface RunRecord {
  readonly id: string;
  readonly userId: string;
  readonly workflow: string;
  readonly conversationId: string | null;
  /** Creation order across the store: what list cursors point at. */
  readonly seq: number;
  status: RunStatus;
  /** The store's own copy, while the run is live. */
  live: Run | undefined;
  /** The Run's JSON text in UTF-8, once it has finished (its bytes outside the heap, as its log's). */
  json: Buffer | undefined;
  readonly log: RunLog;
  /** Where it stands in its user's list. */
  slot: number;
  /** In the finished queue: retention's to drop. */
  finished: boolean;
}

/** A user's runs in creation order, with holes where retention dropped some. */
interface UserRuns {
  records: (RunRecord | undefined)[];
  live: number;
}

/**
 * The memory store's runs: by id, by user in creation order, and finished ones in the order they
 * finished, dropped after the TTL or beyond `maxRuns` so memory stays flat under load.
 */
export class RunTable {
  private readonly byId = new Map<string, RunRecord>();
  private readonly byUser = new Map<string, UserRuns>();
  /** Finished runs, oldest first: [record, finished at ms]. */
  private finished: [RunRecord, number][] = [];
  private finishedHead = 0;
  private seq = 0;
  private readonly now: () => number;

  constructor(private readonly options: RetentionOptions) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.byId.size;
  }

  add(run: Run): void {
    if (this.byId.has(run.id)) throw new RunExistsError(run.id);
    const record: RunRecord = {
      id: run.id,
      userId: run.user_id,
      workflow: run.workflow,
      conversationId: run.conversation_id,
      seq: ++this.seq,
      status: run.status,
      live: copyRun(run),
      json: undefined,
      log: new RunLog(run.id),
      slot: 0,
      finished: false,
    };
    this.byId.set(run.id, record);
    let user = this.byUser.get(run.user_id);
    if (user === undefined) this.byUser.set(run.user_id, (user = { records: [], live: 0 }));
    record.slot = user.records.push(record) - 1;
    user.live++;
    this.settle(record);
  }

  get(id: string): RunRecord | undefined {
    return this.byId.get(id);
  }

  /** The run of a record, a fresh copy, with `last_event_id` from its log. */
  run(record: RunRecord): Run {
    const run = record.live === undefined ? (JSON.parse(record.json!.toString()) as Run) : copyRun(record.live);
    // A final run whose terminal event is still being written reads as its writer set it (the
    // terminal event's id): a client resuming from the event before it gets that event, not a 204.
    run.last_event_id = isTerminalStatus(record.status) && !record.log.terminal ? Math.max(run.last_event_id, record.log.lastId) : record.log.lastId;
    return run;
  }

  /** Compare-and-set on status; false when the run is unknown or its status is not in `expect`. */
  update(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): boolean {
    const record = this.byId.get(id);
    if (record === undefined || record.live === undefined || !expect.includes(record.status)) return false;
    const run: Run = { ...record.live, ...patch, id: record.id, user_id: record.userId };
    if (isTerminalStatus(run.status)) {
      // Final: kept as its text from now on, which is the copy (the patch's values are not kept).
      // Serialized before anything changes: a value that cannot be leaves the record as it was.
      record.json = Buffer.from(JSON.stringify(run));
      record.live = undefined;
    } else {
      // Only the patch is copied (the rest is the store's own copy already), again before anything changes.
      for (const key in patch) (run as unknown as Record<string, unknown>)[key] = copyJson((patch as Record<string, unknown>)[key]);
      record.live = run;
    }
    record.status = run.status;
    this.settle(record);
    return true;
  }

  /** A user's records, newest first, starting below sequence number `beforeSeq` when given. */
  *newestFirst(userId: string, beforeSeq?: number): Generator<RunRecord> {
    const records = this.byUser.get(userId)?.records;
    if (records === undefined) return;
    for (let i = records.length - 1; i >= 0; i--) {
      const record = records[i];
      if (record === undefined || (beforeSeq !== undefined && record.seq >= beforeSeq)) continue;
      yield record;
    }
  }

  /** Drops finished runs older than the TTL. Runs on a timer; public so tests can drive it. */
  sweep(): void {
    const cutoff = this.now() - this.options.runTtlS * 1000;
    while (this.finishedHead < this.finished.length && this.finished[this.finishedHead]![1] <= cutoff) this.evictOldest();
  }

  /**
   * A run becomes retention's to drop once its status is final AND its log is complete (its terminal
   * event written, or no log at all). Its writer writes the status first and the terminal event a
   * moment later; dropping it in between would cut that event off from the readers following it.
   */
  settle(record: RunRecord): void {
    if (record.finished || !isTerminalStatus(record.status) || !(record.log.terminal || record.log.lastId === 0)) return;
    record.finished = true;
    this.finished.push([record, this.now()]);
    while (this.finished.length - this.finishedHead > this.options.maxRuns) this.evictOldest();
  }

  private evictOldest(): void {
    const [record] = this.finished[this.finishedHead]!;
    this.finished[this.finishedHead++] = undefined as never;
    if (this.finishedHead > 1024 && this.finishedHead * 2 > this.finished.length) {
      this.finished = this.finished.slice(this.finishedHead);
      this.finishedHead = 0;
    }
    this.byId.delete(record.id);
    record.log.evict();
    const user = this.byUser.get(record.userId)!;
    user.records[record.slot] = undefined;
    if (--user.live === 0) this.byUser.delete(record.userId);
    else if (user.records.length > 64 && user.live * 2 < user.records.length) compact(user);
  }
}

/** Drops the holes of a user's list, renumbering the slots (amortised: only when most are holes). */
function compact(user: UserRuns): void {
  const kept: RunRecord[] = [];
  for (const record of user.records) {
    if (record === undefined) continue;
    record.slot = kept.push(record) - 1;
  }
  user.records = kept;
}
