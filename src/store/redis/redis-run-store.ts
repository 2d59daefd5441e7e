import { randomUUID } from 'node:crypto';
import { isTerminalStatus, type Run, type RunStatus } from '../../core/run.js';
import { decodeCursor, encodeCursor } from '../memory/cursor.js';
import type { RunListQuery, RunPage, RunStore } from '../run-store.js';
import { RunExistsError } from '../store-errors.js';
import type { RedisKeys } from './redis-keys.js';
import type { RunwayRedis } from './redis-scripts.js';

export interface RedisRunStoreOptions {
  /** How long a finished run's keys live (ms). */
  ttlMs: number;
  /** How long `ping` waits for Redis before it rejects (ms). */
  pingTimeoutMs: number;
}

/** One create in this many also sweeps the oldest entries of its user's index. */
const SWEEP_EVERY = 16;
/** Index entries a sweep looks at. */
const SWEEP_SIZE = 32;

/**
 * `RunStore` over Redis. A run is a hash with one field per Run field (its JSON text), so an update
 * writes only its patch; a sorted set per user, scored by a creation counter, is what `list` pages
 * over (cursors are positions in it, as the memory store's are). Create and update are scripts
 * (redis-scripts.ts): the compare-and-set on status is one atomic step on the server.
 *
 * Index entries outlive the runs they point at (a finished run's hash expires with its TTL, the
 * index has none): `list` drops the ones it meets, and every 16th create sweeps the oldest 32 of
 * its user's index, so an index stays about as large as its user's live and retained runs.
 *
 * @example
 *   await runs.create(run)
 *   const moved = await runs.update(run.id, { status: 'running' }, ['queued'])
 */
export class RedisRunStore implements RunStore {
  private creates = 0;

  constructor(
    private readonly redis: RunwayRedis,
    private readonly keys: RedisKeys,
    private readonly options: RedisRunStoreOptions,
  ) {}

  async create(run: Run): Promise<void> {
    const fields = fieldsOf(run);
    const seq = await this.redis.incr(this.keys.runSeq);
    const final = isTerminalStatus(run.status) ? '1' : '0';
    const created = await this.redis.runwayCreate(this.keys.run(run.id), randomUUID(), seq, this.options.ttlMs, final, ...fields);
    if (created !== 1) throw new RunExistsError(run.id);
    // Indexed once created: an id that was taken never lands in another user's list.
    const index = this.keys.userRuns(run.user_id);
    await this.redis.zadd(index, seq, run.id);
    if (++this.creates % SWEEP_EVERY === 0) void this.sweep(index).catch(() => {});
  }

  async get(id: string): Promise<Run | undefined> {
    return runOf(await this.redis.hgetall(this.keys.run(id)));
  }

  async update(id: string, patch: Partial<Run>, expect: readonly RunStatus[]): Promise<boolean> {
    // The record's identity is its own (as in the memory store): a patch cannot move it.
    const { id: _id, user_id: _user, ...rest } = patch;
    const fields = fieldsOf(rest);
    const final = patch.status !== undefined && isTerminalStatus(patch.status) ? '1' : '0';
    const expected = expect.map((s) => JSON.stringify(s));
    const applied = await this.redis.runwayUpdate(this.keys.run(id), this.keys.events(id), randomUUID(), this.options.ttlMs, final, expected.length, ...expected, ...fields);
    return applied === 1;
  }

  async list(query: RunListQuery): Promise<RunPage> {
    // Decoded first: a forged cursor is refused whether or not the caller has runs.
    const before = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const index = this.keys.userRuns(query.userId);
    const wanted = {
      user: JSON.stringify(query.userId),
      status: query.status === undefined ? undefined : JSON.stringify(query.status),
      workflow: query.workflow === undefined ? undefined : JSON.stringify(query.workflow),
      conversation: query.conversationId === undefined ? undefined : JSON.stringify(query.conversationId),
    };
    const chunk = Math.min(200, Math.max(16, query.limit + 1));
    const taken: { id: string; seq: number }[] = [];
    let more = false;
    let max = before === undefined ? '+inf' : `(${before}`;
    for (;;) {
      const flat = await this.redis.zrevrangebyscore(index, max, '-inf', 'WITHSCORES', 'LIMIT', 0, chunk);
      const candidates: { id: string; seq: number }[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) candidates.push({ id: flat[i]!, seq: Number(flat[i + 1]) });
      const heads = await this.pipelined(candidates.map((c) => ['hmget', this.keys.run(c.id), 'user_id', 'status', 'workflow', 'conversation_id']));
      const gone: string[] = [];
      for (let i = 0; i < candidates.length && !more; i++) {
        const [user, status, workflow, conversation] = heads[i] as (string | null)[];
        if (user === null) {
          gone.push(candidates[i]!.id);
          continue;
        }
        if (user !== wanted.user) continue;
        if (wanted.status !== undefined && status !== wanted.status) continue;
        if (wanted.workflow !== undefined && workflow !== wanted.workflow) continue;
        if (wanted.conversation !== undefined && conversation !== wanted.conversation) continue;
        if (taken.length === query.limit) more = true;
        else taken.push(candidates[i]!);
      }
      if (gone.length > 0) void this.redis.zrem(index, ...gone).catch(() => {});
      if (more || candidates.length < chunk) break;
      max = `(${candidates[candidates.length - 1]!.seq}`;
    }
    const records = await this.pipelined(taken.map((t) => ['hgetall', this.keys.run(t.id)]));
    const data: Run[] = [];
    for (const record of records) {
      const run = runOf(record as Record<string, string>);
      // Expired since its index entry was read: left out (the page is shorter, never out of order).
      if (run !== undefined) data.push(run);
    }
    return { data, nextCursor: more ? encodeCursor(taken.at(-1)?.seq ?? 0) : null };
  }

  async ping(): Promise<void> {
    // Bounded: with Redis down, ioredis would keep the PING queued until it is back (or until its
    // retries run out, tens of seconds later), and /readyz must answer now.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer PING within ${this.options.pingTimeoutMs} ms`)), this.options.pingTimeoutMs);
    });
    try {
      await Promise.race([this.redis.ping(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops the index entries of expired runs among the oldest of a user's index. */
  private async sweep(index: string): Promise<void> {
    const oldest = await this.redis.zrange(index, 0, SWEEP_SIZE - 1);
    const heads = await this.pipelined(oldest.map((id) => ['exists', this.keys.run(id)]));
    const gone = oldest.filter((_, i) => heads[i] === 0);
    if (gone.length > 0) await this.redis.zrem(index, ...gone);
  }

  /** Commands in one round trip; each one's result, or the first error. */
  private async pipelined(commands: (string | number)[][]): Promise<unknown[]> {
    if (commands.length === 0) return [];
    const results = (await this.redis.pipeline(commands).exec()) ?? [];
    return results.map(([err, value]) => {
      if (err) throw err;
      return value;
    });
  }
}

/** A Run's (or a patch's) fields as hash field/value pairs, each value its JSON text. */
function fieldsOf(run: Partial<Run>): string[] {
  const fields: string[] = [];
  for (const [key, value] of Object.entries(run)) {
    // `~` names are the store's bookkeeping; an undefined value is no value (as JSON has it).
    if (value === undefined || key.startsWith('~')) continue;
    fields.push(key, JSON.stringify(value));
  }
  return fields;
}

/** The Run of a record, undefined when there is none, with `last_event_id` as its log has it. */
function runOf(hash: Record<string, string>): Run | undefined {
  if (hash.id === undefined) return undefined;
  const run: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(hash)) if (!key.startsWith('~')) run[key] = JSON.parse(value);
  const last = Number(hash['~last'] ?? 0);
  const status = run.status as RunStatus;
  // As in the memory store: a final run whose terminal event is still being written reads with the
  // id its writer gave that event, so a client resuming from the event before it is told there is more.
  const written = typeof run.last_event_id === 'number' ? run.last_event_id : 0;
  run.last_event_id = isTerminalStatus(status) && hash['~ended'] !== '1' ? Math.max(written, last) : last;
  return run as unknown as Run;
}
